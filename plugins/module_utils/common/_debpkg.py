# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Pinned Debian packages (``.deb``): the one way the collection takes files from a Debian package.

A ``Pin`` names one exact package file: name, version, architecture, the URL it is fetched from (default Debian's
snapshot archive, ``https://snapshot.debian.org/file/<sha1>``, which never changes) and its sha256 (and size). The
sha256 is the gate: ``ensure`` downloads through ``_fetch`` (a temp name, bounded size, deadline), checks the digest
and only then renames the file into ``<cache>/debs/``; offline it uses the cache alone. ``extract`` reads the
wanted members in pure Python (``ar``, then ``data.tar.{xz,zst,gz}``), following symlinks inside the package, and
refuses members that would land outside it.

The pins themselves are data (``netboot_deb_pins`` in ``roles/common/defaults/main.yml``); this file holds no pin.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import re
import tarfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _compress
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import (
    ConfigError,
    FetchError,
    SignatureError,
    UnpackError,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fetch import Fetcher
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import sha256_file, write_if_changed

CACHE_SUBDIR = "debs"
MAX_DEB_BYTES = 512 << 20  # a pin without a size: no Debian package the collection takes from is near this
_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_VERSION = re.compile(r"(?:[0-9]+:)?[A-Za-z0-9.+~-]+")
_ARCH = re.compile(r"[a-z0-9-]+")
_AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60
_MAX_LINK_HOPS = 16


@dataclass(frozen=True)
class Pin:
    """One exact Debian package file."""

    name: str
    version: str
    arch: str
    url: str
    sha256: str
    size: int | None = None

    @property
    def label(self) -> str:
        return f"{self.name} {self.version} ({self.arch})"

    @property
    def filename(self) -> str:
        """Debian's pool file name (``name_version_arch.deb``, the epoch dropped as the pool does)."""
        return f"{self.name}_{self.version.split(':', 1)[-1]}_{self.arch}.deb"


def parse_pin(raw: Mapping[str, object], *, where: str = "pin") -> Pin:
    """Validate a pin given as data (``name``, ``version``, ``arch``, ``url``, ``sha256``, optional ``size``)."""
    unknown = sorted(set(raw) - {"name", "version", "arch", "url", "sha256", "size", "sha1"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; a pin has name, version, arch, url, sha256, "
                          "size")
    name, version, arch = (str(raw.get(k) or "") for k in ("name", "version", "arch"))
    url, digest = str(raw.get("url") or ""), str(raw.get("sha256") or "").lower()
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: name {name!r} is not a Debian package name")
    if not _VERSION.fullmatch(version):
        raise ConfigError(f"{where}: version {version!r} is not a Debian version")
    if not _ARCH.fullmatch(arch):
        raise ConfigError(f"{where}: arch {arch!r} is not a Debian architecture (amd64, all, ...)")
    if not re.fullmatch(r"(https?|file)://\S+", url):
        raise ConfigError(f"{where}: url {url!r} must be http(s):// or file://")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ConfigError(f"{where}: sha256 {raw.get('sha256')!r} is not 64 hex digits")
    size = raw.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise ConfigError(f"{where}: size {size!r} must be the .deb's size in bytes (a positive integer)")
    return Pin(name, version, arch, url, digest, size)


def cache_path(pin: Pin, cache_dir: str | os.PathLike[str]) -> Path:
    """Where the verified .deb lives in the cache (the digest in the name: two pins never share a file)."""
    return Path(cache_dir) / CACHE_SUBDIR / f"{pin.sha256[:16]}-{pin.filename}"


def cached(pin: Pin, cache_dir: str | os.PathLike[str]) -> Path | None:
    """The cached .deb when it is there and verifies, else None."""
    path = cache_path(pin, cache_dir)
    return path if path.is_file() and sha256_file(path) == pin.sha256 else None


def ensure(pin: Pin, cache_dir: str | os.PathLike[str], *, offline: bool = False, fetcher: Fetcher | None = None,
           ) -> tuple[Path, bool]:
    """The verified .deb in ``<cache_dir>/debs/`` and whether it was downloaded now.

    A download goes to a temp name and enters the cache only when its sha256 is the pin's; a mismatch fails naming
    the URL and both digests. ``offline`` uses the cache alone and says how to fill it."""
    path = cache_path(pin, cache_dir)
    if cached(pin, cache_dir) is not None:
        return path, False
    fetch = fetcher or Fetcher()
    if offline or fetch.offline:
        state = "holds other bytes" if path.exists() else "is missing"
        raise FetchError(
            f"{pin.label}: {path} {state} and netboot_offline is true. Fill the cache: run once online, or fetch "
            f"{pin.url} yourself, check that `sha256sum` prints {pin.sha256}, and copy it to {path}"
        )

    def verify(part: Path) -> str:
        got = sha256_file(part) or ""
        if got != pin.sha256:
            raise SignatureError(
                f"sha256 mismatch for {pin.filename} ({pin.label}) from {pin.url}: expected {pin.sha256}, got {got}; "
                "nothing was cached. A mirror must serve exactly this file: fix the URL override "
                "(netboot_deb_urls), or, to take another build, move the pin (docsite 'Integrity at boot')"
            )
        return got

    fetch.fetch([pin.url], path, verify, f"{pin.filename} ({pin.label})", size=pin.size,
                max_size=pin.size or MAX_DEB_BYTES)
    return path, True


# ------------------------------------------------------------------------------------------------------ extraction

def ar_members(deb: Path) -> Iterator[tuple[str, int, int]]:
    """(name, offset, size) of each member of the ``ar`` archive ``deb`` (a .deb's outer container)."""
    with deb.open("rb") as fh:
        if fh.read(len(_AR_MAGIC)) != _AR_MAGIC:
            raise UnpackError(f"{deb} is not a Debian package (no ar header)")
        total = os.fstat(fh.fileno()).st_size
        pos = len(_AR_MAGIC)
        while pos < total:
            fh.seek(pos)
            head = fh.read(_AR_HEADER)
            if len(head) < _AR_HEADER or head[58:60] != b"`\n":
                raise UnpackError(f"{deb}: broken ar member header at offset {pos}")
            name = head[:16].decode("ascii", "replace").strip().rstrip("/")
            try:
                size = int(head[48:58].decode("ascii").strip())
            except ValueError as exc:
                raise UnpackError(f"{deb}: ar member {name!r} has no valid size") from exc
            start = pos + _AR_HEADER
            if start + size > total:
                raise UnpackError(f"{deb}: ar member {name!r} is cut short ({size} bytes announced)")
            yield name, start, size
            pos = start + size + (size & 1)


class _Slice(io.RawIOBase):
    """A read-only window of a file (one ar member) without copying it."""

    def __init__(self, fh: IO[bytes], start: int, size: int) -> None:
        self._fh, self._start, self._left = fh, start, size
        fh.seek(start)

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buf), self._left)
        if n <= 0:
            return 0
        data = self._fh.read(n)
        buf[: len(data)] = data
        self._left -= len(data)
        return len(data)


class _Decompressed(io.RawIOBase):
    """A decompressing stream over a raw stream (any of _compress's methods)."""

    def __init__(self, raw: IO[bytes], method: str) -> None:
        self._raw, self._dec, self._buf = raw, _compress.decompressor(method), b""

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            if self._dec.eof:
                return 0
            chunk = self._raw.read(1 << 16)
            if not chunk:
                return 0
            self._buf = self._dec.decompress(chunk)
        n = min(len(buf), len(self._buf))
        buf[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


_READ_ERRORS: tuple[type[Exception], ...] = (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error)


def _zstd_errors() -> tuple[type[Exception], ...]:
    try:
        import zstandard
    except ImportError:  # recorded by _compress (_deps.lazy); only a .zst member needs it
        return ()
    error: type[Exception] = zstandard.ZstdError
    return (error,)


def _clean(name: str, *, package: str) -> str:
    """A member name relative to the package root; refuses absolute names and ``..``."""
    path = PurePosixPath(name[2:] if name.startswith("./") else name)
    if path.is_absolute() or ".." in path.parts:
        raise UnpackError(f"{package}: member {name!r} would land outside the package root; refusing the package")
    return "/".join(p for p in path.parts if p not in ("", "."))


def _link_target(name: str, target: str, *, package: str) -> str:
    """The member a symlink ``name`` -> ``target`` points at (absolute targets from the package root)."""
    parts = [] if target.startswith("/") else list(PurePosixPath(name).parent.parts)
    for part in PurePosixPath(target).parts:
        if part in ("/", "", "."):
            continue
        if part == "..":
            if not parts:
                raise UnpackError(f"{package}: symlink {name} -> {target} points outside the package; refusing it")
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def _scan(deb: Path, want: set[str], package: str) -> tuple[dict[str, bytes], dict[str, str], set[str]]:
    """One pass over data.tar: the bytes of the regular files in ``want``, every link (name -> target member) and
    every member name."""
    data_members = [(n, s, z) for n, s, z in ar_members(deb) if n.startswith("data.tar")]
    if not data_members:
        raise UnpackError(f"{deb}: no data.tar member ({package} is not a Debian binary package)")
    name, start, size = data_members[0]
    suffix = name[len("data.tar"):]
    method = {"": None, ".xz": "xz", ".zst": "zstd", ".gz": "gzip"}.get(suffix, "unknown")
    if method == "unknown":
        raise UnpackError(f"{deb}: {name} is compressed in a way this collection does not read (xz, zst, gz)")
    found: dict[str, bytes] = {}
    links: dict[str, str] = {}
    names: set[str] = set()
    with deb.open("rb") as fh:
        raw: IO[bytes] = io.BufferedReader(_Slice(fh, start, size))
        stream: IO[bytes] = io.BufferedReader(_Decompressed(raw, method)) if method else raw
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tf:
                for member in tf:
                    rel = _clean(member.name, package=package)
                    names.add(rel)
                    if member.issym():
                        links[rel] = _link_target(rel, member.linkname, package=package)
                    elif member.islnk():
                        links[rel] = _clean(member.linkname, package=package)
                    elif member.isfile() and rel in want:
                        fobj = tf.extractfile(member)
                        found[rel] = fobj.read() if fobj is not None else b""
        except _READ_ERRORS + _zstd_errors() as exc:
            raise UnpackError(f"{deb}: cannot read {name} of {package}: {exc}") from exc
    return found, links, names


def extract(deb: str | os.PathLike[str], members: Sequence[str], *, package: str = "") -> dict[str, bytes]:
    """The bytes of ``members`` (paths in the package, e.g. ``usr/lib/ipxe/snponly.efi``) of the .deb ``deb``.

    A member that is a symlink (or hard link) inside the package gives its target's bytes. Refuses an archive member
    or link that would land outside the package; a missing member is named with the package."""
    path = Path(deb)
    label = package or path.name
    bad = sorted(m for m in members if not m.strip("/") or ".." in PurePosixPath(m).parts)
    if bad:
        raise ConfigError(f"{label}: member {bad[0]!r} is not a path inside the package (e.g. usr/lib/ipxe/ipxe.efi)")
    wanted = {m: _clean(m.lstrip("/"), package=label) for m in members}
    resolved = dict(wanted)  # requested name -> member holding the bytes
    result: dict[str, bytes] = {}
    need = set(resolved.values())
    for _hop in range(_MAX_LINK_HOPS):
        found, links, names = _scan(path, need, label)
        pending = False
        for asked, member in list(resolved.items()):
            if asked in result:
                continue
            if member in found:
                result[asked] = found[member]
            elif member in links:
                resolved[asked] = links[member]
                pending = True
            else:
                near = sorted(n for n in names if n.rsplit("/", 1)[0] == member.rsplit("/", 1)[0])[:12]
                raise UnpackError(
                    f"{label} has no file {member!r}" + (f" (asked for {asked!r})" if member != wanted[asked] else "")
                    + (f"; files beside it: {', '.join(near)}" if near else "")
                )
        if not pending:
            return result
        need = {m for a, m in resolved.items() if a not in result}
    raise UnpackError(f"{label}: more than {_MAX_LINK_HOPS} levels of links behind {sorted(wanted)}")


_FILE_NAME = re.compile(r"[A-Za-z0-9._+-]+")


def install(pin: Pin, cache_dir: str | os.PathLike[str], dest: str | os.PathLike[str], files: Mapping[str, str], *,
            offline: bool = False, fetcher: Fetcher | None = None, check_mode: bool = False) -> dict[str, object]:
    """Put ``files`` (file name in ``dest`` -> member path in the package) of the pinned package into ``dest``.

    Every member is read before anything is written; each file is written atomically and only when its bytes differ
    (check mode: only compared). Returns ``changed``, ``deb`` (cache path), ``downloaded``, ``files`` (name ->
    member, sha256, size, changed) and ``diff`` (``sha256  name`` lines before/after)."""
    if not files:
        raise ConfigError(f"{pin.label}: no files to unpack; give file name -> member path in the package")
    bad = sorted(n for n in files if not _FILE_NAME.fullmatch(n) or n in (".", ".."))
    if bad:
        raise ConfigError(f"{pin.label}: {bad[0]!r} is not a plain file name for {dest}")
    deb, downloaded = ensure(pin, cache_dir, offline=offline, fetcher=fetcher)
    data = extract(deb, list(files.values()), package=pin.label)
    out: dict[str, dict[str, object]] = {}
    before: list[str] = []
    after: list[str] = []
    for name, member in sorted(files.items()):
        content = data[member]
        target = Path(dest, name)
        old = sha256_file(target)
        new = hashlib.sha256(content).hexdigest()
        changed = write_if_changed(target, content, check_mode=check_mode)
        out[name] = {"member": member, "sha256": new, "size": len(content), "changed": changed}
        before.append(f"{old or '-':<64}  {name}")
        after.append(f"{new}  {name}")
    return {
        "changed": any(bool(f["changed"]) for f in out.values()),
        "deb": str(deb),
        "downloaded": downloaded,
        "files": out,
        "diff": {"before": "\n".join(before) + "\n", "after": "\n".join(after) + "\n",
                 "before_header": str(dest), "after_header": str(dest)},
    }
