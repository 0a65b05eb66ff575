"""Compression specs, kernel-config checks and the compressors' real output (decoded by the CLI tools)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
from pathlib import Path
from typing import IO, cast

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _compress as compress
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError

PAYLOAD = b"".join(b"line %d of a cpio-like payload with some repetition\n" % (i % 5000) for i in range(60000))


def compress_bytes(spec: compress.CompressionSpec, data: bytes = PAYLOAD) -> bytes:
    bio = io.BytesIO()
    out = compress.HashingWriter(bio)
    with compress.compressor(spec, cast(IO[bytes], out)) as c:
        for i in range(0, len(data), 100_000):
            c.write(data[i:i + 100_000])
    assert out.count == len(bio.getvalue())
    assert out.sha256.hexdigest() == hashlib.sha256(bio.getvalue()).hexdigest()
    return bio.getvalue()


@pytest.mark.parametrize(
    ("method", "tool"),
    [("zstd", ["zstd", "-dc", "--long=27"]), ("gzip", ["gzip", "-dc"]), ("xz", ["xz", "-dc"]), ("none", ["cat"])],
)
def test_cli_tools_decode_every_method(method: str, tool: list[str]) -> None:
    spec = compress.make_spec(method, 3 if method != "none" else None, 27 if method == "zstd" else None, 0)
    blob = compress_bytes(spec)
    assert subprocess.run(tool, input=blob, capture_output=True, check=True).stdout == PAYLOAD
    assert compress_bytes(spec) == blob  # deterministic


def test_zstd_long_window_is_in_the_frame(tmp_path: Path) -> None:
    f = tmp_path / "x.zst"
    f.write_bytes(compress_bytes(compress.make_spec("zstd", 3, 27, 2)))
    info = subprocess.run(["zstd", "-lv", str(f)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"Window Size:\s+128 MiB", info), info
    assert "Check: XXH64" in info


def test_xz_uses_crc32_the_kernel_understands(tmp_path: Path) -> None:
    f = tmp_path / "x.xz"
    f.write_bytes(compress_bytes(compress.make_spec("xz", 1)))
    info = subprocess.run(["xz", "-lvv", str(f)], capture_output=True, text=True, check=True).stdout
    assert "CRC32" in info and "CRC64" not in info


def test_gzip_header_has_no_time_nor_name() -> None:
    blob = compress_bytes(compress.make_spec("gzip", 6))
    assert blob[4:8] == b"\0\0\0\0" and blob[3] & 0x08 == 0  # MTIME 0, no FNAME flag


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("zstd", 0), r"invalid for zstd: use 1-22"),
        (("zstd", 23), r"invalid for zstd: use 1-22 \(20-22 are zstd's --ultra levels\)"),
        (("gzip", 10), r"invalid for gzip: use 1-9"),
        (("xz", -1), r"invalid for xz: use 0-9"),
        (("lz4", None), r"not supported; use one of zstd, gzip, xz, none"),
        (("gzip", 6, 20), r"window_log only applies to zstd"),
        (("zstd", 19, 9), r"too small"),
        (("zstd", 19, None, -2), r"threads -2 is negative"),
    ],
)
def test_bad_options_are_refused(args: tuple[object, ...], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        compress.make_spec(*args)  # type: ignore[arg-type]


def test_window_28_is_refused_with_the_kernel_reason() -> None:
    with pytest.raises(ConfigError) as err:
        compress.make_spec("zstd", 19, 28)
    msg = str(err.value)
    assert "window_log 28" in msg and "kernel's zstd decoder" in msg and "2^27" in msg and "<= 27" in msg


def test_ultra_levels_and_window_27_are_accepted() -> None:
    spec = compress.make_spec("zstd", 22, 27, 0)
    assert spec.describe() == "zstd -22 --ultra --long=27 -T0"
    assert compress.make_spec("zstd").level == 19 and compress.make_spec("gzip").level == 9


def test_kernel_config_values_and_an_unreadable_config_named(tmp_path: Path) -> None:
    cfg = tmp_path / "config-virt"
    cfg.write_text("# comment\nCONFIG_RD_ZSTD=y\nCONFIG_MODULE_COMPRESS_ZSTD=m\n# CONFIG_RD_XZ is not set\n"
                   'CONFIG_LOCALVERSION="-virt"\n')
    assert compress.read_kernel_config(cfg) == {"CONFIG_RD_ZSTD": "y", "CONFIG_MODULE_COMPRESS_ZSTD": "m",
                                                "CONFIG_LOCALVERSION": '"-virt"'}
    with pytest.raises(NetbootError, match=f"cannot read the kernel config {tmp_path}/missing"):
        compress.read_kernel_config(tmp_path / "missing")


def test_progress_lines_go_to_the_log(tmp_path: Path) -> None:
    log = tmp_path / "progress.log"
    out = compress.HashingWriter(cast(IO[bytes], open(os.devnull, "wb")))
    p = compress.Progress(log, 1000, out, interval=0.0)
    out.count = 100
    p(400)
    final = p.close(1000)
    lines = log.read_text().splitlines()
    assert "in       0.0 MiB ( 40.0 %)" in lines[0] and lines[-1] == final and "100.0 %" in final
    out.raw.close()


def test_job_size_one_job_per_worker_when_the_archive_fits_the_window() -> None:
    two = compress.make_spec("zstd", 19, 27, 2)
    assert compress.job_size(two, 83_030_016) == 40 << 20  # two jobs of whole MiB covering the archive
    assert compress.job_size(compress.make_spec("zstd", 19, 27, 4), 83_030_016) == 20 << 20
    assert compress.job_size(two, 1000) == 1 << 20  # never below 1 MiB
    spec = compress.make_spec("zstd", 19, 27, 0)
    assert compress.job_size(spec, 473_000_000) == 0  # libzstd's default: parallel jobs
    assert compress.job_size(compress.make_spec("zstd", 19), 1000) == 0
    assert compress.job_size(spec, None) == 0


@pytest.mark.parametrize("method", ["gzip", "zstd", "xz"])
def test_decompressor_drains_one_member_and_returns_what_follows(method: str) -> None:
    """Our own compressor's output (the kernel-compatible settings) is read back member by member."""
    member = compress_bytes(compress.make_spec(method, 3 if method != "xz" else 1))
    assert compress.sniff(member[:6]) == method
    follows = b"070701" + b"0" * 20
    data = member + follows
    chunks = [data[i:i + 4096] for i in range(0, len(data), 4096)]
    unpacked, consumed, rest = compress.drain(compress.decompressor(method), iter(chunks))
    assert (unpacked, consumed) == (len(PAYLOAD), len(member))
    assert rest and follows.startswith(rest)  # the bytes after the member in the last chunk read


def test_sniff_and_unknown_methods() -> None:
    assert compress.sniff(b"070701") is None and compress.sniff(b"") is None
    with pytest.raises(ConfigError, match="cannot decompress 'lz4'"):
        compress.decompressor("lz4")
