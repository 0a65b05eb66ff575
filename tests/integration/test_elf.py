"""_elf on the real Alpine (musl) busybox of the quicksand image (downloaded material)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _elf
from tests.fixtures.material import QuicksandImage


def test_elf_strippable_detection(alpine: QuicksandImage, tmp_path: Path) -> None:
    busybox = alpine.root / "bin/busybox"
    assert _elf.is_elf(busybox) and not _elf.strippable(busybox)  # Alpine ships stripped binaries
    assert _elf.interpreter(busybox) == "/lib/ld-musl-x86_64.so.1"
    debug = tmp_path / "busybox"
    (tmp_path / "dbg").write_bytes(b"\0" * 4096)
    subprocess.run(["objcopy", "--add-section", f".debug_info={tmp_path / 'dbg'}", str(busybox), str(debug)],
                   check=True)
    assert _elf.strippable(debug)
    assert not _elf.is_elf(alpine.root / "etc/passwd")
    # the same file claiming another processor (like device firmware in ELF form) is left alone
    foreign = tmp_path / "scp.img"
    data = bytearray(debug.read_bytes())
    data[18:20] = (243).to_bytes(2, "little")  # e_machine = RISC-V
    foreign.write_bytes(bytes(data))
    assert _elf.is_elf(foreign) and not _elf.strippable(foreign)
