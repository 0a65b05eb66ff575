"""_dhcpprobe: the probe packets (never a REQUEST), reading replies, and following answers as EDK2 and iPXE read
them."""

from __future__ import annotations

import struct

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy import _dhcpprobe as p
from tests.fixtures.routeros.dhcp import Reply, build_reply, parse_packet

KINDS = p.BY_NAME


def answer(file: str = "", opt67: str | None = None) -> p.Answer:
    opts = {} if opt67 is None else {67: opt67.encode()}
    return p.Answer(p.OFFER, "192.168.88.100", "192.168.88.1", file, opts)


def is_ipxe(name: str) -> bool:
    return name.endswith((".efi", ".kpxe"))


def test_discover_carries_the_client_kind_and_never_requests() -> None:
    mac = p.probe_mac("seed", KINDS["ipxe-uefi-arch7"])
    assert mac[0] & 0x03 == 0x02  # locally administered, unicast
    assert mac != p.probe_mac("seed", KINDS["ipxe-bios"]) and mac == p.probe_mac("seed", KINDS["ipxe-uefi-arch7"])
    pkt = p.build(p.DISCOVER, mac, 7, KINDS["ipxe-uefi-arch7"].options())
    xid, chaddr, flags, _ciaddr, opts = parse_packet(pkt)  # the peer's reading of a request
    assert (xid, chaddr, flags) == (7, mac, 0x8000)
    assert opts[53] == bytes([p.DISCOVER]) and opts[93] == struct.pack("!H", 7) and opts[77] == b"iPXE"
    fw = parse_packet(p.build(p.DISCOVER, mac, 8, KINDS["bios-pxe"].options()))[4]
    assert fw[93] == b"\0\0" and 77 not in fw and fw[60].startswith(b"PXEClient:Arch:00000")
    with pytest.raises(ValueError, match="never a REQUEST"):
        p.build(p.REQUEST, mac, 9, {})


def test_reply_parsed_with_file_field_and_option_67() -> None:
    mac = b"\x02\x01\x02\x03\x04\x05"
    raw = build_reply(p.OFFER, 42, mac, 0x8000, Reply(p.OFFER, "192.168.88.100", "192.168.88.1", "ipxe.efi",
                                                      {67: b"boot.ipxe", 54: bytes([192, 168, 88, 1])}))
    xid, chaddr, a = p.parse(raw)
    assert (xid, chaddr) == (42, mac)
    assert (a.kind, a.siaddr, a.file, a.option67, a.server_id) == (p.OFFER, "192.168.88.1", "ipxe.efi", "boot.ipxe",
                                                                   "192.168.88.1")


def test_ipxe_reads_the_file_field_first_firmware_option_67() -> None:
    both = answer("ipxe.efi", "boot.ipxe")
    assert p.boot_file(KINDS["ipxe-uefi-arch7"], both) == ("ipxe.efi", "file field")
    assert p.boot_file(KINDS["uefi-pxe-arch7"], both) == ("boot.ipxe", "option 67")
    assert p.boot_file(KINDS["uefi-pxe-arch7"], answer("ipxe.efi")) == ("ipxe.efi", "file field")
    assert p.boot_file(KINDS["ipxe-bios"], answer("", "boot.ipxe")) == ("boot.ipxe", "option 67")


def test_follow_shipped_chain_ends_at_the_script() -> None:
    answers = {"uefi-pxe-arch7": answer("", "snponly.efi"), "ipxe-uefi-arch7": answer("", "boot.ipxe")}
    ch = p.follow(KINDS["uefi-pxe-arch7"], answers, script="boot.ipxe", is_ipxe=is_ipxe)
    assert ch.ok and ch.ends == "boot.ipxe" and not ch.loop
    assert ch.path() == "uefi-pxe-arch7: snponly.efi -> ipxe-uefi-arch7: boot.ipxe"


def test_follow_names_the_loop_of_a_boot_file_name() -> None:
    # the first version: boot-file-name=ipxe.efi, RouterOS keeps the file field beside the matcher's option 67
    answers = {"uefi-pxe-arch7": answer("ipxe.efi"), "ipxe-uefi-arch7": answer("ipxe.efi", "boot.ipxe")}
    ch = p.follow(KINDS["uefi-pxe-arch7"], answers, script="boot.ipxe", is_ipxe=is_ipxe)
    assert ch.loop and not ch.ok
    assert ch.problem.startswith("loop: ipxe-uefi-arch7 is told to fetch ipxe.efi again"), ch.problem


def test_follow_no_answer_no_file_and_foreign_file() -> None:
    assert "no DHCP answer for bios-pxe" in p.follow(KINDS["bios-pxe"], {}, script="boot.ipxe",
                                                     is_ipxe=is_ipxe).problem
    assert "gets no boot file" in p.follow(KINDS["bios-pxe"], {"bios-pxe": answer()}, script="boot.ipxe",
                                           is_ipxe=is_ipxe).problem
    ch = p.follow(KINDS["bios-pxe"], {"bios-pxe": answer("", "pxelinux.0")}, script="boot.ipxe", is_ipxe=is_ipxe)
    assert "pxelinux.0, which is neither boot.ipxe nor an iPXE binary" in ch.problem


def test_can_probe_as_root_or_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr(p, "capabilities", set)
    why = p.can_probe()
    assert why is not None and "CAP_NET_RAW" in why and "uid 1000" in why
    monkeypatch.setattr(p, "capabilities", lambda: {p.CAP_NET_RAW, p.CAP_NET_BIND_SERVICE})
    assert p.can_probe() is None
