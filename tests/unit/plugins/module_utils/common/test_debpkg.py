"""_debpkg: a pinned .deb built here with dpkg-deb, served over real HTTP on 127.0.0.1: verified before it enters
the cache, used offline from there, its members read in pure Python (xz, zstd, gzip, none), escapes refused."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _debpkg
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import (
    ConfigError,
    FetchError,
    UnpackError,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fetch import Fetcher
from tests.fixtures.apkrepo import serve

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb to build a .deb")

EFI = bytes(range(256)) * 300 + b"snponly"
KPXE = b"undionly" * 1000


def build_deb(tmp: Path, compression: str = "xz", version: str = "2.0.0+dfsg-5") -> Path:
    """A real .deb made by dpkg-deb: usr/lib/ipxe/{snponly.efi, undionly.kpxe, ipxe-amd64.efi} and the symlinks
    ipxe.efi -> ipxe-amd64.efi (relative) and abs.efi -> /usr/lib/ipxe/snponly.efi (absolute, as Debian allows)."""
    root = tmp / f"pkg-{compression}"
    lib = root / "usr/lib/ipxe"
    lib.mkdir(parents=True)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text(
        f"Package: ipxe-test\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.org>\n"
        "Description: test package\n"
    )
    (lib / "snponly.efi").write_bytes(EFI)
    (lib / "undionly.kpxe").write_bytes(KPXE)
    (lib / "ipxe-amd64.efi").write_bytes(EFI[::-1])
    (lib / "ipxe.efi").symlink_to("ipxe-amd64.efi")
    (lib / "abs.efi").symlink_to("/usr/lib/ipxe/snponly.efi")
    out = tmp / f"ipxe-test_{version}_all-{compression}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", str(root), str(out)],
                   check=True, capture_output=True)
    return out


def pin_for(deb: Path, url: str, **over: object) -> _debpkg.Pin:
    data = deb.read_bytes()
    raw: dict[str, object] = {"name": "ipxe-test", "version": "2.0.0+dfsg-5", "arch": "all", "url": url,
                              "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), **over}
    return _debpkg.parse_pin(raw, where="netboot_deb_pins.ipxe")


@pytest.mark.parametrize("compression", ["xz", "zstd", "gzip", "none"])
def test_extract_reads_members_and_follows_links(tmp_path: Path, compression: str) -> None:
    deb = build_deb(tmp_path, compression)
    got = _debpkg.extract(deb, ["usr/lib/ipxe/snponly.efi", "/usr/lib/ipxe/ipxe.efi", "./usr/lib/ipxe/undionly.kpxe",
                                "usr/lib/ipxe/abs.efi"], package="ipxe-test 2.0.0")
    assert got == {"usr/lib/ipxe/snponly.efi": EFI, "/usr/lib/ipxe/ipxe.efi": EFI[::-1],
                   "./usr/lib/ipxe/undionly.kpxe": KPXE, "usr/lib/ipxe/abs.efi": EFI}
    # the same bytes dpkg-deb itself unpacks
    out = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(out)], check=True)
    assert (out / "usr/lib/ipxe/ipxe.efi").read_bytes() == got["/usr/lib/ipxe/ipxe.efi"]


def test_missing_member_is_named_with_the_package(tmp_path: Path) -> None:
    deb = build_deb(tmp_path)
    with pytest.raises(UnpackError, match=r"ipxe-test 2\.0\.0 has no file 'usr/lib/ipxe/ipxe\.pxe'; files beside "
                                          r"it: .*snponly\.efi"):
        _debpkg.extract(deb, ["usr/lib/ipxe/snponly.efi", "usr/lib/ipxe/ipxe.pxe"], package="ipxe-test 2.0.0")
    with pytest.raises(ConfigError, match="not a path inside the package"):
        _debpkg.extract(deb, ["../etc/passwd"], package="ipxe-test")


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) & 1 else b"")
    return bytes(out)


def _tar(entries: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for info in entries:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


@pytest.mark.parametrize(("name", "link"), [
    ("./../../etc/evil", None),
    ("/etc/evil", None),
    ("./usr/lib/ipxe/snponly.efi", "../../../../etc/shadow"),
])
def test_members_that_escape_are_refused(tmp_path: Path, name: str, link: str | None) -> None:
    info = tarfile.TarInfo(name)
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
    deb = tmp_path / "evil.deb"
    deb.write_bytes(_ar([("debian-binary", b"2.0\n"), ("data.tar", _tar([info], {name: b"x"} if link is None else {}))]))
    with pytest.raises(UnpackError, match="outside the package"):
        _debpkg.extract(deb, ["usr/lib/ipxe/snponly.efi"], package="evil 1")


def test_not_a_deb(tmp_path: Path) -> None:
    (tmp_path / "x.deb").write_bytes(b"PK\x03\x04 not an ar archive")
    with pytest.raises(UnpackError, match="not a Debian package"):
        _debpkg.extract(tmp_path / "x.deb", ["a"], package="x")


def test_ensure_downloads_verifies_caches_and_works_offline(tmp_path: Path) -> None:
    deb = build_deb(tmp_path)
    srv_dir = tmp_path / "srv"
    srv_dir.mkdir()
    shutil.copy(deb, srv_dir / "by-hash")
    cache = tmp_path / "cache"
    with serve(srv_dir) as srv:
        pin = pin_for(deb, f"{srv.url}/by-hash")
        path, downloaded = _debpkg.ensure(pin, cache, fetcher=Fetcher(timeout=10, deadline=30))
        assert downloaded and path.read_bytes() == deb.read_bytes()
        assert path == cache / "debs" / f"{pin.sha256[:16]}-ipxe-test_2.0.0+dfsg-5_all.deb"
        again, downloaded = _debpkg.ensure(pin, cache)
        assert again == path and not downloaded and srv.requests == ["/by-hash"]
    # offline: the cache alone
    assert _debpkg.ensure(pin, cache, offline=True) == (path, False)
    assert _debpkg.extract(path, ["usr/lib/ipxe/undionly.kpxe"])["usr/lib/ipxe/undionly.kpxe"] == KPXE
    # a damaged cache entry offline: named, with how to fill it
    path.write_bytes(b"damaged")
    with pytest.raises(FetchError, match=rf"holds other bytes and netboot_offline is true\. Fill the cache: run once "
                                         rf"online, or fetch .*by-hash yourself, check that `sha256sum` prints "
                                         rf"{pin.sha256}, and copy it to {re.escape(str(path))}"):
        _debpkg.ensure(pin, cache, offline=True)
    path.unlink()
    with pytest.raises(FetchError, match="is missing and netboot_offline is true"):
        _debpkg.ensure(pin, cache, offline=True)


def test_a_mismatch_never_enters_the_cache(tmp_path: Path) -> None:
    good = build_deb(tmp_path)
    other = build_deb(tmp_path, "gzip", version="2.0.0+dfsg-6")  # a mirror serving another build
    srv_dir = tmp_path / "srv"
    srv_dir.mkdir()
    shutil.copy(other, srv_dir / "ipxe.deb")
    cache = tmp_path / "cache"
    with serve(srv_dir) as srv:
        url = f"{srv.url}/ipxe.deb"
        pin = pin_for(good, url, size=None)
        got = hashlib.sha256(other.read_bytes()).hexdigest()
        with pytest.raises(FetchError) as err:
            _debpkg.ensure(pin, cache, fetcher=Fetcher(timeout=10, deadline=30))
    msg = str(err.value)
    assert "sha256 mismatch for ipxe-test_2.0.0+dfsg-5_all.deb" in msg and url in msg
    assert f"expected {pin.sha256}, got {got}" in msg and "netboot_deb_urls" in msg and "move the pin" in msg
    assert "nothing was added to the cache" in msg
    assert not list((cache / "debs").iterdir())  # no file, no temp left behind
    # a pinned size bounds the download: a bigger file is cut off, never cached
    with serve(srv_dir) as srv:
        pin = pin_for(good, f"{srv.url}/ipxe.deb", size=100)
        with pytest.raises(FetchError, match="more than its expected size of 100 bytes"):
            _debpkg.ensure(pin, cache, fetcher=Fetcher(timeout=10, deadline=30))
    assert not list((cache / "debs").iterdir())


def test_parse_pin_refuses_bad_pins() -> None:
    ok = {"name": "ipxe", "version": "2.0.0+dfsg-5", "arch": "all", "url": "https://snapshot.debian.org/file/ab",
          "sha256": "a" * 64, "size": 10}
    assert _debpkg.parse_pin(ok).filename == "ipxe_2.0.0+dfsg-5_all.deb"
    assert _debpkg.parse_pin({**ok, "version": "1:2.36-9"}).filename == "ipxe_2.36-9_all.deb"
    for bad, what in [({"sha256": "abc"}, "64 hex"), ({"url": "ftp://x"}, "http"), ({"name": "Bad Name"}, "name"),
                      ({"size": 0}, "size"), ({"colour": "red"}, "unknown key")]:
        with pytest.raises(ConfigError, match=what):
            _debpkg.parse_pin({**ok, **bad}, where="netboot_deb_pins.ipxe")


@pytest.mark.parametrize("compression", ["xz", "zstd", "gzip"])
def test_a_corrupt_data_tar_is_an_unpack_error(tmp_path: Path, compression: str) -> None:
    deb = build_deb(tmp_path, compression)
    members = {name: (start, size) for name, start, size in _debpkg.ar_members(deb)}
    name = next(n for n in members if n.startswith("data.tar"))
    start, size = members[name]
    data = bytearray(deb.read_bytes())
    for i in range(start + size // 3, start + size // 3 + 64):  # damage the middle of the compressed stream
        data[i] ^= 0x5A
    deb.write_bytes(bytes(data))
    with pytest.raises(UnpackError, match=rf"cannot read {re.escape(name)} of ipxe-test"):
        _debpkg.extract(deb, ["usr/lib/ipxe/snponly.efi"], package="ipxe-test")
