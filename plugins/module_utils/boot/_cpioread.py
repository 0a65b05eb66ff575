# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Reading newc cpio archives member by member (``read_newc``), also several concatenated ones (``Stream``); the
writer is ``_cpio``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _cpio
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError


class Stream:
    """A binary reader with a look-ahead buffer (an offset into it, so small reads copy only what they return), for
    walking concatenated archives: ``peek`` at a magic, ``skip_zeros`` between archives, ``rest`` once done."""

    def __init__(self, fh: IO[bytes], first: bytes = b"") -> None:
        self.fh = fh
        self.buf = bytearray(first)
        self.off = 0
        self.pos = 0  # bytes consumed

    def _fill(self, n: int) -> None:
        if self.off and self.off >= len(self.buf) // 2:
            del self.buf[: self.off]
            self.off = 0
        while len(self.buf) - self.off < n:
            more = self.fh.read(max(n - (len(self.buf) - self.off), _cpio.CHUNK))
            if not more:
                break
            self.buf += more

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return bytes(self.buf[self.off: self.off + n])

    def read(self, n: int) -> bytes:
        out = self.peek(n)
        self.off += len(out)
        self.pos += len(out)
        return out

    def rest(self) -> bytes:
        """The bytes read ahead from ``fh`` but not consumed."""
        return bytes(self.buf[self.off:])

    def skip_zeros(self) -> int:
        skipped = 0
        while True:
            self._fill(1)
            if self.off >= len(self.buf) or self.buf[self.off] != 0:
                return skipped
            self.off += 1
            self.pos += 1
            skipped += 1


@dataclass(frozen=True)
class Member:
    name: str
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    ino: int
    devmajor: int
    devminor: int
    rdevmajor: int
    rdevminor: int
    data: bytes
    head: bytes  # the exact header, name and name padding as read

    @property
    def raw(self) -> bytes:
        """The member's newc bytes: header, name, padding, body, padding."""
        return self.head + self.data + b"\0" * (_cpio.pad4(len(self.data)) - len(self.data))


def read_newc(fh: IO[bytes] | Stream, *, what: str = "cpio archive", trailer: bool = False) -> Iterator[Member]:
    """Members of one newc archive, read from ``fh`` exactly up to the end of ``TRAILER!!!`` (yielded only when
    ``trailer``), so that what follows it stays unread. One member's body is in memory at a time."""
    offset = 0

    def read_exact(n: int) -> bytes:
        nonlocal offset
        b = fh.read(n)
        while len(b) < n:  # decompressors may return less than asked
            more = fh.read(n - len(b))
            if not more:
                raise NetbootError(f"{what}: truncated cpio archive at byte {offset + len(b)}; rebuild it")
            b += more
        offset += n
        return b

    while True:
        hdr = read_exact(110)
        if hdr[:6] not in _cpio.MAGICS:
            raise NetbootError(f"{what}: not a newc cpio archive (magic {hdr[:6]!r} at byte {offset - 110})")
        f = {n: int(hdr[6 + 8 * i: 14 + 8 * i], 16) for i, n in enumerate(_cpio.FIELDS)}
        namesize, size = f.pop("namesize"), f.pop("size")
        del f["check"]
        head = hdr + read_exact(_cpio.pad4(110 + namesize) - 110)  # name, its NUL and the padding to 4 bytes
        name = head[110: 110 + namesize - 1]
        data = read_exact(size)
        read_exact(_cpio.pad4(size) - size)
        if name != _cpio.TRAILER or trailer:
            yield Member(name=os.fsdecode(name), data=data, head=head, **f)
        if name == _cpio.TRAILER:
            return
