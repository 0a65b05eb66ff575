"""Issue 21's test setup (tests/fixtures/herd.py): two UEFI nodes netboot the shared e2e image from the RouterOS
peer (the deploy's DHCP and TFTP, in a network namespace with a bridge), are reached over SSH by the real OpenSSH
client through the real tinysshd in the image, find their addresses in the router's DHCP leases by MAC, and come
back with a new boot id and the same address after a reboot over SSH and after a power cycle of their qemu."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fixtures.e2e import Built
from tests.fixtures.herd import (
    NETWORK,
    Node,
    bridge_lan,
    herd_dist,
    lan_network,
    lease_address,
    node_mac,
    ssh,
    wait_ssh,
)
from tests.fixtures.material import REPO
from tests.fixtures.routeros.deploy import deploy, result
from tests.fixtures.routeros.peer import Peer
from tests.fixtures.routeros.udp import BridgeLan

BOOT_TIMEOUT = 600  # OVMF + TFTP + kernel + OpenRC under TCG, two VMs on this machine's CPUs


@pytest.fixture
def lan() -> Iterator[BridgeLan]:
    if os.geteuid() != 0:
        pytest.skip("a network namespace with a bridge and taps for qemu needs root")
    net = bridge_lan(2)
    try:
        yield net.up()
    finally:
        net.down()


def wait_lease(peer: Peer, mac: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        address = lease_address(peer, mac)
        if address is not None:
            return address
        time.sleep(1)
    raise TimeoutError(f"no DHCP lease for {mac} within {timeout}s")


def up(node: Node, peer: Peer, key: Path, t0: float) -> tuple[str, float]:
    """(address, seconds from t0) once ``node`` answers over SSH at its leased address."""
    address = wait_lease(peer, node.mac, BOOT_TIMEOUT)
    try:
        wait_ssh(address, key, BOOT_TIMEOUT - (time.monotonic() - t0))
    except TimeoutError as exc:
        raise AssertionError(f"{node.mac}: {exc}\n{node.console()[-4000:]}") from exc
    return address, time.monotonic() - t0


def out(address: str, key: Path, command: str) -> str:
    got = ssh(address, key, command)
    assert got.returncode == 0, (command, got.returncode, got.stderr)
    return got.stdout.strip()


@pytest.mark.slow
@pytest.mark.root
def test_two_nodes_netboot_answer_ssh_reboot_and_power_cycle(e2e_built: Built, herd_key: Path, lan: BridgeLan,
                                                           tmp_path: Path) -> None:
    macs = [node_mac(0), node_mac(1)]
    with Peer(tmp_path / "peer") as peer:
        lan_network(peer)
        dist = herd_dist(tmp_path / "dist", e2e_built, roles=dict.fromkeys(macs, "herd"))
        res = deploy(tmp_path / "w", peer, dist, rb4011_manage_dhcp=True, rb4011_dhcp_network=NETWORK)
        assert res.rc == 0, res.stdout
        generation = result(res)["generation"]
        peer.serve_lan(lan)
        peer.transfers.clear()  # (the deploy's verify fetched the files too)
        nodes = [Node(lan, tap, mac, tmp_path / f"node{i}")
                 for i, (tap, mac) in enumerate(zip(lan.taps, macs, strict=True))]
        try:
            t0 = time.monotonic()
            for n in nodes:
                n.start()
            with ThreadPoolExecutor(2) as pool:
                first = list(pool.map(lambda n: up(n, peer, herd_key, t0), nodes))
            print("first boot (both at once): " + ", ".join(f"{n.mac} {s:.0f}s"
                                                            for n, (_a, s) in zip(nodes, first, strict=True)))
            addresses = [a for a, _s in first]
            served = [t.request for t in peer.transfers if t.error is None]
            assert served.count(f"{generation}/initramfs") == 2, served  # the deployed generation, once per node
            assert len(set(addresses)) == 2, addresses
            boot_ids = []
            for address in addresses:
                assert out(address, herd_key, "rc-service tinysshd status; echo rc=$?").endswith("rc=0")
                cmdline = out(address, herd_key, "cat /proc/cmdline")
                assert "netboot.role=herd" in cmdline.split(), cmdline
                assert out(address, herd_key, "cat /etc/netboot/role") == "herd"
                boot_ids.append(out(address, herd_key, "cat /proc/sys/kernel/random/boot_id"))
                # several connections in a row: busybox nc -lk serves one tinysshd per connection
                assert [out(address, herd_key, f"echo {i}") for i in range(3)] == ["0", "1", "2"]

            # a reboot over SSH: qemu ends, the node starts it again, OVMF netboots again, same lease
            t1 = time.monotonic()
            ssh(addresses[0], herd_key, "reboot", timeout=15)
            # a power cycle from the shell, as herd_power_cycle_command runs it
            cycled = subprocess.run([sys.executable, "-m", "tests.fixtures.herd", "power-cycle",
                                     str(nodes[1].monitor)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                    capture_output=True, text=True, check=False, timeout=30)
            assert cycled.returncode == 0, cycled.stderr
            t2 = time.monotonic()

            def back(i: int) -> float:
                address, started = addresses[i], (t1, t2)[i]
                deadline = started + BOOT_TIMEOUT
                while time.monotonic() < deadline:
                    got = ssh(address, herd_key, "cat /proc/sys/kernel/random/boot_id", timeout=15)
                    if got.returncode == 0 and got.stdout.strip() != boot_ids[i]:
                        return time.monotonic() - started
                    time.sleep(2)
                raise AssertionError(f"{nodes[i].mac} did not come back with a new boot id\n"
                                     f"{nodes[i].console()[-4000:]}")

            with ThreadPoolExecutor(2) as pool:
                again = list(pool.map(back, range(2)))
            print(f"reboot over SSH: back after {again[0]:.0f}s; power cycle: back after {again[1]:.0f}s")
            assert [lease_address(peer, m) for m in macs] == addresses
            for address in addresses:
                assert out(address, herd_key, "rc-service tinysshd status; echo rc=$?").endswith("rc=0")
            assert all(n.running for n in nodes)
            # the guest's reboot and the reset each ended that qemu (-no-reboot), which the node started again cold
            assert [n.restarts for n in nodes] == [1, 1]
            assert nodes[0].console_log.stat().st_size > 0
        finally:
            for n in nodes:
                n.stop()
