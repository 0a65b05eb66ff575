"""Issue 20 part 1: playbooks/verify_rb4011.yml (role verify, module rb4011_verify) against the RouterOS peer.

The peer's TFTP (port 69) and DHCP servers run in a network namespace on 192.168.88.1 (``udp.VethLan``); a veth pair
gives this controller 192.168.88.2 on that boot network, so the verify reads TFTP and asks DHCP as it would on a
real LAN (the API peer listens on 127.0.0.1). The DHCP server answers from the rows the deploy wrote, under every
modelled RouterOS behaviour (``DhcpModel``: the BOOTP file field next to option 67 x which matching matcher wins).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy import _dhcp
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routeros import ApiOptions
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._verify import Report, VerifyOptions, verify
from tests.fixtures.playbook import PlaybookResult, run_playbook
from tests.fixtures.routeros.deploy import HOST, deploy, inventory, result
from tests.fixtures.routeros.dhcp import FILE_FIELD_MODES, PRECEDENCES, DhcpModel, DhcpServer
from tests.fixtures.routeros.dist import make_dist
from tests.fixtures.routeros.peer import Peer
from tests.fixtures.routeros.udp import VethLan

NET = "192.168.88.0/24"
ROUTER = "192.168.88.1"
MODELS = [DhcpModel(f, p) for f in FILE_FIELD_MODES for p in PRECEDENCES]
FIRMWARE = ("uefi-pxe-arch7", "uefi-pxe-arch9", "bios-pxe")


@pytest.fixture
def lan() -> Iterator[VethLan]:
    if os.geteuid() != 0:
        pytest.skip("a network namespace and a veth pair need root")
    pid = os.getpid() % 100000
    net = VethLan(f"nbv20-{pid}", tap="nbvr0", host_if=f"nbvh{pid}")
    try:
        yield net.up()
    finally:
        net.down()


@pytest.fixture
def peer(tmp_path: Path, lan: VethLan) -> Iterator[Peer]:
    with Peer(tmp_path / "peer") as p:
        p.add_row(_dhcp.NETWORK_MENU, address=NET, gateway=ROUTER, **{"dns-server": ROUTER})
        yield p


def lan_vars(lan: VethLan, **more: Any) -> dict[str, Any]:
    """What a controller on the boot network sets: the router's LAN address for TFTP, DHCP on."""
    return {"rb4011_verify_tftp_address": lan.router, "rb4011_verify_tftp_port": 69, "rb4011_verify_dhcp": True,
            "rb4011_verify_dhcp_timeout": 1.0, **more}


def serve(peer: Peer, lan: VethLan, model: DhcpModel) -> DhcpServer:
    from tests.fixtures.routeros.tftp import TftpServer

    if not any(isinstance(s, TftpServer) for s in peer._lan):
        return peer.serve_lan(lan, model)
    dhcp = DhcpServer(peer, lan.router, model=model, netns=lan.name, interface=lan.tap)
    peer._lan.append(dhcp)
    return dhcp


def check(peer: Peer, lan: VethLan, **kw: Any) -> Report:
    api = ApiOptions("127.0.0.1", peer.config.user, peer.config.password, peer.api_port)
    return verify(api, VerifyOptions(tftp_address=lan.router, dhcp_timeout=1.0, **kw))


def deployed(peer: Peer, lan: VethLan, tmp_path: Path, **hostvars: Any) -> str:
    dist = make_dist(tmp_path / "dist", f"tftp://{ROUTER}")
    res = deploy(tmp_path / "w", peer, dist, rb4011_manage_dhcp=True, rb4011_dhcp_network=NET,
                 rb4011_verify_after_deploy=False, **hostvars)
    assert res.rc == 0, res.stdout
    return str(result(res)["generation"])


def by_request(rep: Report) -> dict[str, Any]:
    return {f["request"]: f for f in rep.as_dict()["files"]}


def flip_byte(peer: Peer, name: str) -> tuple[bytes, str, str]:
    data = peer.store.read(name)
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0x01
    peer.store.put(name, bytes(bad))
    return data, hashlib.sha256(data).hexdigest(), hashlib.sha256(bytes(bad)).hexdigest()


@pytest.mark.root
def test_every_modelled_routeros_shipped_passes_old_loops_flip_and_missing_rule_fail(
        peer: Peer, lan: VethLan, tmp_path: Path) -> None:
    gen = deployed(peer, lan, tmp_path)
    net = next(r for r in peer.menus[_dhcp.NETWORK_MENU].rows if r["address"] == NET)
    shipped_net = dict(net)
    for model in MODELS:
        dhcp = serve(peer, lan, model)
        try:
            t0 = time.monotonic()
            rep = check(peer, lan)
            took = time.monotonic() - t0
            assert rep.ok, (model, rep.failures)
            files = by_request(rep)
            assert set(files) == {"boot.ipxe", "ipxe.efi", "snponly.efi", "undionly.kpxe", f"{gen}/SHA256SUMS",
                                  f"{gen}/boot.ipxe.json", f"{gen}/vmlinuz", f"{gen}/initramfs"}, model
            assert all(f["sha256"] == f["expected_sha256"] or f["role"] == "ipxe binary" for f in files.values())
            assert files[f"{gen}/initramfs"]["expected_from"] == f"{gen}/SHA256SUMS"
            assert rep.dhcp["status"] == "checked" and rep.dhcp["interface"] == lan.host_if
            ends = {c["client"]: (c["path"], c["ends"]) for c in rep.dhcp["chains"]}
            assert ends["uefi-pxe-arch7"] == ("uefi-pxe-arch7: snponly.efi -> ipxe-uefi-arch7: boot.ipxe",
                                              "boot.ipxe"), model
            assert ends["bios-pxe"][0] == "bios-pxe: undionly.kpxe -> ipxe-bios: boot.ipxe", model
            assert all(e == "boot.ipxe" for _p, e in ends.values())
            # the DISCOVERs came from the verify's own locally administered MACs; no REQUEST, no lease taken
            assert {int(e.mac.split(":")[0], 16) & 2 for e in dhcp.exchanges} == {2}
            assert all(53 in e.request and e.request[53] == b"\x01" for e in dhcp.exchanges)
            assert len({e.mac for e in dhcp.exchanges}) == 6
            print(f"{model}: verify {took:.2f}s, one node's boot {rep.boot_seconds}s for {rep.boot_bytes} bytes")

            # the first version's single-network setup: boot-file-name=ipxe.efi, no option 67 of the network
            with peer.lock:
                net.pop("dhcp-option", None)
                net["boot-file-name"] = "ipxe.efi"
            old = check(peer, lan)
            loops = [m for m in old.failures if "loop" in m]
            if model.file_field == "keep":
                # iPXE reads the file field first: ipxe.efi again, and again
                assert any(m.startswith("DHCP ipxe-uefi-arch7: loop") and "ipxe.efi" in m for m in loops), \
                    old.failures
                assert any(m.startswith("DHCP uefi-pxe-arch7: loop") for m in loops), old.failures
            else:
                # this RouterOS blanks the file field once option 67 is sent: the answers do not loop, which the
                # report says beside a warning about the row
                assert loops == [] and old.ok, (model, old.failures)
            assert any(w.startswith(f"/ip dhcp-server network {NET} has boot-file-name=ipxe.efi: iPXE reads")
                       and ("see the failures" if model.file_field == "keep" else "did not loop") in w
                       for w in old.warnings), old.warnings
            with peer.lock:
                net.clear()
                net.update(shipped_net)
        finally:
            dhcp.close()
            peer._lan.remove(dhcp)

    # a byte flipped in the router's copy of initramfs: named, with both digests
    good, want, bad = flip_byte(peer, f"netboot/{gen}/initramfs")
    rep = check(peer, lan, dhcp=False)
    assert not rep.ok and rep.dhcp == {"status": "skipped", "reason": "rb4011_verify_dhcp is false"}
    msg = " ".join(rep.failures)
    assert f"{gen}/initramfs" in msg and want in msg and bad in msg and "wrong bytes" in msg, rep.failures
    assert len(rep.failures) == 1
    peer.store.put(f"netboot/{gen}/initramfs", good)

    # a deleted TFTP rule: named
    with peer.lock:
        rows = peer.menus["/ip/tftp"].rows
        rows[:] = [r for r in rows if r.get("req-filename") != f"^{gen}/vmlinuz$"]
    rep = check(peer, lan, dhcp=False)
    assert rep.failures == [f"{gen}/vmlinuz: no rule: no enabled /ip/tftp rule's req-filename matches "
                            f"{gen}/vmlinuz"], rep.failures


@pytest.mark.root
def test_controller_outside_ip_addresses_and_timeout_say_what_to_change(peer: Peer, lan: VethLan,
                                                                        tmp_path: Path) -> None:
    gen = deployed(peer, lan, tmp_path, rb4011_tftp_allow_addresses=["192.168.88.128/25"])
    serve(peer, lan, DhcpModel())
    rep = check(peer, lan, dhcp=False)
    assert not rep.ok
    assert rep.controller_address == lan.host
    for request in ("boot.ipxe", f"{gen}/SHA256SUMS", "snponly.efi"):
        msg = next(m for m in rep.failures if m.startswith(f"{request}: "))
        assert "outside ip-addresses" in msg and f"Add {lan.host}" in msg and "rb4011_tftp_allow_addresses" in msg
        assert "192.168.88.128/25" in msg and "no rule" not in msg, msg
    # nothing answers TFTP at .3 (as when a firewall drops UDP 69): a timeout, not "no rule"
    with peer.lock:
        for rule in peer.menus["/ip/tftp"].rows:
            rule.pop("ip-addresses", None)
    api = ApiOptions("127.0.0.1", peer.config.user, peer.config.password, peer.api_port)
    t0 = time.monotonic()
    rep = verify(api, VerifyOptions(tftp_address="192.168.88.3", dhcp=False, tftp_timeout=0.2, tftp_retries=0))
    assert time.monotonic() - t0 < 10
    msg = next(m for m in rep.failures if m.startswith("boot.ipxe: "))
    assert "timeout" in msg and "firewall" in msg and "UDP 69" in msg and "no rule" not in msg, msg


def verify_play(tmp_path: Path, peer: Peer, *, check: bool = False, **hostvars: Any) -> PlaybookResult:
    inv = inventory(tmp_path / f"verify-hosts-{len(list(tmp_path.glob('verify-hosts-*')))}.yml", peer, **hostvars)
    return run_playbook("verify_rb4011.yml", tmp_path, {"netboot_build_dir": str(tmp_path / "w/build")},
                        inventory=inv, check=check)


@pytest.mark.root
def test_deploy_runs_verify_last_and_writes_the_report_check_mode_writes_nothing(peer: Peer, lan: VethLan,
                                                                                 tmp_path: Path) -> None:
    serve(peer, lan, DhcpModel("keep", "last"))
    dist = make_dist(tmp_path / "dist", f"tftp://{ROUTER}")
    t0 = time.monotonic()
    res = deploy(tmp_path / "w", peer, dist, rb4011_manage_dhcp=True, rb4011_dhcp_network=NET, **lan_vars(lan))
    took = time.monotonic() - t0
    assert res.rc == 0, res.stdout
    tasks = [ev["event_data"]["task"] for ev in res.events if ev.get("event") == "runner_on_ok"]
    assert tasks[-2:] == ["Verify what a node gets from the boot server", "Report the verify"], tasks
    report_path = tmp_path / "w/build" / f"verify-{HOST}.json"
    assert report_path.parent == (tmp_path / "w/build" / f"deploy-{HOST}.log").parent
    assert peer.config.password not in report_path.read_text()
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["generation"] == result(res)["generation"] and report["failures"] == []
    assert report["dhcp"]["status"] == "checked" and report["tftp_blksize"] == 1432
    assert all(f["MBps"] > 0 for f in report["files"]) and report["boot_seconds"] > 0
    # the deploy's default iPXE binaries, the pinned Debian ipxe 2.0.0: its UEFI binaries have the sha256sum
    # command, BIOS's undionly.kpxe has not; so UEFI firmware boots checked and BIOS does not
    assert {n: b["sha256sum_command"] for n, b in report["clients"]["ipxe_binaries"].items()} == {
        "ipxe.efi": True, "snponly.efi": True, "undionly.kpxe": False}
    assert {k: v["boot_checked"] for k, v in report["clients"]["boot_checked"].items()} == {
        k: not k.startswith("bios") for k in FIRMWARE}
    print(f"deploy + verify playbook: {took:.1f}s; report: {json.dumps(report)[:1500]}")
    (tmp_path / "example-report.json").write_text(json.dumps(report, indent=1))

    # the verify playbook alone, in check mode: the same checks, no report written, nothing changed
    report_path.unlink()
    before = peer.snapshot()
    chk = verify_play(tmp_path, peer, check=True, **lan_vars(lan))
    assert chk.rc == 0, chk.stdout
    out = chk.task_results("Verify what a node gets")[-1]
    assert out["ok"] and out["report"] is None and not out["changed"]
    assert not report_path.exists() and peer.snapshot() == before
    # turned off: the deploy playbook skips it
    off = deploy(tmp_path / "w", peer, dist, rb4011_manage_dhcp=True, rb4011_dhcp_network=NET,
                 **lan_vars(lan, rb4011_verify_after_deploy=False))
    assert off.rc == 0 and not off.task_results("Verify what a node gets") and not report_path.exists()


@pytest.mark.root
def test_a_failing_verify_fails_the_play_naming_the_file(peer: Peer, lan: VethLan, tmp_path: Path) -> None:
    gen = deployed(peer, lan, tmp_path)
    serve(peer, lan, DhcpModel())
    _good, want, bad = flip_byte(peer, f"netboot/{gen}/initramfs")
    res = verify_play(tmp_path, peer, **lan_vars(lan, rb4011_verify_dhcp=False))
    assert res.rc != 0
    msg = " ".join(res.failure_messages())
    assert f"{gen}/initramfs" in msg and want in msg and bad in msg, msg
    report = json.loads((tmp_path / "w/build" / f"verify-{HOST}.json").read_text())
    assert not report["ok"] and report["dhcp"]["status"] == "skipped"
    assert "DHCP check skipped: rb4011_verify_dhcp is false" in res.stdout


def sid_ipxe(tmp_path: Path) -> Path:
    """/usr/lib/ipxe of Debian sid's ipxe 2.0.0 .deb, exactly the pinned one (tests/fixtures/ipxe_sid.py)."""
    from tests.fixtures.ipxe_sid import ipxe_binaries

    return ipxe_binaries()["snponly.efi"].parent


def test_sha256sum_command_found_in_debian_sids_ipxe_not_in_bookworms(tmp_path: Path) -> None:
    """The positive case on real bytes: sid's snponly.efi and ipxe.efi have the command; the compressed
    undionly.kpxe shows none. The host's bookworm binaries (/usr/lib/ipxe) have none (unit test_verify.py)."""
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._verify import has_digest_command

    lib = sid_ipxe(tmp_path)
    found = {n: has_digest_command((lib / n).read_bytes()) for n in ("snponly.efi", "ipxe.efi", "undionly.kpxe")}
    assert found == {"snponly.efi": True, "ipxe.efi": True, "undionly.kpxe": False}, found


@pytest.mark.root
def test_report_names_the_client_kinds_that_boot_checked(peer: Peer, lan: VethLan, tmp_path: Path) -> None:
    lib = sid_ipxe(tmp_path)
    deployed(peer, lan, tmp_path, rb4011_ipxe_snp=str(lib / "snponly.efi"), rb4011_ipxe_efi=str(lib / "ipxe.efi"),
             rb4011_ipxe_bios=str(lib / "undionly.kpxe"))
    serve(peer, lan, DhcpModel())
    rep = check(peer, lan)
    assert rep.ok, rep.failures
    assert {k: v["boot_checked"] for k, v in rep.clients["boot_checked"].items()} == {
        "uefi-pxe-arch7": True, "uefi-pxe-arch9": True, "bios-pxe": False}


@pytest.mark.root
def test_without_manage_dhcp_it_reports_what_the_users_own_rows_answer(peer: Peer, lan: VethLan,
                                                                       tmp_path: Path) -> None:
    dist = make_dist(tmp_path / "dist", f"tftp://{ROUTER}")
    assert deploy(tmp_path / "w", peer, dist, rb4011_verify_after_deploy=False).rc == 0  # rb4011_manage_dhcp off
    # the user's own chainloading: ipxe.efi for everyone by option 67, boot.ipxe for option 77 = iPXE
    peer.store.put("pxe/ipxe.efi", Path("/usr/lib/ipxe/ipxe.efi").read_bytes())
    peer.add_row("/ip/tftp", **{"req-filename": r"^ipxe\.efi$", "real-filename": "pxe/ipxe.efi"})
    peer.add_row(_dhcp.OPTION_MENU, name="efi", code="67", value="s'ipxe.efi'")
    peer.add_row(_dhcp.OPTION_MENU, name="script", code="67", value="s'boot.ipxe'")
    peer.add_row(_dhcp.SETS_MENU, name="script", options="script")
    peer.add_row(_dhcp.MATCHER_MENU, name="ipxe", server="all", code="77", value="iPXE", **{"option-set": "script"})
    with peer.lock:
        net = next(r for r in peer.menus[_dhcp.NETWORK_MENU].rows if r["address"] == NET)
        net.update({"next-server": ROUTER, "dhcp-option": "efi"})
    serve(peer, lan, DhcpModel())
    rep = check(peer, lan)
    assert rep.ok, rep.failures
    chains = {c["client"]: c["path"] for c in rep.dhcp["chains"]}
    assert chains["uefi-pxe-arch7"] == "uefi-pxe-arch7: ipxe.efi -> ipxe-uefi-arch7: boot.ipxe"
    assert chains["bios-pxe"] == "bios-pxe: ipxe.efi -> ipxe-bios: boot.ipxe"  # what this router answers BIOS
    efi = by_request(rep)["ipxe.efi"]
    assert efi["ok"] and efi["expected_from"] == "not the collection's binary: no digest to compare"
    assert efi["sha256"] == hashlib.sha256(Path("/usr/lib/ipxe/ipxe.efi").read_bytes()).hexdigest()
