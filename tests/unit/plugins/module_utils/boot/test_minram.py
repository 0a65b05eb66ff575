"""minimum_ram without downloaded material: the initrd walk (gzip/zstd/xz members and plain cpios, decompressed by
_compress), the bzImage header, an initramfs measured from its record, the tmpfs cap and the ram_limit check. The real kernel is in
tests/integration/test_minram.py."""

from __future__ import annotations

import gzip
import lzma
import os
from pathlib import Path

import pytest
import zstandard

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _initramfs
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._compress import make_spec
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._minram import (
    KERNEL_BASELINE,
    MIB,
    bzimage_init_size,
    check_ram_limit,
    initrd_segments,
    minimum_ram,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._qemu import concat_initrds
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._testhook import hook_cpio
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from tests.fixtures.bootimage import bzimage_header as bzimage


def test_concat_and_segments_of_a_mixed_initrd(tmp_path: Path) -> None:
    """gzip + zstd (window 2^20) + xz + plain cpio concatenated like iPXE/the kernel see them."""
    hook = hook_cpio(["true"])
    payload = os.urandom(300_000) + b"\0" * 700_000
    gz = gzip.compress(payload)
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=20)
    zc = zstandard.ZstdCompressor(compression_params=params).compressobj()  # streamed: no content size in header
    zs = zc.compress(payload) + zc.flush()
    (tmp_path / "a.gz").write_bytes(gz)
    xz = lzma.compress(payload, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    out = concat_initrds([tmp_path / "a.gz", zs, xz, hook], tmp_path / "all")
    raw = out.read_bytes()
    assert raw.startswith(gz) and len(raw) % 4 == 0
    segs = initrd_segments(out)
    assert [(s.kind, s.unpacked) for s in segs] == [("gzip", len(payload)), ("zstd", len(payload)),
                                                    ("xz", len(payload)), ("cpio", len(hook))]
    assert [s.window for s in segs[:2]] == [32 * 1024, 1 << 20]
    assert segs[0].compressed == len(gz) and segs[1].compressed == len(zs) and segs[2].compressed == len(xz)
    (tmp_path / "junk").write_bytes(b"NOTANARCHIVE" * 3)
    with pytest.raises(ConfigError, match="unknown initrd data"):
        initrd_segments(tmp_path / "junk")


def test_bzimage_header(tmp_path: Path) -> None:
    assert bzimage_init_size(bzimage(tmp_path / "k", 40 * MIB)) == 40 * MIB
    assert bzimage_init_size(bzimage(tmp_path / "old", 1, version=0x209)) == 4 * 0x1000  # no init_size: 4 x file
    (tmp_path / "initrd").write_bytes(gzip.compress(b"x" * 4096))
    with pytest.raises(ConfigError, match="not an x86 bzImage"):
        bzimage_init_size(tmp_path / "initrd")


def test_minimum_ram_sums_the_parts_and_the_tmpfs_cap_applies(tmp_path: Path) -> None:
    kernel = bzimage(tmp_path / "vmlinuz", 30 * MIB)
    small = tmp_path / "small.gz"
    small.write_bytes(gzip.compress(b"\0" * MIB))
    need = minimum_ram(kernel, [small])
    total = 30 * MIB + small.stat().st_size + MIB + 32 * 1024 + KERNEL_BASELINE
    assert need["minimum_mib"] == -(-total // MIB) and need["limited_by"] == "unpack"
    big = tmp_path / "big.zst"
    big.write_bytes(zstandard.ZstdCompressor(level=1).compress(b"\0" * (400 * MIB)))
    capped = minimum_ram(kernel, [big])
    assert capped["limited_by"] == "initramfs tmpfs cap" and capped["tmpfs_cap"] == 0.5
    expected = int((400 * MIB / 0.5 + big.stat().st_size + 30 * MIB + 8 * MIB) * 64 / 63)
    assert capped["minimum_mib"] == -(-expected // MIB)
    wider = minimum_ram(kernel, [big], "console=ttyS0 initramfs_options=size=95%")
    assert wider["tmpfs_cap"] == 0.95 and wider["limited_by"] == "unpack"
    assert minimum_ram(kernel, [big], "root=/dev/ram0")["tmpfs_cap"] == 1.0
    with pytest.raises(ConfigError, match=f"{tmp_path}/missing does not exist; build the image first"):
        minimum_ram(kernel, [tmp_path / "missing"])


def test_check_ram_limit_names_the_need_and_the_limit() -> None:
    ram = {"minimum_mib": 300, "limited_by": "unpack"}
    check_ram_limit(ram, "1G")
    check_ram_limit(ram, None)
    check_ram_limit(ram, "300M")
    with pytest.raises(ConfigError, match=r"needs at least 300 MiB of RAM to unpack \(limited by unpack\), more than "
                                          r"ram_limit 256M"):
        check_ram_limit(ram, "256M")
    with pytest.raises(ConfigError, match="memory 'lots'"):
        check_ram_limit(ram, "lots")


@pytest.mark.parametrize("spec", [("gzip", 1, None), ("zstd", 3, 20), ("xz", 1, None), ("none", None, None)])
def test_an_initramfs_with_a_record_is_measured_from_it_as_the_walk_would(
        tmp_path: Path, spec: tuple[str, int | None, int | None]) -> None:
    """make_initramfs's record gives the segments a walk of the file gives (microcode concatenated in front)."""
    (tmp_path / "root/etc").mkdir(parents=True)
    (tmp_path / "root/etc/data").write_bytes(os.urandom(50_000) + b"\0" * 200_000)
    (tmp_path / "config").write_text("CONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=y\nCONFIG_RD_XZ=y\n")
    ucode = (1).to_bytes(4, "little") * 2 + bytes(12) + (1).to_bytes(4, "little") + bytes(2024)
    (tmp_path / "ucode.bin").write_bytes(ucode)
    dest = tmp_path / "dist" / "initramfs"
    _initramfs.build_initramfs(_initramfs.InitramfsRequest(
        src=str(tmp_path / "root"), dest=str(dest), compression=make_spec(*spec), source_date_epoch=0,
        kernel_config=str(tmp_path / "config"), microcode=[str(tmp_path / "ucode.bin")], microcode_concat=True))
    recorded = initrd_segments(dest)
    # the caller's hash of the file (the ledger's) is taken as is: the file is not hashed again
    info = {"path": str(dest), "sha256": _initramfs.RECORD.load(_initramfs.record_path(dest))["sha256"],
            "size": dest.stat().st_size}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_initramfs, "sha256_file", lambda path: pytest.fail(f"{path} hashed again"))
        assert initrd_segments(dest, info) == recorded
        with pytest.raises(ConfigError, match="does not describe"):
            initrd_segments(dest, {**info, "sha256": "0" * 64})
    _initramfs.record_path(dest).unlink()
    assert recorded == initrd_segments(dest) and [s.kind for s in recorded] == ["cpio", spec[0].replace("none", "cpio")]
