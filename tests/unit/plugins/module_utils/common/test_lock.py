"""The build lock (module_utils/common/_lock.py): flocks beside each path, the holder's record, takeover of dead holders."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._lock import (
    Holder,
    LockHeld,
    acquire,
    is_held,
    keep,
    lock_file,
    process_start,
    read_holder,
)


def paths(tmp_path: Path) -> list[Path]:
    return [tmp_path / "build", tmp_path / "cache", tmp_path / "dist"]


def holder_for(pid: int, tmp_path: Path) -> Holder:
    return Holder.for_process(pid, "ansible-playbook build.yml", paths(tmp_path))


def test_a_second_run_is_refused_naming_the_holder_and_the_path(tmp_path: Path) -> None:
    first = acquire(paths(tmp_path), holder_for(os.getpid(), tmp_path))
    try:
        assert lock_file(tmp_path / "dist") == tmp_path / ".dist.netboot-lock"  # beside dist/, which is swapped
        record = json.loads((tmp_path / ".build.netboot-lock").read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert record["pid_start"] == process_start(os.getpid()) and record["boot_id"]
        with subprocess.Popen(["sleep", "30"]) as other:
            try:
                start = time.monotonic()
                with pytest.raises(LockHeld) as err:
                    acquire([tmp_path / "cache"], holder_for(other.pid, tmp_path))
                assert time.monotonic() - start < 1, "refused at once"
                text = str(err.value)
                assert f"{tmp_path / 'cache'} is locked by ansible-playbook build.yml (pid {os.getpid()} on" in text
                assert "netboot_lock_timeout" in text and str(tmp_path / ".cache.netboot-lock") in text
                start = time.monotonic()
                with pytest.raises(LockHeld, match=r"after waiting 0\.6s \(netboot_lock_timeout\)"):
                    acquire([tmp_path / "dist"], holder_for(other.pid, tmp_path), timeout=0.6)
                assert time.monotonic() - start >= 0.6
            finally:
                other.kill()
        assert is_held(tmp_path / "build")
    finally:
        first.release()
    assert not is_held(tmp_path / "build") and read_holder(tmp_path / "build") is None


def test_a_record_left_by_a_dead_or_rebooted_holder_is_taken_over_with_a_warning(tmp_path: Path) -> None:
    with subprocess.Popen(["true"]) as gone:
        gone.wait()
    dead = holder_for(gone.pid, tmp_path)
    (tmp_path / ".build.netboot-lock").write_text(dead.to_json())  # killed with its keeper: no flock, a record
    rebooted = replace(holder_for(os.getpid(), tmp_path), boot_id="00000000-0000-0000-0000-000000000000")
    (tmp_path / ".cache.netboot-lock").write_text(rebooted.to_json())
    got = acquire(paths(tmp_path), holder_for(os.getpid(), tmp_path))
    try:
        assert len(got.warnings) == 2, got.warnings
        assert any(f"took over the lock of {tmp_path / 'build'} left by ansible-playbook build.yml (pid {gone.pid}"
                   in w and f"pid {gone.pid} is gone" in w for w in got.warnings), got.warnings
        assert any("the machine rebooted since" in w for w in got.warnings), got.warnings
        now = read_holder(tmp_path / "build")
        assert now is not None and now.same_process(holder_for(os.getpid(), tmp_path))
    finally:
        got.release()


def test_the_keeper_holds_the_lock_until_the_playbook_process_exits(tmp_path: Path) -> None:
    with subprocess.Popen(["sleep", "30"]) as playbook:
        recorded, warnings = keep(paths(tmp_path), holder_for(playbook.pid, tmp_path))
        assert warnings == [] and recorded.pid == playbook.pid and recorded.keeper not in (0, os.getpid())
        assert read_holder(tmp_path / "dist") == recorded and is_held(tmp_path / "dist")
        # the same playbook taking it again (a second lock task) is not refused
        assert keep(paths(tmp_path), holder_for(playbook.pid, tmp_path))[0] == recorded
        with pytest.raises(LockHeld, match=f"pid {playbook.pid} on"):
            acquire(paths(tmp_path), holder_for(os.getpid(), tmp_path))
        playbook.kill()
    deadline = time.monotonic() + 5
    while is_held(tmp_path / "build") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_held(tmp_path / "build") and read_holder(tmp_path / "build") is None  # released, record cleared
    acquire(paths(tmp_path), holder_for(os.getpid(), tmp_path)).release()
