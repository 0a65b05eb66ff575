# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Image audit: what must never ship on an unauthenticated TFTP server, and what would only break on the node.

The findings (each names the file) and the report are README's "The image audit". The report (``AUDIT``: written
by ``AUDIT.dump``, read by ``AUDIT.load``) is deterministic (sorted, no clocks).
"""

from __future__ import annotations

import mmap
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import PathEscapeError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import resolve_in_root
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import (
    _elf,
    _glibc,
    _kernel,
    _kmod,
    _noderoles,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records._record import Kind

AUDIT = Kind("audit", 2, "audit")
CHECKS = ("private_keys", "passwords", "world_writable", "authorized_keys", "elf_links", "role_modules")
TMP_DIRS = ("tmp", "var/tmp", "run", "dev", "var/lock", "var/run")
SKIP_ELF_DIRS = ("lib/modules", "lib/firmware", "usr/lib/firmware", "boot")
MUSL_DEFAULT_PATH = ("/lib", "/usr/local/lib", "/usr/lib")
KEY_SCAN_LIMIT = 4 << 20  # private keys are small; larger files are binaries and archives
PRIVATE_KEY = re.compile(
    rb"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----\r?\n"
    rb"(?:[A-Za-z-]+: [^\r\n]*\r?\n|\r?\n)*"
    rb"(?:[A-Za-z0-9+/=]{16,}\r?\n)+"
    rb"[A-Za-z0-9+/=]*\r?\n?"
    rb"(?:=[A-Za-z0-9+/]{4}\r?\n)?"
    rb"-----END \1-----"
)


@dataclass(frozen=True)
class Finding:
    check: str
    path: str  # image path, "/etc/shadow"
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "path": self.path, "detail": self.detail}


@dataclass
class AuditReport:
    errors: list[Finding] = field(default_factory=list)
    setuid: list[str] = field(default_factory=list)
    services: dict[str, Any] = field(default_factory=dict)
    allowed_private_keys: list[str] = field(default_factory=list)
    elf_files: int = 0
    files: int = 0

    @property
    def passed(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "checks": {c: {"passed": not any(e.check == c for e in self.errors),
                           "errors": sum(e.check == c for e in self.errors)} for c in CHECKS},
            "errors": [e.as_dict() for e in sorted(self.errors, key=lambda e: (e.check, e.path, e.detail))],
            "setuid": sorted(self.setuid),
            "services": self.services,
            "allowed_private_keys": sorted(self.allowed_private_keys),
            "counts": {"files": self.files, "elf_files": self.elf_files},
        }

    def message(self, limit: int = 40) -> str:
        lines = [f"{e.path}: {e.detail}" for e in sorted(self.errors, key=lambda e: (e.check, e.path))]
        more = f"\n  ... and {len(lines) - limit} more (see the audit report)" if len(lines) > limit else ""
        return "image audit failed:\n  " + "\n  ".join(lines[:limit]) + more


def _image_path(rel: str) -> str:
    return "/" + rel


def _under(rel: str, dirs: Iterable[str]) -> bool:
    return any(rel == d or rel.startswith(d + "/") for d in dirs)


# ----------------------------------------------------------------------------------------------- single checks
def check_passwords(root: Path) -> list[Finding]:
    out = []
    for name, pwfield in (("etc/shadow", 1), ("etc/passwd", 1)):
        path = root / name
        if not path.is_file():
            continue
        for ln in path.read_text(errors="replace").splitlines():
            f = ln.split(":")
            if len(f) <= pwfield or not f[0]:
                continue
            value = f[pwfield]
            if name == "etc/passwd" and value in ("x", "*", "!"):
                continue
            if value == "":
                out.append(Finding("passwords", _image_path(name),
                                   f"user {f[0]} has an empty password (anyone can log in); lock it with '*'"))
            elif not value.startswith(("!", "*")):
                out.append(Finding("passwords", _image_path(name),
                                   f"user {f[0]} has a usable password hash; images are public on TFTP: lock it "
                                   f"('*') and log in with node_ssh_authorized_keys"))
    return out


def musl_path(root: Path) -> tuple[str, ...]:
    """The musl loader's search path: ``/etc/ld-musl-<arch>.path`` when present, else its built-in default."""
    for conf in sorted((root / "etc").glob("ld-musl-*.path")):
        dirs = [d for d in re.split(r"[:\n]", conf.read_text()) if d.strip()]
        if dirs:
            return tuple(d.strip() for d in dirs)
    return MUSL_DEFAULT_PATH


class ElfResolver:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.default = musl_path(root)
        self._cache: dict[str, bool] = {}

    def exists(self, image_path: str) -> bool:
        if image_path not in self._cache:
            try:
                self._cache[image_path] = resolve_in_root(self.root, image_path, clamp=True).is_file()
            except PathEscapeError:
                self._cache[image_path] = False
        return self._cache[image_path]

    def check(self, rel: str, dyn: _elf.Dynamic) -> list[str]:
        problems = []
        # glibc objects (a binary pointed at the private runtime, or the runtime's own libraries) resolve there;
        # the runtime's libc.so.6 names Debian's loader path as its interpreter, used only when it is run as a program
        runtime_lib = _image_path(rel).startswith(_glibc.LIBDIR + "/")
        glibc = dyn.interp == _glibc.LOADER or runtime_lib
        if dyn.interp and not runtime_lib and not self.exists(dyn.interp):
            problems.append(f"interpreter {dyn.interp} is not in the image")
        rel_dir = str(PurePosixPath(rel).parent)
        origin = "/" + ("" if rel_dir == "." else rel_dir)
        dirs = [p.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for p in dyn.rpath]
        dirs += (_glibc.LIBDIR,) if glibc else self.default
        for lib in dyn.needed:
            if "/" in lib:
                found = self.exists(lib)
            else:
                found = any(self.exists(f"{d.rstrip('/')}/{lib}") for d in dirs)
            if not found:
                problems.append(f"needs {lib}, not found in {':'.join(dirs)}")
        return problems


def role_module_findings(root: Path, role_modules: Mapping[str, Sequence[str]]) -> list[Finding]:
    out: list[Finding] = []
    if not any(role_modules.values()):
        return out
    kernels = _kernel.versions(root)
    if not kernels:
        return [Finding("role_modules", "/lib/modules", "no kernel module tree in the image, but roles load modules")]
    for kver in kernels:
        kdir = root / "lib/modules" / kver
        names = {_kmod.module_name(p) for p in _kmod.read_dep(kdir)} | _kmod.read_builtin(kdir)
        for role, mods in sorted(role_modules.items()):
            for m in mods:
                if m.replace("-", "_") not in names:
                    out.append(Finding("role_modules", f"/lib/modules/{kver}",
                                       f"role {role} loads module {m}, which is not in the pruned image "
                                       f"(add it to kernel_keep_modules or check its name)"))
    return out


def services_report(root: Path) -> dict[str, Any]:
    runlevels: dict[str, list[str]] = {}
    rl = root / "etc/runlevels"
    if rl.is_dir():
        for level in sorted(rl.iterdir()):
            if level.is_dir():
                runlevels[level.name] = sorted(p.name for p in level.iterdir())
    roles: dict[str, list[str]] = {}
    rd = root / _noderoles.ROLE_DIR
    if rd.is_dir():
        for f in sorted(rd.iterdir()):
            extra = _noderoles.parse_role_file(f.read_text()).get("services", [])
            roles[f.name] = sorted(set(runlevels.get("default", [])) | set(extra))
    return {"runlevels": runlevels, "roles": roles}


# ------------------------------------------------------------------------------------------------------ audit
def audit(root: Path, *, allow_private_keys: Sequence[str] = (),
          role_modules: Mapping[str, Sequence[str]] | None = None) -> AuditReport:
    root = Path(root)
    allowed = {"/" + a.lstrip("/") for a in allow_private_keys}
    report = AuditReport()
    resolver = ElfResolver(root)
    report.errors += check_passwords(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        rel_base = base.relative_to(root).as_posix()
        rel_base = "" if rel_base == "." else rel_base
        for name in sorted(dirnames) + sorted(filenames):
            p = base / name
            rel = f"{rel_base}/{name}" if rel_base else name
            st = p.lstat()
            mode = st.st_mode
            if stat.S_ISLNK(mode):
                continue
            if mode & stat.S_IWOTH and not _under(rel, TMP_DIRS):
                kind = "directory" if stat.S_ISDIR(mode) else "file"
                report.errors.append(Finding("world_writable", _image_path(rel),
                                             f"world-writable {kind} (mode {stat.S_IMODE(mode):04o}); chmod o-w it"))
            if not stat.S_ISREG(mode):
                continue
            report.files += 1
            if mode & (stat.S_ISUID | stat.S_ISGID):
                report.setuid.append(f"{_image_path(rel)} {stat.S_IMODE(mode):04o}")
            if name in ("authorized_keys", "authorized_keys2"):
                if stat.S_IMODE(mode) & 0o077:
                    report.errors.append(Finding("authorized_keys", _image_path(rel),
                                                 f"mode {stat.S_IMODE(mode):04o}: must be 0600 (sshd ignores or "
                                                 f"others can change it)"))
                dmode = stat.S_IMODE(base.stat().st_mode)
                if dmode & 0o077:
                    report.errors.append(Finding("authorized_keys", _image_path(rel_base),
                                                 f"directory mode {dmode:04o}: must be 0700"))
            if st.st_size == 0:
                continue
            _scan_file(p, rel, st.st_size, report, resolver=resolver, allowed=allowed)
    report.errors += role_module_findings(root, role_modules or {})
    report.services = services_report(root)
    return report


def _scan_file(p: Path, rel: str, size: int, report: AuditReport, *, resolver: ElfResolver, allowed: set[str]) -> None:
    with open(p, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:4] == _elf.ELF_MAGIC:
            if _under(rel, SKIP_ELF_DIRS):
                return
            dyn = _elf.dynamic(data)
            if dyn is None or dyn.elf_type not in (_elf.ET_EXEC, _elf.ET_DYN) or dyn.machine != _elf.EM_X86_64:
                return
            report.elf_files += 1
            for problem in resolver.check(rel, dyn):
                report.errors.append(Finding("elf_links", _image_path(rel),
                                             f"{problem} (an ELF built for another libc or missing its library: "
                                             f"it would fail only on the node)"))
            return
        if size > KEY_SCAN_LIMIT or data.find(b"PRIVATE KEY") < 0:
            return
        m = PRIVATE_KEY.search(data)
        if m is None:
            return
        if _image_path(rel) in allowed:
            report.allowed_private_keys.append(_image_path(rel))
            return
        kind = m.group(1).decode()
        report.errors.append(Finding("private_keys", _image_path(rel),
                                     f"holds a {kind} (images are served unauthenticated); remove it, ship it in a "
                                     f"per-node initrd, or list it in image_audit_allow_private_keys"))
