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
from dataclasses import dataclass

from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import NetbootError

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
        name = ERROR_NAMES.get(code, f"error {code}")
        super().__init__(f"TFTP {request}: the server answered ERROR {code} ({name}): {text!r}"
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


def fetch(host: str, request: str, *, port: int = PORT, blksize: int | None = IPXE_BLKSIZE, tsize: bool = True,
          timeout: float = 2.0, retries: int = 5, keep: int = 0) -> Fetched:
    """Read ``request`` from ``host``; ``blksize`` None or 512 asks for no block size option (RFC 1350 only).

    Each wait is ``timeout`` seconds; the read request (or the last ACK) is sent again up to ``retries`` times.
    ``keep`` bytes of the start of the file are returned in ``head``.
    """
    host = socket.gethostbyname(host)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    digest = hashlib.sha256()
    head = bytearray()
    size = blocks = 0
    expected = 1  # the absolute number of the next block
    size_in_use = DEFAULT_BLKSIZE
    announced: int | None = None
    server: tuple[str, int] | None = None
    rolled = False
    t0 = time.monotonic()
    last = _rrq(request, blksize, tsize)
    dest: tuple[str, int] = (host, port)
    try:
        tries = 0
        while True:
            s.sendto(last, dest)
            try:
                while True:
                    pkt, frm = s.recvfrom(65536)
                    if (server is None and frm[0] == host) or server == frm:
                        break
                    if server is not None and frm != server:  # RFC 1350: another TID gets error 5, no abort
                        s.sendto(struct.pack("!HH", ERROR, 5) + b"Unknown transfer ID\0", frm)
            except TimeoutError:
                tries += 1
                if tries > retries:
                    raise TftpTimeout(request, timeout * (retries + 1), blocks, server is not None) from None
                continue
            tries = 0
            if len(pkt) < 4:
                continue
            op = struct.unpack("!H", pkt[:2])[0]
            if op == ERROR:
                code = struct.unpack("!H", pkt[2:4])[0]
                raise TftpRefused(request, code, pkt[4:].split(b"\0")[0].decode(errors="replace"), blocks)
            if server is None:
                server = frm
                dest = frm
            if op == OACK and blocks == 0:
                opts = _oack(pkt)
                if "blksize" in opts:
                    size_in_use = int(opts["blksize"])
                    if blksize is None or size_in_use > blksize or size_in_use < 8:
                        s.sendto(struct.pack("!HH", ERROR, 8) + b"blksize not as asked\0", dest)
                        raise TftpProtocolError(f"TFTP {request}: the server chose blksize {size_in_use}, asked "
                                                f"for {blksize}", request=request)
                if "tsize" in opts and opts["tsize"].isdigit():
                    announced = int(opts["tsize"])
                last = struct.pack("!HH", ACK, 0)
                continue
            if op != DATA:
                continue
            n = struct.unpack("!H", pkt[2:4])[0]
            if n == expected % 65536:
                data = pkt[4:]
                digest.update(data)
                if len(head) < keep:
                    head += data[: keep - len(head)]
                size += len(data)
                blocks += 1
                if expected >= 65536 and n == 0:
                    rolled = True
                expected += 1
                last = struct.pack("!HH", ACK, n)
                if len(data) < size_in_use:
                    s.sendto(last, dest)
                    return Fetched(request, size, digest.hexdigest(), size_in_use, blocks,
                                   time.monotonic() - t0, rolled, announced, bytes(head))
            # a duplicate of the previous block: ACK it again (``last`` already is that ACK)
    finally:
        s.close()


def source_address(host: str, port: int = PORT) -> str:
    """The controller's own address toward ``host`` (what a TFTP server's ``ip-addresses`` sees); no packet is sent."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((host, port))
        return str(s.getsockname()[0])
    finally:
        s.close()
