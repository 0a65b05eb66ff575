# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Kernel module trees: metadata files (``modules.dep``/``.alias``/``.softdep``/``.weakdep``/``.builtin``), module
``.modinfo`` read in Python (gz/xz/zst), alias matching, dependency closure, and the kmod tools of the *target*
tree (run through the tree's own ELF interpreter) or of the host when the tree has none."""

from __future__ import annotations

import fnmatch
import gzip
import lzma
import mmap
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _deps
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _elf

try:
    import zstandard
except ImportError:
    _deps.missing("zstandard")

MODULE_SUFFIXES = (".ko", ".ko.gz", ".ko.xz", ".ko.zst")
COMPRESSED_SUFFIXES = (".gz", ".xz", ".zst")


def module_name(path: str) -> str:
    """``kernel/drivers/net/usb/r8152.ko.gz`` -> ``r8152`` (dashes normalised to underscores, as kmod does)."""
    base = path.rsplit("/", 1)[-1]
    if base.endswith(MODULE_SUFFIXES):
        base = strip_compression(base).removesuffix(".ko")
    return base.replace("-", "_")


def is_module_file(name: str) -> bool:
    return name.endswith(MODULE_SUFFIXES)


def decompress_bytes(data: bytes, name: str) -> bytes:
    """Decompress ``data`` according to the suffix of ``name`` (.gz, .xz, .zst); other names are returned as is."""
    try:
        if name.endswith(".gz"):
            return gzip.decompress(data)
        if name.endswith(".xz"):
            return lzma.decompress(data)
        if name.endswith(".zst"):
            out: bytes = zstandard.ZstdDecompressor().decompressobj().decompress(data)
            return out
    except (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError) as exc:
        raise NetbootError(f"{name}: cannot decompress ({exc}); the file is corrupt, reinstall its package") from exc
    return data


def strip_compression(name: str) -> str:
    return next((name[: -len(suf)] for suf in COMPRESSED_SUFFIXES if name.endswith(suf)), name)


def modinfo(path: Path) -> list[tuple[str, str]]:
    """``.modinfo`` key/value pairs of a module file (compressed or not; plain ones are mapped, not read)."""
    if path.name.endswith(COMPRESSED_SUFFIXES):
        return _elf.modinfo_from_elf(decompress_bytes(path.read_bytes(), path.name))
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return []
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return _elf.modinfo_from_elf(mm)


@dataclass
class ModuleTree:
    """Metadata of ``<root>/lib/modules/<kver>``. Paths are relative to the module directory."""

    root: Path
    kver: str
    modules: dict[str, str] = field(default_factory=dict)  # name -> relative path
    deps: dict[str, list[str]] = field(default_factory=dict)  # name -> dependency names
    aliases: list[tuple[str, str]] = field(default_factory=list)  # (pattern, module name)
    softdeps: dict[str, list[str]] = field(default_factory=dict)  # name -> targets (names or aliases)
    weakdeps: dict[str, list[str]] = field(default_factory=dict)
    builtin: set[str] = field(default_factory=set)
    builtin_firmware: dict[str, list[str]] = field(default_factory=dict)  # built-in module -> firmware it names
    stale: bool = False  # modules.dep missing/empty/stale: metadata read from the modules' .modinfo
    _alias_index: dict[str, list[tuple[str, str]]] | None = None

    @property
    def moddir(self) -> Path:
        return self.root / "lib" / "modules" / self.kver

    def names(self) -> set[str]:
        return set(self.modules)

    def match_alias(self, modalias: str) -> set[str]:
        """Module names whose ``modules.alias`` pattern matches ``modalias`` (fnmatch, like kmod)."""
        if self._alias_index is None:
            index: dict[str, list[tuple[str, str]]] = {}
            for pat, mod in self.aliases:
                lit = re.split(r"[*?\[]", pat, maxsplit=1)[0][:_PREFIX]
                index.setdefault(lit, []).append((pat, mod))
            self._alias_index = index
        found: set[str] = set()
        for n in range(min(len(modalias), _PREFIX) + 1):
            for pat, mod in self._alias_index.get(modalias[:n], ()):
                if fnmatch.fnmatchcase(modalias, pat):
                    found.add(mod)
        return found

    def resolve(self, target: str) -> set[str]:
        """A softdep/weakdep target or modprobe argument: a module name, else an alias."""
        name = target.replace("-", "_")
        if name in self.modules:
            return {name}
        if name in self.builtin:
            return set()
        return self.match_alias(target)

    def closure(self, seed: Iterable[str], exclude: set[str] | None = None) -> dict[str, str]:
        """Every module needed by ``seed``: modules.dep dependencies and softdep/weakdep targets, transitively.
        Soft/weak targets in ``exclude`` (removed on purpose) are skipped: they are optional at load time.
        Returns name -> the name that pulled it in (itself for seeds)."""
        skip = exclude or set()
        # Breadth first, each level in name order: every module is credited to the first parent (by depth, then
        # name) that needs it, whatever the hash seed or the order of the inputs (the prune report names it).
        why: dict[str, str] = {s: s for s in sorted(set(seed)) if s in self.modules}
        level = sorted(why)
        while level:
            found: dict[str, str] = {}
            for name in level:
                nxt: set[str] = set(self.deps.get(name, ()))
                for t in (*self.softdeps.get(name, ()), *self.weakdeps.get(name, ())):
                    nxt |= self.resolve(t) - skip
                for n in sorted(nxt):
                    if n not in why and n not in found and n in self.modules:
                        found[n] = name
            why.update(sorted(found.items()))
            level = sorted(found)
        return dict(sorted(why.items()))


_PREFIX = 16


def read_tree(root: Path, kver: str) -> ModuleTree:
    """Load the metadata of a module tree from ``modules.*``; when ``modules.dep`` is missing, empty or does not
    list exactly the module files on disk (no depmod run, a zlib-less host depmod, a stale tree), read
    dependencies, aliases and softdeps from every module's own ``.modinfo`` instead (``tree.stale`` is set)."""
    tree = ModuleTree(root, kver)
    moddir = tree.moddir
    on_disk = {module_name(p): p for p in list_module_files(moddir)}
    dep = read_dep(moddir)
    listed = {module_name(p): p for p in dep}
    if listed == on_disk:
        tree.modules = listed
        tree.deps = {module_name(p): [module_name(d) for d in ds] for p, ds in dep.items()}
        alias = moddir / "modules.alias"
        for line in (alias.read_text(errors="replace") if alias.is_file() else "").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "alias":
                tree.aliases.append((parts[1], parts[2].replace("-", "_")))
        for fname, target in (("modules.softdep", tree.softdeps), ("modules.weakdep", tree.weakdeps)):
            if (moddir / fname).is_file():
                _parse_deps_file((moddir / fname).read_text(errors="replace"), target)
    else:
        tree.stale = True
        tree.modules = dict(on_disk)
        for name, path in on_disk.items():
            info = modinfo(moddir / path)
            tree.deps[name] = [d.replace("-", "_") for k, v in info if k == "depends" for d in v.split(",") if d]
            tree.aliases.extend((v, name) for k, v in info if k == "alias")
            _parse_deps_file("\n".join(f"{k} {name} {v}" for k, v in info if k in ("softdep", "weakdep")),
                             tree.softdeps, weak=tree.weakdeps)
    for conf_dir in ("etc/modprobe.d", "lib/modprobe.d", "usr/lib/modprobe.d"):
        d = root / conf_dir
        if d.is_dir() and not d.is_symlink():
            for f in sorted(d.glob("*.conf")):
                if f.is_file():
                    _parse_deps_file(f.read_text(errors="replace"), tree.softdeps, weak=tree.weakdeps)
    tree.builtin = read_builtin(moddir)
    bm = moddir / "modules.builtin.modinfo"
    if bm.is_file():
        for item in bm.read_bytes().split(b"\0"):
            key, _unused, value = item.decode("utf-8", "replace").partition("=")
            mod, _unused, k = key.partition(".")
            if k == "firmware" and value:
                tree.builtin_firmware.setdefault(mod.replace("-", "_"), []).append(value)
    return tree


def read_dep(moddir: Path) -> dict[str, list[str]]:
    """``modules.dep`` of a module directory: module path -> the paths it depends on (empty when there is none)."""
    dep = moddir / "modules.dep"
    out: dict[str, list[str]] = {}
    for line in (dep.read_text(errors="replace") if dep.is_file() else "").splitlines():
        if ":" in line:
            path, _unused, rest = line.partition(":")
            out[path.strip()] = rest.split()
    return out


def read_builtin(moddir: Path) -> set[str]:
    """Names of the modules built into the kernel (``modules.builtin``; empty when there is none)."""
    b = moddir / "modules.builtin"
    return {module_name(line.strip()) for line in b.read_text().splitlines() if line.strip()} if b.is_file() else set()


def _parse_deps_file(text: str, soft: dict[str, list[str]], weak: dict[str, list[str]] | None = None) -> None:
    targets = {"softdep": soft, "weakdep": soft if weak is None else weak}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] in targets:
            mods = [p for p in parts[2:] if p not in ("pre:", "post:")]
            targets[parts[0]].setdefault(parts[1].replace("-", "_"), []).extend(mods)


def list_module_files(moddir: Path) -> list[str]:
    return sorted(os.path.relpath(os.path.join(dirpath, f), moddir)
                  for dirpath, _dirs, files in os.walk(moddir) for f in files if is_module_file(f))


# --- kmod tools -------------------------------------------------------------------------------------------------

KMOD_CANDIDATES = ("bin/kmod", "usr/bin/kmod", "sbin/kmod", "usr/sbin/kmod")


@dataclass(frozen=True)
class Kmod:
    """How to run kmod for a tree: ``prefix`` + argv0 tool name handling."""

    prefix: tuple[str, ...]  # e.g. (<root>/lib/ld-musl-x86_64.so.1, --library-path, ..., ) or ()
    binary: str  # kmod binary path (target's) or host tool directory marker
    target: bool  # True when the tree's own kmod is used
    features: frozenset[str]

    def argv(self, tool: str, *args: str) -> list[str]:
        if self.target:
            return [*self.prefix, "--argv0", tool, self.binary, *args]
        return [tool, *args]


def _features(text: str) -> frozenset[str]:
    return frozenset(m.upper() for m in re.findall(r"\+([A-Za-z0-9]+)", text))


def find_kmod(root: Path, runner: Runner) -> Kmod:
    """The tree's own kmod run through its ELF interpreter, else the host's kmod tools."""
    for cand in KMOD_CANDIDATES:
        p = root / cand
        if p.is_file() and not p.is_symlink() and _elf.is_elf(p):
            interp = _elf.interpreter(p)
            if interp is None:  # static kmod
                raise NetbootError(f"{p} is a static binary; not supported, install a dynamically linked kmod")
            loader = root / interp.lstrip("/")
            if not loader.exists():
                raise NetbootError(f"{p} needs the interpreter {interp}, absent from {root}; the rootfs is incomplete")
            libpath = ":".join(str(root / d) for d in ("lib", "usr/lib", "lib64", "usr/lib64",
                                                       "lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu")
                               if (root / d).is_dir())
            prefix = (str(loader), "--library-path", libpath)
            k = Kmod(prefix, str(p), True, frozenset())
            out = runner.run(k.argv("depmod", "--version"), what=f"target kmod {p}")
            return Kmod(prefix, str(p), True, _features(out.stdout + out.stderr))
    out = runner.run(["depmod", "--version"], what="host depmod (the tree has no kmod)")
    return Kmod((), "depmod", False, _features(out.stdout + out.stderr))


FEATURE_FOR = {".gz": "ZLIB", ".xz": "XZ", ".zst": "ZSTD"}


def check_kmod_supports(kmod: Kmod, module_paths: Iterable[str]) -> None:
    needed = {FEATURE_FOR[s] for p in module_paths for s in COMPRESSED_SUFFIXES if p.endswith(".ko" + s)}
    missing = sorted(needed - kmod.features)
    if missing:
        who = f"the tree's kmod {kmod.binary}" if kmod.target else "the host kmod (the tree has none)"
        raise NetbootError(f"{who} lacks {', '.join(missing)} support needed for the compressed modules; it would "
                           "write an empty modules.dep. Use module_compression: decompress, or install kmod in "
                           "the rootfs")


def depmod(root: Path, kver: str, kmod: Kmod, runner: Runner) -> None:
    runner.run(kmod.argv("depmod", "-b", str(root), kver), what="depmod")


def verify_dep(root: Path, kver: str, expected: Iterable[str]) -> None:
    """modules.dep must be non-empty when modules exist, list every module file, and every dependency must exist."""
    moddir = root / "lib" / "modules" / kver
    dep = moddir / "modules.dep"
    expected = set(expected)
    listed = read_dep(moddir)
    for path, deps in listed.items():
        for p in [path, *deps]:
            if not (moddir / p).is_file():
                raise NetbootError(f"{dep}: lists {p}, which does not exist; depmod produced inconsistent metadata")
    if expected and not listed:
        raise NetbootError(f"{dep} is empty although {len(expected)} modules remain: the kmod that ran lacks "
                           "support for their compression (Debian's kmod has no zlib)")
    missing = sorted(expected - set(listed))
    if missing:
        raise NetbootError(f"{dep} does not list {len(missing)} module files, e.g. {missing[:5]}")


def show_depends(root: Path, kver: str, kmod: Kmod, names: list[str], runner: Runner) -> list[str]:
    """Files ``modprobe --show-depends`` would insert for ``names`` in the tree; raises if any is missing."""
    if not names:
        return []
    out = runner.run(kmod.argv("modprobe", "-d", str(root), "-S", kver, "--show-depends", "-a", *names),
                     what="modprobe --show-depends", check=False)
    if out.returncode != 0:
        raise NetbootError(f"modprobe --show-depends failed in {root}: {out.stderr.strip()[-2000:]}")
    files: list[str] = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == "insmod" and len(parts) > 1:
            files.append(parts[1])
            if not Path(parts[1]).is_file():
                raise NetbootError(f"modprobe --show-depends in {root} names {parts[1]}, which does not exist")
    return files
