# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Unified kernel images (UKI): systemd-boot's EFI stub with the kernel, initrd, command line and os-release added
as PE sections, in pure Python (no objcopy).

The stub (``linuxx64.efi.stub`` of Debian's ``systemd-boot-efi``) is a PE32+ x86-64 EFI application. The new
sections ``.osrel``, ``.cmdline``, ``.linux`` and ``.initrd`` follow the stub's last section: each VirtualAddress is
aligned to SectionAlignment, each raw data block to FileAlignment (zero padding), flagged initialized read-only
data. NumberOfSections, SizeOfImage and SizeOfInitializedData are updated and the PE checksum is recomputed (the
firmware ignores it; sbsign signs over it). Bytes after the stub's last section - the COFF symbol table Debian's
stub carries, which a loaded image never uses - are not copied (PointerToSymbolTable/NumberOfSymbols set to 0).

When the header area has no room for four more section headers, SizeOfHeaders grows by whole FileAlignment units
and every section's raw data moves by that much (PointerToRawData and the debug directory's PointerToRawData are
fixed); Debian bookworm's stub has room (0x138 bytes after its 8 headers), so that path runs only for other stubs.

The output depends only on the inputs (no timestamps): the same stub, kernel, initrds, command line and os-release
give the same bytes.
"""

from __future__ import annotations

import array
import dataclasses
import hashlib
import os
import struct
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _pe, _secureboot
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import atomic_output, sha256_file
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner


class UkiError(NetbootError):
    """A stub, kernel or image is not what a unified kernel image can be made of (or read from)."""


MACHINE_AMD64 = 0x8664
# a section header: Name, VirtualSize, VirtualAddress, SizeOfRawData, PointerToRawData, the relocation and line
# number pointers and counts (kept as they were), Characteristics
SECTION = struct.Struct("<8sIIII12sI")
SECTION_HEADER = SECTION.size
DEBUG_ENTRY = 28
# IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ
DATA_RO = 0x00000040 | 0x40000000
UKI_SECTIONS = (".osrel", ".cmdline", ".linux", ".initrd")


@dataclass
class Section:
    name: str
    virtual_size: int
    virtual_address: int
    raw_size: int
    raw_pointer: int
    header_rest: bytes
    characteristics: int

    def pack(self) -> bytes:
        return SECTION.pack(self.name.encode("ascii"), *dataclasses.astuple(self)[1:])


@dataclass
class PeImage:
    """The parsed headers of a PE32+ file (offsets into ``data``)."""

    path: Path
    data: bytes
    pe: int  # offset of "PE\0\0"
    opt: int  # offset of the optional header
    sections_at: int  # offset of the section table
    sections: list[Section] = field(default_factory=list)

    def u32(self, offset: int) -> int:
        return int(struct.unpack_from("<I", self.data, offset)[0])

    @property
    def file_alignment(self) -> int:
        return self.u32(self.opt + 36)

    @property
    def section_alignment(self) -> int:
        return self.u32(self.opt + 32)

    @property
    def size_of_headers(self) -> int:
        return self.u32(self.opt + 60)

    def directory(self, index: int) -> tuple[int, int]:
        count = self.u32(self.opt + 108)
        if index >= count:
            return 0, 0
        rva, size = struct.unpack_from("<II", self.data, self.opt + _pe.DIRECTORIES + 8 * index)
        return int(rva), int(size)

    def rva_to_offset(self, rva: int) -> int | None:
        for s in self.sections:
            if s.virtual_address <= rva < s.virtual_address + max(s.virtual_size, s.raw_size):
                delta = rva - s.virtual_address
                return s.raw_pointer + delta if delta < s.raw_size else None
        return None


@dataclass(frozen=True)
class UkiInfo:
    size: int
    sha256: str
    sections: dict[str, int]  # added section -> its size (VirtualSize)
    stub_bytes: int  # bytes of the image that come from the stub (headers and its sections)
    grew_headers: bool  # SizeOfHeaders had to grow to fit the new section headers


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment if alignment else value


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise UkiError(f"the {what} {path} does not exist; build or fetch it first") from exc
    except IsADirectoryError as exc:
        raise UkiError(f"the {what} {path} is a directory; give the file") from exc


def parse_pe(path: Path, data: bytes | None = None) -> PeImage:
    """The headers of PE32+ x86-64 file ``path``; ``UkiError`` naming it when it is anything else."""
    raw = _read(path, "EFI stub") if data is None else data
    try:
        pe, opt = _pe.headers(raw)
    except _pe.PeFormatError as e:
        raise UkiError(f"{path} is not a PE/EFI file ({e}); give systemd-boot's linuxx64.efi.stub") from None
    machine, count = struct.unpack_from("<HH", raw, pe + 4)
    (opt_size,) = struct.unpack_from("<H", raw, pe + 20)
    if machine != MACHINE_AMD64:
        raise UkiError(f"{path} is for PE machine 0x{machine:04x}, not x86-64 (0x8664); only x86-64 UKIs are "
                       "built: give the x86-64 stub (linuxx64.efi.stub)")
    if not _pe.is_pe32_plus(raw, opt):
        raise UkiError(f"{path} is not PE32+ (optional header magic is not 0x20b); give linuxx64.efi.stub")
    table = opt + opt_size
    if table + count * SECTION_HEADER > len(raw):
        raise UkiError(f"{path} is truncated: its {count} section headers run past the end of the file")
    image = PeImage(path, raw, pe, opt, table)
    for i in range(count):
        name, *fields = SECTION.unpack_from(raw, table + i * SECTION_HEADER)
        section = Section(name.rstrip(b"\0").decode("ascii", "replace"), *fields)
        if section.raw_size and section.raw_pointer + section.raw_size > len(raw):
            raise UkiError(f"{path} is truncated: section {section.name} runs past the end of the file")
        image.sections.append(section)
    return image


def pe_checksum(data: bytes | bytearray, checksum_offset: int) -> int:
    """The PE optional header's CheckSum of ``data`` (the field at ``checksum_offset`` counted as zero)."""
    buf = bytearray(data)
    buf[checksum_offset:checksum_offset + 4] = b"\0\0\0\0"
    if len(buf) % 2:
        buf.append(0)
    words = array.array("H")
    words.frombytes(bytes(buf))
    if sys.byteorder == "big":
        words.byteswap()
    total = int(sum(words))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (total + len(data)) & 0xFFFFFFFF


def read_sections(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """Every section of PE file ``path`` by name: its bytes up to VirtualSize (the padding cut off)."""
    image = parse_pe(Path(path))
    out: dict[str, bytes] = {}
    for s in image.sections:
        size = min(s.virtual_size, s.raw_size) if s.virtual_size else s.raw_size
        out[s.name] = image.data[s.raw_pointer:s.raw_pointer + size]
    return out


def uki_osrel(version_id: str, *, name: str = "Alpine netboot", pretty_name: str | None = None,
              extra: Mapping[str, str] | None = None) -> str:
    """An os-release text for a UKI's ``.osrel``: NAME, ID=alpine-netboot, VERSION_ID, PRETTY_NAME (+ ``extra``)."""
    fields = {"NAME": name, "ID": "alpine-netboot", "VERSION_ID": version_id,
              "PRETTY_NAME": pretty_name or f"{name} {version_id}", **(extra or {})}
    lines = []
    for key, value in fields.items():
        if "\n" in value or "\0" in value:
            raise UkiError(f"os-release field {key} of the UKI holds a line break or NUL: {value!r}; give one line")
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + "\n"


def _check_kernel(kernel: Path, data: bytes) -> None:
    # x86 boot protocol: "HdrS" at 0x202; an EFI-bootable bzImage is also an MZ/PE file
    if len(data) < 0x210 or data[0x202:0x206] != b"HdrS":
        raise UkiError(f"{kernel} is not an x86 Linux kernel (bzImage, no 'HdrS' boot header); give the vmlinuz")


def _grow_headers(image: PeImage, need: int) -> tuple[bytearray, list[Section], int]:
    """Headers grown to hold ``need`` bytes of header data; raw data moved by the growth. Returns the new header
    block (not yet holding the new section headers), the moved sections and the shift."""
    old = image.size_of_headers
    new = _align(need, image.file_alignment)
    first_va = min((s.virtual_address for s in image.sections), default=new)
    if new > first_va:
        raise UkiError(f"{image.path}: the section headers of a UKI need {new} header bytes, but the stub's first "
                       f"section starts at RVA 0x{first_va:x}; use systemd-boot's own linuxx64.efi.stub")
    shift = new - old
    sections = [dataclasses.replace(s, raw_pointer=s.raw_pointer + shift if s.raw_pointer else 0)
                for s in image.sections]
    headers = bytearray(image.data[:old]) + bytearray(shift)
    struct.pack_into("<I", headers, image.opt + 60, new)
    return headers, sections, shift


def build_uki_bytes(stub: Path, kernel: Path, initrds: Sequence[Path], *, cmdline: str,
                    osrel: str) -> tuple[bytes, UkiInfo]:
    """The unified kernel image's bytes (see the module docstring) and its description."""
    image = parse_pe(stub)
    _check_stub(image)
    kernel_bytes = _read(kernel, "kernel")
    _check_kernel(kernel, kernel_bytes)
    initrd = b"".join(_read(Path(p), "initrd") for p in initrds)
    payloads = {".osrel": osrel.encode(), ".cmdline": cmdline.encode(), ".linux": kernel_bytes, ".initrd": initrd}
    body, sections, shift = _stub_body(image, len(payloads))
    stub_bytes = len(body)
    next_va = _append_sections(body, sections, payloads, image.file_alignment, image.section_alignment)
    # headers: section table, counts and sizes, no COFF symbol table, checksum
    for i, s in enumerate(sections):
        body[image.sections_at + i * SECTION_HEADER:image.sections_at + (i + 1) * SECTION_HEADER] = s.pack()
    struct.pack_into("<H", body, image.pe + 6, len(sections))
    struct.pack_into("<II", body, image.pe + 12, 0, 0)  # PointerToSymbolTable, NumberOfSymbols
    init_data = struct.unpack_from("<I", body, image.opt + 8)[0]
    added_raw = sum(s.raw_size for s in sections[len(image.sections):])
    struct.pack_into("<I", body, image.opt + 8, (init_data + added_raw) & 0xFFFFFFFF)
    struct.pack_into("<I", body, image.opt + 56, next_va)  # SizeOfImage
    struct.pack_into("<I", body, image.opt + _pe.CHECKSUM, pe_checksum(body, image.opt + _pe.CHECKSUM))
    data = bytes(body)
    info = UkiInfo(size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                   sections={n: len(p) for n, p in payloads.items()}, stub_bytes=stub_bytes, grew_headers=bool(shift))
    return data, info


def _check_stub(image: PeImage) -> None:
    """The bare stub: not signed, not already a UKI."""
    sec_rva, sec_size = image.directory(_pe.DIR_SECURITY)
    if sec_rva or sec_size:
        raise UkiError(f"{image.path} already has a certificate table (it is signed); a UKI must be built from the "
                       "unsigned stub - give the stub as Debian ships it (sbattach --remove on a copy drops a "
                       "signature)")
    clash = sorted({s.name for s in image.sections} & set(UKI_SECTIONS))
    if clash:
        raise UkiError(f"{image.path} already has section(s) {', '.join(clash)}: it is a UKI, not the bare stub; give "
                       "linuxx64.efi.stub")


def _stub_body(image: PeImage, added: int) -> tuple[bytearray, list[Section], int]:
    """The stub's headers and section data as they lie in the file, with room for ``added`` more section headers
    (the data moved by the returned shift when the headers had to grow), and its sections."""
    falign, salign = image.file_alignment, image.section_alignment
    if not falign or not salign or falign & (falign - 1) or salign & (salign - 1):
        raise UkiError(f"{image.path} has invalid alignments (FileAlignment {falign}, SectionAlignment {salign})")
    table_end = image.sections_at + SECTION_HEADER * (len(image.sections) + added)
    shift = 0
    if table_end > image.size_of_headers:
        header_block, sections, shift = _grow_headers(image, table_end)
    else:
        header_block, sections = bytearray(image.data[:image.size_of_headers]), list(image.sections)
    end_raw = max((s.raw_pointer + s.raw_size for s in sections if s.raw_size), default=len(header_block))
    end_raw = max(end_raw, len(header_block))
    body = bytearray(end_raw)
    body[:len(header_block)] = header_block
    for old, new in zip(image.sections, sections, strict=True):
        if old.raw_size:
            body[new.raw_pointer:new.raw_pointer + new.raw_size] = image.data[old.raw_pointer:old.raw_pointer
                                                                              + old.raw_size]
    if shift:  # the debug directory's entries point at file offsets too
        dbg_rva, dbg_size = image.directory(_pe.DIR_DEBUG)
        at = image.rva_to_offset(dbg_rva) if dbg_rva else None
        if at is not None:
            for i in range(dbg_size // DEBUG_ENTRY):
                field_at = at + shift + i * DEBUG_ENTRY + 24
                (pointer,) = struct.unpack_from("<I", body, field_at)
                if pointer:
                    struct.pack_into("<I", body, field_at, pointer + shift)
    return body, sections, shift


def _append_sections(body: bytearray, sections: list[Section], payloads: Mapping[str, bytes], falign: int,
                     salign: int) -> int:
    """``payloads`` appended to ``body`` as new sections after the last one (added to ``sections``); returns the
    image's new SizeOfImage."""
    vend = max((s.virtual_address + max(s.virtual_size, s.raw_size) for s in sections), default=0)
    next_va = _align(vend, salign)
    next_raw = _align(len(body), falign)
    body.extend(bytes(next_raw - len(body)))
    for name, payload in payloads.items():
        raw_size = _align(len(payload), falign)
        sections.append(Section(name, len(payload), next_va, raw_size, next_raw if raw_size else 0, bytes(12), DATA_RO))
        body.extend(payload)
        body.extend(bytes(raw_size - len(payload)))
        next_raw += raw_size
        next_va = _align(next_va + max(len(payload), 1), salign)
    return next_va


def build_uki(stub: Path, kernel: Path, initrds: Sequence[Path], *, cmdline: str, osrel: str, dest: Path) -> UkiInfo:
    """Build the UKI of ``stub`` + ``kernel`` + ``initrds`` (concatenated in order, e.g. microcode cpio first) +
    ``cmdline`` + ``osrel`` and write it to ``dest`` (temp name + rename; rewritten only when its bytes differ)."""
    data, info = build_uki_bytes(stub, kernel, initrds, cmdline=cmdline, osrel=osrel)
    with atomic_output(dest, 0o644, only_if_changed=True) as out:
        out.write(data)
    return info


@dataclass(frozen=True)
class SignedUki:
    changed: bool
    size: int  # of the signed UKI at dest (in check mode, when it would change: of the unsigned image)
    sha256: str
    uki: UkiInfo  # the unsigned image


def build_signed_uki(stub: Path, kernel: Path, initrds: Sequence[Path], *, cmdline: str, osrel: str, dest: Path,
                     key_pem: bytes | str, cert: Path, runner: Runner, check_mode: bool = False) -> SignedUki:
    """Build the UKI, sign it with ``key_pem``/``cert`` (``_secureboot.sign_efi``: temp name, sbverify, rename) into
    ``dest``. ``dest`` is left alone (changed=False) when it already is this image signed by ``cert``'s key."""
    data, info = build_uki_bytes(stub, kernel, initrds, cmdline=cmdline, osrel=osrel)
    if check_mode:
        _secureboot.sign_efi_check(cert)
        if not _secureboot.signed_copy_current(data, dest, cert, runner):
            return SignedUki(True, info.size, info.sha256, info)
        changed = False
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.unsigned.", suffix=".tmp") as fh:
            fh.write(data)
            fh.flush()
            changed = _secureboot.sign_efi(fh.name, dest, key_pem, cert, runner)
    return SignedUki(changed, dest.stat().st_size, sha256_file(dest) or "", info)
