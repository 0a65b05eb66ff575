"""_verify: iPXE's digest command in a binary (the real bookworm binaries for the negative case), the controller's
DHCP interface and the router check against fake reads."""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._ipxe import read_record
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy import _tftp
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploydist import generation_script
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deployplan import (
    RouterFile,
    RouterState,
    chainload_comment,
    rule_comment,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._verify import (
    Fetcher,
    VerifyOptions,
    dhcp_interface,
    has_digest_command,
)
from tests.fixtures.routeros.dist import boot_script

GEN = "g-0123456789ab"


@pytest.mark.parametrize("name", ["snponly.efi", "ipxe.efi", "undionly.kpxe"])
def test_debian_bookworm_ipxe_has_no_sha256sum_command(name: str) -> None:
    path = Path("/usr/lib/ipxe") / name
    if not path.is_file():
        pytest.skip(f"{path}: apt-get install ipxe")
    data = path.read_bytes()
    assert not has_digest_command(data)
    if name != "undionly.kpxe":  # compressed: no names readable
        assert b"\0imgfetch\0" in data and b"\0chain\0" in data  # the command table is where it is looked for


def test_a_binary_with_the_digest_command() -> None:
    table = b"\0imgfetch\0chain\0sha256sum\0imgverify\0"
    assert has_digest_command(b"MZ" + b"\0" * 100 + table)
    assert not has_digest_command(b"MZ usage: sha256sumx")


def test_dhcp_interface_needs_the_boot_network() -> None:
    ifaces = {"lo": ipaddress.IPv4Interface("127.0.0.1/8"), "eth0": ipaddress.IPv4Interface("10.1.0.5/24"),
              "lan": ipaddress.IPv4Interface("192.168.88.2/24")}
    assert dhcp_interface(VerifyOptions(), "192.168.88.1", "192.168.88.2", ifaces) == ("lan", "")
    name, why = dhcp_interface(VerifyOptions(), "192.168.88.1", "10.1.0.5", ifaces)
    assert name == "" and "not on the boot network" in why and "rb4011_verify_dhcp_interface" in why
    assert dhcp_interface(VerifyOptions(dhcp_interface="lan"), "192.168.88.1", "10.1.0.5", ifaces) == ("lan", "")
    assert "has no IPv4 address" in dhcp_interface(VerifyOptions(dhcp_interface="wlan9"), "x", "y", ifaces)[1]


# -- check_router on a read router state, with TFTP and DHCP answered in-process ---------------------------------------

def router(files: dict[str, bytes], rollover: bool = False) -> tuple[RouterState, dict[str, bytes]]:
    """A RouterState as the deploy leaves it (generation GEN live, one chainload binary) and request -> bytes."""
    script, record = boot_script("tftp://192.168.88.1")
    dist = {"boot.ipxe": script.encode(), "boot.ipxe.json": record, **files}
    sums = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(dist.items())).encode()
    gen = "g-" + hashlib.sha256(sums).hexdigest()[:12]
    binary = b"MZ" + b"\0imgfetch\0sha256sum\0" + b"x" * 1000
    where = f"netboot/ipxe/{hashlib.sha256(binary).hexdigest()[:12]}"
    served = {"boot.ipxe": generation_script(read_record("r", record), gen).encode(), f"{gen}/SHA256SUMS": sums,
              "snponly.efi": binary, f"{gen}/boot.ipxe.json": record, **{f"{gen}/{n}": d for n, d in files.items()}}
    rules = [{".id": "*1", "req-filename": r"^boot\.ipxe$", "real-filename": f"netboot/{gen}/generation.ipxe",
              "comment": rule_comment("netboot")},
             {".id": "*2", "req-filename": r"^snponly\.efi$", "real-filename": f"{where}/snponly.efi",
              "comment": chainload_comment("netboot", "snponly.efi")}]
    rules += [{".id": f"*{9 + i}", "req-filename": f"^{gen}/{n}$", "real-filename": f"netboot/{gen}/{n}",
               "allow-rollover": "true" if rollover else "false", "comment": rule_comment("netboot", gen, n, 1)}
              for i, n in enumerate(["SHA256SUMS", "boot.ipxe.json", *files])]
    state = RouterState("192.168.88.1", "7.16.2", "rb", 1 << 28, 1 << 29,
                        (RouterFile("*a", f"netboot/{gen}/initramfs", "file", len(files["initramfs"])),),
                        tuple(rules))
    return state, served


def fake_fetch(served: dict[str, bytes]) -> Fetcher:
    def fetch(request: str, blksize: int, keep: int) -> _tftp.Fetched:
        if request not in served:
            raise _tftp.TftpRefused(request, 2, "Access violation")
        d = served[request]
        return _tftp.Fetched(request, len(d), hashlib.sha256(d).hexdigest(), blksize, len(d) // blksize + 1,
                             len(d) / 10e6, False, len(d), d[:keep])
    return fetch


def test_check_router_passes_reports_rates_and_the_checked_client_kind() -> None:
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy import _dhcpprobe
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._verify import check_router

    state, served = router({"vmlinuz": b"k" * 5000, "initramfs": b"i" * 20000})

    def probe(_iface: str, kind: _dhcpprobe.ClientKind) -> _dhcpprobe.Answer:
        name = "boot.ipxe" if kind.ipxe else "snponly.efi" if kind.firmware == "uefi" else "undionly.kpxe"
        return _dhcpprobe.Answer(_dhcpprobe.OFFER, "192.168.88.100", "192.168.88.1", "", {67: name.encode()})

    rep = check_router(state, VerifyOptions(), fetch=fake_fetch(served), controller="192.168.88.2",
                       probe=probe, dhcp_skip="", interface="lan")
    # undionly.kpxe is what BIOS firmware is told, but no rule serves it: named
    assert rep.failures == ["undionly.kpxe: no rule: no enabled /ip/tftp rule's req-filename matches undionly.kpxe"]
    files = {f.request: f for f in rep.files}
    assert files["snponly.efi"].ok and rep.clients["ipxe_binaries"]["snponly.efi"]["sha256sum_command"]
    assert rep.clients["boot_checked"]["uefi-pxe-arch7"] == {"ipxe_binary": "snponly.efi", "boot_checked": True}
    assert rep.clients["boot_checked"]["bios-pxe"]["boot_checked"] is False
    assert rep.boot_files == ["snponly.efi", "boot.ipxe", f"{rep.generation}/vmlinuz", f"{rep.generation}/initramfs"]
    assert rep.boot_bytes == sum(files[n].size or 0 for n in rep.boot_files)
    assert rep.boot_seconds == pytest.approx(rep.boot_bytes / 10e6, abs=1e-3)  # seconds are rounded


def test_check_router_512_byte_client_needs_rollover_and_dhcp_skip_is_reported() -> None:
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._verify import check_router

    big = b"\1" * (65535 * 512 + 10)  # more than 65,535 blocks of 512 bytes, fewer of 1432
    state, served = router({"vmlinuz": b"k", "initramfs": big})
    rep = check_router(state, VerifyOptions(), fetch=fake_fetch(served), controller="192.168.88.2",
                       probe=None, dhcp_skip="not root", interface="")
    assert rep.dhcp == {"status": "skipped", "reason": "not root"} and "DHCP check skipped: not root" in rep.warnings
    assert len(rep.failures) == 1 and rep.failures[0].startswith(f"{rep.generation}/initramfs: too big without "
                                                                 "rollover"), rep.failures
    state, served = router({"vmlinuz": b"k", "initramfs": big}, rollover=True)
    rep = check_router(state, VerifyOptions(pass_512=True), fetch=fake_fetch(served),
                       controller="192.168.88.2", probe=None, dhcp_skip="x", interface="")
    assert rep.ok, rep.failures
    init = next(f for f in rep.files if f.request.endswith("/initramfs"))
    assert init.rollover_512_needed and init.rollover_allowed and init.pass_512 is not None
    assert init.pass_512["blocks"] == 65536 and init.pass_512["problem"] == ""
