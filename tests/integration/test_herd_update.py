"""Issue 21: playbooks/update_herd.yml rolls a staged generation out over two real UEFI nodes - with Secure Boot on
(issue 26): signed artefacts, including the staged and the rolled-back generations.

The nodes (qemu + OVMF's Secure Boot build with the test keys enrolled, tests/fixtures/herd.py) netboot from the
RouterOS peer inside a network namespace: the signed snponly.efi, then the signed UKI of the shared e2e image built
again with ``netboot_secure_boot`` (tests/fixtures/e2e.py ``secure_boot_build``: its node table names the herd's
MACs, so each node finds its hostname and role itself), and the roll reaches them the way it reaches a real herd: their addresses from the router's DHCP leases
(over the API), SSH as root with a key (the real OpenSSH client, the image's real tinysshd), reboots that go through
OVMF's PXE, the router's TFTP and the dispatcher the roll writes. The nodes live for the whole module: each test
starts from both healthy on the live generation and leaves them so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.e2e import Built, secure_boot_build
from tests.fixtures.herd import (
    NETWORK,
    NEVER_BOOTS,
    ROUTER,
    Node,
    bridge_lan,
    lan_network,
    lease_address,
    node_mac,
    secure_herd_dist,
    ssh,
    wait_ssh,
)
from tests.fixtures.ipxe_sid import deb_urls as ipxe_deb_urls
from tests.fixtures.material import REPO
from tests.fixtures.playbook import PlaybookResult, run_playbook
from tests.fixtures.routeros.deploy import HOST, deploy, inventory, result
from tests.fixtures.routeros.peer import Peer
from tests.fixtures.routeros.tftp import tftp_get
from tests.fixtures.routeros.udp import BridgeLan
from tests.fixtures.secureboot import Keys, enrolled_vars, test_keys
from tests.fixtures.secureboot import deb_urls as stub_deb_urls

pytestmark = [pytest.mark.slow, pytest.mark.root]
FIRST_BOOT = 600  # both nodes at once under TCG
BOOT_TIMEOUT = 180  # herd_boot_timeout: one node's reboot under TCG (about 60 s), with room
ROLL = "Roll the staged generation out over the herd"
# the deploy hands out dist/'s signed snponly.efi (rb4011_ipxe_snp's Secure Boot default); the BIOS binary still comes
# from the pinned iPXE .deb
SECURE_DEPLOY: dict[str, Any] = {"netboot_secure_boot": True, "netboot_deb_urls": ipxe_deb_urls()}
HERD_NODES = "".join(f"        herd{i}:\n          mac: \"{node_mac(i).upper()}\"\n          hostname: herd-{i}\n"
                     "          role: herd\n" for i in range(2))


@pytest.fixture(scope="module")
def secure_image(e2e_built: Built, tmp_path_factory: pytest.TempPathFactory) -> tuple[Built, Keys]:
    """build.yml with netboot_secure_boot on the shared image (the herd's nodes in its inventory) and its keys."""
    keys = test_keys()
    urls = {**e2e_built.extravars.get("netboot_deb_urls", {}), **ipxe_deb_urls(), **stub_deb_urls()}
    t0 = time.monotonic()
    built = secure_boot_build(e2e_built, tmp_path_factory.mktemp("secure") / "work",
                              nodes=f"  children:\n    nodes:\n      hosts:\n{HERD_NODES}",
                              netboot_secure_boot_dir=str(keys.dir), netboot_deb_urls=urls,
                              boot_server_url=f"tftp://{ROUTER}")
    print(f"Secure Boot build on the shared image: {time.monotonic() - t0:.0f}s")
    return built, keys


@dataclass
class Herd:
    peer: Peer
    lan: BridgeLan
    nodes: list[Node]
    key: Path
    image: Built  # built with netboot_secure_boot
    keys: Keys  # its keys, enrolled in the nodes' firmware
    work: Path
    live: str  # the generation both nodes run now
    staged: str = ""  # the last generation staged

    def address(self, i: int) -> str:
        found = lease_address(self.peer, self.nodes[i].mac)
        assert found, f"no lease for {self.nodes[i].mac}"
        return found

    def sh(self, i: int, command: str) -> str:
        got = ssh(self.address(i), self.key, command)
        assert got.returncode == 0, (command, got.returncode, got.stderr)
        return got.stdout.strip()

    def boot_id(self, i: int) -> str:
        return self.sh(i, "cat /proc/sys/kernel/random/boot_id")

    def generation(self, i: int) -> str:
        """The generation node i booted, as it read it from its UKI's name (no netboot.generation= on a signed
        command line)."""
        assert "netboot.generation=" not in self.sh(i, "cat /proc/cmdline")
        return self.sh(i, "cat /run/netboot/generation")

    def stage(self, name: str, *, role: str = "", extra_args: str = "", **hostvars: Any) -> str:
        """Deploy a signed dist of the Secure Boot image as a staged generation; its id."""
        dist = secure_herd_dist(self.work / name, self.image, self.keys, role=role, extra_args=extra_args)
        res = deploy(self.work / "deploy", self.peer, dist, rb4011_manage_dhcp=True, rb4011_dhcp_network=NETWORK,
                     rb4011_stage=True, extravars=SECURE_DEPLOY, **hostvars)
        assert res.rc == 0, res.stdout[-4000:]
        out = result(res)
        assert out["live"] == self.live and out["generation"] in out["staged_generations"], out
        self.staged = str(out["generation"])
        return self.staged

    def roll(self, *, check: bool = False, **extravars: Any) -> PlaybookResult:
        work = self.work / "herd"
        work.mkdir(parents=True, exist_ok=True)
        inv = inventory(work / f"hosts-{len(list(work.glob('hosts-*')))}.yml", self.peer)
        with inv.open("a") as fh:  # the nodes group: a mac per host, no ansible_host (addresses from the leases)
            fh.write("    nodes:\n      hosts:\n" + "".join(
                f"        herd{i}:\n          mac: \"{n.mac.upper().replace(':', '-')}\"\n"
                for i, n in enumerate(self.nodes)))
        ev = {"netboot_build_dir": str(work / "build"), "herd_ssh_private_key_file": str(self.key),
              "herd_boot_timeout": BOOT_TIMEOUT, "herd_poll_interval": 2,
              # the test's power switch: qemu's system_reset through the node's monitor socket
              "herd_power_cycle_command": f"cd {REPO} && PYTHONPATH={REPO}/.collections:{REPO} {sys.executable} "
                                          f"-m tests.fixtures.herd power-cycle {self.work}/$HERD_NODE/monitor.sock",
              **extravars}
        return run_playbook("update_herd.yml", work, ev, inventory=inv, check=check)

    def script(self) -> str:
        """boot.ipxe as the router serves it to every client."""
        return tftp_get("127.0.0.1", self.peer.tftp_port, "boot.ipxe").decode()


def report(res: PlaybookResult) -> dict[str, Any]:
    found = res.task_results(ROLL)
    assert found, res.stdout[-4000:]
    return found[-1]


def by_name(rep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in rep["nodes"]}


@pytest.fixture(scope="module")
def herd(secure_image: tuple[Built, Keys], herd_key: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herd]:
    if os.geteuid() != 0:
        pytest.skip("a network namespace with a bridge and taps for qemu needs root")
    work = tmp_path_factory.mktemp("herd")
    lan = bridge_lan(2).up()
    peer = Peer(work / "peer").__enter__()
    nodes: list[Node] = []
    try:
        lan_network(peer)
        macs = [node_mac(0), node_mac(1)]
        image, keys = secure_image
        # the first generation is build.yml's own dist/: its signed UKI and iPXE, verified after the deploy
        res = deploy(work / "deploy", peer, image.dist, rb4011_manage_dhcp=True, rb4011_dhcp_network=NETWORK,
                     extravars=SECURE_DEPLOY)
        assert res.rc == 0, res.stdout[-4000:]
        peer.serve_lan(lan)
        # node i's files (monitor socket, console) in work/herd<i>: what the power-cycle command names
        nodes = [Node(lan, tap, mac, work / f"herd{i}",
                      secure_vars=enrolled_vars(keys, work / f"herd{i}" / "OVMF_VARS_4M.fd")).start()
                 for i, (tap, mac) in enumerate(zip(lan.taps, macs, strict=True))]
        h = Herd(peer, lan, nodes, herd_key, image, keys, work, str(result(res)["generation"]))

        def up(i: int) -> None:
            deadline = time.monotonic() + FIRST_BOOT
            while lease_address(peer, nodes[i].mac) is None and time.monotonic() < deadline:
                time.sleep(1)
            try:
                wait_ssh(h.address(i), herd_key, max(deadline - time.monotonic(), 1),
                         command="rc-service tinysshd status")
            except (TimeoutError, AssertionError) as exc:
                raise AssertionError(f"{nodes[i].mac}: {exc}\n{nodes[i].console()[-3000:]}") from exc

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(up, range(2)))
        for i, n in enumerate(nodes):
            # OpenRC used the dependency cache the build made (node_config), not one made at boot
            assert "OpenRC" in n.console() and "Caching service dependencies" not in n.console(), n.console()[-3000:]
            # the firmware enforced Secure Boot, and the node found its name and role by its MAC in the image
            assert "Secure boot enabled" in n.console(), n.console()[-3000:]
            assert h.sh(i, "hostname; cat /etc/netboot/role").split() == [f"herd-{i}", "herd"]
        yield h
    finally:
        for n in nodes:
            n.stop()
        peer.__exit__(None, None, None)
        lan.down()


def test_the_secure_boot_build_signs_the_chain_and_keeps_the_keys_home(secure_image: tuple[Built, Keys]) -> None:
    """Issue 26 through build.yml: dist/ holds the UKI and both iPXE binaries signed with the db key (sbverify), a
    boot.ipxe that boots the UKI, no private key anywhere in dist/ or the image; the image carries the node table;
    the keys' directory holds the enrollment files; a second run of the Secure Boot stage changes nothing."""
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _uki

    image, keys = secure_image
    dist = Path(image.dist)
    for name in ("netboot.efi", "snponly.efi", "ipxe.efi"):
        ok = subprocess.run(["sbverify", "--cert", str(keys.db_crt), str(dist / name)], capture_output=True, text=True,
                            check=False)
        assert ok.returncode == 0, (name, ok.stdout, ok.stderr)
    sections = _uki.read_sections(dist / "netboot.efi")
    assert sections[".cmdline"].rstrip(b"\0").decode() == "console=tty0 console=ttyS0,115200"
    assert sections[".linux"] == (dist / "vmlinuz").read_bytes()
    assert sections[".initrd"] == (dist / "initramfs").read_bytes()
    script = (dist / "boot.ipxe").read_text()
    assert "kernel --name netboot-${netboot_generation}.efi ${base}/netboot.efi" in script and "initrd " not in script
    private = [k.read_bytes().split(b"\n")[1] for k in keys.dir.glob("*.key")]  # a line of each key's body
    leaked = [str(p) for root in (dist, image.build / "image") for p in root.rglob("*")
              if p.is_file() and not p.is_symlink() and any(line in p.read_bytes() for line in private)]
    assert leaked == []
    rows = [ln.split() for ln in (image.build / "image/etc/netboot/nodes").read_text().splitlines()
            if not ln.startswith("#")]
    assert rows == [[node_mac(i), f"herd-{i}", "herd"] for i in range(2)]
    enroll = sorted(p.name for p in (keys.dir / "enroll").iterdir())
    assert {f"{n}.{x}" for n in ("PK", "KEK", "db") for x in ("auth", "cer", "esl")} <= set(enroll), enroll
    again = image.run(tags="secureboot")
    assert again.rc == 0 and again.changed("localhost") == 0, again.stdout[-4000:]
    uki = again.task_results("Build and sign the unified kernel image")  # the stage ran, and found nothing to do
    assert [(r["changed"], r["size"]) for r in uki] == [(False, (dist / "netboot.efi").stat().st_size)], uki
    checked = image.run(tags="secureboot", check=True)
    assert checked.rc == 0 and checked.changed("localhost") == 0, checked.stdout[-4000:]


def assert_healthy_on(h: Herd, generation: str) -> None:
    for i in range(2):
        assert h.generation(i) == generation
        assert h.sh(i, "rc-service tinysshd status >/dev/null && echo up") == "up"


def test_a_good_generation_rolls_one_node_at_a_time_then_goes_live(herd: Herd) -> None:
    h = herd
    before = [h.boot_id(i) for i in range(2)]
    assert [h.generation(i) for i in range(2)] == [h.live, h.live]  # the UKI's name, from the router's script
    new = h.stage("b", extra_args="herd.try=b")
    assert "herd.try=b" not in h.sh(0, "cat /proc/cmdline")  # not before the roll
    live_script = h.script()
    # --check: the plan, nothing rebooted, nothing written
    planned = h.roll(check=True)
    assert planned.rc == 0, planned.stdout[-4000:]
    assert report(planned)["plan"] == ["batch 1: herd0", "batch 2: herd1", f"then {new} live for every client"]
    assert [h.boot_id(i) for i in range(2)] == before and h.script() == live_script

    t0 = time.time()
    res = h.roll()
    assert res.rc == 0, res.stdout[-6000:]
    rep = report(res)
    nodes = by_name(rep)
    assert [nodes[n]["state"] for n in ("herd0", "herd1")] == ["updated", "updated"], rep
    assert all((n["before"], n["after"]) == (h.live, new) for n in nodes.values())
    # one at a time: herd1 went down only after herd0 was back up and healthy
    assert t0 < nodes["herd0"]["down_at"] < nodes["herd0"]["up_at"] < nodes["herd1"]["down_at"] < nodes["herd1"]["up_at"]
    assert all(n["seconds_down"] > 0 for n in nodes.values())
    assert [h.boot_id(i) != b for i, b in enumerate(before)] == [True, True]
    assert_healthy_on(h, new)
    # live for every client: boot.ipxe is the new generation's script, no dispatcher left
    assert f"set netboot_generation {new}\n" in h.script() and rep["live"] == new
    assert [n for n, kind, _size in h.peer.store.entries() if "/dispatch/" in n and kind == "file"] == []
    saved = json.loads((h.work / "herd" / "build" / f"herd-{HOST}.json").read_text())
    assert [n["state"] for n in saved["nodes"]] == ["updated", "updated"]
    print(f"good roll: herd0 down {nodes['herd0']['seconds_down']}s, herd1 down {nodes['herd1']['seconds_down']}s, "
          f"whole roll {time.time() - t0:.0f}s")
    h.live = new
    # a second run: nothing staged, both healthy on the live one, nothing rebooted
    again = h.roll()
    assert again.rc == 0 and again.changed(HOST) == 0, again.stdout[-4000:]
    assert [n["state"] for n in report(again)["nodes"]] == ["skipped", "skipped"]


def test_a_broken_generation_stops_after_the_first_node_and_rolls_it_back(herd: Herd) -> None:
    h = herd
    before = [h.boot_id(i) for i in range(2)]
    broken = h.stage("c", role="herd-broken")  # a role whose service netboot-fail never starts
    live_script = h.script()
    t0 = time.time()
    res = h.roll()
    assert res.rc != 0
    rep = report(res)
    msg = rep["msg"]
    assert msg.startswith(f"herd0 not healthy on {broken} within herd_boot_timeout"), msg
    assert "service netboot-fail not started" in msg and f"pointed back at {h.live}" in msg, msg
    nodes = by_name(rep)
    assert nodes["herd0"]["state"] == "rolled back" and nodes["herd1"]["state"] == "pending", rep
    # the second node was never rebooted; the first is back on the live generation, healthy
    assert h.boot_id(1) == before[1] and h.boot_id(0) != before[0]
    assert_healthy_on(h, h.live)
    # the live generation stayed live throughout: boot.ipxe is its script again, the dispatcher gone
    assert h.script() == live_script
    print(f"broken generation: stopped and rolled back in {time.time() - t0:.0f}s")


def test_a_node_that_never_comes_back_is_power_cycled_into_the_live_generation(herd: Herd) -> None:
    h = herd
    before = [h.boot_id(i) for i in range(2)]
    # a generation whose kernel panics and waits forever (no init); the broken one, still staged, is dropped
    broken = h.staged
    never = h.stage("d", extra_args=NEVER_BOOTS, rb4011_unstage=[broken])
    assert not [n for n, _kind, _size in h.peer.store.entries() if f"/{broken}" in n]  # rb4011_unstage let it go
    t0 = time.time()
    res = h.roll(herd_canary=["herd1"])
    assert res.rc != 0
    rep = report(res)
    msg = rep["msg"]
    assert msg.startswith(f"herd1 not healthy on {never} within herd_boot_timeout ({BOOT_TIMEOUT}s): no SSH"), msg
    nodes = by_name(rep)
    assert nodes["herd1"]["state"] == "rolled back" and nodes["herd0"]["state"] == "pending", rep
    assert any("power-cycled" in c for c in nodes["herd1"]["checks"]), nodes["herd1"]["checks"]
    assert "Kernel panic" in h.nodes[1].console()
    assert h.boot_id(0) == before[0] and h.boot_id(1) != before[1]
    assert_healthy_on(h, h.live)
    print(f"never back: power-cycled and back on {h.live} after {time.time() - t0:.0f}s")
