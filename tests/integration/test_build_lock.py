"""Issue 25: build.yml's lock on its build directory, cache and dist/, through ansible-playbook as a user runs it.

The fast tests hold the lock for a stand-in playbook process (a ``sleep``, recorded as the holder) and run build.yml
against it; ``test_two_builds_at_once`` (slow) runs two real builds of one inventory together.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils._lock import (
    Holder,
    is_held,
    keep,
    read_holder,
)
from tests.fixtures.playbook import run_playbook


def lock_vars(work: Path) -> dict[str, str]:
    return {"netboot_build_dir": str(work / "build"), "netboot_cache_dir": str(work / "cache"),
            "netboot_dist_dir": str(work / "dist")}


def locked(work: Path) -> list[Path]:
    return [work / "build", work / "cache", work / "dist"]


@pytest.fixture
def other_run(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A stand-in for another ansible-playbook run holding the lock (its keeper releases it when it exits)."""
    with subprocess.Popen(["sleep", "300"]) as proc:
        keep(locked(tmp_path), Holder.for_process(proc.pid, "ansible-playbook build.yml", locked(tmp_path)))
        yield proc
        proc.kill()


def wait_released(path: Path, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while is_held(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_held(path)


def test_a_second_build_is_refused_at_once_naming_the_holder_or_waits(
    tmp_path: Path, other_run: subprocess.Popen[bytes]
) -> None:
    t = time.monotonic()
    res = run_playbook("build.yml", tmp_path / "w", lock_vars(tmp_path), tags="rootfs")
    took = time.monotonic() - t
    assert res.rc != 0 and took < 30
    (msg,) = res.failure_messages()
    assert f"is locked by ansible-playbook build.yml (pid {other_run.pid} on" in msg
    assert str(tmp_path / "build") in msg and "netboot_lock_timeout" in msg
    assert not res.task_results("Build the Alpine rootfs from"), "nothing ran after the refusal"
    # check mode only reads: it says a run holds the lock and goes on
    check = run_playbook("build.yml", tmp_path / "w", lock_vars(tmp_path), tags="lock-probe", check=True)
    assert check.rc == 0, check.stdout[-3000:]
    assert f"{tmp_path / 'dist'} is locked by ansible-playbook build.yml (pid {other_run.pid}" in check.stdout
    # netboot_lock_timeout: waits, then fails naming the holder; or gets the lock once the other run ends
    t = time.monotonic()
    waited = run_playbook("build.yml", tmp_path / "w", {**lock_vars(tmp_path), "netboot_lock_timeout": 2},
                          tags="lock-probe")
    assert waited.rc != 0 and time.monotonic() - t >= 2
    assert any("after waiting 2s (netboot_lock_timeout)" in m for m in waited.failure_messages())
    other_run.kill()
    ok = run_playbook("build.yml", tmp_path / "w", {**lock_vars(tmp_path), "netboot_lock_timeout": 10},
                      tags="lock-probe")
    assert ok.rc == 0 and "took over" not in ok.stdout, ok.stdout[-3000:]
    wait_released(tmp_path / "build")
    assert read_holder(tmp_path / "build") is None, "released at the end of the run"


def test_the_holder_is_the_playbook_process_and_a_dead_holders_lock_is_taken_over(tmp_path: Path) -> None:
    with subprocess.Popen(["true"]) as gone:
        gone.wait()
    stale = Holder.for_process(gone.pid, "ansible-playbook build.yml", locked(tmp_path))
    (tmp_path / ".build.netboot-lock").write_text(stale.to_json())  # killed together with its keeper
    res = run_playbook("build.yml", tmp_path / "w", lock_vars(tmp_path), tags="lock-probe", verbosity=1)
    assert res.rc == 0, res.stdout[-3000:]
    assert f"took over the lock of {tmp_path / 'build'} left by ansible-playbook build.yml (pid {gone.pid}" \
        in res.stdout and f"pid {gone.pid} is gone" in res.stdout
    (out,) = res.task_results("Take the build lock")
    holder = out["holder"]
    # the playbook process: the ancestor running ansible-playbook, alive while the run lasts, not a module
    cmdline = Path(f"/proc/{holder['pid']}/cmdline")
    assert holder["playbook"] == "ansible-playbook build.yml" and holder["pid"] != os.getpid()
    assert not cmdline.exists(), "the recorded process is ansible-playbook, gone with the run"
    assert holder["paths"] == [str(p) for p in locked(tmp_path)]
