"""Issue 25: the router lock and the dist/ snapshot, through deploy_rb4011.yml against the RouterOS peer.

Two deploys of different generations at once (two work directories: two controllers), a deploy killed with its
lock left on the router, and a build swapping dist/ while a deploy uploads. The peer's SFTP writes are slowed
(``faults.write_delay``) so the first deploy is still uploading when the second one starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import swap_dir
from tests.fixtures.material import REPO
from tests.fixtures.playbook import VENV_BIN, PlaybookResult
from tests.fixtures.routeros.deploy import deploy, inventory, result
from tests.fixtures.routeros.dist import make_dist
from tests.fixtures.routeros.peer import Peer
from tests.fixtures.routeros.tftp import tftp_get

LOCK = "homelab.alpine_netboot.lock.netboot"
SIZES = {"vmlinuz": 300_000, "initramfs": 2_000_000}


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Peer]:
    with Peer(tmp_path / "peer") as p:
        yield p


def url(peer: Peer) -> str:
    return f"tftp://10.0.2.2:{peer.tftp_port}"


def sums_of(dist: Path) -> dict[str, str]:
    return {name: digest for digest, name in (ln.split("  ") for ln in (dist / "SHA256SUMS").read_text().splitlines())}


def gen_of(dist: Path) -> str:
    import hashlib

    return "g-" + hashlib.sha256((dist / "SHA256SUMS").read_bytes()).hexdigest()[:12]


def lock_rows(peer: Peer) -> list[dict[str, str]]:
    return [r for r in peer.rows("/system/script") if r.get("name") == LOCK]


def wait_for(what: str, cond: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def assert_rules_serve_whole_generations(peer: Peer) -> None:
    """Every owned TFTP rule serves an existing file, and each generation's files match its own SHA256SUMS."""
    rules = [r for r in peer.rows("/ip/tftp") if r.get("comment", "").startswith("homelab.alpine_netboot")]
    assert rules
    for r in rules:
        assert peer.store.path(r["real-filename"]).is_file(), r
        got = tftp_get("127.0.0.1", peer.tftp_port, r["req-filename"].strip("^$").replace("\\", ""))
        assert got == peer.store.read(r["real-filename"])
    gens = {r["real-filename"].split("/")[1] for r in rules}
    for g in gens:
        listed = {name: digest for digest, name in
                  (ln.split("  ") for ln in peer.store.read(f"netboot/{g}/SHA256SUMS").decode().splitlines())}
        for name, digest in listed.items():
            assert peer.store.sha256(f"netboot/{g}/{name}") == digest, (g, name)


def test_two_deploys_at_once_one_is_refused_naming_the_other(peer: Peer, tmp_path: Path) -> None:
    first_dist = make_dist(tmp_path / "dist-a", url(peer), seed="a", sizes=SIZES)
    second_dist = make_dist(tmp_path / "dist-b", url(peer), seed="b", sizes=SIZES)
    assert deploy(tmp_path / "ctl-a", peer, make_dist(tmp_path / "dist-0", url(peer), seed="0")).rc == 0
    peer.faults.write_delay = 0.05  # the first deploy uploads for several seconds
    box: dict[str, PlaybookResult] = {}
    runner = threading.Thread(target=lambda: box.update(a=deploy(tmp_path / "ctl-a", peer, first_dist)))
    runner.start()
    try:
        wait_for("the first deploy's lock and upload", lambda: lock_rows(peer) and peer.faults.writes > 2)
        (row,) = lock_rows(peer)
        held = json.loads(row["source"])
        assert held["generation"] == gen_of(first_dist) and held["controller"] == socket.gethostname()
        before = {k: v for k, v in peer.snapshot()["menus"].items() if k != "/system/script"}
        t = time.monotonic()
        refused = deploy(tmp_path / "ctl-b", peer, second_dist)  # another controller, another generation
        took = time.monotonic() - t
    finally:
        runner.join(timeout=300)
        peer.faults.write_delay = 0
    assert refused.rc != 0 and took < 60, refused.stdout[-3000:]
    msg = next(m for m in refused.failure_messages() if "lock" in m)
    assert f"another deploy holds the lock of netboot: {socket.gethostname()} (pid {held['pid']}, writing " \
           f"generation {gen_of(first_dist)}" in msg and "Nothing was changed" in msg, msg
    assert f'/system script remove [find name="{LOCK}"]' in msg
    assert not any(gen_of(second_dist) in n for n in peer.store.snapshot()), "the refused deploy wrote nothing"
    assert box["a"].rc == 0, box["a"].stdout[-3000:]
    assert result(box["a"])["generation"] == gen_of(first_dist)
    assert {k: v for k, v in peer.snapshot()["menus"].items() if k != "/system/script"} != before  # a switched
    assert lock_rows(peer) == [], "released at the end"
    assert gen_of(first_dist) in tftp_get("127.0.0.1", peer.tftp_port, "boot.ipxe").decode()
    assert_rules_serve_whole_generations(peer)


def test_a_held_lock_makes_a_deploy_wait_with_rb4011_lock_timeout(peer: Peer, tmp_path: Path) -> None:
    dist = make_dist(tmp_path / "dist", url(peer))
    now = int(time.time())
    source = json.dumps({"controller": "ci-runner-7", "pid": 4242, "since": now, "refreshed": now,
                         "generation": "g-0123456789ab", "dir": "netboot", "token": "x"})
    rid = peer.add_row("/system/script", name=LOCK, source=source)
    before = peer.snapshot()
    check = deploy(tmp_path / "w", peer, dist, check=True)  # check mode only reads, and says who holds the lock
    assert check.rc == 0 and peer.snapshot() == before, check.stdout[-3000:]
    assert "a deploy holds the lock of netboot: ci-runner-7 (pid 4242" in check.stdout
    t = time.monotonic()
    res = deploy(tmp_path / "w", peer, dist, rb4011_lock_timeout=2)
    assert res.rc != 0 and time.monotonic() - t >= 2
    assert any("ci-runner-7 (pid 4242, writing generation g-0123456789ab" in m and "after waiting 2s" in m
               for m in res.failure_messages()), res.failure_messages()

    def other_deploy_ends() -> None:
        with peer.lock:
            peer.menus["/system/script"].rows[:] = [r for r in peer.menus["/system/script"].rows if r[".id"] != rid]

    threading.Timer(2, other_deploy_ends).start()
    ok = deploy(tmp_path / "w", peer, dist, rb4011_lock_timeout=30)
    assert ok.rc == 0 and result(ok)["generation"] == gen_of(dist), ok.stdout[-3000:]
    assert rid not in {r[".id"] for r in peer.rows("/system/script")}


def crash(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the playbook's whole process tree (as a crash or a cgroup kill would)."""
    from tests.integration.test_sigkill import crash as crash_tree

    crash_tree(proc)


def test_a_killed_deploys_lock_is_taken_over_once_stale_by_the_routers_clock(peer: Peer, tmp_path: Path) -> None:
    dist = make_dist(tmp_path / "dist", url(peer), sizes=SIZES)
    work = tmp_path / "killed"
    work.mkdir()
    inv = inventory(work / "hosts.yml", peer)
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", "")}
    peer.faults.write_delay = 0.05
    with open(work / "log", "wb") as log:
        proc = subprocess.Popen(
            [str(Path(VENV_BIN) / "ansible-playbook"), "-i", str(inv), "-e",
             json.dumps({"netboot_dist_dir": str(dist), "netboot_build_dir": str(work / "build")}),
             str(REPO / "playbooks/deploy_rb4011.yml")],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_for("the deploy's upload", lambda: lock_rows(peer) and peer.faults.writes > 2)
    finally:
        crash(proc)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        peer.faults.write_delay = 0
    (left,) = lock_rows(peer)
    assert json.loads(left["source"])["pid"] == proc.pid, "the holder recorded is the ansible-playbook process"
    fresh = deploy(tmp_path / "w", peer, dist)
    assert fresh.rc != 0 and any("another deploy holds the lock" in m for m in fresh.failure_messages())
    peer.clock_offset = 1801  # the router's clock moves on; the controller's is not asked
    res = deploy(tmp_path / "w", peer, dist)
    assert res.rc == 0, res.stdout[-3000:]
    assert f"took over the deploy lock {LOCK} left by {socket.gethostname()} (pid {proc.pid}" in res.stdout
    assert "older than rb4011_lock_stale (1800s) by the router's clock" in res.stdout
    assert lock_rows(peer) == []
    assert_rules_serve_whole_generations(peer)


def test_a_build_swapping_dist_during_a_deploy_does_not_mix_generations(peer: Peer, tmp_path: Path) -> None:
    dist = make_dist(tmp_path / "dist", url(peer), seed="old", sizes=SIZES)
    old_sums = sums_of(dist)
    old_bytes = {n: (dist / n).read_bytes() for n in old_sums}
    gen = gen_of(dist)
    new = make_dist(tmp_path / "dist.new-1", url(peer), seed="new", sizes=SIZES)
    peer.faults.write_delay = 0.03
    swapped = threading.Event()

    def build_publishes() -> None:
        wait_for("the upload", lambda: peer.faults.writes > 2)
        swap_dir(new, dist)  # what the dist stage does: one exchange, then the old tree is removed
        swapped.set()

    t = threading.Thread(target=build_publishes)
    t.start()
    try:
        res = deploy(tmp_path / "w", peer, dist)
    finally:
        t.join(timeout=120)
        peer.faults.write_delay = 0
    assert swapped.is_set() and sums_of(dist) != old_sums, "the build swapped dist/ during the upload"
    assert res.rc == 0 and result(res)["generation"] == gen, res.stdout[-3000:]
    for name, data in old_bytes.items():
        assert peer.store.read(f"netboot/{gen}/{name}") == data, name  # the old generation's bytes, whole
    assert_rules_serve_whole_generations(peer)
    again = deploy(tmp_path / "w", peer, dist)  # the next deploy takes the new dist/
    assert again.rc == 0 and result(again)["generation"] == gen_of(dist) != gen
    assert_rules_serve_whole_generations(peer)


def test_a_refreshed_lock_is_not_stale_and_a_lost_lock_stops_the_holder(peer: Peer) -> None:
    """The refresh a long upload does (RouterLock.refresh, called from the SFTP progress), against the peer's API."""
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routerlock import (
        RouterLock,
        RouterLockHeld,
    )
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routeros import ApiOptions, connect

    opts = ApiOptions("127.0.0.1", peer.config.user, peer.config.password, peer.api_port)
    laptop, ci = connect(opts), connect(opts)
    try:
        held = RouterLock.take(laptop, "netboot", generation="g-0123456789ab", stale=60, controller="laptop")
        peer.clock_offset += 50
        held.refresh(force=True)  # what the progress callback does every ~15 s with stale=60
        peer.clock_offset += 50  # 100 s after it was taken, 50 s after the refresh
        with pytest.raises(RouterLockHeld, match=r"laptop \(pid \d+, writing generation g-0123456789ab, .* last "
                                                 r"refreshed 5\ds ago\)"):
            RouterLock.take(ci, "netboot", generation="g-ba9876543210", stale=60, controller="ci")
        peer.clock_offset += 20  # now stale: taken over, and the old holder stops at its next refresh
        taken = RouterLock.take(ci, "netboot", generation="g-ba9876543210", stale=60, controller="ci")
        assert any("took over the deploy lock" in w and "laptop" in w for w in taken.warnings)
        with pytest.raises(RouterLockHeld, match=r"is not ours any more: held by ci \(pid"):
            held.refresh(force=True)
        held.release()  # not ours: left alone
        assert json.loads(lock_rows(peer)[0]["source"])["controller"] == "ci"
        taken.release()
        assert lock_rows(peer) == []
    finally:
        laptop.close()
        ci.close()
