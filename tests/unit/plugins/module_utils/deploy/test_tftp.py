"""_tftp: the read client against a small in-test server (options, block-counter rollover, lost packets, errors,
silence)."""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy import _tftp


class Server:
    """Serves ``data`` on 127.0.0.1 (one session per request); ``mode``: ok, error, silent, stop_at (blocks)."""

    def __init__(self, data: bytes, *, mode: str = "ok", stop_at: int = 0, drop_first: int = 0) -> None:
        self.data, self.mode, self.stop_at, self.drop_first = data, mode, stop_at, drop_first
        self.requests: list[dict[str, str]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self) -> None:
        while True:
            try:
                pkt, addr = self.sock.recvfrom(2048)
            except OSError:
                return
            f = pkt[2:].split(b"\0")
            self.requests.append({f[i].decode(): f[i + 1].decode() for i in range(2, len(f) - 1, 2)})
            if self.mode == "silent":
                continue
            threading.Thread(target=self.session, args=(pkt, addr), daemon=True).start()

    def session(self, pkt: bytes, addr: tuple[str, int]) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.3)
        if self.mode == "error":
            s.sendto(struct.pack("!HH", _tftp.ERROR, 1) + b"File not found\0", addr)
            return
        opts = self.requests[-1]
        blk = int(opts.get("blksize", "512"))
        if "blksize" in opts or "tsize" in opts:
            body = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in
                            {**({"blksize": str(blk)} if "blksize" in opts else {}),
                             **({"tsize": str(len(self.data))} if "tsize" in opts else {})}.items())
            self.send(s, addr, struct.pack("!H", _tftp.OACK) + body, 0)
        dropped = 0
        for n in range(1, len(self.data) // blk + 2):
            if self.stop_at and n > self.stop_at:
                s.sendto(struct.pack("!HH", _tftp.ERROR, 0) + b"File too big\0", addr)
                return
            pkt = struct.pack("!HH", _tftp.DATA, n % 65536) + self.data[(n - 1) * blk:n * blk]
            if dropped < self.drop_first:  # lost on the way: the client sends its ACK again
                dropped += 1
                try:
                    s.recvfrom(100)
                except TimeoutError:
                    pass
            if not self.send(s, addr, pkt, n % 65536):
                return
        s.close()

    @staticmethod
    def send(s: socket.socket, addr: tuple[str, int], pkt: bytes, block: int) -> bool:
        for _unused in range(5):
            s.sendto(pkt, addr)
            try:
                while True:
                    r, _frm = s.recvfrom(100)
                    if struct.unpack("!HH", r[:4]) == (_tftp.ACK, block):
                        return True
            except TimeoutError:
                continue
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def data() -> bytes:
    return hashlib.sha256(b"x").digest() * 40_000  # 1.28 MB


def serve(data: bytes, **kw: object) -> Iterator[Server]:
    srv = Server(data, **kw)  # type: ignore[arg-type]
    try:
        yield srv
    finally:
        srv.close()


def test_ipxe_block_size_hash_and_tsize(data: bytes) -> None:
    for srv in serve(data):
        got = _tftp.fetch("127.0.0.1", "g/initramfs", port=srv.port, keep=64)
        assert (got.size, got.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert got.blksize == 1432 and got.tsize == len(data) and got.head == data[:64]
        assert got.blocks == len(data) // 1432 + 1 and not got.rolled_over and got.mbps > 0
        assert srv.requests[-1] == {"blksize": "1432", "tsize": "0"}


def test_512_bytes_asks_for_no_block_size(data: bytes) -> None:
    for srv in serve(data[:5000]):
        got = _tftp.fetch("127.0.0.1", "x", port=srv.port, blksize=512, tsize=False)
        assert got.blksize == 512 and got.blocks == 10 and got.sha256 == hashlib.sha256(data[:5000]).hexdigest()
        assert srv.requests[-1] == {}


def test_block_counter_rolls_over() -> None:
    payload = bytes(range(256)) * (65540 * 8 // 256 + 1)  # more than 65,535 blocks of 8 bytes
    for srv in serve(payload):
        got = _tftp.fetch("127.0.0.1", "big", port=srv.port, blksize=8, timeout=1.0)
        assert got.rolled_over and got.blocks == len(payload) // 8 + 1
        assert got.sha256 == hashlib.sha256(payload).hexdigest()


def test_a_lost_block_is_asked_for_again(data: bytes) -> None:
    for srv in serve(data[:20000], drop_first=1):
        got = _tftp.fetch("127.0.0.1", "x", port=srv.port, timeout=0.2)
        assert got.sha256 == hashlib.sha256(data[:20000]).hexdigest()


def test_error_packet_is_refused_with_its_kind(data: bytes) -> None:
    for srv in serve(data, mode="error"):
        with pytest.raises(_tftp.TftpRefused) as e:
            _tftp.fetch("127.0.0.1", "nope", port=srv.port)
        assert e.value.code == 1 and e.value.kind == "file not found" and "nope" in str(e.value)


def test_silence_is_a_timeout_not_a_refusal(data: bytes) -> None:
    for srv in serve(data, mode="silent"):
        with pytest.raises(_tftp.TftpTimeout) as e:
            _tftp.fetch("127.0.0.1", "x", port=srv.port, timeout=0.1, retries=2)
        assert not e.value.answered and e.value.blocks == 0 and len(srv.requests) == 3


def test_stop_at_the_counter_end_reports_the_blocks(data: bytes) -> None:
    for srv in serve(data, stop_at=100):
        with pytest.raises(_tftp.TftpRefused) as e:
            _tftp.fetch("127.0.0.1", "x", port=srv.port)
        assert e.value.blocks == 100


def test_source_address() -> None:
    assert _tftp.source_address("127.0.0.1") == "127.0.0.1"
