"""Issue 17: every download is bounded by its signed size (an index by a cap), by free space and by a total time.

Real HTTP servers on 127.0.0.1: one that keeps streaming after the package's bytes, one that trickles a byte at a
time, one that announces a huge Content-Length; and a real signed index (test key) whose ``S:`` claims more than the
disk has. After each refusal the cache is byte for byte what it was.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import FetchError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fetch import (
    MAX_INDEX_BYTES,
    MAX_UNSIZED_BYTES,
    Fetcher,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._rootfs import Builder, RootfsSpec
from tests.fixtures.apkrepo import ARCH, RELEASE, BuiltPackage, Package, SigningKey, build_index, build_package

STREAM_LIMIT = 64 << 20  # the test's own bound on a "forever" stream


class Hostile(http.server.BaseHTTPRequestHandler):
    """``/endless/...``: the file (if the directory has it), then random bytes without end, no Content-Length.
    ``/trickle/...``: one byte every 0.2 s. ``/slowheaders/...``: the headers that way. ``/liar/...``: 50 GB. Indexes are served as they are."""

    directory: Path
    requests: list[str]
    sent: list[int]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        mode, _sep, rest = self.path.lstrip("/").partition("/")
        local = self.directory / rest
        if local.name == "APKINDEX.tar.gz" and local.is_file():
            data = local.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if mode == "slowheaders":  # the status line and headers, one byte every 0.2 s
            try:
                for byte in b"HTTP/1.0 200 OK\r\nX-Padding: " + b"x" * 300:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        self.send_response(200)
        if mode == "liar":
            self.send_header("Content-Length", str(50 * 10**9))
        self.end_headers()
        sent = 0
        try:
            if mode == "endless":
                if local.is_file():
                    self.wfile.write(local.read_bytes())
                while sent < STREAM_LIMIT:
                    self.wfile.write(os.urandom(1 << 16))
                    sent += 1 << 16
            elif mode == "trickle":
                while sent < 600:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    sent += 1
                    time.sleep(0.2)
            elif mode == "liar":
                self.wfile.write(b"x" * 1000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.sent.append(sent)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Server:
    url: str
    requests: list[str]
    sent: list[int]


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[Server]:
    served = tmp_path / "served"
    served.mkdir()
    requests: list[str] = []
    sent: list[int] = []
    handler = type("H", (Hostile,), {"directory": served, "requests": requests, "sent": sent})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield Server(f"http://127.0.0.1:{srv.server_address[1]}", requests, sent)
    srv.shutdown()
    srv.server_close()


def listing(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def accept(p: Path) -> int:
    return p.stat().st_size


def test_a_server_that_keeps_streaming_is_cut_at_the_signed_size(tmp_path: Path, hostile: Server) -> None:
    dest = tmp_path / "cache" / "x-1.0-r0.apk"
    url = f"{hostile.url}/endless/x-1.0-r0.apk"
    start = time.monotonic()
    with pytest.raises(FetchError) as err:
        Fetcher(timeout=5).fetch([url], dest, accept, "package x-1.0-r0 (main)", size=997)
    text = str(err.value)
    assert time.monotonic() - start < 10
    assert url in text and "package x-1.0-r0 (main)" in text and "997 bytes" in text
    assert "stopped after 998 bytes" in text
    assert "tamper" not in text and "rejected" not in text
    assert listing(tmp_path / "cache") == {}


def test_an_index_without_a_signed_size_is_capped(tmp_path: Path, hostile: Server) -> None:
    dest = tmp_path / "cache" / "APKINDEX.tar.gz"
    with pytest.raises(FetchError, match=rf"more than the {4096}-byte cap for the main index; stopped after 4097"):
        Fetcher(timeout=5).fetch([f"{hostile.url}/endless/x/APKINDEX.tar.gz"], dest, accept, "the main index",
                                 max_size=4096)
    assert MAX_INDEX_BYTES <= 256 << 20
    assert listing(tmp_path / "cache") == {}


def test_an_announced_size_beyond_the_bound_is_not_downloaded(tmp_path: Path, hostile: Server) -> None:
    with pytest.raises(FetchError, match=r"announces 50000000000 bytes for package y, more than its expected size "
                                         r"of 1000 bytes"):
        Fetcher(timeout=5).fetch([f"{hostile.url}/liar/y.apk"], tmp_path / "c" / "y.apk", accept, "package y",
                                 size=1000)
    assert list((tmp_path / "c").iterdir()) == []


def test_a_trickling_server_is_cut_off_at_the_deadline(tmp_path: Path, hostile: Server) -> None:
    start = time.monotonic()
    with pytest.raises(FetchError, match=r"downloading package z took longer than the 1 s deadline "
                                         r"\(alpine_fetch_deadline\); stopped after \d+ bytes"):
        Fetcher(timeout=5, deadline=1).fetch([f"{hostile.url}/trickle/z.apk"], tmp_path / "c" / "z.apk", accept,
                                             "package z", size=10_000)
    assert time.monotonic() - start < 4, "the total time is bounded, not each read"
    assert list((tmp_path / "c").iterdir()) == []


def test_a_server_trickling_its_headers_is_cut_off_at_the_deadline(tmp_path: Path, hostile: Server) -> None:
    start = time.monotonic()
    with pytest.raises(FetchError, match=r"downloading package h took longer than the 1 s deadline"):
        Fetcher(timeout=5, deadline=1).fetch([f"{hostile.url}/slowheaders/h.apk"], tmp_path / "c" / "h.apk", accept,
                                             "package h", size=10_000)
    assert time.monotonic() - start < 3, "the deadline covers the headers too, not only the body"
    assert list((tmp_path / "c").iterdir()) == []


# ------------------------------------------------------------------------------ through the rootfs builder


@pytest.fixture
def mirror(tmp_path: Path, hostile: Server) -> tuple[Path, SigningKey, BuiltPackage]:
    key = SigningKey.create("bounds-test")
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / key.name).write_bytes(key.public_pem())
    built = build_package(Package("musl", "1.2.5-r10", build_time=1_699_000_000), key)
    return keys, key, built


def _write_repo(tmp_path: Path, key: SigningKey, built: list[BuiltPackage], claim: dict[str, int] | None = None) -> None:
    repo = tmp_path / "served" / RELEASE / "main" / ARCH
    repo.mkdir(parents=True, exist_ok=True)
    for b in built:
        (repo / b.package.filename).write_bytes(b.apk)

    class Claimed(BuiltPackage):
        def index_entry(self) -> str:
            text = super().index_entry()
            size = (claim or {}).get(self.package.name)
            return text.replace(f"S:{len(self.apk)}\n", f"S:{size}\n") if size else text

    index = build_index([Claimed(b.package, b.apk, b.checksum) for b in built], key)
    (repo / "APKINDEX.tar.gz").write_bytes(index)


def _builder(tmp_path: Path, keys: Path, url: str, **spec_args: int) -> Builder:
    spec = RootfsSpec(release="3.23", arch=ARCH, mirrors=(url,), repositories=("main",), packages=("musl",),
                      root=tmp_path / "build" / "rootfs", cache_dir=tmp_path / "cache", extra_keys_dirs=(keys,),
                      **spec_args)
    b = Builder(spec, Runner(), Fetcher(timeout=5))
    b.load_indexes()
    return b


def test_an_endless_package_download_stops_at_its_index_size_and_keeps_the_cache(
    tmp_path: Path, hostile: Server, mirror: tuple[Path, SigningKey, BuiltPackage]
) -> None:
    keys, key, built = mirror
    _write_repo(tmp_path, key, [built])
    b = _builder(tmp_path, keys, f"{hostile.url}/endless")
    try:
        before = listing(tmp_path / "cache")
        entry = b.indexes["main"].by_name()["musl"][0]
        assert entry.size == len(built.apk)
        with pytest.raises(FetchError) as err:
            b.ensure_package("main", entry)
    finally:
        b.close()
    text = str(err.value)
    assert "package musl-1.2.5-r10 (main)" in text and f"{hostile.url}/endless/v3.23/main/x86_64/musl-1.2.5-r10.apk" in text
    assert f"its expected size of {len(built.apk)} bytes" in text and "tamper" not in text
    assert listing(tmp_path / "cache") == before


def test_a_signed_size_beyond_the_free_space_is_refused_before_downloading(
    tmp_path: Path, hostile: Server, mirror: tuple[Path, SigningKey, BuiltPackage]
) -> None:
    keys, key, built = mirror
    (tmp_path / "cache").mkdir()
    claim = shutil.disk_usage(tmp_path / "cache").free + (1 << 40)
    _write_repo(tmp_path, key, [built], claim={"musl": claim})
    # alpine_max_package_bytes raised above the claim: the free space is the bound that refuses it
    b = _builder(tmp_path, keys, f"{hostile.url}/endless", max_package_bytes=claim + 1)
    try:
        before = listing(tmp_path / "cache")
        entry = b.indexes["main"].by_name()["musl"][0]
        with pytest.raises(NetbootError) as err:
            b.ensure_package("main", entry)
    finally:
        b.close()
    text = str(err.value)
    assert f"not enough space for package musl-1.2.5-r10 (main): it is {claim} bytes but {b.spec.repo_dir('main')} has" in text
    assert "bytes free" in text and "tamper" not in text
    assert not [r for r in hostile.requests if r.endswith(".apk")], "nothing was requested"
    assert listing(tmp_path / "cache") == before


def test_a_signed_size_above_the_package_ceiling_is_refused_before_downloading(
    tmp_path: Path, hostile: Server, mirror: tuple[Path, SigningKey, BuiltPackage]
) -> None:
    """Issue 25: a signed index that claims a 50 GB package; the default ceiling is the unsized-binary bound."""
    keys, key, built = mirror
    claim = 50 * 10**9
    _write_repo(tmp_path, key, [built], claim={"musl": claim})
    b = _builder(tmp_path, keys, f"{hostile.url}/endless")
    try:
        assert b.spec.max_package_bytes == MAX_UNSIZED_BYTES == 2 << 30
        before = listing(tmp_path / "cache")
        entry = b.indexes["main"].by_name()["musl"][0]
        with pytest.raises(NetbootError) as err:
            b.ensure_package("main", entry)
    finally:
        b.close()
    text = str(err.value)
    assert f"package musl-1.2.5-r10 (main): the signed index gives it {claim} bytes" in text
    assert f"above alpine_max_package_bytes {2 << 30} bytes" in text and "raise alpine_max_package_bytes" in text
    assert not [r for r in hostile.requests if r.endswith(".apk")], "nothing was requested"
    assert listing(tmp_path / "cache") == before


def test_a_pinned_binary_download_is_bounded_by_its_size(tmp_path: Path, hostile: Server) -> None:
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _binaries

    item = {"name": "tool", "url": f"{hostile.url}/endless/tool.zip", "sha256": "0" * 64, "dest": "/usr/bin/tool"}
    with pytest.raises(ConfigError, match=r"netboot_binaries tool: size 'big' must be the download's size in bytes"):
        _binaries.parse_binaries([{**item, "size": "big"}])
    (b,) = _binaries.parse_binaries([{**item, "size": 5000}])
    cache = tmp_path / "cache"
    with pytest.raises(FetchError, match=r"more than its expected size of 5000 bytes \(signed index size or pinned size\) "
                                         r"for tool\.zip "
                                         r"\(netboot_binaries tool\); stopped after 5001 bytes"):
        _binaries.fetch(b, cache, Fetcher(timeout=5))
    assert [p for p in cache.rglob("*") if not p.is_dir()] == []
