"""Planning and applying the kernel-module / firmware / file pruning of a rootfs.

Rules are data: profile files (YAML) with remove/except/keep globs, a base module set, and hardware profiles
(modalias captures + lsmod output). ``make_plan`` is pure (reads the tree, touches nothing); ``apply_plan`` changes
the tree (temp names + renames), regenerates the module metadata with the target's kmod and verifies it.

Profile file format (every key optional)::

    description: text
    modules:                       # globs over paths relative to lib/modules/<kver>/ (fnmatch: * crosses /)
      remove: [kernel/drivers/net/wireless/*]
      except: [kernel/drivers/net/ethernet/intel/*]   # never removed by `remove` (does not force keeping)
      keep: [r8152, kernel/fs/overlayfs/*]             # always kept; plain names must exist (else error)
      base: [overlay, bridge, kvm_intel]               # wanted with hardware profiles; absent names are warnings
    firmware:                      # globs over paths relative to lib/firmware/
      remove: [i915/*]
      keep: [intel-ucode/*]
    files:                         # globs over paths relative to the root (other than modules and firmware)
      remove: [usr/share/bash-completion/*]
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils import (
    _compress,
    _deps,
    _elf,
    _glibc,
    _kernel,
    _kmod,
    _shipped,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import (
    ConfigError,
    NetbootError,
    PathEscapeError,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._fs import (
    atomic_path,
    atomic_symlink,
    inside,
    resolve_in_root,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._run import Runner

try:
    import yaml
except ImportError:
    _deps.missing("yaml")

GLOB_CHARS = re.compile(r"[*?\[]")
MODALIAS_RE = re.compile(r"^[a-z][a-z0-9_]*:\S.*$")
LSMOD_HEADER_RE = re.compile(r"^Module\s+Size\s+Used by\s*$")
LSMOD_RE = re.compile(r"^([A-Za-z0-9_-]+)\s+\d+\s+-?\d+(\s+\S+)?\s*$")
FW_SUFFIXES = ("", ".zst", ".xz")

# Firmware directory (or file prefix) -> the Alpine package shipping it (linux-firmware is split per directory).
FIRMWARE_PACKAGES: dict[str, str] = {
    "rtl_nic/": "linux-firmware-rtl_nic",
    "rtl_bt/": "linux-firmware-rtl_bt",
    "rtlwifi/": "linux-firmware-rtlwifi",
    "rtw88/": "linux-firmware-rtw88",
    "rtw89/": "linux-firmware-rtw89",
    "i915/": "linux-firmware-i915",
    "xe/": "linux-firmware-xe",
    "intel/": "linux-firmware-intel",
    "iwlwifi-": "linux-firmware-intel",
    "amdgpu/": "linux-firmware-amdgpu",
    "radeon/": "linux-firmware-radeon",
    "nvidia/": "linux-firmware-nvidia",
    "mediatek/": "linux-firmware-mediatek",
    "brcm/": "linux-firmware-brcm",
    "qcom/": "linux-firmware-qcom",
    "ath10k/": "linux-firmware-ath10k",
    "ath11k/": "linux-firmware-ath11k",
    "bnx2/": "linux-firmware-bnx2",
    "bnx2x/": "linux-firmware-bnx2x",
    "tigon/": "linux-firmware-tigon",
    "mellanox/": "linux-firmware-mellanox",
    "qed/": "linux-firmware-qed",
    "e100/": "linux-firmware-e100",
    "i40e/": "linux-firmware-intel",
    "ice/": "linux-firmware-intel",
    "cxgb4/": "linux-firmware-cxgb4",
    "mrvl/": "linux-firmware-mrvl",
    "regulatory.db": "wireless-regdb",
    "qat_": "linux-firmware-qat",
    "intel-ucode/": "intel-ucode",
    "amd-ucode/": "amd-ucode",
}


def firmware_package(name: str) -> str | None:
    for prefix, pkg in FIRMWARE_PACKAGES.items():
        if name.startswith(prefix):
            return pkg
    return None


# --- rules ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Glob:
    pattern: str
    source: str  # "<profile>:<section>.<key>" for the report and warnings

    @property
    def rule(self) -> str:
        return f"{self.source}:{self.pattern}"

    def matches(self, rel: str) -> bool:
        p = self.pattern.rstrip("/")
        return fnmatch.fnmatchcase(rel, p) or rel.startswith(p + "/")


@dataclass
class Rules:
    module_remove: list[Glob] = field(default_factory=list)
    module_except: list[Glob] = field(default_factory=list)
    module_keep: list[Glob] = field(default_factory=list)
    module_base: list[Glob] = field(default_factory=list)
    firmware_remove: list[Glob] = field(default_factory=list)
    firmware_keep: list[Glob] = field(default_factory=list)
    files_remove: list[Glob] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


SECTIONS = {
    "modules": ("remove", "except", "keep", "base"),
    "firmware": ("remove", "keep"),
    "files": ("remove",),
}


@dataclass(frozen=True)
class Source:
    """A profile's text and the file it came from."""

    name: str
    label: str
    text: str


@dataclass(frozen=True)
class ProfileKind:
    """Where profiles of one kind are looked up: the option naming search dirs and the collection's own dir."""

    option: str
    shipped: str
    suffixes: tuple[str, ...]


RULE_PROFILES = ProfileKind("profile_dirs", _shipped.KERNEL_PROFILES, (".yml", ".yaml"))
HARDWARE_PROFILES = ProfileKind("hardware_dirs", _shipped.KERNEL_HARDWARE, (".modalias", ".txt"))


def find_profile(ref: str, search: Iterable[Path], kind: ProfileKind = RULE_PROFILES) -> Source:
    """A profile name (looked up in ``search``, then in the installed collection's shipped dir) or a file path."""
    p = Path(ref)
    if "/" in ref or p.suffix in kind.suffixes:
        if p.is_file():
            return Source(p.name.rsplit(".", 1)[0], str(p), _read_text(p))
        raise ConfigError(f"profile file {ref} does not exist")
    dirs = list(search)
    shipped = _shipped.shipped(kind.shipped)
    if shipped is not None and shipped not in dirs:
        dirs.append(shipped)
    for d in dirs:
        for suf in kind.suffixes:
            c = d / f"{ref}{suf}"
            if c.is_file():
                return Source(ref, str(c), _read_text(c))
    avail = sorted({f.name.rsplit(".", 1)[0] for d in dirs if d.is_dir() for f in d.iterdir()
                    if f.suffix in kind.suffixes})
    hint = "" if shipped is not None else f"; {_shipped.how_to_pass(kind.option, kind.shipped, 'kernel')}"
    where = ", ".join(map(str, dirs)) or f"any directory (no {kind.option} given)"
    raise ConfigError(f"unknown profile {ref!r}: not a file and not in {where} (available: {', '.join(avail) or 'none'})"
                      f"{hint}")


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file ({exc})") from exc


def load_rules(profiles: Iterable[str], search: Iterable[Path]) -> Rules:
    rules = Rules()
    dirs = list(search)
    for ref in profiles:
        src = find_profile(ref, dirs, RULE_PROFILES)
        path = src.label
        try:
            data = yaml.safe_load(src.text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"profile {path}: invalid YAML: {exc}") from exc
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"profile {path}: top level must be a mapping")
        name = src.name
        rules.sources.append(path)
        for key in data:
            if key not in (*SECTIONS, "description"):
                raise ConfigError(f"profile {path}: unknown key {key!r} (allowed: description, {', '.join(SECTIONS)})")
        for section, keys in SECTIONS.items():
            sec = data.get(section) or {}
            if not isinstance(sec, dict):
                raise ConfigError(f"profile {path}: {section} must be a mapping of {', '.join(keys)}")
            for key, val in sec.items():
                if key not in keys:
                    raise ConfigError(f"profile {path}: unknown key {section}.{key} (allowed: {', '.join(keys)})")
                if not isinstance(val, list) or not all(isinstance(v, str) and v for v in val):
                    raise ConfigError(f"profile {path}: {section}.{key} must be a list of non-empty strings")
                target: list[Glob] = getattr(rules, f"{'module' if section == 'modules' else section}_{key}")
                target.extend(Glob(v, f"{name}:{section}.{key}") for v in val)
    return rules


# --- hardware profiles ------------------------------------------------------------------------------------------

@dataclass
class Hardware:
    source: str
    modaliases: list[tuple[int, str]] = field(default_factory=list)
    lsmod: list[tuple[int, str]] = field(default_factory=list)


def find_hardware(ref: str, search: Iterable[Path]) -> Hardware:
    src = find_profile(ref, search, HARDWARE_PROFILES)
    return parse_hardware_text(src.label, src.text)


def parse_hardware(path: Path) -> Hardware:
    return parse_hardware_text(str(path), _read_text(path))


def parse_hardware_text(source: str, text: str) -> Hardware:
    """Lines of ``find /sys/devices -name modalias -exec cat {} +`` and/or ``lsmod`` output; ``#`` comments."""
    hw = Hardware(source)
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or LSMOD_HEADER_RE.match(line):
            continue
        if MODALIAS_RE.match(line):
            hw.modaliases.append((n, line))
        elif (m := LSMOD_RE.match(line)) is not None:
            hw.lsmod.append((n, m.group(1).replace("-", "_")))
        else:
            raise ConfigError(f"hardware profile {source}:{n}: malformed line {raw!r}: expected a modalias "
                              "(bus:fields, e.g. pci:v00008086d0000125C...) or an lsmod line (name size used-by)")
    return hw


# --- the tree ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    rel: str  # relative to root
    size: int
    link: bool


def walk(root: Path, sub: str, skip: tuple[str, ...] = ()) -> dict[str, Entry]:
    """Files and symlinks under ``root/sub`` (relative to root), not entering ``skip`` dirs or symlinked dirs."""
    out: dict[str, Entry] = {}
    base = root / sub if sub else root
    if not base.is_dir():
        return out
    for dirpath, dirs, files in os.walk(base):
        relbase = os.path.relpath(dirpath, root)
        relbase = "" if relbase == "." else relbase + "/"
        keep_dirs = []
        for d in dirs:
            full = os.path.join(dirpath, d)
            if relbase + d in skip:
                continue
            if os.path.islink(full):
                out[relbase + d] = Entry(relbase + d, 0, True)
            else:
                keep_dirs.append(d)
        dirs[:] = keep_dirs
        for f in files:
            st = os.lstat(os.path.join(dirpath, f))
            link = stat.S_ISLNK(st.st_mode)
            out[relbase + f] = Entry(relbase + f, 0 if link else st.st_size, link)
    return out


def resolve_chain(root: Path, rel: str) -> tuple[list[str], str | None]:
    """Follow symlinks of ``rel`` inside ``root`` (absolute targets re-rooted). Returns (symlinks traversed, final
    regular-file path or None)."""
    links: list[str] = []
    try:
        final = resolve_in_root(root, rel, clamp=True, links=links)
    except PathEscapeError:  # a symlink loop
        return links, None
    return links, final.relative_to(root).as_posix() if final.is_file() else None


# --- plan -------------------------------------------------------------------------------------------------------

@dataclass
class Options:
    root: Path
    kernel_version: str | None = None
    profiles: list[str] = field(default_factory=list)
    hardware_profiles: list[str] = field(default_factory=list)
    keep_modules: list[str] = field(default_factory=list)
    module_compression: str = "keep"
    firmware_compression: str = "keep"
    firmware_audit: str = "error"
    hardware_mode: str = "select"  # select: keep only what hardware needs; audit: keep all, audit hardware strictly
    strip: bool = False
    profile_dirs: list[Path] = field(default_factory=list)
    hardware_dirs: list[Path] = field(default_factory=list)
    previous_report: dict[str, Any] | None = None  # the report of the last run, if any


@dataclass
class Plan:
    root: Path
    kver: str
    remove: dict[str, str] = field(default_factory=dict)  # rel -> rule
    remove_sizes: dict[str, int] = field(default_factory=dict)
    decompress: list[str] = field(default_factory=list)  # regular files (rel) to decompress in place
    relink: list[tuple[str, str]] = field(default_factory=list)  # (symlink rel, new target) for decompressed fw
    strip: list[str] = field(default_factory=list)
    kept_modules: dict[str, str] = field(default_factory=dict)  # name -> reason
    module_paths: dict[str, str] = field(default_factory=dict)  # kept name -> path relative to moddir (before)
    removed_dependents: dict[str, str] = field(default_factory=dict)  # name -> removed module it needs
    firmware_kept: dict[str, str] = field(default_factory=dict)  # rel -> reason
    used_rules: list[str] = field(default_factory=list)
    module_files_after: list[str] = field(default_factory=list)  # relative to moddir, after decompression
    depmod_needed: bool = False
    warnings: list[str] = field(default_factory=list)
    missing_firmware: list[dict[str, str | None]] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def changes(self) -> bool:
        return bool(self.remove or self.decompress or self.relink or self.strip or self.depmod_needed)


def _stats(entries: Iterable[Entry]) -> dict[str, int]:
    n = b = 0
    for e in entries:
        n += 1
        b += e.size
    return {"count": n, "bytes": b}


def _top(rel: str, kver: str) -> str:
    mod = f"lib/modules/{kver}/"
    if rel.startswith(mod):
        parts = rel[len(mod):].split("/")
        return mod + "/".join(parts[:3]) if parts[0] == "kernel" and len(parts) > 3 else mod + parts[0]
    if rel.startswith("lib/firmware/"):
        parts = rel.split("/")
        return "/".join(parts[:3]) if len(parts) > 3 else "lib/firmware"
    parts = rel.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0]


def _first_match(globs: list[Glob], rel: str, used: set[str]) -> Glob | None:
    """The first glob matching ``rel``; every matching glob is added to ``used`` (for the matches-nothing warning)."""
    hit = None
    for g in globs:
        if g.matches(rel):
            used.add(g.rule)
            hit = hit or g
    return hit


@dataclass
class ModuleSelection:
    """Phase 1: what the rules and hardware profiles say about each module, before dependencies."""

    forced: set[str] = field(default_factory=set)  # keep rules, keep_modules (and the hardware in audit mode)
    reasons: dict[str, str] = field(default_factory=dict)  # name -> first reason it is kept
    rule_removed: dict[str, Glob] = field(default_factory=dict)  # name -> the remove rule matching its path
    wants: list[tuple[str, str]] = field(default_factory=list)  # (name, why) the hardware / base set asks for
    used: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)


def select_modules(tree: _kmod.ModuleTree, rules: Rules, hardware: list[Hardware], keep_modules: list[str],
                   hardware_mode: str) -> ModuleSelection:
    sel = ModuleSelection()
    kver = tree.kver
    for g in rules.module_keep:
        if GLOB_CHARS.search(g.pattern) is None and "/" not in g.pattern:
            n = g.pattern.replace("-", "_")
            if n not in tree.modules and n not in tree.builtin:
                raise ConfigError(f"{g.source}: keep names module {g.pattern!r}, which is neither a module nor "
                                  f"built into kernel {kver}; fix the name or remove the entry")
            if n in tree.modules:
                sel.forced.add(n)
                sel.reasons.setdefault(n, g.rule)
            sel.used.add(g.rule)
            continue
        for name, path in tree.modules.items():
            if g.matches(path):
                sel.forced.add(name)
                sel.reasons.setdefault(name, g.rule)
                sel.used.add(g.rule)
    for n in keep_modules:
        nn = n.replace("-", "_")
        if nn not in tree.modules and nn not in tree.builtin:
            raise ConfigError(f"keep_modules names {n!r}, which is neither a module nor built into kernel {kver}")
        if nn in tree.modules:
            sel.forced.add(nn)
            sel.reasons.setdefault(nn, "keep_modules")

    for name, path in tree.modules.items():
        rg = _first_match(rules.module_remove, path, sel.used)
        if rg is not None and _first_match(rules.module_except, path, sel.used) is None:
            sel.rule_removed[name] = rg

    # What the hardware profiles (and, in select mode, the profiles' base set) ask for.
    if hardware:
        for g in rules.module_base:
            n = g.pattern.replace("-", "_")
            sel.used.add(g.rule)
            if n in tree.modules:
                if hardware_mode == "select":
                    sel.wants.append((n, g.rule))
            elif n not in tree.builtin:
                sel.warnings.append(f"{g.source}: base module {g.pattern!r} is not in kernel {kver} (skipped)")
        for hw in hardware:
            hits = 0
            for lineno, alias in hw.modaliases:
                for n in sorted(tree.match_alias(alias)):
                    hits += 1
                    sel.wants.append((n, f"hardware:{hw.source}:{lineno}"))
            for lineno, name in hw.lsmod:
                if name in tree.modules:
                    hits += 1
                    sel.wants.append((name, f"lsmod:{hw.source}:{lineno}"))
                elif name not in tree.builtin:
                    sel.warnings.append(f"{hw.source}:{lineno}: lsmod module {name!r} is not in kernel {kver}")
            if hits == 0:
                sel.warnings.append(f"hardware profile {hw.source} matches no module of kernel {kver}")
    if hardware and hardware_mode == "audit":  # the herd's own drivers are guaranteed, like keep rules
        for n, why in sel.wants:
            sel.forced.add(n)
            sel.reasons.setdefault(n, why)
    return sel


@dataclass
class ModuleClosure:
    """Phase 2: the kept modules (with their dependencies) and the removed ones (with their dependents)."""

    kept: dict[str, str] = field(default_factory=dict)  # name -> reason
    removed: dict[str, str] = field(default_factory=dict)  # name -> the rule (or its removed dependency's rule)
    removed_dependents: dict[str, str] = field(default_factory=dict)  # name -> removed module it needs
    critical: set[str] | None = None  # whose missing firmware fails the audit (None: every kept module)
    warnings: list[str] = field(default_factory=list)


def close_over_deps(tree: _kmod.ModuleTree, sel: ModuleSelection, hardware: bool, hardware_mode: str) -> ModuleClosure:
    out = ModuleClosure()
    # Keep rules beat remove rules (with their whole closure). A remove rule also removes the modules that need a
    # removed one (modules.dep): they could not load anyway (removing cfg80211 takes mac80211 and the drivers).
    forced_closure = tree.closure(sel.forced)
    removed = out.removed
    removed.update({n: g.rule for n, g in sel.rule_removed.items() if n not in forced_closure})
    rdeps: dict[str, set[str]] = {}
    for n, ds in tree.deps.items():
        for d in ds:
            rdeps.setdefault(d, set()).add(n)
    queue = sorted(removed)
    while queue:
        d = queue.pop()
        for n in sorted(rdeps.get(d, ())):
            if n not in removed and n not in forced_closure:
                removed[n] = removed[d]
                out.removed_dependents[n] = d
                queue.append(n)

    reasons = dict(sel.reasons)
    seeds: set[str] = set(sel.forced)
    hw_seeds: set[str] = set()
    dropped: dict[str, str] = {}  # wanted by hardware/base but removed by a rule (select mode)
    for n, why in sel.wants:
        if n in removed:
            dropped.setdefault(n, why)
            continue
        seeds.add(n)
        hw_seeds.add(n)
        reasons.setdefault(n, why)
    for n, why in sorted(dropped.items()):
        via = f" (needs {out.removed_dependents[n]})" if n in out.removed_dependents else ""
        out.warnings.append(f"{n} ({why}) is removed by {removed[n]}{via}")
    if not hardware or hardware_mode == "audit":
        for name in tree.modules:
            if name not in removed:
                seeds.add(name)
                reasons.setdefault(name, "not removed by any rule")
    # Modules whose missing firmware fails the audit: all kept ones, or with hardware_mode=audit only what the
    # hardware profiles (and keep rules) need.
    if hardware and hardware_mode == "audit":
        out.critical = set(tree.closure(hw_seeds | sel.forced, exclude=set(removed)))
    for name, parent in tree.closure(seeds, exclude=set(removed)).items():
        out.kept[name] = reasons.get(name) or f"dependency of {parent}"
        if name in sel.rule_removed:
            out.warnings.append(f"{tree.modules[name]} matches {sel.rule_removed[name].rule} but is kept: "
                                f"{out.kept[name]}")
    return out


def module_removals(tree: _kmod.ModuleTree, closure: ModuleClosure, mod_entries: dict[str, Entry],
                    moddir_rel: str, hardware: bool) -> dict[str, str]:
    """The module files (rel -> why) that go: every module file whose module is not kept."""
    kept_paths = {f"{moddir_rel}/{tree.modules[n]}" for n in closure.kept}
    remove: dict[str, str] = {}
    for rel in mod_entries:
        sub = rel[len(moddir_rel) + 1:]
        if not _kmod.is_module_file(sub) or rel in kept_paths:
            continue
        rr = closure.removed.get(_kmod.module_name(sub))
        remove[rel] = rr if rr else ("hardware: not needed by any hardware profile" if hardware
                                     else "module not selected")
    return remove


@dataclass
class FirmwareSelection:
    """Phase 3: firmware kept (rel -> why), removed (rel -> rule) and what the kept modules miss."""

    keep: dict[str, str] = field(default_factory=dict)
    remove: dict[str, str] = field(default_factory=dict)
    missing: list[dict[str, str | None]] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)


def select_firmware(root: Path, tree: _kmod.ModuleTree, kept_modules: Iterable[str], fw_entries: dict[str, Entry],
                    rules: Rules, *, critical: set[str] | None, audit: str) -> FirmwareSelection:
    """Keep the firmware the kept (and built-in) modules name plus keep rules; audit what is missing (an error
    unless ``audit`` is warn or the module is not critical)."""
    kver = tree.kver
    sel = FirmwareSelection()
    fw_keep = sel.keep
    needed: dict[str, list[str]] = {}  # firmware name -> modules naming it
    for name in sorted(kept_modules):
        for k, v in _kmod.modinfo(root / "lib" / "modules" / kver / tree.modules[name]):
            if k == "firmware":
                needed.setdefault(v, []).append(name)
    for name, fws in sorted(tree.builtin_firmware.items()):  # built-in drivers request firmware too
        for v in fws:
            needed.setdefault(v, []).append(f"{name} (built-in)")
    fw_dirs = [f"lib/firmware/updates/{kver}", "lib/firmware/updates", f"lib/firmware/{kver}", "lib/firmware"]
    removed_needed: list[str] = []

    def fw_removed_by(rel: str) -> Glob | None:
        return _first_match(rules.firmware_remove, rel[len("lib/firmware/"):], sel.used)

    for fw, mods in sorted(needed.items()):
        found = False
        for d in fw_dirs:
            if GLOB_CHARS.search(fw):  # some drivers name a pattern (brcmfmac: brcm/brcmfmac*-pcie.*.bin)
                cands = [r for r in fw_entries if r.startswith(d + "/") and
                         any(fnmatch.fnmatchcase(r[len(d) + 1:], fw + suf) for suf in FW_SUFFIXES)]
            else:
                cands = [f"{d}/{fw}{suf}" for suf in FW_SUFFIXES]
            for rel in cands:
                links, final = resolve_chain(root, rel)
                if final is None:
                    continue
                found = True
                for p in (*links, final):
                    if p.startswith("lib/firmware/"):
                        fr = fw_removed_by(p)
                        if fr is not None:
                            removed_needed.append(f"{p} (named by {', '.join(mods)}) is removed by {fr.rule}")
                            continue
                    fw_keep.setdefault(p, f"named by {mods[0]}")
            if found:
                break
        if not found:
            strict = critical is None or any(m.split(" ")[0] in critical or m.endswith("(built-in)") for m in mods)
            sel.missing.append({"module": ", ".join(mods), "firmware": fw, "package": firmware_package(fw),
                                "level": audit if strict else "warn"})
    for rel in fw_entries:
        kg = _first_match(rules.firmware_keep, rel[len("lib/firmware/"):], sel.used)
        if kg is not None:
            links, final = resolve_chain(root, rel)
            for p in (rel, *links, *([final] if final else [])):
                fw_keep.setdefault(p, kg.rule)
    for rel in fw_entries:
        if rel in fw_keep:
            continue
        fr = fw_removed_by(rel)
        sel.remove[rel] = fr.rule if fr else "firmware: not named by any kept module"
    sel.warnings.extend(sorted(set(removed_needed)))
    errors = [m for m in sel.missing if m["level"] == "error"]
    if errors:
        raise NetbootError("firmware audit failed:\n" + "\n".join(_missing_lines(errors, root)) +
                           "\nInstall the package(s) in the rootfs, drop the module with a remove rule, or set "
                           "firmware_audit: warn")
    if sel.missing:
        sel.warnings.extend(_missing_lines(sel.missing, root))
    return sel


def select_files(file_entries: dict[str, Entry], rules: Rules) -> tuple[dict[str, str], set[str]]:
    """Phase 4: the other files (rel -> rule) a ``files.remove`` rule removes, and the rules used."""
    used: set[str] = set()
    remove: dict[str, str] = {}
    for rel in file_entries:
        fg = _first_match(rules.files_remove, rel, used)
        if fg is not None:
            remove[rel] = fg.rule
    return remove, used


def rule_usage(rules: Rules, used: set[str], previous_report: dict[str, Any] | None,
               root: Path) -> tuple[list[str], list[str]]:
    """The rules used (a rule that matched in the run the previous report describes has simply done its work) and
    a warning per rule matching nothing."""
    all_globs = [*rules.module_remove, *rules.module_except, *rules.module_keep, *rules.firmware_remove,
                 *rules.firmware_keep, *rules.files_remove]
    before = set(previous_report.get("used_rules", [])) if previous_report else set()
    used_rules = sorted(used | ({g.rule for g in all_globs} & before))
    warnings = [f"{g.source}: {g.pattern!r} matches nothing in {root}" for g in all_globs
                if g.rule not in used and g.rule not in before]
    return used_rules, warnings


def select_decompression(root: Path, kept_module_files: Iterable[str], kept_firmware: Iterable[str],
                         module_compression: str,
                         firmware_compression: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Phase 5: the kept files to decompress in place and the firmware symlinks to point at the decompressed
    names."""
    decompress: list[str] = []
    relink: list[tuple[str, str]] = []
    if module_compression == "decompress":
        for rel in sorted(kept_module_files):
            if rel.endswith(_kmod.COMPRESSED_SUFFIXES):
                decompress.append(rel)
    if firmware_compression == "decompress":
        for rel in sorted(kept_firmware):
            if not rel.endswith((".zst", ".xz")):
                continue
            full = root / rel
            if full.is_symlink():
                relink.append((rel, _kmod.strip_compression(os.readlink(full))))
            elif full.is_file():
                decompress.append(rel)
    for rel in decompress:
        if (root / _kmod.strip_compression(rel)).exists():
            raise NetbootError(f"cannot decompress {rel}: {_kmod.strip_compression(rel)} exists too; remove one")
    return decompress, relink


def select_strip(root: Path, file_entries: dict[str, Entry], removed: Container[str]) -> list[str]:
    """Phase 6: the ELF files of the rootfs ``strip --strip-unneeded`` would shrink; never modules (signatures),
    the kernel, firmware (blobs a device may verify), nor the glibc runtime (Debian's bytes, as the SBOM lists them)."""
    out = []
    for rel, e in file_entries.items():
        if e.link or rel in removed or rel.endswith(_kmod.MODULE_SUFFIXES) or rel.startswith(
            ("boot/", "lib/firmware/", "usr/lib/firmware/", _glibc.PREFIX.lstrip("/") + "/")
        ):
            continue
        full = root / rel
        if e.size < 64 or not full.is_file() or not _elf.is_elf(full):
            continue
        if _elf.strippable(full):
            out.append(rel)
    return out


def metadata_needed(root: Path, kver: str, remove: Iterable[str], decompress: list[str],
                    module_files_after: list[str]) -> bool:
    """Phase 7: whether depmod must regenerate modules.* (something changed, or the current files do not match)."""
    moddir_rel = f"lib/modules/{kver}"
    if decompress or any(r.startswith(moddir_rel + "/") for r in remove):
        return True
    try:
        _kmod.verify_dep(root, kver, module_files_after)
    except NetbootError:
        return True
    return False


def _check_options(opts: Options) -> None:
    for key, val, allowed in (("module_compression", opts.module_compression, ("keep", "decompress")),
                              ("firmware_compression", opts.firmware_compression, ("keep", "decompress")),
                              ("firmware_audit", opts.firmware_audit, ("error", "warn")),
                              ("hardware_mode", opts.hardware_mode, ("select", "audit"))):
        if val not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}, not {val!r}")


def make_plan(opts: Options) -> Plan:
    """Read the tree and the rules and decide everything (touches nothing): the phases above, in order."""
    root = opts.root.resolve()
    if not root.is_dir():
        raise ConfigError(f"root {opts.root} is not a directory")
    _check_options(opts)
    kver = _kernel.find_kernel(root, opts.kernel_version).version
    plan = Plan(root, kver)
    rules = load_rules(opts.profiles, opts.profile_dirs)
    hardware = [find_hardware(h, opts.hardware_dirs) for h in opts.hardware_profiles]
    tree = _kmod.read_tree(root, kver)
    if tree.stale:
        plan.warnings.append(f"{root}/lib/modules/{kver}/modules.dep is missing, empty or stale: dependencies and "
                             "aliases were read from the modules themselves; depmod will regenerate it")
    moddir_rel = f"lib/modules/{kver}"
    mod_entries = walk(root, moddir_rel)
    fw_entries = walk(root, "lib/firmware")
    file_entries = walk(root, "", skip=("lib/modules", "lib/firmware", "usr/lib/modules", "usr/lib/firmware", "proc",
                                        "sys", "dev"))

    sel = select_modules(tree, rules, hardware, opts.keep_modules, opts.hardware_mode)
    plan.warnings.extend(sel.warnings)
    closure = close_over_deps(tree, sel, bool(hardware), opts.hardware_mode)
    plan.warnings.extend(closure.warnings)
    plan.kept_modules = closure.kept
    plan.removed_dependents = closure.removed_dependents
    plan.module_paths = {n: tree.modules[n] for n in plan.kept_modules}
    kept_paths = {f"{moddir_rel}/{tree.modules[n]}" for n in plan.kept_modules}
    plan.remove.update(module_removals(tree, closure, mod_entries, moddir_rel, bool(hardware)))

    fw = select_firmware(root, tree, plan.kept_modules, fw_entries, rules, critical=closure.critical,
                         audit=opts.firmware_audit)
    plan.remove.update(fw.remove)
    plan.firmware_kept = fw.keep
    plan.missing_firmware = fw.missing
    plan.warnings.extend(fw.warnings)

    files_removed, files_used = select_files(file_entries, rules)
    plan.remove.update(files_removed)
    for entries in (mod_entries, fw_entries, file_entries):
        plan.remove_sizes.update({rel: e.size for rel, e in entries.items() if rel in plan.remove})

    plan.used_rules, unused = rule_usage(rules, sel.used | fw.used | files_used, opts.previous_report, root)
    plan.warnings.extend(unused)

    plan.decompress, plan.relink = select_decompression(root, kept_paths, fw.keep, opts.module_compression,
                                                        opts.firmware_compression)
    after = {(_kmod.strip_compression(r) if r in plan.decompress else r) for r in kept_paths}
    plan.module_files_after = sorted(r[len(moddir_rel) + 1:] for r in after)
    _check_config(root, kver, after, {(_kmod.strip_compression(r) if r in plan.decompress else r)
                                      for r in fw.keep}, plan)

    if opts.strip:
        plan.strip = select_strip(root, file_entries, plan.remove)
    plan.depmod_needed = metadata_needed(root, kver, plan.remove, plan.decompress, plan.module_files_after)
    plan.report = _report(plan, mod_entries, fw_entries, file_entries, rules=rules, hardware=hardware,
                          moddir_rel=moddir_rel)
    return plan


def _missing_lines(missing: list[dict[str, str | None]], root: Path, limit: int = 200) -> list[str]:
    """One line per module (firmware files listed, at most 20 shown), at most ``limit`` lines."""
    by_module: dict[str, list[dict[str, str | None]]] = {}
    for m in missing:
        by_module.setdefault(str(m["module"]), []).append(m)
    lines = []
    for mod, items in by_module.items():
        names = [str(i["firmware"]) for i in items]
        pkgs = sorted({str(i["package"]) for i in items if i["package"]})
        shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        lines.append(f"module {mod} needs firmware {shown}, absent from {root}/lib/firmware"
                     + (f" (shipped by Alpine package {', '.join(pkgs)})" if pkgs else ""))
    if len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more modules (missing_firmware in the report)"]
    return lines


def _check_config(root: Path, kver: str, modules: set[str], firmware: set[str], plan: Plan) -> None:
    cfg_path = _kernel.find_kernel(root, kver).config
    if cfg_path is None:
        plan.warnings.append(f"no kernel config ({root}/boot/config-*): cannot check module/firmware "
                             "compression support")
        return
    cfg = _compress.read_kernel_config(cfg_path)
    fw_need = {".zst": "CONFIG_FW_LOADER_COMPRESS_ZSTD", ".xz": "CONFIG_FW_LOADER_COMPRESS_XZ"}
    for suf, opt in fw_need.items():
        files = sorted(f for f in firmware if f.endswith(suf) and (root / f).is_file() and not (root / f).is_symlink())
        ok = cfg.get(opt) == "y" or (suf == ".xz" and cfg.get("CONFIG_FW_LOADER_COMPRESS") == "y"
                                     and "CONFIG_FW_LOADER_COMPRESS_ZSTD" not in cfg)
        if files and not ok:
            raise NetbootError(f"{cfg_path}: {opt} is not set but {len(files)} firmware files stay {suf}-compressed "
                               f"(e.g. {files[0]}); the kernel could not load them: use firmware_compression: "
                               "decompress")
    if any(m.endswith(".ko.zst") for m in modules) and not any((root / c).is_file() for c in _kmod.KMOD_CANDIDATES):
        plan.warnings.append(f"{root} has no kmod: busybox modprobe cannot load the .ko.zst modules that stay; "
                             "install kmod in the rootfs or use module_compression: decompress")
    mod_need = {".ko.gz": "GZIP", ".ko.xz": "XZ", ".ko.zst": "ZSTD"}
    for suf, alg in mod_need.items():
        files = sorted(m for m in modules if m.endswith(suf))
        if files and cfg.get("CONFIG_MODULE_DECOMPRESS") != "y" and cfg.get(f"CONFIG_MODULE_COMPRESS_{alg}") != "y":
            plan.warnings.append(f"{cfg_path}: {len(files)} modules stay {suf} but the kernel neither decompresses "
                                 f"modules nor was built with CONFIG_MODULE_COMPRESS_{alg}: loading relies on "
                                 "the rootfs kmod")


def _report(plan: Plan, mods: dict[str, Entry], fws: dict[str, Entry], files: dict[str, Entry], *, rules: Rules,
            hardware: list[Hardware], moddir_rel: str) -> dict[str, Any]:
    def area(entries: dict[str, Entry], only_modules: bool = False) -> dict[str, Any]:
        ents = [e for r, e in entries.items() if not only_modules or _kmod.is_module_file(r)]
        removed = [e for e in ents if e.rel in plan.remove]
        kept = [e for e in ents if e.rel not in plan.remove]
        return {"before": _stats(ents), "removed": _stats(removed), "after": _stats(kept)}

    by_rule: dict[str, dict[str, int]] = {}
    for rel, rule in plan.remove.items():
        s = by_rule.setdefault(rule, {"count": 0, "bytes": 0})
        s["count"] += 1
        s["bytes"] += plan.remove_sizes.get(rel, 0)
    kept_by: dict[str, dict[str, int]] = {}
    sizes = {e.rel: e.size for e in mods.values()}
    for name, why in plan.kept_modules.items():
        if why.startswith(("hardware:", "lsmod:")):
            key = why.rsplit(":", 1)[0]
        elif why.startswith("dependency of"):
            key = "dependency closure"
        else:
            key = why.rsplit(":", 1)[0] if why.count(":") >= 2 else why
        s = kept_by.setdefault(key, {"count": 0, "bytes": 0})
        s["count"] += 1
        s["bytes"] += sizes.get(f"{moddir_rel}/{plan.module_paths.get(name, '')}", 0)
    fw_sizes = {e.rel: e.size for e in fws.values()}
    kept_fw: dict[str, dict[str, int]] = {}
    for rel, why in plan.firmware_kept.items():
        s = kept_fw.setdefault("named by kept modules" if why.startswith("named by ") else why,
                               {"count": 0, "bytes": 0})
        s["count"] += 1
        s["bytes"] += fw_sizes.get(rel, 0)
    by_top: dict[str, dict[str, dict[str, int]]] = {}
    for entries in (mods, fws, files):
        for rel, e in entries.items():
            t = by_top.setdefault(_top(rel, plan.kver), {"removed": {"count": 0, "bytes": 0},
                                                         "kept": {"count": 0, "bytes": 0}})
            s = t["removed" if rel in plan.remove else "kept"]
            s["count"] += 1
            s["bytes"] += e.size
    return {
        "root": str(plan.root),
        "kernel_version": plan.kver,
        "profiles": rules.sources,
        "hardware_profiles": [h.source for h in hardware],
        "modules": area(mods, only_modules=True),
        "module_tree": area(mods),
        "firmware": area(fws),
        "files": area(files),
        "removed_by_rule": dict(sorted(by_rule.items())),
        "kept_modules_by_reason": dict(sorted(kept_by.items())),
        "kept_firmware_by_reason": dict(sorted(kept_fw.items())),
        "by_top_dir": dict(sorted(by_top.items())),
        "removed_dependents": dict(sorted(plan.removed_dependents.items())),
        "decompress": len(plan.decompress),
        "relink": len(plan.relink),
        "strip": len(plan.strip),
        "missing_firmware": plan.missing_firmware,
        "used_rules": plan.used_rules,
        "warnings": plan.warnings,
    }


# --- apply ------------------------------------------------------------------------------------------------------

def _remove_empty_dirs(root: Path, rels: Iterable[str]) -> None:
    dirs = sorted({str(Path(r).parent) for r in rels}, key=lambda s: -s.count("/"))
    seen: set[str] = set()
    for d in dirs:
        cur = d
        while cur and cur != "." and cur not in seen:
            seen.add(cur)
            full = inside(root, cur)
            try:
                full.rmdir()
            except OSError:
                break
            cur = str(Path(cur).parent)


def _decompress_file(root: Path, rel: str) -> None:
    src = inside(root, rel)
    dst = inside(root, _kmod.strip_compression(rel))
    data = _kmod.decompress_bytes(src.read_bytes(), src.name)
    with atomic_path(dst, like=src.stat()) as tmp:
        tmp.write_bytes(data)
    src.unlink()


def _strip_file(root: Path, rel: str, runner: Runner) -> None:
    src = inside(root, rel)
    with atomic_path(src, like=src.stat()) as tmp:
        runner.run(["strip", "--strip-unneeded", "-p", "-o", str(tmp), str(src)], what=f"strip {rel}")


def apply_plan(plan: Plan, runner: Runner, verify: bool = True) -> list[str]:
    """Carry out ``plan``; return the module files ``modprobe --show-depends`` resolved for the kept set."""
    root = plan.root
    kmod = _kmod.find_kmod(root, runner) if plan.module_files_after else None
    if kmod is not None:
        _kmod.check_kmod_supports(kmod, plan.module_files_after)
    for rel in sorted(plan.remove):
        p = inside(root, rel)
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            raise NetbootError(f"{p}: expected a file, found a directory")
    _remove_empty_dirs(root, plan.remove)
    for rel in plan.decompress:
        _decompress_file(root, rel)
    for rel, target in plan.relink:
        link = inside(root, rel)
        new = inside(root, _kmod.strip_compression(rel))
        atomic_symlink(target, new)
        if link != new:
            link.unlink()
    for rel in plan.strip:
        _strip_file(root, rel, runner)
    files: list[str] = []
    if kmod is not None:
        if plan.depmod_needed:
            _kmod.depmod(root, plan.kver, kmod, runner)
        _kmod.verify_dep(root, plan.kver, plan.module_files_after)
        if verify:
            files = _kmod.show_depends(root, plan.kver, kmod, sorted(plan.kept_modules), runner)
    return files


def diff(plan: Plan) -> dict[str, str]:
    before = [f"{rel}  [{plan.remove[rel]}]" for rel in sorted(plan.remove)]
    before += [f"{rel}  [decompress]" for rel in plan.decompress]
    before += [f"{rel}  [relink]" for rel, _unused in plan.relink]
    before += [f"{rel}  [strip]" for rel in plan.strip]
    after = [_kmod.strip_compression(r) for r in plan.decompress] + [
        f"{_kmod.strip_compression(r)} -> {t}" for r, t in plan.relink] + [f"{r} (stripped)" for r in plan.strip]
    if plan.depmod_needed:
        after.append(f"lib/modules/{plan.kver}/modules.* regenerated")
    return {"before": "\n".join(before) + ("\n" if before else ""),
            "after": "\n".join(after) + ("\n" if after else "")}
