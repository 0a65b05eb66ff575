# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Minimal ELF reading: section names/contents (``.modinfo`` of kernel modules), the program interpreter, and whether a
userland ELF still carries symbols or debug info worth stripping. Pure Python, no external tools."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeAlias

if TYPE_CHECKING:
    import mmap

ELF_MAGIC = b"\x7fELF"
ET_REL, ET_EXEC, ET_DYN = 1, 2, 3
PT_INTERP = 3


@dataclass(frozen=True)
class Section:
    name: str
    offset: int
    size: int
    type: int


@dataclass(frozen=True)
class ElfInfo:
    elf_type: int
    machine: int
    sections: tuple[Section, ...]
    interp: str | None


Data: TypeAlias = "bytes | mmap.mmap"  # a string: module_utils are checked for Pythons before 3.10 too


class _Header(NamedTuple):
    endian: str  # struct byte order
    is64: bool
    elf_type: int
    machine: int
    phoff: int
    shoff: int
    phentsize: int
    phnum: int
    shentsize: int
    shnum: int
    shstrndx: int


def _header(data: Data) -> _Header | None:
    """The ELF header's fields the readers use; None if ``data`` is not ELF or too short for its header."""
    if len(data) < 52 or data[:4] != ELF_MAGIC:
        return None
    is64 = data[4] == 2
    e = "<" if data[5] == 1 else ">"
    try:
        etype, machine, _ver, _entry, phoff, shoff, _flags, _ehsize, phentsize, phnum, shentsize, shnum, shstrndx = (
            struct.unpack_from(e + ("HHIQQQIHHHHHH" if is64 else "HHIIIIIHHHHHH"), data, 16))
    except struct.error:
        return None
    return _Header(e, is64, etype, machine, phoff, shoff, phentsize, phnum, shentsize, shnum, shstrndx)


def _segments(data: Data, hdr: _Header) -> Iterator[tuple[int, int, int, int]]:
    """(type, file offset, virtual address, file size) of each program header (``struct.error`` if truncated)."""
    e = hdr.endian
    for i in range(hdr.phnum if hdr.phoff else 0):
        base = hdr.phoff + i * hdr.phentsize
        if hdr.is64:
            ptype, _pf, poff, vaddr, _pa, pfilesz = struct.unpack_from(e + "IIQQQQ", data, base)
        else:
            ptype, poff, vaddr, _pa, pfilesz = struct.unpack_from(e + "IIIII", data, base)
        yield ptype, poff, vaddr, pfilesz


def _interp(data: Data, poff: int, pfilesz: int) -> str:
    return bytes(data[poff:poff + pfilesz]).rstrip(b"\0").decode("latin-1")


def parse(data: Data) -> ElfInfo | None:
    """Section table and interpreter of an ELF image held in memory; None if ``data`` is not ELF."""
    hdr = _header(data)
    if hdr is None:
        return None
    e, is64 = hdr.endian, hdr.is64
    try:
        raw: list[tuple[int, int, int, int]] = []
        for i in range(hdr.shnum if hdr.shoff else 0):
            base = hdr.shoff + i * hdr.shentsize
            if is64:
                name, stype, _fl, _addr, off, size = struct.unpack_from(e + "IIQQQQ", data, base)
            else:
                name, stype, _fl, _addr, off, size = struct.unpack_from(e + "IIIIII", data, base)
            raw.append((name, stype, off, size))
        names = b""
        if raw and hdr.shstrndx < len(raw):
            _n, _t, soff, ssize = raw[hdr.shstrndx]
            names = data[soff:soff + ssize]
        sections = tuple(
            Section(names[n:names.find(b"\0", n)].decode("latin-1") if names else "", off, size, stype)
            for n, stype, off, size in raw
        )
        interp = None
        for ptype, poff, _vaddr, pfilesz in _segments(data, hdr):
            if ptype == PT_INTERP:
                interp = _interp(data, poff, pfilesz)
    except struct.error:
        return None
    return ElfInfo(hdr.elf_type, hdr.machine, sections, interp)


def section_bytes(data: Data, info: ElfInfo, name: str) -> bytes | None:
    return next((data[s.offset:s.offset + s.size] for s in info.sections if s.name == name), None)


def modinfo_from_elf(data: Data) -> list[tuple[str, str]]:
    """``key=value`` pairs of a (decompressed) kernel module's ``.modinfo`` section, in order."""
    info = parse(data)
    if info is None:
        return []
    sec = section_bytes(data, info, ".modinfo")
    if not sec:
        return []
    return [(k.decode("utf-8", "replace"), v.decode("utf-8", "replace"))
            for k, sep, v in (item.partition(b"=") for item in sec.split(b"\0")) if sep]


def read_head(path: Path, size: int = 64) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(size)


def is_elf(path: Path) -> bool:
    try:
        return read_head(path, 4) == ELF_MAGIC
    except OSError:
        return False


def interpreter(path: Path) -> str | None:
    info = parse(path.read_bytes())
    return info.interp if info else None


EM_386 = 3
EM_X86_64 = 62


def strippable(path: Path, machines: tuple[int, ...] = (EM_X86_64, EM_386)) -> bool:
    """True for an executable or shared object of one of ``machines`` (what the host's binutils strip handles) that
    still has a symbol table or debug sections. ELF files for other processors (device firmware) are left alone."""
    data = path.read_bytes()
    info = parse(data)
    if info is None or info.elf_type not in (ET_EXEC, ET_DYN) or info.machine not in machines:
        return False
    return any(
        s.name == ".symtab" or s.name.startswith((".debug", ".zdebug")) for s in info.sections
    )


PT_LOAD = 1
PT_DYNAMIC = 2
DT_NULL, DT_NEEDED, DT_STRTAB, DT_RPATH, DT_RUNPATH = 0, 1, 5, 15, 29
DT_VERDEF, DT_VERDEFNUM, DT_VERNEED, DT_VERNEEDNUM = 0x6FFFFFFC, 0x6FFFFFFD, 0x6FFFFFFE, 0x6FFFFFFF


@dataclass(frozen=True)
class Dynamic:
    """What the dynamic loader needs to run an ELF: its interpreter, ``DT_NEEDED`` libraries and search paths."""

    elf_type: int
    machine: int
    interp: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]  # DT_RUNPATH when present, else DT_RPATH (split on ':')
    versions_needed: tuple[tuple[str, str], ...] = ()  # (library, version) of DT_VERNEED, e.g. (libc.so.6, GLIBC_2.34)
    versions_defined: tuple[str, ...] = ()  # DT_VERDEF names (a library's own soname first, then GLIBC_2.2.5, ...)


def _verneed(data: Data, e: str, at: int, count: int, string: Callable[[int], str]) -> list[tuple[str, str]]:
    """Elf_Verneed entries (vn_version, vn_cnt, vn_file, vn_aux, vn_next) with their Elf_Vernaux (hash, flags,
    other, vna_name, vna_next): the same layout in ELF32 and ELF64."""
    out: list[tuple[str, str]] = []
    for _unused in range(min(count, 4096)):
        _ver, cnt, vn_file, vn_aux, vn_next = struct.unpack_from(e + "HHIII", data, at)
        aux = at + vn_aux
        for _i in range(min(cnt, 4096)):
            _hash, _flags, _other, vna_name, vna_next = struct.unpack_from(e + "IHHII", data, aux)
            out.append((string(vn_file), string(vna_name)))
            if not vna_next:
                break
            aux += vna_next
        if not vn_next:
            break
        at += vn_next
    return out


def _verdef(data: Data, e: str, at: int, count: int, string: Callable[[int], str]) -> list[str]:
    """Elf_Verdef entries (version, flags, ndx, cnt, hash, vd_aux, vd_next); the first Elf_Verdaux names each."""
    out: list[str] = []
    for _unused in range(min(count, 4096)):
        _ver, _flags, _ndx, cnt, _hash, vd_aux, vd_next = struct.unpack_from(e + "HHHHIII", data, at)
        if cnt:
            (vda_name,) = struct.unpack_from(e + "I", data, at + vd_aux)
            out.append(string(vda_name))
        if not vd_next:
            break
        at += vd_next
    return out


def _dynamic_tags(data: Data, e: str, is64: bool, off: int, size: int) -> tuple[list[int], dict[int, int]]:
    """The entries of PT_DYNAMIC up to DT_NULL: the DT_NEEDED values (string table offsets), and tag -> value of the
    others (the last of a repeated tag)."""
    needed: list[int] = []
    tags: dict[int, int] = {}
    entsize, fmt_d = (16, e + "qQ") if is64 else (8, e + "iI")
    for pos in range(off, off + size - entsize + 1, entsize):
        tag, val = struct.unpack_from(fmt_d, data, pos)
        if tag == DT_NULL:
            break
        if tag == DT_NEEDED:
            needed.append(val)
        else:
            tags[tag] = val
    return needed, tags


def _file_offset(loads: list[tuple[int, int, int]], addr: int | None) -> int | None:
    """The file offset of virtual address ``addr`` in one of the PT_LOAD segments ``(vaddr, offset, filesz)``."""
    for vaddr, poff, filesz in loads:
        if addr is not None and vaddr <= addr < vaddr + filesz:
            return poff + (addr - vaddr)
    return None


def dynamic(data: Data) -> Dynamic | None:
    """The dynamic-linking view of an ELF image; None if ``data`` is not ELF (or too damaged to read)."""
    hdr = _header(data)
    if hdr is None:
        return None
    e = hdr.endian
    try:
        loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
        dyn: tuple[int, int] | None = None
        interp = None
        for ptype, poff, vaddr, pfilesz in _segments(data, hdr):
            if ptype == PT_LOAD:
                loads.append((vaddr, poff, pfilesz))
            elif ptype == PT_DYNAMIC:
                dyn = (poff, pfilesz)
            elif ptype == PT_INTERP:
                interp = _interp(data, poff, pfilesz)
        needed, tags = _dynamic_tags(data, e, hdr.is64, *dyn) if dyn is not None else ([], {})
        strtab = _file_offset(loads, tags.get(DT_STRTAB))
        if strtab is None:
            return Dynamic(hdr.elf_type, hdr.machine, interp, (), (), (), ())
        table = strtab

        def string(at: int) -> str:
            start = table + at
            end = data.find(b"\0", start)
            return bytes(data[start:end if end >= 0 else len(data)]).decode("latin-1")

        chosen = tags.get(DT_RUNPATH, tags.get(DT_RPATH))
        rpath = tuple(p for p in string(chosen).split(":") if p) if chosen is not None else ()
        vneed = _file_offset(loads, tags.get(DT_VERNEED))
        vdef = _file_offset(loads, tags.get(DT_VERDEF))
        vn = tuple(_verneed(data, e, vneed, tags.get(DT_VERNEEDNUM, 0), string)) if vneed is not None else ()
        vd = tuple(_verdef(data, e, vdef, tags.get(DT_VERDEFNUM, 0), string)) if vdef is not None else ()
        return Dynamic(hdr.elf_type, hdr.machine, interp, tuple(string(o) for o in needed), rpath, vn, vd)
    except struct.error:
        return None
