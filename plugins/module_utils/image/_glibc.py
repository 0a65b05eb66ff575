# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""A private glibc runtime for vendor binaries linked against glibc (HashiCorp's nomad), on the musl image.

docsite "Vendor glibc binaries" says what the user sees. What the code relies on: the libraries come from one pinned
Debian ``libc6`` package (``_debpkg``), installed byte for byte under ``PREFIX`` (never /lib or /usr/lib, so musl
programs and the musl loader are untouched, with or without ``gcompat``); each glibc-linked binary gets its ELF
interpreter and ``DT_RUNPATH`` pointed there by ``patchelf`` (a wrapper through the loader breaks programs that
re-execute ``/proc/self/exe``, and a process-wide ``LD_LIBRARY_PATH`` leaks into musl children). Pure code apart from
``patch``, which runs ``patchelf`` through ``_run``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _debpkg
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fetch import Fetcher
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _apkdb, _elf

PREFIX = "/opt/netboot-glibc"  # in the image; the runtime's libraries are in PREFIX/lib
LIBDIR = f"{PREFIX}/lib"
LOADER_NAME = "ld-linux-x86-64.so.2"
LOADER = f"{LIBDIR}/{LOADER_NAME}"
PIN_NAME = "libc6"  # the key of netboot_deb_pins that gives the runtime
DEB_LIBDIR = "lib/x86_64-linux-gnu"  # where libc6 (amd64) keeps its libraries
# The libraries Debian's libc6 (amd64) ships in DEB_LIBDIR: a binary's DT_NEEDED is looked up among these.
LIBC6_LIBS = (
    "ld-linux-x86-64.so.2", "libBrokenLocale.so.1", "libanl.so.1", "libc.so.6", "libc_malloc_debug.so.0",
    "libdl.so.2", "libm.so.6", "libmvec.so.1", "libnsl.so.1", "libnss_compat.so.2", "libnss_dns.so.2",
    "libnss_files.so.2", "libnss_hesiod.so.2", "libpthread.so.0", "libresolv.so.2", "librt.so.1",
    "libthread_db.so.1", "libutil.so.1",
)
# What every runtime holds besides the closure of the binaries' DT_NEEDED: glibc's split libraries, which older
# builds link and programs dlopen (the NSS modules getaddrinfo may load).
BASE_LIBS = (
    "ld-linux-x86-64.so.2", "libc.so.6", "libpthread.so.0", "libdl.so.2", "libresolv.so.2", "libm.so.6",
    "librt.so.1", "libnss_dns.so.2", "libnss_files.so.2",
)
_GLIBC_VERSION = re.compile(r"GLIBC_(\d+(?:\.\d+)*)")
RUNTIME_MODES = ("auto", "glibc", "none")


def is_glibc(dyn: _elf.Dynamic | None) -> bool:
    """Linked against glibc: its interpreter is glibc's loader, or it needs ``libc.so.6`` (musl's is libc.musl-*)."""
    if dyn is None:
        return False
    if dyn.interp and PurePosixPath(dyn.interp).name.startswith("ld-linux"):
        return True
    return "libc.so.6" in dyn.needed


def version_key(name: str) -> tuple[int, ...]:
    m = _GLIBC_VERSION.fullmatch(name)
    return tuple(int(x) for x in m.group(1).split(".")) if m else ()


def newest(names: Iterable[str]) -> str | None:
    versions = [n for n in names if version_key(n)]
    return max(versions, key=version_key) if versions else None


def required_versions(dyn: _elf.Dynamic) -> set[str]:
    """The ``GLIBC_x.y`` symbol versions the ELF needs from the runtime's libraries."""
    return {v for lib, v in dyn.versions_needed if lib in LIBC6_LIBS and version_key(v)}


@dataclass(frozen=True)
class Runtime:
    """The libraries taken from the pinned libc6: image file name -> bytes; their ``GLIBC_*`` version definitions."""

    pin: _debpkg.Pin
    deb: Path
    files: Mapping[str, bytes]
    provided: frozenset[str]
    missing: tuple[str, ...]  # libraries a binary needs that libc6 does not ship (the audit names them)

    @property
    def glibc_version(self) -> str:
        return (newest(self.provided) or "GLIBC_?").removeprefix("GLIBC_")

    def check(self, binary: str, dyn: _elf.Dynamic) -> None:
        """Refuse a binary that needs a newer glibc than the runtime's, naming both versions."""
        need = required_versions(dyn)
        lacking = sorted(need - self.provided, key=version_key)
        if lacking:
            raise ConfigError(
                f"netboot_binaries {binary}: needs glibc {lacking[-1].removeprefix('GLIBC_')} "
                f"({', '.join(lacking)}), but the glibc runtime ({self.pin.label}) is glibc {self.glibc_version}: "
                f"move netboot_deb_pins.{PIN_NAME} to a libc6 of glibc {lacking[-1].removeprefix('GLIBC_')} or newer "
                "(docsite 'Vendor glibc binaries')"
            )

    def record(self) -> dict[str, Any]:
        """What binaries.json, the ledger and the SBOM say of the runtime: origin and every file's bytes."""
        return {
            "name": PIN_NAME, "package": self.pin.name, "version": self.pin.version, "arch": self.pin.arch,
            "url": self.pin.url, "sha256": self.pin.sha256, "prefix": PREFIX, "glibc": self.glibc_version,
            "purl": purl(self.pin),
            "files": {f"{LIBDIR}/{n}": {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}
                      for n, b in sorted(self.files.items())},
            "missing": list(self.missing),
        }


def purl(pin: _debpkg.Pin) -> str:
    """The package URL of a Debian package (purl-spec deb type; '+' and ':' percent-encoded in the version)."""
    version = pin.version.replace("%", "%25").replace("+", "%2B").replace(":", "%3A")
    return f"pkg:deb/debian/{pin.name}@{version}?arch={pin.arch}"


def closure(libs: Mapping[str, bytes], needed: Iterable[str]) -> tuple[list[str], list[str]]:
    """The libraries of ``libs`` that ``needed`` and BASE_LIBS pull in through DT_NEEDED, sorted; and the needed
    names ``libs`` lacks."""
    want = sorted(set(BASE_LIBS) | set(needed))
    seen: set[str] = set()
    missing: set[str] = set()
    while want:
        name = want.pop()
        if name in seen or name in missing:
            continue
        if name not in libs:
            missing.add(name)
            continue
        seen.add(name)
        dyn = _elf.dynamic(libs[name])
        want.extend(sorted(n for n in (dyn.needed if dyn else ()) if n not in seen))
    return sorted(seen), sorted(missing)


def load(pin: _debpkg.Pin, cache_dir: str | os.PathLike[str], needed: Iterable[str], *, offline: bool,
         fetcher: Fetcher | None = None) -> tuple[Runtime, bool]:
    """The runtime for binaries needing ``needed`` (their DT_NEEDED), from the pinned libc6 (verified into the cache,
    offline from there); True when the .deb was downloaded now."""
    deb, downloaded = _debpkg.ensure(pin, cache_dir, offline=offline, fetcher=fetcher)
    members = _debpkg.extract(deb, [f"{DEB_LIBDIR}/{n}" for n in LIBC6_LIBS], package=pin.label)
    libs = {PurePosixPath(m).name: data for m, data in members.items()}
    keep, missing = closure(libs, needed)
    provided = {v for name in keep if (dyn := _elf.dynamic(libs[name])) for v in dyn.versions_defined if version_key(v)}
    return Runtime(pin, deb, {n: libs[n] for n in keep}, frozenset(provided), tuple(missing)), downloaded


def patch(path: Path, runner: Runner) -> None:
    """Point ``path``'s ELF interpreter and DT_RUNPATH at the runtime (``patchelf``, Debian's package)."""
    runner.run(["patchelf", "--set-interpreter", LOADER, "--set-rpath", LIBDIR, str(path)],
               what=f"pointing {path.name} at the glibc runtime in {PREFIX}")


def runtime_mode(value: object, where: str) -> str:
    mode = "auto" if value is None else str(value)
    if mode not in RUNTIME_MODES:
        raise ConfigError(f"{where}: runtime {value!r}: use auto (detect glibc from the ELF), glibc, or none")
    return mode


def needs_runtime(mode: str, dyn: _elf.Dynamic | None, where: str) -> bool:
    if mode == "none":
        return False
    if mode == "glibc" and dyn is None:
        raise ConfigError(f"{where}: runtime glibc, but the file is not a dynamically linked ELF")
    return mode == "glibc" or is_glibc(dyn)


def read_runtime(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The glibc runtime of a ``binaries.json`` document (``_binaries.RECORD``), or None."""
    rt = record.get("glibc_runtime") if isinstance(record, Mapping) else None
    return dict(rt) if isinstance(rt, Mapping) and isinstance(rt.get("files"), Mapping) else None


def as_package(runtime: Mapping[str, Any]) -> _apkdb.InstalledPackage:
    """The runtime as a package of the image (the ledger's package table: its files are libc6's, not unowned)."""
    return _apkdb.InstalledPackage(
        name=str(runtime.get("package", PIN_NAME)), version=str(runtime.get("version", "")),
        arch=str(runtime.get("arch", "")), origin="debian", url=str(runtime.get("url", "")),
        description=f"glibc runtime for glibc-linked netboot_binaries ({runtime.get('purl', '')})",
        installed_size=sum(int(f.get("size", 0)) for f in runtime["files"].values()),
        # its files and the directories it made (cpio entries too)
        files=tuple(sorted({str(p).lstrip("/") for p in runtime["files"]}
                           | {str(d).lstrip("/") for d in PurePosixPath(LIBDIR).parents if str(d) != "/"}
                           | {LIBDIR.lstrip("/")})),
    )
