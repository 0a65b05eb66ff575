"""examples/netboot_runner.py (README "Driving it from Python") on the fixture mirror: events stream while the play
runs, the artefacts come from the play's results, a failure names the task and its message."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.apkrepo import alpine_mirror, serve
from tests.fixtures.e2e import NODES, fixture_extravars, free_port
from tests.fixtures.material import REPO
from tests.fixtures.playbook import write_inventory

sys.path.insert(0, str(REPO / "examples"))
import netboot_runner

# the two build tests need root; the deploy test needs neither root nor a build (the RouterOS peer, a small dist/)
NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="building the rootfs needs root")


@pytest.mark.slow
@pytest.mark.root
@NEEDS_ROOT
def test_build_streams_events_and_returns_the_artefacts_of_the_play(tmp_path: Path) -> None:
    mirror = alpine_mirror()
    port = free_port()
    inventory = write_inventory(tmp_path / "hosts.yml", NODES)
    lines: list[tuple[float, str]] = []
    with serve(mirror.path, port):
        result = netboot_runner.run_playbook(
            "build.yml", inventory=inventory, private_data_dir=tmp_path / "runner",
            extravars=fixture_extravars(tmp_path, mirror, port, free_port(), initramfs_level=1),
            on_line=lambda line: lines.append((time.monotonic(), line)),
        )
    text = "\n".join(line for _unused, line in lines)
    assert result.ok, (result.failed_task, result.message, text[-3000:])
    # streamed as it happened: task starts, results, downloads and compression progress before the recap
    recap = next(t for t, line in lines if line.startswith("PLAY RECAP"))
    first_task = next(t for t, line in lines if line.startswith("TASK "))
    assert recap - first_task > 1.0
    assert any("download: " in line and ".apk" in line for _unused, line in lines), text[:3000]
    assert any(line.startswith("  initramfs: ") and t < recap for t, line in lines), text
    assert any(line.startswith("  changed: localhost: Build the initramfs") for _unused, line in lines)
    # artefacts from the netboot_dist result: the files on disk agree
    assert {"vmlinuz", "initramfs", "boot.ipxe"} <= set(result.artefacts)
    for name in ("vmlinuz", "initramfs", "boot.ipxe"):
        a = result.artefacts[name]
        assert a.path == str(tmp_path / "dist" / name)
        data = Path(a.path).read_bytes()
        assert (a.size, a.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert "Build the initramfs with the run-from-RAM /init" in result.changed_tasks


@pytest.mark.slow
@pytest.mark.root
@NEEDS_ROOT
def test_a_failure_returns_the_failing_task_and_its_message(tmp_path: Path) -> None:
    mirror = alpine_mirror()
    port = free_port()
    inventory = write_inventory(tmp_path / "hosts.yml", NODES)
    extravars = fixture_extravars(tmp_path, mirror, port, free_port(), initramfs_level=1)
    extravars["alpine_packages"] = [*extravars["alpine_packages"], "no-such-package-xyz"]
    with serve(mirror.path, port):
        result = netboot_runner.run_playbook("build.yml", inventory=inventory, extravars=extravars,
                                             private_data_dir=tmp_path / "runner", on_line=lambda line: None)
    assert not result.ok and result.rc != 0
    assert result.failed_task == "Build the Alpine rootfs from the signed, cached repositories"
    assert "no-such-package-xyz" in (result.message or "")
    assert result.artefacts == {}


def test_deploy_streams_upload_progress_and_returns_the_deploy_result(tmp_path: Path) -> None:
    from tests.fixtures.routeros.deploy import HOST, inventory
    from tests.fixtures.routeros.dist import make_dist
    from tests.fixtures.routeros.peer import Peer

    lines: list[str] = []
    with Peer(tmp_path / "peer") as peer:
        dist = make_dist(tmp_path / "dist", f"tftp://10.0.2.2:{peer.tftp_port}")
        inv = inventory(tmp_path / "hosts.yml", peer)
        result = netboot_runner.run_playbook(
            "deploy_rb4011.yml", inventory=inv, private_data_dir=tmp_path / "runner", on_line=lines.append,
            extravars={"netboot_dist_dir": str(dist), "netboot_build_dir": str(tmp_path / "build")},
        )
    text = "\n".join(lines)
    assert result.ok, (result.failed_task, result.message, text[-3000:])
    assert [d["host"] for d in result.deployed] == [HOST]
    assert result.deployed[0]["changed"] and result.deployed[0]["bytes_sent"] > 0
    # upload progress tailed from build/deploy-<router>.log while the play ran
    assert any(line.startswith(f"  deploy-{HOST}: ") and "MB/s" in line for line in lines), text
