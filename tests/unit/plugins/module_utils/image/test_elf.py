"""_elf on real ELF files from the host and from gcc: class/machine/type, the program interpreter, DT_NEEDED and the
search path, sections (``.modinfo``), strip candidates, and damaged input (not ELF, truncated) read as "no ELF"."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _elf

TRUE = Path("/bin/true")  # dynamically linked PIE (ET_DYN) with an interpreter
BUSYBOX = Path("/bin/busybox")  # Debian busybox-static: ET_EXEC, no interpreter, no DT_NEEDED
LIBZ = Path("/lib/x86_64-linux-gnu/libz.so.1")  # a shared library: ET_DYN, no interpreter, needs libc

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build ELF files")


def readelf(*args: str) -> str:
    return subprocess.run(["readelf", "-W", *args], capture_output=True, text=True, check=True).stdout


def readelf_needed(path: Path) -> list[str]:
    return [ln.split("[", 1)[1].rstrip("]") for ln in readelf("-d", str(path)).splitlines() if "(NEEDED)" in ln]


def readelf_interp(path: Path) -> str | None:
    for ln in readelf("-l", str(path)).splitlines():
        if "Requesting program interpreter:" in ln:
            return ln.split(":", 1)[1].strip().rstrip("]")
    return None


def gcc(tmp: Path, name: str, source: str, *flags: str, libs: tuple[str, ...] = ()) -> Path:
    (tmp / f"{name}.c").write_text(source)
    subprocess.run(["gcc", *flags, "-o", str(tmp / name), str(tmp / f"{name}.c"), *libs], check=True)
    return tmp / name


@pytest.mark.parametrize("path", [TRUE, BUSYBOX, LIBZ], ids=["true", "busybox-static", "libz"])
def test_host_binaries_match_readelf(path: Path) -> None:
    data = path.read_bytes()
    info = _elf.parse(data)
    dyn = _elf.dynamic(data)
    assert info is not None and dyn is not None
    assert _elf.is_elf(path)
    assert info.machine == dyn.machine == _elf.EM_X86_64
    assert info.interp == dyn.interp == _elf.interpreter(path) == readelf_interp(path)
    assert list(dyn.needed) == readelf_needed(path)
    names = [s.name for s in info.sections]
    assert ".text" in names and ".shstrtab" in names
    shstr = _elf.section_bytes(data, info, ".shstrtab")
    assert shstr is not None and b".text\0" in shstr


def test_dynamic_executable_static_executable_and_library_differ_as_the_loader_sees_them() -> None:
    true = _elf.dynamic(TRUE.read_bytes())
    busybox = _elf.dynamic(BUSYBOX.read_bytes())
    libz = _elf.dynamic(LIBZ.read_bytes())
    assert true is not None and busybox is not None and libz is not None
    assert (true.elf_type, true.interp, true.needed) == (_elf.ET_DYN, "/lib64/ld-linux-x86-64.so.2", ("libc.so.6",))
    assert (busybox.elf_type, busybox.interp, busybox.needed, busybox.rpath) == (_elf.ET_EXEC, None, (), ())
    assert (libz.elf_type, libz.interp, libz.needed) == (_elf.ET_DYN, None, ("libc.so.6",))


@needs_gcc
@pytest.mark.parametrize(("dtags", "tag"), [("--enable-new-dtags", "RUNPATH"), ("--disable-new-dtags", "RPATH")])
def test_needed_libraries_and_search_path_of_a_built_program(tmp_path: Path, dtags: str, tag: str) -> None:
    prog = gcc(tmp_path, "prog", "#include <math.h>\nint main(int c, char **v){return (int)sqrt((double)c);}\n",
               "-O0", f"-Wl,{dtags}", "-Wl,-rpath,/opt/netboot/lib:/usr/local/lib", libs=("-lm",))
    assert f"({tag})" in readelf("-d", str(prog))
    dyn = _elf.dynamic(prog.read_bytes())
    assert dyn is not None
    assert dyn.needed == tuple(readelf_needed(prog))
    assert set(dyn.needed) == {"libm.so.6", "libc.so.6"}
    assert dyn.rpath == ("/opt/netboot/lib", "/usr/local/lib")


@needs_gcc
def test_strippable_only_while_symbols_remain(tmp_path: Path) -> None:
    prog = gcc(tmp_path, "hello", "int main(void){return 0;}\n", "-g", "-O0")
    assert _elf.strippable(prog)
    subprocess.run(["strip", "--strip-debug", str(prog)], check=True)
    assert _elf.strippable(prog)  # .symtab is still there
    subprocess.run(["strip", str(prog)], check=True)
    assert not _elf.strippable(prog)
    assert not _elf.strippable(TRUE)  # Debian ships it stripped


@needs_gcc
def test_strippable_skips_other_processors_and_object_files(tmp_path: Path) -> None:
    prog = gcc(tmp_path, "hello", "int main(void){return 0;}\n", "-g", "-O0")
    assert not _elf.strippable(prog, machines=(_elf.EM_386,))  # e.g. firmware for another processor
    obj = tmp_path / "hello.o"
    subprocess.run(["gcc", "-g", "-c", "-o", str(obj), str(tmp_path / "hello.c")], check=True)
    info = _elf.parse(obj.read_bytes())
    assert info is not None and info.elf_type == _elf.ET_REL
    assert not _elf.strippable(obj)


MODINFO_C = """
static const char a[] __attribute__((section(".modinfo"), used, aligned(1))) = "license=GPL";
static const char b[] __attribute__((section(".modinfo"), used, aligned(1))) = "alias=pci:v00008086d0000A0E8sv*";
static const char c[] __attribute__((section(".modinfo"), used, aligned(1))) = "depends=mfd-core,i2c-core";
static const char d[] __attribute__((section(".modinfo"), used, aligned(1))) = "description=a=b with an equals sign";
"""


@needs_gcc
@pytest.mark.parametrize("bits", ["-m64", "-m32"])
def test_modinfo_of_a_relocatable_object_in_order(tmp_path: Path, bits: str) -> None:
    (tmp_path / "mod.c").write_text(MODINFO_C)
    obj = tmp_path / "mod.o"
    subprocess.run(["gcc", bits, "-fno-toplevel-reorder", "-c", "-o", str(obj), str(tmp_path / "mod.c")], check=True)
    data = obj.read_bytes()
    info = _elf.parse(data)
    assert info is not None
    assert info.elf_type == _elf.ET_REL
    assert info.machine == (_elf.EM_X86_64 if bits == "-m64" else _elf.EM_386)
    assert data[4] == (2 if bits == "-m64" else 1)  # ELFCLASS64 / ELFCLASS32
    assert _elf.modinfo_from_elf(data) == [
        ("license", "GPL"),
        ("alias", "pci:v00008086d0000A0E8sv*"),
        ("depends", "mfd-core,i2c-core"),
        ("description", "a=b with an equals sign"),
    ]
    assert _elf.modinfo_from_elf(TRUE.read_bytes()) == []  # no .modinfo section


def test_big_endian_32_bit_interpreter() -> None:
    """A minimal ELF32 MSB executable (as for a big-endian MIPS router) with a PT_INTERP program header."""
    interp = b"/lib/ld-musl-mips.so.1\0"
    phoff = 52
    header = b"\x7fELF" + bytes([1, 2, 1]) + bytes(9)
    header += struct.pack(">HHIIIIIHHHHHH", _elf.ET_EXEC, 8, 1, 0x400000, phoff, 0, 0, 52, 32, 1, 40, 0, 0)
    data_off = phoff + 32
    phdr = struct.pack(">IIIIIIII", _elf.PT_INTERP, data_off, 0, 0, len(interp), len(interp), 4, 1)
    image = header + phdr + interp
    info = _elf.parse(image)
    dyn = _elf.dynamic(image)
    assert info is not None and dyn is not None
    assert (info.elf_type, info.machine, info.interp, info.sections) == (_elf.ET_EXEC, 8, "/lib/ld-musl-mips.so.1", ())
    assert (dyn.interp, dyn.needed, dyn.rpath) == ("/lib/ld-musl-mips.so.1", (), ())


@pytest.mark.parametrize("keep", [4, 20, 52, 64, 1000, 4096], ids=lambda n: f"first-{n}-bytes")
def test_a_truncated_binary_reads_as_not_elf(tmp_path: Path, keep: int) -> None:
    """A cut-off file (an interrupted copy) is never half-read: parse/dynamic say None, nothing is stripped."""
    cut = tmp_path / "true.cut"
    cut.write_bytes(TRUE.read_bytes()[:keep])
    assert _elf.is_elf(cut)  # the magic is there ...
    assert _elf.parse(cut.read_bytes()) is None  # ... but the tables are not
    assert _elf.dynamic(cut.read_bytes()) is None
    assert _elf.interpreter(cut) is None
    assert not _elf.strippable(cut)


def test_non_elf_and_unreadable_paths(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho not elf\n" * 10)
    assert not _elf.is_elf(script)
    assert _elf.parse(script.read_bytes()) is None
    assert _elf.dynamic(script.read_bytes()) is None
    assert _elf.modinfo_from_elf(script.read_bytes()) == []
    assert not _elf.is_elf(tmp_path / "missing")
    assert not _elf.is_elf(tmp_path)  # a directory
    assert _elf.read_head(TRUE, 4) == _elf.ELF_MAGIC
