"""dist/ helpers: atomic writes, SOURCE_DATE_EPOCH rules, manifest.json and SHA256SUMS on real files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _ipxe
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import (
    ConfigError,
    NetbootError,
    PathEscapeError,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._rootfs_spec import (
    ROOTFS_MANIFEST,
    read_rootfs_manifest,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records import _manifest as mf

PACKAGES = [
    {"name": "busybox", "version": "1.37.0-r30", "checksum": "Q1abc=", "repository": "main", "build_time": 1765894768},
    {"name": "musl", "version": "1.2.5-r21", "checksum": "Q1def=", "repository": "main", "build_time": 1761000000},
]


def rootfs(tmp_path: Path, *, manifest: bool = True, kernels: tuple[str, ...] = ("vmlinuz-virt",)) -> Path:
    root = tmp_path / "rootfs"
    (root / "boot").mkdir(parents=True)
    for k in kernels:
        (root / "boot" / k).write_bytes(b"MZ kernel " + k.encode() * 100)
    (root / "lib/modules/6.18.56-0-virt").mkdir(parents=True)
    if manifest:
        m = root / ROOTFS_MANIFEST
        m.parent.mkdir(parents=True)
        m.write_text(json.dumps({"release": "3.23", "arch": "x86_64", "packages": PACKAGES,
                                 "source_date_epoch": 1765894768}))
    return root


def test_sde_rules(tmp_path: Path) -> None:
    root = rootfs(tmp_path)
    assert mf.source_date_epoch(root, 42) == (42, "option")
    sde, why = mf.source_date_epoch(root)
    assert sde == 1765894768 and "newest package build_time" in why
    (root / ROOTFS_MANIFEST).write_text(json.dumps({"packages": [], "source_date_epoch": 7}))
    assert mf.source_date_epoch(root)[0] == 7
    (root / ROOTFS_MANIFEST).unlink()
    with pytest.raises(ConfigError, match="set source_date_epoch"):
        mf.source_date_epoch(root)
    with pytest.raises(ConfigError, match="negative"):
        mf.source_date_epoch(root, -1)


def artefacts(tmp_path: Path) -> Path:
    """What the stages write under build/ (netboot_artefact_dir): the dist stage publishes it."""
    src = tmp_path / "artefacts"
    (src / "nodes").mkdir(parents=True)
    (src / "initramfs").write_bytes(b"\x28\xb5\x2f\xfd fake")
    (src / "boot.ipxe").write_text("#!ipxe\n")
    (src / "nodes/a.img").write_bytes(b"a")  # a node initrd: published, not listed in the manifest
    boot_record(src)
    return src


def boot_record(src: Path, **spec: object) -> None:
    """ipxe_script's boot record of ``src``/boot.ipxe (published with it): ``spec``, the ScriptSpec fields."""
    template = src.parent / "boot.ipxe.j2"
    template.write_text("#!ipxe\n")
    (src / "boot.ipxe.json").write_bytes(_ipxe.boot_record(_ipxe.ScriptSpec("tftp://10.0.0.1", **spec), template))


def test_dist_manifest_and_sums(tmp_path: Path) -> None:
    root = rootfs(tmp_path)
    src, dist = artefacts(tmp_path), tmp_path / "dist"
    report = tmp_path / "prune-report.json"
    report.write_text(json.dumps({"modules": {"after": {"count": 12}}}))
    kw = {"rootfs": str(root), "src": str(src), "dest": str(dist), "inputs": {"initramfs_level": 19},
          "boot_script": "boot.ipxe", "reports": {"prune": str(report), "missing": str(tmp_path / "nope.json")}}
    res = mf.build_dist(**kw)  # type: ignore[arg-type]
    assert res["changed"] is True
    assert (dist / "vmlinuz").read_bytes() == (root / "boot/vmlinuz-virt").read_bytes()
    assert (dist / "nodes/a.img").read_bytes() == b"a" and (dist / "boot.ipxe.json").is_file()
    doc = json.loads((dist / "manifest.json").read_text())
    assert doc["release"] == "3.23" and doc["arch"] == "x86_64" and doc["source_date_epoch"] == 1765894768
    assert doc["packages"] == PACKAGES
    assert doc["kernel"] == {"source": "boot/vmlinuz-virt", "version": "6.18.56-0-virt"}
    assert set(doc["artefacts"]) == {"boot.ipxe", "boot.ipxe.json", "initramfs", "vmlinuz"}
    assert doc["inputs"]["initramfs_level"] == 19
    assert doc["inputs"]["reports"] == {"missing": None, "prune": {"modules": {"after": {"count": 12}}}}
    assert any("nope.json" in w for w in res["warnings"])
    sums = (dist / "SHA256SUMS").read_text().splitlines()
    names = ["boot.ipxe", "boot.ipxe.json", "initramfs", "manifest.json", "vmlinuz"]
    assert [ln.split("  ")[1] for ln in sums] == names
    subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=dist, check=True, capture_output=True)

    inode = dist.stat().st_ino
    again = mf.build_dist(**kw)  # type: ignore[arg-type]
    assert again["changed"] is False and dist.stat().st_ino == inode  # nothing published again

    (src / "initramfs").write_bytes(b"\x28\xb5\x2f\xfd rebuilt")
    check = mf.build_dist(**kw, check_mode=True)  # type: ignore[arg-type]
    assert check["changed"] is True
    assert (dist / "SHA256SUMS").read_text().splitlines() == sums and dist.stat().st_ino == inode  # wrote nothing
    (dist / "stale").write_text("from an older build")
    assert mf.build_dist(**kw)["changed"] is True  # type: ignore[arg-type]
    assert dist.stat().st_ino != inode and not (dist / "stale").exists()  # a new directory, swapped in
    assert (dist / "initramfs").read_bytes().endswith(b"rebuilt")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("dist")) == ["dist"]  # no temp left


def test_a_failure_before_the_swap_leaves_dist_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = rootfs(tmp_path)
    src, dist = artefacts(tmp_path), tmp_path / "dist"
    kw = {"rootfs": str(root), "src": str(src), "dest": str(dist), "boot_script": "boot.ipxe"}
    mf.build_dist(**kw)  # type: ignore[arg-type]
    before = {p.name: p.read_bytes() for p in dist.iterdir() if p.is_file()}
    (src / "initramfs").write_bytes(b"new")

    def broken(new: str, dest: str) -> None:
        raise OSError("disk full")
    monkeypatch.setattr(mf, "swap_dir", broken)
    with pytest.raises(OSError, match="disk full"):
        mf.build_dist(**kw)  # type: ignore[arg-type]
    assert {p.name: p.read_bytes() for p in dist.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("dist")) == ["dist"]


def test_without_rootfs_manifest_packages_come_from_apk_db(tmp_path: Path) -> None:
    root = rootfs(tmp_path, manifest=False)
    db = root / "lib/apk/db/installed"
    db.parent.mkdir(parents=True)
    db.write_text("C:Q1x=\nP:musl\nV:1.2.5-r21\nA:x86_64\nt:1761000000\n\nC:Q1y=\nP:busybox\nV:1.37\nt:1765000000\n\n")
    res = mf.build_dist(rootfs=str(root), src=str(tmp_path / "none"), dest=str(tmp_path / "dist"))
    assert [p["name"] for p in res["manifest"]["packages"]] == ["busybox", "musl"]
    assert res["manifest"]["source_date_epoch"] == 1765000000
    assert any("no rootfs manifest" in w for w in res["warnings"])


def test_kernel_selection(tmp_path: Path) -> None:
    root = rootfs(tmp_path, kernels=("vmlinuz-lts", "vmlinuz-virt"))
    with pytest.raises(ConfigError, match="several kernels"):
        mf.find_kernel(root)
    assert mf.find_kernel(root, "vmlinuz-lts").name == "vmlinuz-lts"
    with pytest.raises(PathEscapeError):
        mf.find_kernel(root, "../../etc/passwd")
    with pytest.raises(NetbootError, match="not found"):
        mf.find_kernel(root, "vmlinuz-edge")
    empty = tmp_path / "empty"
    (empty / "boot").mkdir(parents=True)
    with pytest.raises(NetbootError, match="no kernel"):
        mf.find_kernel(empty)


def test_missing_listed_artefact_is_an_error(tmp_path: Path) -> None:
    root = rootfs(tmp_path)
    with pytest.raises(NetbootError, match=r"boot\.ipxe is missing"):
        mf.build_dist(rootfs=str(root), src=str(tmp_path), dest=str(tmp_path / "dist"), artefacts=["boot.ipxe"])
    assert not os.path.exists(tmp_path / "dist" / "manifest.json")


def test_boot_artefact_not_published_fails_naming_file_and_option(tmp_path: Path) -> None:
    root = rootfs(tmp_path)
    src, dist = artefacts(tmp_path), tmp_path / "dist"
    boot_record(src, microcode="intel-ucode.img")
    kw = {"rootfs": str(root), "src": str(src), "dest": str(dist), "boot_script": "boot.ipxe"}
    with pytest.raises(NetbootError, match=r"fetches intel-ucode\.img \(microcode\).*initramfs_microcode"):
        mf.build_dist(**kw)  # type: ignore[arg-type]
    assert not dist.exists()  # nothing published
    # check mode only warns (the initramfs stage may write it); present artefacts pass
    res = mf.build_dist(**kw, check_mode=True)  # type: ignore[arg-type]
    assert any("intel-ucode.img" in w for w in res["warnings"])
    (src / "intel-ucode.img").write_bytes(b"ucode")
    res = mf.build_dist(**kw)  # type: ignore[arg-type]
    assert {"vmlinuz", "initramfs", "intel-ucode.img"} <= set(res["artefacts"])
    (src / "boot.ipxe.json").write_text('{"initramfs": "initramfs", "vmlinuz": "kernel"}')  # an older record
    with pytest.raises(NetbootError, match=r"boot\.ipxe\.json has no format.*--tags ipxe"):
        mf.build_dist(**kw)  # type: ignore[arg-type]
    (src / "boot.ipxe").unlink()
    (src / "boot.ipxe.json").unlink()
    with pytest.raises(NetbootError, match=r"--tags ipxe"):
        mf.build_dist(**kw)  # type: ignore[arg-type]


def test_boot_artefact_per_node_initrd_and_paths(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "nodes").mkdir(parents=True)
    (dist / "nodes/a.img").write_bytes(b"a")
    assert mf.missing_boot_artefacts(dist, {"nodes/a.img": "initrd of host a", "vmlinuz": "kernel"}, "vmlinuz") == []
    problems = mf.missing_boot_artefacts(dist, {"b.img": "initrd of host b", "../x": "initrd of host c"}, "vmlinuz")
    assert "b.img (initrd of host b)" in problems[1] and "host var initrd" in problems[1]
    assert "'../x'" in problems[0] and "not a path inside" in problems[0]


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\xff\xfe"])
def test_a_damaged_rootfs_manifest_is_an_error_naming_the_file(tmp_path: Path, text: str) -> None:
    root = rootfs(tmp_path)
    path = root / ROOTFS_MANIFEST
    path.write_bytes(text.encode("latin-1"))
    for read in (lambda: read_rootfs_manifest(path), lambda: mf.source_date_epoch(root)):
        with pytest.raises(NetbootError, match=rf"rootfs manifest {path} .*; delete {path} and run the rootfs stage"):
            read()
    path.unlink()
    assert read_rootfs_manifest(path) is None


def test_dist_refuses_a_boot_script_whose_digests_do_not_match(tmp_path: Path) -> None:
    """--tags initramfs,dist without the ipxe stage: boot.ipxe still checks the old initramfs's sha256."""
    root = rootfs(tmp_path)
    src, dist = artefacts(tmp_path), tmp_path / "dist"
    kernel_sha = hashlib.sha256((root / "boot/vmlinuz-virt").read_bytes()).hexdigest()
    old_sha = hashlib.sha256((src / "initramfs").read_bytes()).hexdigest()
    boot_record(src, digests={"initramfs": old_sha, "vmlinuz": kernel_sha})
    kw = {"rootfs": str(root), "src": str(src), "dest": str(dist), "boot_script": "boot.ipxe"}
    assert mf.build_dist(**kw)["changed"] is True  # type: ignore[arg-type]
    before = {p.name: p.read_bytes() for p in dist.rglob('*') if p.is_file()}
    (src / "initramfs").write_bytes(b"\x28\xb5\x2f\xfd rebuilt")  # the initramfs stage ran, the ipxe stage did not
    new_sha = hashlib.sha256(b"\x28\xb5\x2f\xfd rebuilt").hexdigest()
    with pytest.raises(NetbootError) as err:
        mf.build_dist(**kw)  # type: ignore[arg-type]
    msg = str(err.value)
    assert f"expects initramfs with sha256 {old_sha}" in msg and f"has sha256 {new_sha}" in msg
    assert "--tags ipxe,dist" in msg and "every node would refuse it" in msg
    assert {p.name: p.read_bytes() for p in dist.rglob('*') if p.is_file()} == before  # dist/ untouched
    assert not list(tmp_path.glob("dist.new-*"))
    # check mode says so without failing; once boot.ipxe is rendered for the new file, it publishes
    assert any(new_sha in w for w in mf.build_dist(**kw, check_mode=True)["warnings"])  # type: ignore[arg-type]
    boot_record(src, digests={"initramfs": new_sha, "vmlinuz": kernel_sha})
    assert mf.build_dist(**kw)["changed"] is True  # type: ignore[arg-type]
    assert (dist / "initramfs").read_bytes().endswith(b"rebuilt")
    # a kernel other than the one boot.ipxe checks (dist_kernel and ipxe_rootfs_kernel disagree): refused too
    boot_record(src, digests={"initramfs": new_sha, "vmlinuz": "0" * 64})
    with pytest.raises(NetbootError, match=r"expects vmlinuz with sha256 0{64}, but the vmlinuz to publish"):
        mf.build_dist(**kw)  # type: ignore[arg-type]
