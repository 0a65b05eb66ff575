"""Issue 26: Secure Boot with the site's own keys, booted for real.

OVMF's Secure Boot build (q35 + SMM, ``OVMF_CODE_4M.secboot.fd``) with the test PK/KEK/db enrolled
(tests/fixtures/secureboot.py) netboots through the RouterOS peer's DHCP and TFTP inside a network namespace, as
tests/integration/test_deploy_rb4011_dhcp_boot.py does: its own PXE -> the pinned sid ``snponly.efi`` signed with
the db key -> ``boot.ipxe`` -> ``netboot.efi``, a UKI (the pinned systemd-boot-efi stub + the small test image's
kernel, initramfs and command line) signed with the db key, which iPXE hands to the firmware's LoadImage. The
firmware is what refuses: a UKI with one byte of its kernel flipped (boot.ipxe's sha256 is the flipped file's, so
iPXE's own check passes), an unsigned UKI, one signed by a key no store enrolls, and an unsigned ``snponly.efi``.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils import _ipxe, _qemu, _testhook, _vm
from tests.fixtures import secureboot
from tests.fixtures.bootimage import boot_image
from tests.fixtures.ipxe_sid import ipxe_binaries
from tests.fixtures.netvm import netboot_argv
from tests.fixtures.routeros.deploy import deploy, result
from tests.fixtures.routeros.dhcp import DhcpModel
from tests.fixtures.routeros.dist import make_dist
from tests.fixtures.routeros.peer import Peer
from tests.fixtures.routeros.udp import Lan

pytestmark = [pytest.mark.slow, pytest.mark.root]

NET = "192.168.88.0/24"
ROUTER = "192.168.88.1"
DHCP = {"rb4011_manage_dhcp": True, "rb4011_dhcp_network": NET}
UKI = "netboot.efi"
# the UKI's own command line (its .cmdline section): what the kernel must get, whatever iPXE passes
UKI_CMDLINE = "console=ttyS0 panic=-1 netboot.hostname=sb-node netboot.sb=uki-cmdline"
CHECKS = ["cat /proc/cmdline"]
IPXE_BANNER = "Open Source Network Boot Firmware"
# TCG on a loaded 2-core machine: OVMF's PXE, iPXE, the stub and the small image's kernel to the marker
# (measured here: 20 s to the marker alone, 13-26 s to each refusal with four side by side)
BOOT_TIMEOUT = 300
REFUSE_TIMEOUT = 240


@dataclass(frozen=True)
class Material:
    keys: secureboot.Keys
    snp_signed: Path
    snp_unsigned: Path
    uki_unsigned: Path
    uki_signed: Path


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    if os.geteuid() != 0:
        pytest.skip("a network namespace with a tap device for qemu needs root")
    d = tmp_path_factory.mktemp("secureboot")
    keys = secureboot.test_keys()
    image = boot_image()
    initramfs = _qemu.concat_initrds([image.initramfs, _testhook.hook_cpio(CHECKS)], d / "initramfs")
    uki = secureboot.build_uki(image.kernel, [initramfs], UKI_CMDLINE, d / "netboot.unsigned.efi")
    snp = ipxe_binaries()["snponly.efi"]
    return Material(keys, secureboot.sign(snp, d / "snponly.signed.efi", keys), snp, uki,
                    secureboot.sign(uki, d / "netboot.signed.efi", keys))


def uki_dist(dest: Path, uki: bytes) -> Path:
    """A dist/ for the router's TFTP whose boot.ipxe boots ``netboot.efi`` (``uki``) after checking its sha256."""
    return make_dist(dest, f"tftp://{ROUTER}", files={UKI: uki}, boot_ipxe=uki_script(uki))


def uki_script(uki: bytes) -> str:
    digest = hashlib.sha256(uki).hexdigest()
    return f"""#!ipxe
# test boot.ipxe (UKI): iPXE's own sha256 check, then the firmware's signature check
set base tftp://{ROUTER}
kernel ${{base}}/{UKI} || goto failed
sha256sum --set got {UKI} || goto failed
iseq ${{got}} {digest} || goto failed
echo netboot: sha256 of every image checked
boot ||
:failed
echo {_ipxe.FAILED_MARKER}
"""


@dataclass
class Boot:
    out: _vm.BootResult
    served: list[str]
    seconds: float


def netboot(tmp: Path, index: int, snp: Path, uki: bytes, *, marker: str, timeout: float) -> Boot:
    """One Secure Boot node behind its own peer router in its own namespace: deploy a dist/ with ``uki`` and
    ``snp`` as the UEFI iPXE binary, then boot until ``marker``."""
    tmp.mkdir(parents=True, exist_ok=True)
    lan = Lan(f"nb26-{os.getpid()}-{index}")
    with Peer(tmp / "peer") as peer:
        peer.add_row("/ip/dhcp-server/network", address=NET, gateway=ROUTER, **{"dns-server": ROUTER})
        res = deploy(tmp / "w", peer, uki_dist(tmp / "dist", uki), **DHCP, rb4011_ipxe_snp=str(snp))
        assert res.rc == 0, res.stdout[-4000:]
        result(res)
        try:
            lan.up()
            peer.serve_lan(lan, DhcpModel("keep", "first"))
            peer.transfers.clear()
            accel = _qemu.pick_accel()
            argv = netboot_argv(lan, tmp, uefi=True, accel=accel,
                                secure_vars=secureboot.enrolled_vars(secureboot.test_keys(), tmp / "OVMF_VARS.fd"))
            t0 = time.monotonic()
            out = _vm.run_vm(argv, marker=marker, timeout=timeout, accel=accel, checks=CHECKS,
                             console_log=tmp / "console.log")
            return Boot(out, [t.request for t in peer.transfers if t.error is None], time.monotonic() - t0)
        finally:
            lan.down()


def test_signed_ipxe_and_signed_uki_boot_with_the_ukis_command_line(material: Material, tmp_path: Path) -> None:
    b = netboot(tmp_path, 0, material.snp_signed, material.uki_signed.read_bytes(), marker=_testhook.DEFAULT_MARKER,
                timeout=BOOT_TIMEOUT)
    assert b.out.ok, f"{b.out.reason}\n{b.out.tail(60)}\nTFTP: {b.served}"
    assert IPXE_BANNER in b.out.console and "netboot: sha256 of every image checked" in b.out.console
    assert secureboot.IPXE_REFUSED not in b.out.console and secureboot.BDS_REFUSED not in b.out.console
    assert b.served[0] == "snponly.efi" and b.served[1] == "boot.ipxe" and b.served[2].endswith(UKI), b.served
    cmdline = b.out.checks[0]["output"]
    assert cmdline is not None and str(cmdline).strip() == UKI_CMDLINE, b.out.checks
    print(f"Secure Boot: signed snponly.efi + signed UKI -> marker after {b.out.seconds_to_marker:.0f}s "
          f"(kernel -> marker {b.out.kernel_to_marker:.0f}s, {b.out.accel}); TFTP {b.served}")


@dataclass(frozen=True)
class Refusal:
    name: str
    snp: Path
    uki: bytes
    marker: str  # the refusal on the console


def refusals(material: Material, tmp: Path) -> list[Refusal]:
    flipped = bytearray(material.uki_signed.read_bytes())
    offset, size = secureboot.section_range(bytes(flipped), ".linux")
    flipped[offset + size // 2] ^= 0x01
    other = secureboot.sign(material.uki_unsigned, tmp / "netboot.other.efi", secureboot.other_key(tmp / "other"))
    good = material.uki_signed.read_bytes()
    return [
        Refusal("uki-byte-flipped", material.snp_signed, bytes(flipped), secureboot.IPXE_REFUSED),
        Refusal("uki-unsigned", material.snp_signed, material.uki_unsigned.read_bytes(), secureboot.IPXE_REFUSED),
        Refusal("uki-other-key", material.snp_signed, other.read_bytes(), secureboot.IPXE_REFUSED),
        Refusal("ipxe-unsigned", material.snp_unsigned, good, secureboot.BDS_REFUSED),
    ]


def test_the_firmware_refuses_what_the_db_key_did_not_sign(material: Material, tmp_path: Path) -> None:
    """The refusals boot side by side (one namespace, router and VM each): each stops at the firmware's refusal
    and no kernel starts."""
    cases = refusals(material, tmp_path)
    got: dict[str, Boot | BaseException] = {}

    def one(i: int, case: Refusal) -> None:
        try:
            got[case.name] = netboot(tmp_path / case.name, i + 1, case.snp, case.uki, marker=case.marker,
                                     timeout=REFUSE_TIMEOUT)
        except BaseException as exc:  # noqa: BLE001 - reported below, per case
            got[case.name] = exc

    t0 = time.monotonic()
    threads = [threading.Thread(target=one, args=(i, c), name=c.name) for i, c in enumerate(cases)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    problems = []
    for case in cases:
        b = got[case.name]
        if isinstance(b, BaseException):
            problems.append(f"{case.name}: {type(b).__name__}: {b}")
            continue
        c = b.out.console
        print(f"{case.name}: {'refused' if b.out.ok else 'NOT refused'} after {b.seconds:.0f}s; TFTP {b.served}")
        if not b.out.ok:
            problems.append(f"{case.name}: no {case.marker!r}: {b.out.reason}\n{b.out.tail(40)}\nTFTP {b.served}")
        elif "Linux version" in c or "EFI stub" in c:
            problems.append(f"{case.name}: a kernel started\n{b.out.tail(40)}")
        elif case.marker == secureboot.BDS_REFUSED:
            # the firmware refused iPXE itself: it never ran, so boot.ipxe was never fetched
            if IPXE_BANNER in c or b.served != ["snponly.efi"] or "BdsDxe: failed to load" not in c:
                problems.append(f"{case.name}: iPXE ran\n{b.out.tail(40)}\nTFTP {b.served}")
        elif not (IPXE_BANNER in c and "netboot: sha256 of every image checked" in c
                  and any(r.endswith(UKI) for r in b.served)):
            # iPXE fetched the UKI and its own sha256 check passed: the refusal is the firmware's
            problems.append(f"{case.name}: refused before the firmware's check\n{b.out.tail(40)}\nTFTP {b.served}")
    print(f"refusals side by side: {wall:.0f}s wall")
    assert not problems, "\n\n".join(problems)
