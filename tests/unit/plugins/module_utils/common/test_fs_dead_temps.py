"""_fs.remove_dead_temps / atomic_path: what a killed writer left beside its output is removed by the next run; a
live writer's temp is kept."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import (
    atomic_write_bytes,
    remove_dead_temps,
)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_temps_of_dead_writers_go_live_ones_and_others_stay(tmp_path: Path) -> None:
    dead = dead_pid()
    (tmp_path / f".initramfs.{dead}.abc123.tmp").write_bytes(b"partial")
    (tmp_path / f".initramfs.{os.getpid()}.def456.tmp").write_bytes(b"being written")
    (tmp_path / ".initramfs.3ixomw1c.tmp").write_bytes(b"no pid: not ours to judge")
    (tmp_path / f".image.new-{dead}").mkdir()
    (tmp_path / f".image.new-{dead}" / "file").write_text("x")
    removed = remove_dead_temps(tmp_path, ".initramfs.") + remove_dead_temps(tmp_path, ".image.new-")
    assert sorted(p.name for p in removed) == sorted([f".initramfs.{dead}.abc123.tmp", f".image.new-{dead}"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".initramfs.{os.getpid()}.def456.tmp", ".initramfs.3ixomw1c.tmp"])


def test_the_next_atomic_write_cleans_what_a_killed_one_left(tmp_path: Path) -> None:
    left = tmp_path / f".initramfs.{dead_pid()}.xyz.tmp"
    left.write_bytes(b"half an initramfs")
    assert atomic_write_bytes(tmp_path / "initramfs", b"whole")
    assert not left.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["initramfs"]


def test_a_zombie_writer_counts_as_gone(tmp_path: Path) -> None:
    """A SIGKILLed writer stays a zombie until it is reaped: its temp goes all the same."""
    import time

    proc = subprocess.Popen(["sleep", "60"])
    proc.kill()
    while Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":  # not reaped yet
        time.sleep(0.01)
    (tmp_path / f".rootfs.new-{proc.pid}").mkdir()
    try:
        assert [p.name for p in remove_dead_temps(tmp_path, ".rootfs.new-")] == [f".rootfs.new-{proc.pid}"]
    finally:
        proc.wait()
