# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Compression of initramfs images the Linux kernel can unpack.

* zstd through python-zstandard: levels 1-19, 20-22 ("ultra"), an optional long window (``window_log``, like
  ``zstd --long=N``; at most 27 because the kernel's decoder, ``lib/decompress_unzstd.c``, refuses larger windows and
  the boot fails with "ZSTD-compressed data is probably corrupt"), worker threads;
* gzip (levels 1-9, header mtime 0 and no file name, so the bytes are reproducible);
* xz (presets 0-9, CRC32 check: the kernel's xz decoder does not support the default CRC64);
* none.

``check_kernel_config`` reads the kernel's ``config-*`` and refuses a method the kernel cannot unpack
(``CONFIG_RD_ZSTD``/``RD_GZIP``/``RD_XZ``). ``HashingWriter`` counts and hashes the bytes that reach the file and
``Progress`` logs bytes in/out while a long compression runs.

Decompression (the one implementation): ``sniff(head)`` names the method of a stream from its magic bytes,
``decompressor(method)`` gives a streaming decoder that stops at the end of one member (``eof``/``unused_data``),
``drain(decoder, chunks)`` feeds it one member and returns what it unpacked and what follows.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import lzma
import os
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _deps
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError

try:
    import zstandard
except ImportError:
    _deps.missing("zstandard")

METHODS = ("zstd", "gzip", "xz", "none")
KERNEL_OPTION = {"zstd": "CONFIG_RD_ZSTD", "gzip": "CONFIG_RD_GZIP", "xz": "CONFIG_RD_XZ"}
DEFAULT_LEVEL = {"zstd": 19, "gzip": 9, "xz": 6, "none": 0}
LEVELS = {"zstd": (1, 22), "gzip": (1, 9), "xz": (0, 9)}
KERNEL_MAX_WINDOW_LOG = 27
MIN_WINDOW_LOG = 10
MAGIC = ((b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\xfd7zXZ\0", "xz"))


@dataclass(frozen=True)
class CompressionSpec:
    method: str = "zstd"
    level: int = 19
    window_log: int | None = None  # zstd only: long-distance matching with a 2**window_log window
    threads: int = 0  # zstd only: 0 = one worker per CPU (like -T0), N = N workers

    def describe(self) -> str:
        if self.method == "none":
            return "none"
        text = f"{self.method} -{self.level}"
        if self.method == "zstd":
            if self.level > 19:
                text += " --ultra"
            if self.window_log is not None:
                text += f" --long={self.window_log}"
            text += f" -T{self.threads}"
        return text


def make_spec(
    method: str = "zstd", level: int | None = None, window_log: int | None = None, threads: int | None = None
) -> CompressionSpec:
    """Validate options into a spec; every refusal says which option is wrong and what would work."""
    if method not in METHODS:
        raise ConfigError(f"compression {method!r} is not supported; use one of {', '.join(METHODS)}")
    if method == "none":
        return CompressionSpec(method="none", level=0)
    lvl = DEFAULT_LEVEL[method] if level is None else level
    lo, hi = LEVELS[method]
    if isinstance(lvl, bool) or not isinstance(lvl, int) or not lo <= lvl <= hi:
        extra = " (20-22 are zstd's --ultra levels)" if method == "zstd" else ""
        raise ConfigError(f"compression level {level!r} is invalid for {method}: use {lo}-{hi}{extra}")
    if window_log is not None:
        if method != "zstd":
            raise ConfigError(f"window_log only applies to zstd, not {method}; leave it unset")
        if window_log > KERNEL_MAX_WINDOW_LOG:
            raise ConfigError(
                f"window_log {window_log} (a {1 << window_log >> 20} MiB window) is too large: the kernel's zstd "
                f"decoder cannot unpack windows above 2^{KERNEL_MAX_WINDOW_LOG} (128 MiB) and the boot would fail "
                f"with 'ZSTD-compressed data is probably corrupt'; use window_log <= {KERNEL_MAX_WINDOW_LOG}"
            )
        if window_log < MIN_WINDOW_LOG:
            raise ConfigError(f"window_log {window_log} is too small: zstd needs {MIN_WINDOW_LOG}-27")
    if threads is not None and threads < 0:
        raise ConfigError(f"threads {threads} is negative: use 0 (one per CPU) or a positive count")
    return CompressionSpec(method, lvl, window_log, (threads or 0) if method == "zstd" else 0)


# ------------------------------------------------------------------------------------------- kernel config check


def read_kernel_config(config: str | os.PathLike[str]) -> dict[str, str]:
    """Every ``CONFIG_X=value`` of a kernel config (``y``, ``m`` or a value); options not set are absent."""
    try:
        text = Path(config).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise NetbootError(f"cannot read the kernel config {config}: {exc.strerror}; give a readable config") from exc
    return dict(line.partition("=")[::2] for line in map(str.strip, text.splitlines())
                if line.startswith("CONFIG_") and "=" in line)


def check_kernel_config(spec: CompressionSpec, config: str | os.PathLike[str]) -> None:
    if spec.method == "none":
        return
    option, cfg = KERNEL_OPTION[spec.method], read_kernel_config(config)
    if cfg.get(option) != "y":
        supported = [m for m, o in KERNEL_OPTION.items() if cfg.get(o) == "y"]
        raise ConfigError(
            f"the kernel cannot unpack a {spec.method} initramfs: {option} is not set in {config} (the boot would "
            f"stop with 'compression method {spec.method} not configured'); use compression: "
            f"{' or '.join(supported) or 'none'} or a kernel built with {option}=y"
        )


# ------------------------------------------------------------------------------------------------- streaming


class CountingSink(io.RawIOBase):
    """A write-only sink that keeps only the number of bytes written (to size a compressed stream)."""

    def __init__(self) -> None:
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        n = len(b)
        self.count += n
        return n


class HashingWriter:
    """A write-only file wrapper that hashes and counts what passes through (and keeps its first 32 bytes)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.count = 0
        self.head = b""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.head += bytes(data[:32 - len(self.head)])
        self.sha256.update(data)
        self.count += len(data)
        self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()

    def writable(self) -> bool:
        return True

    def close(self) -> None:  # the owner closes the raw file
        self.raw.flush()

    @property
    def closed(self) -> bool:
        return False


class Progress:
    """Logs ``in``/``out`` byte counts at most every ``interval`` seconds (to a file a user can ``tail -f``)."""

    def __init__(
        self, log_path: str | os.PathLike[str] | None, total_in: int, out: HashingWriter, interval: float = 2.0
    ) -> None:
        self.log_path = log_path
        self.total_in = total_in
        self.out = out
        self.interval = interval
        self.start = time.monotonic()
        self.last = 0.0
        self.lines: list[str] = []
        self._fh: IO[str] | None = open(log_path, "a", encoding="utf-8") if log_path else None

    def line(self, done_in: int) -> str:
        pct = 100.0 * done_in / self.total_in if self.total_in else 100.0
        ratio = self.out.count / done_in if done_in else 0.0
        return (
            f"{time.monotonic() - self.start:7.1f}s  in {done_in / 1048576:9.1f} MiB ({pct:5.1f} %)  "
            f"out {self.out.count / 1048576:8.1f} MiB  ratio {ratio:.3f}"
        )

    def __call__(self, done_in: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.emit(self.line(done_in))

    def emit(self, text: str) -> None:
        self.lines.append(text)
        if self._fh is not None:
            self._fh.write(text + "\n")
            self._fh.flush()

    def close(self, done_in: int) -> str:
        final = "done " + self.line(done_in)
        self.emit(final)
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        return final


def job_size(spec: CompressionSpec, total: int | None) -> int:
    """Bytes per zstd worker job (0 = libzstd's choice: 64 MiB for level 19 with a long window).

    An archive that fits in one long window (2^27) is split into one job per worker, so every core works and each
    job still sees the previous one through zstd's overlap: on the fixture image this is faster than
    ``zstd -19 -T0 --long=27`` and as small (64 MiB jobs left the second core mostly idle and came out larger; one
    job was smaller but single-threaded). Bigger archives keep libzstd's job size so the workers run in parallel
    and the peak RSS stays near the CLI's (128 MiB jobs measured 1.46x its RSS on 473 MB).
    """
    if spec.window_log is not None and total is not None and total <= 1 << spec.window_log:
        workers = spec.threads or os.cpu_count() or 1
        mib = 1 << 20
        return max(mib, -(-total // (workers * mib)) * mib)  # ceil(total / workers), whole MiB
    return 0


@contextlib.contextmanager
def compressor(spec: CompressionSpec, out: IO[bytes], total: int | None = None) -> Iterator[IO[bytes]]:
    """A binary writer that compresses into ``out``; the stream is finished when the context exits normally.

    ``total`` (the uncompressed size, when known) only tunes zstd's job size; it is not written in the frame.
    """
    if spec.method == "none":
        yield out
    elif spec.method == "zstd":
        params = zstandard.ZstdCompressionParameters.from_level(
            spec.level,
            window_log=spec.window_log or 0,
            enable_ldm=spec.window_log is not None,
            threads=-1 if spec.threads == 0 else spec.threads,
            job_size=job_size(spec, total),
            write_checksum=1,
        )
        cctx = zstandard.ZstdCompressor(compression_params=params)
        writer = cctx.stream_writer(out, closefd=False, write_return_read=True)
        yield writer
        writer.close()  # type: ignore[no-untyped-call]
    elif spec.method == "gzip":
        with gzip.GzipFile(filename="", mode="wb", compresslevel=spec.level, fileobj=out, mtime=0) as gz:
            yield gz  # type: ignore[misc]
    else:
        with lzma.LZMAFile(out, "wb", format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, preset=spec.level) as xz:
            yield xz


# --------------------------------------------------------------------------------------------------- decompression


class Decompressor(Protocol):
    """What ``zlib.decompressobj``, ``zstandard``'s ``decompressobj`` and ``lzma.LZMADecompressor`` have in common."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes) -> bytes: ...


def sniff(head: bytes) -> str | None:
    """``gzip``/``zstd``/``xz`` from the first bytes of a compressed stream, or None."""
    return next((method for magic, method in MAGIC if head.startswith(magic)), None)


def decoder_window(method: str, head: bytes) -> int:
    """The decoder's window (memory it needs on top of the output) for a member starting with ``head``."""
    if method == "gzip":
        return 32 * 1024
    if method == "zstd":
        return int(zstandard.get_frame_parameters(head).window_size)
    return 64 << 20  # xz: upper bound (xz -9 dictionary); the header is not parsed


def decompressor(method: str) -> Decompressor:
    """A streaming decoder for one ``gzip``, ``zstd`` or ``xz`` member (any zstd window the stream asks for)."""
    if method == "gzip":
        return zlib.decompressobj(wbits=31)
    if method == "zstd":
        dec: Decompressor = zstandard.ZstdDecompressor(max_window_size=1 << 31).decompressobj()
        return dec
    if method == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    raise ConfigError(f"cannot decompress {method!r}: use one of gzip, zstd, xz")


def drain(dec: Decompressor, chunks: Iterable[bytes]) -> tuple[int, int, bytes]:
    """Feed one member to ``dec`` until its end. Returns (bytes unpacked, compressed bytes consumed, the bytes of
    the last chunk that follow the member). Stops reading ``chunks`` at the end of the member."""
    unpacked = consumed = 0
    rest = b""
    for chunk in chunks:
        unpacked += len(dec.decompress(chunk))
        consumed += len(chunk)
        if dec.eof:
            rest = dec.unused_data
            break
    return unpacked, consumed - len(rest), rest
