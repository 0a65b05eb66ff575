# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The RAM an image needs to get running: ``minimum_ram(kernel, initrds, cmdline)`` (kernel init size + compressed +
unpacked initrds + decoder window, and the initramfs tmpfs cap of 50 % of RAM) and ``check_ram_limit``.
Decompression is ``_compress``'s; an initrd with a make_initramfs record is not decompressed.
"""

from __future__ import annotations

import itertools
import os
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _compress, _cpio, _cpioread, _initramfs
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._qemu import parse_memory
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError

MIB = 1024 * 1024
KERNEL_BASELINE = 48 * MIB  # kernel data structures, page tables, early userspace (measured order of magnitude)


def bzimage_init_size(kernel: Path) -> int:
    """The bzImage header's ``init_size``: memory the kernel needs from its load address to start."""
    with open(kernel, "rb") as fh:
        head = fh.read(0x270)
    if len(head) < 0x264 or head[0x202:0x206] != b"HdrS":
        raise ConfigError(f"{kernel} is not an x86 bzImage (no HdrS header)")
    (version,) = struct.unpack_from("<H", head, 0x206)
    if version < 0x20A:
        return os.path.getsize(kernel) * 4
    (init_size,) = struct.unpack_from("<I", head, 0x260)
    return int(init_size)


@dataclass
class Segment:
    kind: str  # gzip | zstd | xz | cpio
    compressed: int
    unpacked: int
    window: int


def initrd_segments(path: Path, info: Mapping[str, Any] | None = None) -> list[Segment]:
    """The concatenated archives of an initrd (compressed members and plain newc cpios): the parts of its
    make_initramfs record when it has one (``info``: the caller's hash of the file, see ``read_record``), else a
    walk of the file (decompressing it)."""
    if _initramfs.record_path(path).is_file():
        return [Segment(p["format"], p["size"], p["unpacked_size"], p["window"])
                for p in _initramfs.read_record(path, info)["parts"]]
    segments: list[Segment] = []
    with open(path, "rb") as fh:
        src = _cpioread.Stream(fh)
        while True:
            src.skip_zeros()
            head = src.peek(64)
            if not head:
                return segments
            method = _compress.sniff(head)
            if method is not None:
                chunks = itertools.chain([src.rest()], iter(lambda: fh.read(_cpio.CHUNK), b""))
                unpacked, consumed, rest = _compress.drain(_compress.decompressor(method), chunks)
                segments.append(Segment(method, consumed, unpacked, _compress.decoder_window(method, head)))
                src = _cpioread.Stream(fh, rest)
            elif head[:6] in _cpio.MAGICS:
                start = src.pos
                for _member in _cpioread.read_newc(src, what=str(path)):
                    pass
                segments.append(Segment("cpio", src.pos - start, src.pos - start, 0))
            else:
                raise ConfigError(f"{path}: unknown initrd data at a segment start ({head[:6]!r}); "
                                  "expected gzip, zstd, xz or a newc cpio")


def minimum_ram(kernel: Path, initrds: Sequence[Path], cmdline: str = "",
                known: Mapping[Path, Mapping[str, Any]] | None = None) -> dict[str, object]:
    """The RAM (MiB) needed to get the image running.

    ``unpack`` = kernel init size + every initrd as loaded (compressed) + its unpacked contents + the largest
    decoder window + a kernel baseline. The initramfs root is a tmpfs capped at 50 % of the RAM the kernel manages
    (not counting the kernel image, the loaded initrds and page structs) unless the cmdline sets
    ``initramfs_options=size=N%`` or ``root=``, so RAM must also be at least ``unpacked / cap`` + those.
    Measured on the build.yml fixture image (29.7 MB zstd, 116 MB unpacked): 272 MiB fails with "Initramfs
    unpacking failed: write error" although unpacked < 50 % of 272 MiB.
    """
    for path in (kernel, *initrds):
        if not Path(path).is_file():
            raise ConfigError(f"{path} does not exist; build the image first (playbooks/build.yml)")
    init_size = bzimage_init_size(kernel)
    segments = [s for p in initrds for s in initrd_segments(Path(p), (known or {}).get(Path(p)))]
    compressed = sum(Path(p).stat().st_size for p in initrds)
    unpacked = sum(s.unpacked for s in segments)
    window = max((s.window for s in segments), default=0)
    unpack_need = init_size + compressed + unpacked + window + KERNEL_BASELINE
    cap = 0.5
    m = re.search(r"(?:^|\s)initramfs_options=\S*size=(\d+)%", cmdline)
    if m:
        cap = int(m.group(1)) / 100
    if re.search(r"(?:^|\s)root=", cmdline):
        cap = 1.0
    # The rootfs tmpfs limit is cap x the RAM the kernel manages while unpacking: RAM minus the kernel image
    # (~init_size), the still-reserved compressed initrds and the page structs (1/64 of RAM), minus a little slack.
    tmpfs_need = int((unpacked / cap + compressed + init_size + 8 * MIB) * 64 / 63)
    need = max(unpack_need, tmpfs_need)
    return {
        "minimum_mib": -(-need // MIB),
        "kernel_init_size": init_size,
        "initrd_bytes": compressed,
        "unpacked_bytes": unpacked,
        "decoder_window": window,
        "tmpfs_cap": cap,
        "limited_by": "unpack" if unpack_need >= tmpfs_need else "initramfs tmpfs cap",
        "segments": [s.__dict__ for s in segments],
    }


def check_ram_limit(ram: Mapping[str, object], ram_limit: str | int | None) -> None:
    """Refuse an image whose ``minimum_ram`` exceeds ``ram_limit`` (e.g. the smallest node's RAM)."""
    if not ram_limit:
        return
    if int(str(ram["minimum_mib"])) > parse_memory(ram_limit):
        raise ConfigError(f"the image needs at least {ram['minimum_mib']} MiB of RAM to unpack "
                          f"(limited by {ram['limited_by']}), more than ram_limit {ram_limit}")
