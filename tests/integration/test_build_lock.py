"""Issue 25: build.yml's lock on its build directory, cache and dist/, through ansible-playbook as a user runs it.

The fast tests hold the lock for a stand-in playbook process (a ``sleep``, recorded as the holder) and run build.yml
against it; ``test_two_builds_at_once`` (slow) runs two real builds of one inventory together.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._lock import (
    Holder,
    is_held,
    keep,
    read_holder,
)
from tests.fixtures.e2e import NODES, Built
from tests.fixtures.material import REPO
from tests.fixtures.playbook import VENV_BIN, run_playbook, write_inventory


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


# ------------------------------------------------------------------------------------- two real builds (slow)


def _digests(d: Path) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


def _start(work: Path, inventory: Path, extravars: dict[str, object], n: int) -> tuple[subprocess.Popen[bytes], Path]:
    (work / f"vars-{n}.json").write_text(json.dumps(extravars))
    log = work / f"run-{n}.log"
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(Path(VENV_BIN) / "ansible-playbook"), "-i", str(inventory), "-e",
                                 f"@{work / f'vars-{n}.json'}", str(REPO / "playbooks/build.yml")],
                                stdout=out, stderr=subprocess.STDOUT, cwd=work, env=env, start_new_session=True)
    return proc, log


def _holder_pid(path: Path) -> int:
    h = read_holder(path)
    return h.pid if h else 0


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="building the rootfs needs root")
def test_two_builds_at_once_and_a_killed_builds_lock(tmp_path: Path, e2e_built: Built) -> None:
    """Two builds of one inventory started together: the second is refused at once naming the first, which
    publishes the dist/ an undisturbed build of the same inputs publishes (e2e_built's). Then a build SIGKILLed with
    its keeper leaves its record; the next run takes it over with a warning."""
    from tests.fixtures.apkrepo import serve
    from tests.integration.test_sigkill import crash

    work = tmp_path / "site"
    work.mkdir()
    shutil.copy(e2e_built.extravars["alpine_lockfile"], work / "alpine-lock.json")
    extravars = {**e2e_built.extravars, "netboot_cache_dir": str(work / "cache"),
                 "netboot_build_dir": str(work / "build"), "netboot_dist_dir": str(work / "dist"),
                 "alpine_lockfile": str(work / "alpine-lock.json")}
    inventory = write_inventory(work / "hosts.yml", NODES)
    with serve(e2e_built.mirror.path, e2e_built.mirror_port):
        first, first_log = _start(work, inventory, extravars, 1)
        deadline = time.monotonic() + 120
        while _holder_pid(work / "build") != first.pid:
            assert first.poll() is None and time.monotonic() < deadline, first_log.read_text()[-3000:]
            time.sleep(0.05)
        t = time.monotonic()
        second = run_playbook("build.yml", work / "second", extravars, inventory=inventory)
        took = time.monotonic() - t
        assert first.poll() is None, "the first build was still running when the second was refused"
        assert second.rc != 0 and took < 60, second.stdout[-3000:]
        (msg,) = second.failure_messages()
        assert f"{work / 'build'} is locked by ansible-playbook build.yml (pid {first.pid} on" in msg, msg
        assert "No such file or directory" not in second.stdout
        assert first.wait(timeout=1200) == 0, first_log.read_text()[-4000:]
        assert _digests(work / "dist") == _digests(e2e_built.dist), "dist/ equals an undisturbed build's"
        # a build killed together with its keeper (a reboot, a cgroup kill): its record stays, without a flock
        killed, killed_log = _start(work, inventory, extravars, 3)
        deadline = time.monotonic() + 120
        while _holder_pid(work / "build") != killed.pid:
            assert killed.poll() is None and time.monotonic() < deadline, killed_log.read_text()[-3000:]
            time.sleep(0.05)
        keeper = read_holder(work / "build").keeper  # type: ignore[union-attr]
        os.kill(keeper, signal.SIGKILL)
        crash(killed)
        assert _holder_pid(work / "build") == killed.pid and not is_held(work / "build")
        after = run_playbook("build.yml", work / "after", extravars, inventory=inventory)
    assert after.rc == 0, after.stdout[-4000:]
    assert f"took over the lock of {work / 'build'} left by ansible-playbook build.yml (pid {killed.pid}" \
        in after.stdout, after.stdout[-4000:]
    assert _digests(work / "dist") == _digests(e2e_built.dist)
