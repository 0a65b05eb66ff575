"""Issue 15: BIOS and UEFI nodes boot through the DHCP server the deploy configured, with no chainload loop.

The peer's DHCP server (tests/fixtures/routeros/dhcp.py) answers from the very rows the deploy wrote over the API,
under each modelled RouterOS behaviour that is not documented (the BOOTP ``file`` field next to a matched option 67;
which of several matching matchers wins). What each client then boots is read the way its code reads it: iPXE
takes the ``file`` field before option 67 (``dhcppkt_fetch``), EDK2's UEFI PXE option 67 before ``file``.
The qemu tests boot for real inside a network namespace (no route out): OVMF's own PXE -> snponly.efi -> iPXE ->
boot.ipxe -> kernel + initramfs, all over the peer's TFTP on 192.168.88.1; and SeaBIOS with the NIC's iPXE ROM.
"""

from __future__ import annotations

import hashlib
import os
import re
import selectors
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _ipxe, _qemu, _testhook, _vm
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy import _dhcp
from tests.fixtures.bootimage import boot_image
from tests.fixtures.netvm import netboot_argv
from tests.fixtures.routeros.deploy import HOST, deploy, result
from tests.fixtures.routeros.dhcp import (
    FILE_FIELD_MODES,
    PRECEDENCES,
    DhcpModel,
    DhcpServer,
    client_options,
    discover,
    edk2_filename,
    ipxe_filename,
)
from tests.fixtures.routeros.dist import checked_dist as checked_dist_of
from tests.fixtures.routeros.dist import make_dist
from tests.fixtures.routeros.peer import Peer
from tests.fixtures.routeros.tftp import tftp_get
from tests.fixtures.routeros.udp import Lan

NET = "192.168.88.0/24"
ROUTER = "192.168.88.1"
DHCP: dict[str, Any] = {"rb4011_manage_dhcp": True, "rb4011_dhcp_network": NET}
MODELS = [DhcpModel(f, p) for f in FILE_FIELD_MODES for p in PRECEDENCES]
# (client, option 93 architecture, sends iPXE's option 77, how it reads the reply)
CLIENTS = {
    "uefi-firmware": (7, False, edk2_filename),
    "uefi-firmware-arch9": (9, False, edk2_filename),
    "bios-firmware": (0, False, edk2_filename),
    "ipxe-efi": (7, True, ipxe_filename),
    "ipxe-bios": (0, True, ipxe_filename),
}


def lan_network(peer: Peer) -> None:
    peer.add_row(_dhcp.NETWORK_MENU, address=NET, gateway=ROUTER, **{"dns-server": ROUTER})


def loopback_server(peer: Peer, model: DhcpModel) -> DhcpServer:
    """The peer's DHCP server on 127.0.0.1 (a free port, unicast replies), leasing from the LAN's pool."""
    return DhcpServer(peer, "127.0.0.1", model=model, port=0, pool=("192.168.88.100", "192.168.88.120"))


def what_boots(server: DhcpServer, client: str) -> tuple[str, str, str]:
    """(next-server, file field, the file the client fetches) for one DISCOVER of ``client``."""
    arch, ipxe, read = CLIENTS[client]
    mac = bytes([0x52, 0x54, 0, 0x15, arch, int(ipxe)])
    _yiaddr, siaddr, file, opts = discover(server.port, mac, client_options(arch, ipxe))
    return siaddr, file, read(file, opts)


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Peer]:
    with Peer(tmp_path / "peer") as p:
        lan_network(p)
        yield p


def test_every_client_gets_its_file_under_every_modelled_routeros(peer: Peer, tmp_path: Path) -> None:
    dist = make_dist(tmp_path / "dist", f"tftp://{ROUTER}")
    res = deploy(tmp_path / "w", peer, dist, **DHCP)
    assert res.rc == 0, res.stdout
    assert result(res)["dhcp"]["boot_files"] == {"uefi": "snponly.efi", "bios": "undionly.kpxe"}
    want = {"uefi-firmware": "snponly.efi", "uefi-firmware-arch9": "snponly.efi", "bios-firmware": "undionly.kpxe",
            "ipxe-efi": "boot.ipxe", "ipxe-bios": "boot.ipxe"}
    for model in MODELS:
        server = loopback_server(peer, model)
        try:
            got = {c: what_boots(server, c) for c in CLIENTS}
        finally:
            server.close()
        assert got == {c: (ROUTER, "", f) for c, f in want.items()}, model
    # ipxe.efi is opt-in; the network can be BIOS by default (UEFI then matched on option 93 = 7 and 9)
    res = deploy(tmp_path / "w", peer, dist, **DHCP, rb4011_dhcp_firmware="bios", rb4011_dhcp_uefi_binary="ipxe.efi")
    assert res.rc == 0 and res.changed(HOST) == 1, res.stdout
    server = loopback_server(peer, DhcpModel("keep", "last"))
    try:
        files = {c: what_boots(server, c)[2] for c in CLIENTS}
    finally:
        server.close()
    assert files == {**want, "uefi-firmware": "ipxe.efi", "uefi-firmware-arch9": "ipxe.efi"}


def test_the_old_config_loops_and_a_rerun_converts_it(peer: Peer, tmp_path: Path) -> None:
    """The first version's rows: boot-file-name=undionly.kpxe and one option 77 matcher giving boot.ipxe."""
    tag = "homelab.alpine_netboot dir=netboot"
    name = _dhcp.NAME
    peer.add_row(_dhcp.OPTION_MENU, name=name, code="67", value="s'boot.ipxe'", comment=f"{tag} dhcp=option")
    peer.add_row(_dhcp.SETS_MENU, name=name, options=name, comment=f"{tag} dhcp=option-set")
    peer.add_row(_dhcp.MATCHER_MENU, name=name, server="all", code="77", value="iPXE", **{"option-set": name},
                 disabled="false", comment=f"{tag} dhcp=matcher")
    net_id = next(r[".id"] for r in peer.rows(_dhcp.NETWORK_MENU) if r["address"] == NET)
    with peer.lock:
        row = next(r for r in peer.menus[_dhcp.NETWORK_MENU].rows if r[".id"] == net_id)
        row.update({"next-server": ROUTER, "boot-file-name": "undionly.kpxe"})
    server = loopback_server(peer, DhcpModel("keep"))
    try:
        # the loop: iPXE reads the file field first and fetches its own binary again
        assert what_boots(server, "ipxe-bios")[1:] == ("undionly.kpxe", "undionly.kpxe")
        dist = make_dist(tmp_path / "dist", f"tftp://{ROUTER}")
        res = deploy(tmp_path / "w", peer, dist, **DHCP)
        assert res.rc == 0, res.stdout
        matchers = [r["name"] for r in peer.rows(_dhcp.MATCHER_MENU)]
        assert matchers == [_dhcp.NAME, "homelab-netboot-bios-0000", _dhcp.LAST_NAME]
        net = next(r for r in peer.rows(_dhcp.NETWORK_MENU) if r["address"] == NET)
        assert "boot-file-name" not in net and net["dhcp-option"] == "homelab-netboot-uefi"
        assert what_boots(server, "ipxe-bios")[1:] == ("", "boot.ipxe")
        assert what_boots(server, "uefi-firmware")[1:] == ("", "snponly.efi")
    finally:
        server.close()
    again = deploy(tmp_path / "w", peer, dist, **DHCP)
    assert again.rc == 0 and again.changed(HOST) == 0 and result(again)["dhcp_changes"] == [], again.stdout


# -- real boots -------------------------------------------------------------------------------------------------

@pytest.fixture
def lan() -> Iterator[Lan]:
    if os.geteuid() != 0:
        pytest.skip("a network namespace with a tap device for qemu needs root")
    net = Lan(f"nb15-{os.getpid()}")
    try:
        yield net.up()
    finally:
        net.down()


def bootable_dist(tmp_path: Path) -> Path:
    """The small test image (real Alpine kernel, busybox initramfs) with the boot-test hook, as a dist/ for the
    router's own TFTP address."""
    image = boot_image()
    initramfs = _qemu.concat_initrds([image.initramfs, _testhook.hook_cpio([])], tmp_path / "initramfs")
    return make_dist(tmp_path / "dist", f"tftp://{ROUTER}",
                     files={"vmlinuz": image.kernel.read_bytes(), "initramfs": initramfs.read_bytes()},
                     # initrd=NAME: how a UEFI kernel stub finds iPXE's initrd (as roles/ipxe's boot.ipxe does)
                     kernel_args="console=ttyS0 initrd=initramfs")


def boot(lan: Lan, tmp_path: Path, *, uefi: bool, timeout: float) -> _vm.BootResult:
    accel = _qemu.pick_accel()
    return _vm.run_vm(netboot_argv(lan, tmp_path, uefi=uefi, accel=accel), marker=_testhook.DEFAULT_MARKER,
                      timeout=timeout, accel=accel, console_log=tmp_path / "console.log")


def served(peer: Peer) -> list[str]:
    return [t.request for t in peer.transfers if t.error is None]


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.parametrize(("uefi", "model"), [
    pytest.param(True, DhcpModel("keep", "first"), id="uefi-ovmf"),
    pytest.param(False, DhcpModel("drop-67", "last"), id="bios-seabios"),
])
def test_node_boots_through_the_routers_dhcp(peer: Peer, lan: Lan, tmp_path: Path, uefi: bool,
                                             model: DhcpModel) -> None:
    # boot.ipxe from the ipxe role's template with this build's sha256 (docsite "Integrity at boot")
    res = deploy(tmp_path / "w", peer, checked_dist(tmp_path, failsafe_timeout=60), **DHCP)
    assert res.rc == 0, res.stdout
    dhcp = peer.serve_lan(lan, model)
    peer.transfers.clear()
    t0 = time.monotonic()
    out = boot(lan, tmp_path, uefi=uefi, timeout=900 if uefi else 420)
    assert out.ok, (f"{out.reason}\n{out.tail(60)}\nDHCP: "
                    f"{[(e.reply.kind, e.reply.file, e.reply.options.get(67)) for e in dhcp.exchanges]}\n"
                    f"TFTP: {served(peer)}")
    gen = result(res)["generation"]
    got = served(peer)
    # exactly one iPXE binary, then the script, kernel and initramfs: no second fetch of a binary (no loop)
    binaries = [r for r in got if r.endswith((".efi", ".kpxe"))]
    assert binaries == (["snponly.efi"] if uefi else []), got
    assert got[len(binaries):len(binaries) + 3] == ["boot.ipxe", f"{gen}/vmlinuz", f"{gen}/initramfs"], got
    # the firmware asked as what it is; iPXE then sent option 77 and got option 67 boot.ipxe
    # the pinned sid snponly.efi checks every image; the BIOS NIC's own iPXE ROM (bookworm's ipxe-qemu, no
    # sha256sum command) says it boots unchecked, and boots
    if uefi:
        assert "netboot: sha256 of every image checked" in out.console and _ipxe.UNCHECKED_MARKER not in out.console
    else:
        assert _ipxe.UNCHECKED_MARKER in out.console and "every image checked" not in out.console
    arches = {struct.unpack("!H", e.request[93])[0] for e in dhcp.exchanges if 93 in e.request}
    assert arches == {7 if uefi else 0}, arches
    assert any(77 in e.request and e.reply.options.get(67) == b"boot.ipxe" for e in dhcp.exchanges)
    print(f"{'UEFI' if uefi else 'BIOS'} boot through the router's DHCP: marker after {out.seconds_to_marker}s "
          f"({time.monotonic() - t0:.0f}s), TFTP {got}")


@pytest.mark.slow
@pytest.mark.root
def test_uefi_node_loops_with_the_first_versions_boot_file_name(peer: Peer, lan: Lan, tmp_path: Path) -> None:
    """The issue's held-out check, on the first version's network row (boot-file-name=ipxe.efi beside the option 77
    matcher) with RouterOS keeping the file field: iPXE fetches ipxe.efi again and again and never boot.ipxe. Shows
    that the boot test above would catch a loop."""
    res = deploy(tmp_path / "w", peer, bootable_dist(tmp_path), **DHCP)
    assert res.rc == 0, res.stdout
    with peer.lock:
        row = next(r for r in peer.menus[_dhcp.NETWORK_MENU].rows if r["address"] == NET)
        row.pop("dhcp-option")
        row["boot-file-name"] = "ipxe.efi"
    peer.serve_lan(lan, DhcpModel("keep", "first"))
    peer.transfers.clear()
    out = boot(lan, tmp_path, uefi=True, timeout=75)
    got = served(peer)
    assert not out.ok and "boot.ipxe" not in got and got.count("ipxe.efi") >= 2, (got, out.tail())
    print(f"the first version's config: TFTP {got} in {out.seconds:.0f}s")


# -- integrity at boot (docsite "Integrity at boot") --------------------------------------------------------------

def checked_dist(tmp_path: Path, failsafe_timeout: int) -> Path:
    """The small bootable image as a dist/ whose boot.ipxe is the ipxe role's template with this build's sha256."""
    image = boot_image()
    initramfs = _qemu.concat_initrds([image.initramfs, _testhook.hook_cpio([])], tmp_path / "initramfs")
    files = {"vmlinuz": image.kernel.read_bytes(), "initramfs": initramfs.read_bytes()}
    return checked_dist_of(tmp_path / "dist", f"tftp://{ROUTER}", files, kernel_args="console=ttyS0", retries=1,
                           retry_delay=0, failsafe_timeout=failsafe_timeout)


def run_until(argv: list[str], log: Path, *, until: str, on: dict[str, Any], timeout: float) -> tuple[bool, str]:
    """Run qemu until ``until`` shows on the console (True) or ``timeout``; ``on``: console text -> a function
    called once when that text first shows (the VM keeps running). Returns (marker seen, the cleaned console)."""
    raw = bytearray()
    pending = dict(on)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        with log.open("wb") as out:
            while time.monotonic() < deadline and proc.poll() is None:
                if sel.select(timeout=0.2):
                    chunk = proc.stdout.read(65536) or b""
                    raw += chunk
                    out.write(chunk)
                text = _vm.clean_console(bytes(raw))
                for trigger in [t for t in pending if t in text]:
                    pending.pop(trigger)()
                if until in text:
                    return True, text
        return False, _vm.clean_console(bytes(raw))
    finally:
        sel.close()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


@pytest.mark.slow
@pytest.mark.root
def test_uefi_node_refuses_a_flipped_byte_and_boots_once_restored(peer: Peer, lan: Lan, tmp_path: Path) -> None:
    """One OVMF boot through the router, with the pinned sid snponly.efi the deploy hands out: one byte of the
    initramfs flipped in the router's store -> the mismatch line (twice: fetched once more), no kernel, the
    failsafe menu; the file restored while the menu waits -> its automatic retry boots to the marker."""
    res = deploy(tmp_path / "w", peer, checked_dist(tmp_path, failsafe_timeout=5), **DHCP)
    assert res.rc == 0, res.stdout
    gen = result(res)["generation"]
    stored = peer.store.path(f"netboot/{gen}/initramfs")
    good = stored.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0x01
    stored.write_bytes(bytes(bad))
    want, got = hashlib.sha256(good).hexdigest(), hashlib.sha256(bad).hexdigest()
    # generation.ipxe is dist's boot.ipxe with base rewritten: the digests carried over
    assert f"set check_want {want}" in tftp_script(peer)
    dhcp = peer.serve_lan(lan, DhcpModel("keep", "first"))
    peer.transfers.clear()
    restored: list[float] = []

    def restore() -> None:
        stored.write_bytes(good)
        restored.append(time.monotonic())

    t0 = time.monotonic()
    accel = _qemu.pick_accel()
    ok, console = run_until(netboot_argv(lan, tmp_path, uefi=True, accel=accel), tmp_path / "console.log",
                            until=_testhook.DEFAULT_MARKER, on={_ipxe.FAILED_MARKER: restore}, timeout=900)
    got_served = served(peer)
    assert ok, (f"{console[-6000:]}\nDHCP: {[(e.reply.kind, e.reply.file) for e in dhcp.exchanges]}\n"
                f"TFTP: {got_served}")
    before = console[: console.index(_ipxe.FAILED_MARKER)]
    line = re.compile(rf"netboot: initramfs from tftp://{re.escape(ROUTER)}/\S*{gen} {_ipxe.MISMATCH_MARKER}: "
                      rf"got {got} expected {want}\n")
    assert len(line.findall(before)) == 2, before[-4000:]  # the first fetch and the one more fetch
    assert "fetching the images from" in before and _ipxe.UNCHECKED_MARKER not in console
    # the kernel never started on the bad bytes: no EFI stub, no Linux banner before the restore
    assert "EFI stub" not in before and "Linux version" not in before, before[-3000:]
    after = console[console.index(_ipxe.FAILED_MARKER):]
    assert "netboot: sha256 of every image checked" in after and "Linux version" in after
    # the pinned iPXE 2.0 ran the checks: snponly.efi (sid's) was handed out, the initramfs fetched three times
    assert got_served[0] == "snponly.efi" and got_served.count(f"{gen}/initramfs") == 3, got_served
    print(f"UEFI integrity boot: mismatch shown twice, failsafe, restored after {restored[0] - t0:.0f}s, marker after "
          f"{time.monotonic() - t0:.0f}s ({accel}); TFTP {got_served}")


def tftp_script(peer: Peer) -> str:
    """boot.ipxe as the router serves it (the live generation's generation.ipxe)."""
    return tftp_get("127.0.0.1", peer.tftp_port, "boot.ipxe").decode()
