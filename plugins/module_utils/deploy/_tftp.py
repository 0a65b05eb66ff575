# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""A TFTP read client (RFC 1350; options RFC 2347, blksize RFC 2348, tsize RFC 2349) for checking what a boot server
serves: the bytes are hashed as they arrive (a 160 MB initramfs is never held in memory), the block counter may wrap
(block 65,535 is followed by 0, what iPXE and RouterOS' ``allow-rollover`` do), lost packets are retried.

Errors are typed so a caller can tell an answer from silence: ``TftpRefused`` is a TFTP ERROR packet (``code``
1 "file not found", 2 "access violation", ...), ``TftpTimeout`` means nothing (or nothing more) came back, with the
block it waited for. Importable without Ansible.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6
IPXE_BLKSIZE = 1432  # TFTP_MAX_BLKSIZE in iPXE's include/ipxe/tftp.h
DEFAULT_BLKSIZE = 512  # RFC 1350
PORT = 69
ERROR_NAMES = {0: "not defined", 1: "file not found", 2: "access violation", 3: "disk full",
               4: "illegal TFTP operation", 5: "unknown transfer ID", 6: "file already exists", 7: "no such user",
               8: "option negotiation refused"}


class TftpError(NetbootError):
    """A TFTP read failed; ``request`` is the name asked for, ``blocks`` the DATA blocks received before."""

    def __init__(self, message: str, *, request: str, blocks: int = 0) -> None:
        super().__init__(message)
        self.request = request
        self.blocks = blocks


class TftpRefused(TftpError):
    """The server answered with an ERROR packet."""

    def __init__(self, request: str, code: int, text: str, blocks: int = 0) -> None:
        self.code = code
        self.text = text
        super().__init__(f"TFTP {request}: the server answered ERROR {code} ({self.kind}): {text!r}"
                         + (f" after {blocks} blocks" if blocks else ""), request=request, blocks=blocks)

    @property
    def kind(self) -> str:
        """``file not found``, ``access violation``, ... (RFC 1350's name of the code)."""
        return ERROR_NAMES.get(self.code, f"error {self.code}")


class TftpTimeout(TftpError):
    """No answer at all (``blocks == 0``, ``answered`` false) or the transfer stopped after ``blocks`` blocks."""

    def __init__(self, request: str, seconds: float, blocks: int, answered: bool) -> None:
        self.answered = answered
        what = (f"stopped after {blocks} blocks" if answered else "no answer to the read request")
        super().__init__(f"TFTP {request}: {what} within {seconds:g}s (retries exhausted)", request=request,
                         blocks=blocks)


class TftpProtocolError(TftpError):
    """The server sent something a TFTP client cannot accept (e.g. a block size larger than asked for)."""


@dataclass(frozen=True)
class Fetched:
    request: str
    size: int
    sha256: str
    blksize: int  # what was used (the server's OACK, else 512)
    blocks: int  # DATA packets received (the last one short)
    seconds: float
    rolled_over: bool  # the 16-bit block counter wrapped to 0
    tsize: int | None  # the size the server announced (RFC 2349), if it did
    head: bytes = b""  # the first bytes (up to ``keep`` asked for), e.g. to read a script

    @property
    def mbps(self) -> float:
        return self.size / 1e6 / max(self.seconds, 1e-6)


def _rrq(name: str, blksize: int | None, tsize: bool) -> bytes:
    pkt = struct.pack("!H", RRQ) + name.encode() + b"\0octet\0"
    if blksize is not None and blksize != DEFAULT_BLKSIZE:
        pkt += b"blksize\0" + str(blksize).encode() + b"\0"
    if tsize:
        pkt += b"tsize\0" + b"0\0"
    return pkt


def _oack(pkt: bytes) -> dict[str, str]:
    f = pkt[2:].split(b"\0")
    return {f[i].decode(errors="replace").lower(): f[i + 1].decode(errors="replace") for i in range(0, len(f) - 1, 2)}


@dataclass
class _Transfer:
    """One read's state: what was received so far, from which server port (its TID)."""

    request: str
    host: str
    keep: int
    digest: Any = field(default_factory=hashlib.sha256)
    head: bytearray = field(default_factory=bytearray)
    size: int = 0
    blocks: int = 0
    expected: int = 1  # the absolute number of the next block
    blksize: int = DEFAULT_BLKSIZE
    announced: int | None = None
    server: tuple[str, int] | None = None
    rolled: bool = False
    finished: bool = False

    def receive(self, s: socket.socket) -> tuple[bytes, tuple[str, int]]:
        """The next packet from the server; another TID gets error 5 and no abort (RFC 1350)."""
        while True:
            pkt, frm = s.recvfrom(65536)
            if (self.server is None and frm[0] == self.host) or self.server == frm:
                return pkt, frm
            if self.server is not None and frm != self.server:
                s.sendto(struct.pack("!HH", ERROR, 5) + b"Unknown transfer ID\0", frm)

    def options(self, pkt: bytes, asked: int | None, s: socket.socket, dest: tuple[str, int]) -> None:
        """The server's OACK: its block size (refused if larger than ``asked``) and the announced size."""
        opts = _oack(pkt)
        if "blksize" in opts:
            self.blksize = int(opts["blksize"])
            if asked is None or self.blksize > asked or self.blksize < 8:
                s.sendto(struct.pack("!HH", ERROR, 8) + b"blksize not as asked\0", dest)
                raise TftpProtocolError(f"TFTP {self.request}: the server chose blksize {self.blksize}, asked "
                                        f"for {asked}", request=self.request)
        if "tsize" in opts and opts["tsize"].isdigit():
            self.announced = int(opts["tsize"])

    def data(self, pkt: bytes) -> bytes | None:
        """The ACK of a DATA packet if it is the next block (a short one finishes the read); None for a duplicate
        of the previous block (whose ACK is sent again)."""
        n = struct.unpack("!H", pkt[2:4])[0]
        if n != self.expected % 65536:
            return None
        data = pkt[4:]
        self.digest.update(data)
        if len(self.head) < self.keep:
            self.head += data[: self.keep - len(self.head)]
        self.size += len(data)
        self.blocks += 1
        if self.expected >= 65536 and n == 0:
            self.rolled = True
        self.expected += 1
        self.finished = len(data) < self.blksize
        return struct.pack("!HH", ACK, n)


def fetch(host: str, request: str, *, port: int = PORT, blksize: int | None = IPXE_BLKSIZE, tsize: bool = True,
          timeout: float = 2.0, retries: int = 5, keep: int = 0) -> Fetched:
    """Read ``request`` from ``host``; ``blksize`` None or 512 asks for no block size option (RFC 1350 only).

    Each wait is ``timeout`` seconds; the read request (or the last ACK) is sent again up to ``retries`` times.
    ``keep`` bytes of the start of the file are returned in ``head``.
    """
    host = socket.gethostbyname(host)
    t = _Transfer(request, host, keep)
    last = _rrq(request, blksize, tsize)
    dest: tuple[str, int] = (host, port)
    tries = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        t0 = time.monotonic()
        while True:
            s.sendto(last, dest)
            try:
                pkt, frm = t.receive(s)
            except TimeoutError:
                tries += 1
                if tries > retries:
                    raise TftpTimeout(request, timeout * (retries + 1), t.blocks, t.server is not None) from None
                continue
            tries = 0
            if len(pkt) < 4:
                continue
            op = struct.unpack("!H", pkt[:2])[0]
            if op == ERROR:
                code = struct.unpack("!H", pkt[2:4])[0]
                raise TftpRefused(request, code, pkt[4:].split(b"\0")[0].decode(errors="replace"), t.blocks)
            if t.server is None:
                t.server = dest = frm
            if op == OACK and t.blocks == 0:
                t.options(pkt, blksize, s, dest)
                last = struct.pack("!HH", ACK, 0)
            elif op == DATA and (ack := t.data(pkt)) is not None:
                last = ack
                if t.finished:
                    s.sendto(last, dest)
                    return Fetched(request, t.size, t.digest.hexdigest(), t.blksize, t.blocks,
                                   time.monotonic() - t0, t.rolled, t.announced, bytes(t.head))


def source_address(host: str, port: int = PORT) -> str:
    """The controller's own address toward ``host`` (what a TFTP server's ``ip-addresses`` sees); no packet is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        return str(s.getsockname()[0])
