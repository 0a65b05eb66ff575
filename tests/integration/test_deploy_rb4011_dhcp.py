"""rb4011_manage_dhcp through playbooks/deploy_rb4011.yml against the RouterOS peer: Debian's iPXE binaries served
over owned TFTP rules, the network's next-server/dhcp-option (boot-file-name unset), the option 67s / option sets /
option 93 and 77 matchers (what clients then get: test_deploy_rb4011_dhcp_boot.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._dhcp import (
    DEBIAN_IPXE_DIR,
    MATCHER_MENU,
    MENUS,
    NAME,
    NETWORK_MENU,
    OPTION_MENU,
    SETS_MENU,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routeros import (
    ApiOptions,
    RouterOSError,
    connect,
)
from tests.fixtures.apkrepo import serve
from tests.fixtures.ipxe_sid import ipxe_binaries, pin
from tests.fixtures.routeros.deploy import HOST, deploy, result
from tests.fixtures.routeros.dist import make_dist
from tests.fixtures.routeros.peer import Peer, PeerConfig
from tests.fixtures.routeros.tftp import tftp_get

NET = "192.168.88.0/24"
DHCP: dict[str, Any] = {"rb4011_manage_dhcp": True, "rb4011_dhcp_network": NET}


def setup_lan(peer: Peer) -> dict[str, str]:
    """A default-configuration LAN plus DHCP rows of the user's own, which must stay as they are."""
    peer.add_row(NETWORK_MENU, address="10.9.0.0/16", gateway="10.9.0.1")
    peer.add_row(NETWORK_MENU, address=NET, gateway="192.168.88.1", **{"dns-server": "192.168.88.1"})
    ids = {
        "option": peer.add_row(OPTION_MENU, name="voip-tftp", code="66", value="s'10.0.0.5'"),
        "set": peer.add_row(SETS_MENU, name="phones", options="voip-tftp"),
    }
    ids["matcher"] = peer.add_row(MATCHER_MENU, name="phones", server="dhcp1", code="60", value="Yealink",
                                  **{"option-set": "phones"})
    return ids


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Peer]:
    with Peer(tmp_path / "peer") as p:
        yield p


def network(peer: Peer) -> dict[str, str]:
    return next(r for r in peer.rows(NETWORK_MENU) if r["address"] == NET)


def owned(peer: Peer, menu: str) -> list[dict[str, str]]:
    return [r for r in peer.rows(menu) if r.get("comment", "").startswith("homelab.alpine_netboot")]


def dhcp_rows(peer: Peer) -> dict[str, Any]:
    return {m: peer.rows(m) for m in (*MENUS, NETWORK_MENU)}


def test_chainloading_created_rerun_noop_user_rows_untouched(peer: Peer, tmp_path: Path) -> None:
    user = setup_lan(peer)
    user_rows = {m: [r for r in peer.rows(m) if "comment" not in r] for m in MENUS}
    dist = make_dist(tmp_path / "dist", f"tftp://10.0.2.2:{peer.tftp_port}")
    # check mode + diff first: the commands (matcher value included) and nothing written
    before = peer.snapshot()
    chk = deploy(tmp_path / "w", peer, dist, check=True, diff=True, **DHCP)
    assert chk.rc == 0 and peer.snapshot() == before, chk.stdout
    planned = result(chk)
    assert any('matcher add name="homelab-netboot-ipxe" server="all" code="77" value="iPXE"' in c
               for c in planned["dhcp_changes"]), planned["dhcp_changes"]
    assert f'network set [find address="{NET}"] next-server="192.168.88.1" dhcp-option="homelab-netboot-uefi"' in \
        " ".join(planned["dhcp_changes"])
    assert any(p.endswith("/snponly.efi") for p in planned["planned_uploads"]), planned["planned_uploads"]
    assert "+/ip/dhcp-server/network address=192.168.88.0/24 gateway=192.168.88.1 next-server=192.168.88.1" \
           " dhcp-option=homelab-netboot-uefi" in chk.stdout, chk.stdout  # the diff's after side
    # the real run
    res = deploy(tmp_path / "w", peer, dist, **DHCP)
    assert res.rc == 0, res.stdout
    net = network(peer)
    assert net["next-server"] == "192.168.88.1" and "boot-file-name" not in net
    assert net["dns-server"] == "192.168.88.1"  # the rest of the user's network row is as it was
    option = {r["name"]: r for r in owned(peer, OPTION_MENU)}[NAME]
    assert (option["code"], option["value"]) == ("67", "s'boot.ipxe'")
    assert {r["name"]: r["options"] for r in owned(peer, SETS_MENU)}[NAME] == NAME
    assert [(m["code"], m["value"], m["option-set"]) for m in owned(peer, MATCHER_MENU)] == [
        ("77", "iPXE", NAME), ("93", "0x0000", "homelab-netboot-bios"), ("77", "iPXE", NAME)]
    for m in MENUS:
        assert [r for r in peer.rows(m) if "comment" not in r] == user_rows[m]
    assert {r[".id"] for r in user_rows[MATCHER_MENU]} == {user["matcher"]}
    # the iPXE binaries are served byte for byte from the pinned Debian package (sid's ipxe 2.0.0, unpacked here
    # by dpkg-deb), not the host's /usr/lib/ipxe, under anchored read-only rules
    pinned = ipxe_binaries()
    for name in ("undionly.kpxe", "snponly.efi", "ipxe.efi"):
        assert tftp_get("127.0.0.1", peer.tftp_port, name) == pinned[name].read_bytes()
        host = DEBIAN_IPXE_DIR / name
        assert not host.is_file() or host.read_bytes() != pinned[name].read_bytes()
    chain = [r for r in peer.rows("/ip/tftp") if "chainload=" in r.get("comment", "")]
    assert sorted(r["req-filename"] for r in chain) == [r"^ipxe\.efi$", r"^snponly\.efi$", r"^undionly\.kpxe$"]
    assert all(r["read-only"] == "true" for r in chain)
    sha = hashlib.sha256(pinned["undionly.kpxe"].read_bytes()).hexdigest()[:12]
    assert peer.store.path(f"netboot/ipxe/{sha}/undionly.kpxe").is_file()
    # what a node on the LAN runs through: PXE firmware -> undionly.kpxe; iPXE (option 77) -> option 67 boot.ipxe
    assert b"#!ipxe" in tftp_get("127.0.0.1", peer.tftp_port, option["value"][2:-1])
    # the rerun changes nothing and sends nothing
    snap = peer.snapshot()
    again = deploy(tmp_path / "w", peer, dist, **DHCP)
    assert again.rc == 0 and again.changed(HOST) == 0, again.stdout
    assert result(again)["bytes_sent"] == 0 and result(again)["dhcp_changes"] == []
    assert peer.snapshot() == snap


def test_matcher_value_firmware_and_turning_off(peer: Peer, tmp_path: Path) -> None:
    setup_lan(peer)
    dist = make_dist(tmp_path / "dist", f"tftp://10.0.2.2:{peer.tftp_port}")
    assert deploy(tmp_path / "w", peer, dist, **DHCP).rc == 0
    ids = {m: [r[".id"] for r in owned(peer, m)] for m in MENUS}
    # another matcher spelling and ipxe.efi for UEFI: the owned rows are modified in place, never duplicated
    res = deploy(tmp_path / "w", peer, dist, **DHCP, rb4011_dhcp_matcher_value="s'iPXE'",
                 rb4011_dhcp_uefi_binary="ipxe.efi", rb4011_dhcp_next_server="192.168.88.2")
    assert res.rc == 0 and res.changed(HOST) == 1, res.stdout
    tag = "homelab.alpine_netboot dir=netboot"
    assert sorted(result(res)["dhcp_changes"]) == sorted([
        f'/ip dhcp-server option set [find comment="{tag} dhcp=option homelab-netboot-uefi"] value="s\'ipxe.efi\'"',
        *[f'/ip dhcp-server matcher set [find comment="{tag} dhcp=matcher {n}"] value="s\'iPXE\'"'
          for n in (NAME, "homelab-netboot-ipxe-last")],
        f'/ip dhcp-server network set [find address="{NET}"] next-server="192.168.88.2"',
    ])
    assert {m: [r[".id"] for r in owned(peer, m)] for m in MENUS} == ids
    assert owned(peer, MATCHER_MENU)[0]["value"] == "s'iPXE'" and network(peer)["next-server"] == "192.168.88.2"
    # off (the default) leaves the DHCP rows and the chainload rules as they are
    snap = dhcp_rows(peer)
    rules = peer.rows("/ip/tftp")
    off = deploy(tmp_path / "w", peer, dist)
    assert off.rc == 0 and off.changed(HOST) == 0, off.stdout
    assert dhcp_rows(peer) == snap and peer.rows("/ip/tftp") == rules


def test_refusals_change_nothing(tmp_path: Path) -> None:
    with Peer(tmp_path / "p73", PeerConfig(version="7.3 (stable)")) as peer:
        peer.add_row(NETWORK_MENU, address=NET, gateway="192.168.88.1")
        dist = make_dist(tmp_path / "dist", f"tftp://10.0.2.2:{peer.tftp_port}")
        before = peer.snapshot()
        res = deploy(tmp_path / "w", peer, dist, **DHCP)
        msg = " ".join(res.failure_messages())
        assert res.rc != 0 and "7.3" in msg and "matcher" in msg and "7.4+" in msg, msg
        assert peer.snapshot() == before
    with Peer(tmp_path / "p715", PeerConfig(version="7.15.3 (stable)")) as peer:
        setup_lan(peer)
        dist = make_dist(tmp_path / "dist2", f"tftp://10.0.2.2:{peer.tftp_port}")
        before = peer.snapshot()
        res = deploy(tmp_path / "w", peer, dist, **DHCP, rb4011_dhcp_matching_type="exact")
        assert res.rc != 0 and "matching-type" in " ".join(res.failure_messages()) and peer.snapshot() == before
        res = deploy(tmp_path / "w", peer, dist, rb4011_manage_dhcp=True, rb4011_dhcp_network="192.168.77.0/24")
        msg = " ".join(res.failure_messages())
        assert res.rc != 0 and "192.168.77.0/24" in msg and "10.9.0.0/16" in msg and peer.snapshot() == before, msg
        # the peer itself refuses what RouterOS 7.15 lacks, with RouterOS' words
        ros = connect(ApiOptions("127.0.0.1", peer.config.user, peer.config.password, port=peer.api_port))
        try:
            with pytest.raises(RouterOSError, match="unknown parameter matching-type"):
                ros.add(MATCHER_MENU, {"name": "x", "server": "all", "code": "77", "value": "iPXE",
                                       "matching-type": "exact"})
            with pytest.raises(RouterOSError, match="input does not match any value of option-set"):
                ros.add(MATCHER_MENU, {"name": "x", "server": "all", "code": "77", "option-set": "missing"})
        finally:
            ros.close()


def test_matching_type_on_7_16(tmp_path: Path) -> None:
    with Peer(tmp_path / "p", PeerConfig(version="7.16.2 (stable)")) as peer:
        setup_lan(peer)
        dist = make_dist(tmp_path / "dist", f"tftp://10.0.2.2:{peer.tftp_port}")
        res = deploy(tmp_path / "w", peer, dist, **DHCP, rb4011_dhcp_matching_type="substring")
        assert res.rc == 0, res.stdout
        assert owned(peer, MATCHER_MENU)[0]["matching-type"] == "substring"
        assert deploy(tmp_path / "w", peer, dist, **DHCP, rb4011_dhcp_matching_type="substring").changed(HOST) == 0


def test_pinned_ipxe_offline_mismatch_and_own_binaries(peer: Peer, tmp_path: Path) -> None:
    """The pinned .deb: offline without it in the cache the deploy stops saying how to fill it; a mirror serving
    other bytes is refused naming both digests (nothing uploaded); binaries of the user's own need no package."""
    setup_lan(peer)
    dist = make_dist(tmp_path / "dist", f"tftp://10.0.2.2:{peer.tftp_port}")
    before = peer.snapshot()
    res = deploy(tmp_path / "w1", peer, dist, **DHCP, extravars={"netboot_offline": True})
    msg = " ".join(res.failure_messages())
    assert res.rc != 0 and "netboot_offline is true. Fill the cache" in msg and pin()["sha256"] in msg, msg
    assert peer.snapshot() == before
    # a mirror that serves another file under the pin's name
    other = tmp_path / "mirror" / "ipxe.deb"
    other.parent.mkdir()
    other.write_bytes(b"!<arch>\nnot the pinned package\n")
    with serve(other.parent) as srv:
        res = deploy(tmp_path / "w2", peer, dist, **DHCP, extravars={"netboot_deb_urls": {"ipxe": f"{srv.url}/ipxe.deb"}})
    msg = " ".join(res.failure_messages())
    assert res.rc != 0 and "sha256 mismatch" in msg and hashlib.sha256(other.read_bytes()).hexdigest() in msg, msg
    assert not list((tmp_path / "w2" / "cache" / "debs").glob("*.deb")) and peer.snapshot() == before
    # the user's own binaries: no package fetched (the URL leads nowhere), those bytes are served
    own = {name: tmp_path / "own" / name for name in ("undionly.kpxe", "snponly.efi", "ipxe.efi")}
    for name, path in own.items():
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(f"own {name}".encode() * 100)
    res = deploy(tmp_path / "w3", peer, dist, **DHCP, extravars={"netboot_deb_urls": {"ipxe": "http://127.0.0.1:9/x"}},
                 rb4011_ipxe_bios=str(own["undionly.kpxe"]), rb4011_ipxe_snp=str(own["snponly.efi"]),
                 rb4011_ipxe_efi=str(own["ipxe.efi"]))
    assert res.rc == 0, res.stdout[-3000:]
    for name, path in own.items():
        assert tftp_get("127.0.0.1", peer.tftp_port, name) == path.read_bytes()
    assert not (tmp_path / "w3" / "build" / "ipxe").exists()
