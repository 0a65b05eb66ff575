# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Ask a DHCP server what it answers each kind of netboot client, without taking a lease, and follow the answers the
way the client's own code reads them.

A probe is one DHCPDISCOVER from a locally administered MAC of the checker's own (one per client kind, derived from
a seed, so reruns reuse the same offer instead of exhausting the pool), with the client's option 93 (client
architecture, RFC 4578), 60 (``PXEClient:Arch:...``), 55 (parameter request list) and, for iPXE, 77 = ``iPXE``. It is
never followed by a DHCPREQUEST, so the server's offer expires unused. The socket is bound to port 68 on one interface
(``SO_BINDTODEVICE``): that needs root or CAP_NET_RAW (and CAP_NET_BIND_SERVICE), see ``can_probe``.

``follow`` is pure: a firmware client reads option 67 before the BOOTP ``file`` field (EDK2's UEFI PXE,
``NetworkPkg/UefiPxeBcDxe/PxeBcDhcp4.c``; BIOS PXE ROMs alike), iPXE the ``file`` field before option 67
(``dhcppkt_fetch``, ``src/net/dhcppkt.c``). A client that fetches an iPXE binary runs iPXE next and asks again as
iPXE; the chain must end at the boot script, and a client kind seen twice is a loop.
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import socket
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import read_or_none

MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
KIND_NAMES = {OFFER: "OFFER", ACK: "ACK", NAK: "NAK"}
CAP_NET_RAW = 13
CAP_NET_BIND_SERVICE = 10
# what each asks for (iPXE's src/net/udp/dhcp.c dhcp_request_options_data; a typical PXE ROM)
IPXE_PRL = bytes([1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 119, 128, 129, 130, 131, 132, 133, 134, 135, 175, 203])
FIRMWARE_PRL = bytes([1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58, 59, 60, 66,
                      67, 97, 128, 129, 130, 131, 132, 133, 134, 135])


class ProbeError(NetbootError):
    """The probe could not be sent or got no answer."""


@dataclass(frozen=True)
class ClientKind:
    name: str
    arch: int  # option 93
    ipxe: bool  # sends option 77 = iPXE and reads ``file`` before option 67
    firmware: str  # uefi / bios

    def options(self) -> dict[int, bytes]:
        return {93: struct.pack("!H", self.arch),
                60: f"PXEClient:Arch:{self.arch:05d}:UNDI:{'002001' if self.ipxe else '003016'}".encode(),
                55: IPXE_PRL if self.ipxe else FIRMWARE_PRL, **({77: b"iPXE"} if self.ipxe else {})}


CLIENTS: tuple[ClientKind, ...] = (
    ClientKind("uefi-pxe-arch7", 7, False, "uefi"),
    ClientKind("uefi-pxe-arch9", 9, False, "uefi"),
    ClientKind("bios-pxe", 0, False, "bios"),
    ClientKind("ipxe-uefi-arch7", 7, True, "uefi"),
    ClientKind("ipxe-uefi-arch9", 9, True, "uefi"),
    ClientKind("ipxe-bios", 0, True, "bios"),
)
BY_NAME = {c.name: c for c in CLIENTS}


def as_ipxe(kind: ClientKind) -> ClientKind:
    """The client a firmware kind becomes once it runs the iPXE binary it fetched."""
    return next(c for c in CLIENTS if c.ipxe and c.arch == kind.arch)


def probe_mac(seed: str, kind: ClientKind) -> bytes:
    """A locally administered unicast MAC (``x2:...``) of the checker's own for ``kind``."""
    d = bytearray(hashlib.sha256(f"{seed}:{kind.name}".encode()).digest()[:6])
    d[0] = (d[0] & 0xFC) | 0x02
    return bytes(d)


@dataclass(frozen=True)
class Answer:
    kind: int  # OFFER / ACK / NAK
    yiaddr: str
    siaddr: str  # next-server
    file: str  # the BOOTP file field
    options: Mapping[int, bytes] = field(default_factory=dict)

    @property
    def option67(self) -> str | None:
        v = self.options.get(67)
        return None if v is None else v.rstrip(b"\0").decode(errors="replace")

    @property
    def server_id(self) -> str:
        v = self.options.get(54, b"")
        return socket.inet_ntoa(v) if len(v) == 4 else ""

    def summary(self) -> dict[str, object]:
        return {"message": KIND_NAMES.get(self.kind, str(self.kind)), "next_server": self.siaddr,
                "file": self.file, "option67": self.option67, "server_id": self.server_id}


def build(kind: int, mac: bytes, xid: int, options: Mapping[int, bytes]) -> bytes:
    """A broadcast BOOTREQUEST of message type ``kind`` (DISCOVER or INFORM only: a probe never asks for a lease)."""
    if kind not in (DISCOVER, INFORM):
        raise ValueError("a probe sends only DHCPDISCOVER or DHCPINFORM, never a REQUEST")
    head = struct.pack("!BBBBIHH", 1, 1, 6, 0, xid, 0, 0x8000)
    head += b"\0" * 16 + mac.ljust(16, b"\0") + b"\0" * 192 + MAGIC  # ciaddr, yiaddr, siaddr, giaddr: 0.0.0.0
    body = bytes([53, 1, kind]) + bytes([61, 7, 1]) + mac
    for code, value in options.items():
        body += bytes([code, len(value)]) + value
    return (head + body + b"\xff").ljust(300, b"\0")


def parse(pkt: bytes) -> tuple[int, bytes, Answer]:
    """(xid, chaddr, answer) of a BOOTREPLY; ValueError when it is not one."""
    if len(pkt) < 240 or pkt[0] != 2 or pkt[236:240] != MAGIC:
        raise ValueError("not a DHCP reply")
    xid = struct.unpack("!I", pkt[4:8])[0]
    opts: dict[int, bytes] = {}
    i = 240
    while i < len(pkt) and pkt[i] != 255:
        if pkt[i] == 0:
            i += 1
            continue
        if i + 1 >= len(pkt):
            break
        n = pkt[i + 1]
        opts[pkt[i]] = opts.get(pkt[i], b"") + pkt[i + 2:i + 2 + n]  # RFC 3396
        i += 2 + n
    # RFC 2132 option 52 (overload) bit 1: the file field holds options, not a name
    file = "" if opts.get(52, b"\0")[0] & 1 else pkt[108:236].split(b"\0")[0].decode(errors="replace")
    kind = opts.get(53, b"\0")[0]
    answer = Answer(kind, socket.inet_ntoa(pkt[16:20]), socket.inet_ntoa(pkt[20:24]), file, opts)
    return xid, pkt[28:28 + min(pkt[2], 16)], answer


def capabilities() -> set[int]:
    """The effective capabilities of this process (Linux ``/proc/self/status``)."""
    m = re.search(rb"^CapEff:\s*([0-9a-f]+)$", read_or_none("/proc/self/status") or b"", re.M)
    bits = int(m.group(1), 16) if m else 0
    return {b for b in range(64) if bits >> b & 1}


def can_probe() -> str | None:
    """None when this process may bind port 68 on an interface, else why not."""
    if os.geteuid() == 0:
        return None
    caps = capabilities()
    missing = [n for n, c in (("CAP_NET_RAW", CAP_NET_RAW), ("CAP_NET_BIND_SERVICE", CAP_NET_BIND_SERVICE))
               if c not in caps]
    if missing:
        return (f"the controller runs as uid {os.geteuid()} without {' and '.join(missing)}, so it cannot bind the "
                "DHCP client port 68 on an interface; run the verify as root (become) or grant the capabilities")
    return None


def probe(interface: str, kind: ClientKind, mac: bytes, *, timeout: float = 3.0, retries: int = 2) -> Answer:
    """One DHCPDISCOVER as ``kind`` from ``mac`` on ``interface``; the first OFFER (or NAK) for it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
            s.bind(("0.0.0.0", 68))
        except OSError as e:
            raise ProbeError(f"cannot bind the DHCP client port 68 on {interface}: {e.strerror}") from None
        xid = int.from_bytes(os.urandom(4), "big")
        pkt = build(DISCOVER, mac, xid, kind.options())
        for _attempt in range(retries + 1):
            s.sendto(pkt, ("255.255.255.255", 67))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                ready, _w, _x = select.select([s], [], [], left)
                if not ready:
                    break
                data, _frm = s.recvfrom(4096)
                try:
                    rxid, chaddr, answer = parse(data)
                except ValueError:
                    continue
                if rxid == xid and chaddr[:6] == mac and answer.kind in (OFFER, ACK, NAK):
                    return answer
        raise ProbeError(f"no DHCP server answered a DISCOVER as {kind.name} on {interface} within "
                         f"{timeout * (retries + 1):g}s")


# -- follow ---------------------------------------------------------------------------------------------------------

def boot_file(kind: ClientKind, answer: Answer) -> tuple[str, str]:
    """The file ``kind`` fetches from ``answer`` and the field it read (``Step.read``): iPXE ``file`` then option
    67; firmware option 67 then ``file``."""
    from_file = bool(answer.file) if kind.ipxe else answer.option67 is None
    name = answer.file if from_file else answer.option67 or ""
    return name, ("file field" if from_file else "option 67") if name else "none"


@dataclass(frozen=True)
class Step:
    client: str
    file: str
    next_server: str
    read: str  # which field it came from: file field / option 67 / none


@dataclass
class Chain:
    start: str
    steps: list[Step] = field(default_factory=list)
    ends: str = ""  # the script reached, or ""
    loop: bool = False
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem

    def path(self) -> str:
        return " -> ".join(f"{s.client}: {s.file or '(nothing)'}" for s in self.steps)


def follow(start: ClientKind, answers: Mapping[str, Answer | None], *, script: str,
           is_ipxe: Callable[[str], bool]) -> Chain:
    """From ``start``'s answer to the file it ends at; ``answers`` per client kind name (None: no answer)."""
    chain = Chain(start.name)
    kind = start
    seen: set[str] = set()
    while True:
        if kind.name in seen:
            chain.loop = True
            chain.problem = (f"loop: {kind.name} is told to fetch {chain.steps[-1].file} again, which runs iPXE "
                             f"again ({chain.path()})")
            return chain
        seen.add(kind.name)
        answer = answers.get(kind.name)
        if answer is None:
            chain.problem = f"no DHCP answer for {kind.name} ({chain.path() or 'first request'})"
            return chain
        name, read = boot_file(kind, answer)
        chain.steps.append(Step(kind.name, name, answer.siaddr, read))
        if not name:
            chain.problem = f"{kind.name} gets no boot file (empty file field, no option 67)"
            return chain
        if name.lstrip("/") == script:
            chain.ends = script
            return chain
        if not is_ipxe(name):
            chain.problem = f"{kind.name} is sent to {name}, which is neither {script} nor an iPXE binary"
            return chain
        kind = as_ipxe(kind)
