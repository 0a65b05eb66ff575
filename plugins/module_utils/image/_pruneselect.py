# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The phases of a prune plan (``_prune.make_plan``): the tree's files, then the modules, firmware and other files
kept or removed by the rules (``_prunerules``) and the hardware, and what to decompress, strip and regenerate."""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import (
    ConfigError,
    NetbootError,
    PathEscapeError,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import resolve_in_root
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _elf, _glibc, _kmod
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._prunerules import (
    GLOB_CHARS,
    Glob,
    Hardware,
    Rules,
)

FW_SUFFIXES = ("", ".zst", ".xz")

# Firmware directory (or file prefix) -> the Alpine package shipping it (linux-firmware is split per directory).
FIRMWARE_PACKAGES: dict[str, str] = {
    **{f"{d}/": f"linux-firmware-{d}" for d in (
        "rtl_nic", "rtl_bt", "rtlwifi", "rtw88", "rtw89", "i915", "xe", "intel", "amdgpu", "radeon", "nvidia",
        "mediatek", "brcm", "qcom", "ath10k", "ath11k", "bnx2", "bnx2x", "tigon", "mellanox", "qed", "e100", "cxgb4",
        "mrvl")},
    "iwlwifi-": "linux-firmware-intel", "i40e/": "linux-firmware-intel", "ice/": "linux-firmware-intel",
    "regulatory.db": "wireless-regdb", "qat_": "linux-firmware-qat", "intel-ucode/": "intel-ucode",
    "amd-ucode/": "amd-ucode",
}


def firmware_package(name: str) -> str | None:
    return next((pkg for prefix, pkg in FIRMWARE_PACKAGES.items() if name.startswith(prefix)), None)


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
        links = [d for d in dirs if relbase + d not in skip and os.path.islink(os.path.join(dirpath, d))]
        out.update((relbase + d, Entry(relbase + d, 0, True)) for d in links)
        dirs[:] = [d for d in dirs if relbase + d not in skip and d not in links]
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


# --- phases -----------------------------------------------------------------------------------------------------

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

    if hardware:
        _hardware_wants(sel, tree, rules, hardware, hardware_mode)
    if hardware and hardware_mode == "audit":  # the herd's own drivers are guaranteed, like keep rules
        sel.forced.update(n for n, _unused in sel.wants)
        for n, why in sel.wants:
            sel.reasons.setdefault(n, why)
    return sel


def _hardware_wants(sel: ModuleSelection, tree: _kmod.ModuleTree, rules: Rules, hardware: list[Hardware],
                    hardware_mode: str) -> None:
    """What the hardware profiles (and, in select mode, the profiles' base set) ask for."""
    kver = tree.kver
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


def _firmware_needed(tree: _kmod.ModuleTree, kept_modules: Iterable[str]) -> dict[str, list[str]]:
    """Firmware name -> the kept (and built-in) modules naming it."""
    needed: dict[str, list[str]] = {}
    for name in sorted(kept_modules):
        for k, v in _kmod.modinfo(tree.moddir / tree.modules[name]):
            if k == "firmware":
                needed.setdefault(v, []).append(name)
    for name, fws in sorted(tree.builtin_firmware.items()):  # built-in drivers request firmware too
        for v in fws:
            needed.setdefault(v, []).append(f"{name} (built-in)")
    return needed


def select_firmware(root: Path, tree: _kmod.ModuleTree, kept_modules: Iterable[str], fw_entries: dict[str, Entry],
                    rules: Rules, *, critical: set[str] | None, audit: str) -> FirmwareSelection:
    """Keep the firmware the kept (and built-in) modules name plus keep rules; audit what is missing (an error
    unless ``audit`` is warn or the module is not critical)."""
    kver = tree.kver
    sel = FirmwareSelection()
    fw_keep = sel.keep
    needed = _firmware_needed(tree, kept_modules)
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
    remove = {rel: g.rule for rel in file_entries if (g := _first_match(rules.files_remove, rel, used)) is not None}
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
    decompress = sorted(r for r in kept_module_files if module_compression == "decompress"
                        and r.endswith(_kmod.COMPRESSED_SUFFIXES))
    relink: list[tuple[str, str]] = []
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
