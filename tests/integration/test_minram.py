"""minimum_ram of the real Alpine linux-virt kernel and the fixture initramfs (downloaded material)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import zstandard

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._minram import (
    MIB,
    bzimage_init_size,
    minimum_ram,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from tests.fixtures.bootimage import boot_image


def test_minimum_ram_of_the_fixture_image() -> None:
    image = boot_image()
    init_size = bzimage_init_size(image.kernel)
    assert 16 * MIB < init_size < 128 * MIB
    need = minimum_ram(image.kernel, [image.initramfs])
    unpacked = len(gzip.decompress(image.initramfs.read_bytes()))
    assert need["unpacked_bytes"] == unpacked
    assert need["initrd_bytes"] == image.initramfs.stat().st_size
    total = init_size + image.initramfs.stat().st_size + unpacked + 32 * 1024 + 48 * MIB
    assert need["minimum_mib"] == -(-total // MIB)
    assert need["limited_by"] == "unpack"
    with pytest.raises(ConfigError, match="not an x86 bzImage"):
        bzimage_init_size(image.initramfs)


def test_minimum_ram_tmpfs_cap(tmp_path: Path) -> None:
    """A big unpacked tree is limited by the initramfs tmpfs (50 % of RAM) unless the cmdline lifts the cap."""
    image = boot_image()
    big = tmp_path / "big.zst"
    big.write_bytes(zstandard.ZstdCompressor(level=1).compress(b"\0" * (400 * MIB)))
    capped = minimum_ram(image.kernel, [big])
    assert capped["limited_by"] == "initramfs tmpfs cap"
    init_size = bzimage_init_size(image.kernel)
    expected = int((400 * MIB / 0.5 + big.stat().st_size + init_size + 8 * MIB) * 64 / 63)
    assert capped["minimum_mib"] == -(-expected // MIB)  # ~ 2 x unpacked + kernel + initrd + page structs
    wider = minimum_ram(image.kernel, [big], "console=ttyS0 initramfs_options=size=95%")
    assert wider["tmpfs_cap"] == 0.95 and wider["limited_by"] == "unpack"
    assert minimum_ram(image.kernel, [big], "root=/dev/ram0")["tmpfs_cap"] == 1.0
