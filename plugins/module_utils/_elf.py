"""Minimal ELF reading: section names/contents (``.modinfo`` of kernel modules), the program interpreter, and whether a
userland ELF still carries symbols or debug info worth stripping. Pure Python, no external tools."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

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


def _fmt(data: Data) -> tuple[str, bool] | None:
    if len(data) < 52 or data[:4] != ELF_MAGIC:
        return None
    is64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    return endian, is64


def parse(data: Data) -> ElfInfo | None:
    """Section table and interpreter of an ELF image held in memory; None if ``data`` is not ELF."""
    fmt = _fmt(data)
    if fmt is None:
        return None
    e, is64 = fmt
    try:
        if is64:
            (etype, machine, _ver, _entry, phoff, shoff, _flags, _ehsize, phentsize, phnum, shentsize, shnum,
             shstrndx) = struct.unpack_from(e + "HHIQQQIHHHHHH", data, 16)
        else:
            (etype, machine, _ver, _entry, phoff, shoff, _flags, _ehsize, phentsize, phnum, shentsize, shnum,
             shstrndx) = struct.unpack_from(e + "HHIIIIIHHHHHH", data, 16)
        raw: list[tuple[int, int, int, int]] = []
        for i in range(shnum if shoff else 0):
            base = shoff + i * shentsize
            if is64:
                name, stype, _fl, _addr, off, size = struct.unpack_from(e + "IIQQQQ", data, base)
            else:
                name, stype, _fl, _addr, off, size = struct.unpack_from(e + "IIIIII", data, base)
            raw.append((name, stype, off, size))
        names = b""
        if raw and shstrndx < len(raw):
            _n, _t, soff, ssize = raw[shstrndx]
            names = data[soff:soff + ssize]
        sections = tuple(
            Section(names[n:names.find(b"\0", n)].decode("latin-1") if names else "", off, size, stype)
            for n, stype, off, size in raw
        )
        interp = None
        for i in range(phnum if phoff else 0):
            base = phoff + i * phentsize
            if is64:
                ptype, _pf, poff, _va, _pa, pfilesz = struct.unpack_from(e + "IIQQQQ", data, base)
            else:
                ptype, poff, _va, _pa, pfilesz = struct.unpack_from(e + "IIIII", data, base)
            if ptype == PT_INTERP:
                interp = data[poff:poff + pfilesz].rstrip(b"\0").decode("latin-1")
    except struct.error:
        return None
    return ElfInfo(etype, machine, sections, interp)


def section_bytes(data: Data, info: ElfInfo, name: str) -> bytes | None:
    for s in info.sections:
        if s.name == name:
            return data[s.offset:s.offset + s.size]
    return None


def modinfo_from_elf(data: Data) -> list[tuple[str, str]]:
    """``key=value`` pairs of a (decompressed) kernel module's ``.modinfo`` section, in order."""
    info = parse(data)
    if info is None:
        return []
    sec = section_bytes(data, info, ".modinfo")
    if not sec:
        return []
    out: list[tuple[str, str]] = []
    for item in sec.split(b"\0"):
        if b"=" in item:
            k, _unused, v = item.partition(b"=")
            out.append((k.decode("utf-8", "replace"), v.decode("utf-8", "replace")))
    return out


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


@dataclass(frozen=True)
class Dynamic:
    """What the dynamic loader needs to run an ELF: its interpreter, ``DT_NEEDED`` libraries and search paths."""

    elf_type: int
    machine: int
    interp: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]  # DT_RUNPATH when present, else DT_RPATH (split on ':')


def dynamic(data: Data) -> Dynamic | None:
    """The dynamic-linking view of an ELF image; None if ``data`` is not ELF (or too damaged to read)."""
    fmt = _fmt(data)
    if fmt is None:
        return None
    e, is64 = fmt
    try:
        if is64:
            etype, machine, _v, _en, phoff, _sh, _fl, _eh, phentsize, phnum = struct.unpack_from(
                e + "HHIQQQIHHH", data, 16)
        else:
            etype, machine, _v, _en, phoff, _sh, _fl, _eh, phentsize, phnum = struct.unpack_from(
                e + "HHIIIIIHHH", data, 16)
        loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
        dyn: tuple[int, int] | None = None
        interp = None
        for i in range(phnum if phoff else 0):
            base = phoff + i * phentsize
            if is64:
                ptype, _pf, poff, vaddr, _pa, pfilesz = struct.unpack_from(e + "IIQQQQ", data, base)
            else:
                ptype, poff, vaddr, _pa, pfilesz = struct.unpack_from(e + "IIIII", data, base)
            if ptype == PT_LOAD:
                loads.append((vaddr, poff, pfilesz))
            elif ptype == PT_DYNAMIC:
                dyn = (poff, pfilesz)
            elif ptype == PT_INTERP:
                interp = bytes(data[poff:poff + pfilesz]).rstrip(b"\0").decode("latin-1")
        needed_off: list[int] = []
        rpath_off: int | None = None
        runpath_off: int | None = None
        strtab_addr: int | None = None
        if dyn is not None:
            off, size = dyn
            entsize, fmt_d = (16, e + "qQ") if is64 else (8, e + "iI")
            for pos in range(off, off + size - entsize + 1, entsize):
                tag, val = struct.unpack_from(fmt_d, data, pos)
                if tag == DT_NULL:
                    break
                if tag == DT_NEEDED:
                    needed_off.append(val)
                elif tag == DT_STRTAB:
                    strtab_addr = val
                elif tag == DT_RPATH:
                    rpath_off = val
                elif tag == DT_RUNPATH:
                    runpath_off = val
        strtab = None
        if strtab_addr is not None:
            for vaddr, poff, filesz in loads:
                if vaddr <= strtab_addr < vaddr + filesz:
                    strtab = poff + (strtab_addr - vaddr)
                    break

        def string(table: int, at: int) -> str:
            start = table + at
            end = data.find(b"\0", start)
            return bytes(data[start:end if end >= 0 else len(data)]).decode("latin-1")

        needed: tuple[str, ...] = ()
        rpath: tuple[str, ...] = ()
        if strtab is not None:
            needed = tuple(string(strtab, o) for o in needed_off)
            chosen = runpath_off if runpath_off is not None else rpath_off
            if chosen is not None:
                rpath = tuple(p for p in string(strtab, chosen).split(":") if p)
    except struct.error:
        return None
    return Dynamic(etype, machine, interp, needed, rpath)
