# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Pinned extra binaries (``netboot_binaries``): software Alpine does not package, fetched by URL and sha256.

README's "Pinned extra binaries" says what happens to each ``{name, url, sha256, dest, strip, size}``: downloaded
once into ``<cache>/binaries/``, verified, unpacked, stripped, installed at ``dest``. ``etc/netboot/binaries.json``
in the image records each with its URL and sha256; the dist manifest lists it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import tempfile
import urllib.parse
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _debpkg
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, SignatureError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fetch import Fetcher
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import (
    dump_json,
    load_json_object,
    resolve_in_root,
    sha256_file,
    write_if_changed,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _elf, _glibc

RECORD = "etc/netboot/binaries.json"
CACHE_SUBDIR = "binaries"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


@dataclass(frozen=True)
class Binary:
    name: str
    url: str
    sha256: str
    dest: str  # image path, /usr/bin/nomad
    strip: bool = True
    member: str = ""  # file inside an archive; default the member named ``name``
    size: int | None = None  # pinned size of the download (bytes): it is read no further; else MAX_UNSIZED_BYTES
    runtime: str = "auto"  # glibc runtime: auto (from the ELF), glibc (declared), none (install as shipped)

    @property
    def archive_name(self) -> str:
        return PurePosixPath(urllib.parse.urlparse(self.url).path).name or self.name

    @property
    def cache_name(self) -> str:
        return f"{self.sha256[:16]}-{self.archive_name}"

    def record(self, installed_sha256: str, size: int, runtime: str | None = None) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "sha256": self.sha256, "dest": self.dest, "strip": self.strip,
                "installed_sha256": installed_sha256, "size": size, "runtime": runtime}


def parse_binaries(raw: Sequence[Mapping[str, Any]]) -> list[Binary]:
    out: list[Binary] = []
    for i, item in enumerate(raw or []):
        where = f"netboot_binaries[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}: give a dict with name, url, sha256, dest (and optionally strip)")
        unknown = sorted(set(item) - {"name", "url", "sha256", "dest", "strip", "member", "size", "runtime"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
        name = str(item.get("name", ""))
        if not NAME.fullmatch(name):
            raise ConfigError(f"{where}: name {name!r}: use letters, digits and ._+- only")
        where = f"netboot_binaries {name}"
        url = str(item.get("url", ""))
        if urllib.parse.urlparse(url).scheme not in ("http", "https", "file"):
            raise ConfigError(f"{where}: url {url!r} must be http(s):// or file://")
        digest = str(item.get("sha256", "")).lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ConfigError(f"{where}: sha256 {item.get('sha256')!r} is not 64 hex digits (pin the release's digest)")
        dest = str(item.get("dest", ""))
        if not dest.startswith("/") or dest.endswith("/") or ".." in PurePosixPath(dest).parts:
            raise ConfigError(f"{where}: dest {dest!r} must be an absolute file path in the image, e.g. /usr/bin/{name}")
        strip = item.get("strip", True)
        if not isinstance(strip, bool):
            raise ConfigError(f"{where}: strip must be true or false")
        if any(b.dest == dest for b in out):
            raise ConfigError(f"{where}: dest {dest} is already used by another entry")
        size = item.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
            raise ConfigError(f"{where}: size {size!r} must be the download's size in bytes (a positive integer)")
        runtime = _glibc.runtime_mode(item.get("runtime"), where)
        out.append(Binary(name, url, digest, dest, strip, str(item.get("member", "")), size, runtime))
    return out


def _verifier(b: Binary) -> Any:
    def verify(path: Path) -> str:
        got = sha256_file(path) or ""
        if got != b.sha256:
            raise SignatureError(f"sha256 mismatch for {b.archive_name} (netboot_binaries {b.name}): expected "
                                 f"{b.sha256}, got {got}; the download was not cached")
        return got
    return verify


def fetch(b: Binary, cache_dir: Path, fetcher: Fetcher) -> tuple[Path, bool]:
    """The verified archive in the cache (downloaded when missing or damaged); True when it was downloaded."""
    path = cache_dir / CACHE_SUBDIR / b.cache_name
    if path.is_file() and sha256_file(path) == b.sha256:
        return path, False
    fetcher.fetch([b.url], path, _verifier(b), f"{b.archive_name} (netboot_binaries {b.name})", size=b.size)
    return path, True


def unpack(b: Binary, archive: Path) -> bytes:
    """The program's bytes: the archive member named ``member`` (or ``name``), or the plain file itself."""
    want = b.member or b.name
    lower = b.archive_name.lower()
    if lower.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            return zf.read(_pick(b, [n for n in zf.namelist() if not n.endswith("/")], want))
    if lower.endswith((".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar")):
        with tarfile.open(archive) as tf:
            members = {m.name: m for m in tf.getmembers() if m.isfile()}
            pick = _pick(b, list(members), want)
            fh = tf.extractfile(members[pick])
            if fh is None:
                raise ConfigError(f"{archive}: member {pick} of binary {b.name} cannot be read as a regular file")
            return fh.read()
    return archive.read_bytes()


def _pick(b: Binary, names: list[str], want: str) -> str:
    hits = [n for n in names if n == want or PurePosixPath(n).name == want]
    if len(hits) == 1:
        return hits[0]
    if not hits and len(names) == 1 and not b.member:
        return names[0]
    raise ConfigError(f"netboot_binaries {b.name}: {b.archive_name} has {len(hits)} files named {want!r} "
                      f"(files: {', '.join(sorted(names)[:10])}); set member: to the path inside the archive")


def _edited(data: bytes, workdir: Path, edit: Callable[[Path], object]) -> bytes:
    """``data`` after ``edit`` changed it in place in a temp file (the tools edit files)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        p = Path(tmp) / "bin"
        p.write_bytes(data)
        edit(p)
        return p.read_bytes()


def stripped(data: bytes, runner: Runner, workdir: Path) -> bytes:
    """``strip --strip-debug`` of an x86 ELF with debug info or symbols; anything else unchanged."""
    return _edited(data, workdir, lambda p: runner.run(["strip", "--strip-debug", "--strip-unneeded", str(p)],
                                                       what="stripping a netboot binary") if _elf.strippable(p) else None)


@dataclass
class InstallResult:
    changed: bool
    records: list[dict[str, Any]]
    fetched: list[str]
    runtime: dict[str, Any] | None = None  # the glibc runtime's record, when a binary needed it


def _glibc_runtime(programs: Sequence[tuple[Binary, bytes, _elf.Dynamic | None]], glibc_pin: _debpkg.Pin | None,
                   cache_dir: Path, fetcher: Fetcher) -> tuple[_glibc.Runtime | None, bool]:
    """The glibc runtime the programs need (None when none is glibc-linked); True when libc6 was downloaded now."""
    glibc = [(b, dyn) for b, _data, dyn in programs if _glibc.needs_runtime(b.runtime, dyn, f"netboot_binaries {b.name}")]
    if not glibc:
        return None, False
    if glibc_pin is None:
        raise ConfigError(f"netboot_binaries {glibc[0][0].name} is linked against glibc, and no glibc runtime is "
                          f"pinned: set netboot_deb_pins.{_glibc.PIN_NAME} (the shipped default pins Debian's libc6), "
                          "or runtime: none on the entry to install it as shipped")
    needed = sorted({n for _b, dyn in glibc for n in (dyn.needed if dyn else ())})
    runtime, downloaded = _glibc.load(glibc_pin, cache_dir, needed, offline=fetcher.offline, fetcher=fetcher)
    for b, dyn in glibc:
        if dyn is not None:
            runtime.check(b.name, dyn)
    return runtime, downloaded


def install(root: Path, binaries: Sequence[Binary], cache_dir: Path, fetcher: Fetcher, runner: Runner,
            *, check_mode: bool = False, glibc_pin: _debpkg.Pin | None = None) -> InstallResult:
    records: list[dict[str, Any]] = []
    fetched: list[str] = []
    changed = False
    work = cache_dir / CACHE_SUBDIR
    work.mkdir(parents=True, exist_ok=True)
    programs: list[tuple[Binary, bytes, _elf.Dynamic | None]] = []
    for b in binaries:
        archive, new = fetch(b, cache_dir, fetcher)
        if new:
            fetched.append(b.url)
        data = unpack(b, archive)
        if b.strip:
            data = stripped(data, runner, work)  # before the ELF edit: strip keeps patchelf's layout
        programs.append((b, data, _elf.dynamic(data)))
    runtime, downloaded = _glibc_runtime(programs, glibc_pin, cache_dir, fetcher)
    if downloaded and runtime is not None:
        fetched.append(runtime.pin.url)
    for b, unpacked, dyn in programs:
        uses = runtime is not None and _glibc.needs_runtime(b.runtime, dyn, b.name)
        data = _edited(unpacked, work, lambda p: _glibc.patch(p, runner)) if uses else unpacked
        target = resolve_in_root(root, b.dest)
        changed |= write_if_changed(target, data, 0o755, check_mode=check_mode)
        records.append(b.record(hashlib.sha256(data).hexdigest(), len(data), "glibc" if uses else None))
    if runtime is not None:
        for name, content in sorted(runtime.files.items()):
            path = f"{_glibc.LIBDIR}/{name}"
            mode = 0o755 if path == _glibc.LOADER else 0o644
            changed |= write_if_changed(resolve_in_root(root, path), content, mode, check_mode=check_mode)
    rec = root / RECORD
    if records or rec.exists():
        doc: dict[str, Any] = {"binaries": records}
        if runtime is not None:
            doc["glibc_runtime"] = runtime.record()
        changed |= write_if_changed(rec, dump_json(doc, ensure_ascii=True), check_mode=check_mode)
    return InstallResult(changed, records, fetched, runtime.record() if runtime is not None else None)


def read_record(root: str | os.PathLike[str]) -> list[dict[str, Any]] | None:
    data = load_json_object(Path(root) / RECORD, "the binaries record", "rerun the node stage", error=ConfigError)
    items = data.get("binaries") if data is not None else None
    return list(items) if isinstance(items, list) else None
