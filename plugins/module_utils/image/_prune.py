# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Planning and applying the kernel-module / firmware / file pruning of a rootfs.

The rules are read in ``_prunerules``, the phases of the plan are in ``_pruneselect``. ``make_plan`` is pure (reads
the tree, touches nothing); ``apply_plan`` changes the tree (temp names + renames), regenerates the module metadata
with the target's kmod and verifies it. The report (``PRUNE_REPORT``, ``read_report``) names no builder path: the
image directory is ``<image>``, the collection's location ``<collection>/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _compress
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import (
    atomic_path,
    atomic_symlink,
    inside,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._options import PRUNE
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _kernel, _kmod
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._prunerules import (
    Hardware,
    Rules,
    find_hardware,
    load_rules,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._pruneselect import (
    Entry,
    close_over_deps,
    metadata_needed,
    module_removals,
    rule_usage,
    select_decompression,
    select_files,
    select_firmware,
    select_modules,
    select_strip,
    walk,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records._record import Kind

PRUNE_REPORT = Kind("prune-report", 1, "kernel")
# The collection's own files (prune profiles) wherever it is installed or checked out.
_COLLECTION_PATH = re.compile(r"/(?:[^\s'\"]*/)?ansible_collections/homelab/alpine_netboot/")


def read_report(path: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """The prune report at ``path``, checked; None when there is none."""
    return PRUNE_REPORT.load(path) if path and os.path.isfile(path) else None


def _publishable(value: Any, tree: str) -> Any:
    """``value`` without the builder's paths: ``tree`` (the image directory) becomes ``<image>`` and the collection's
    location ``<collection>/``, so the report is the same wherever the image was built."""
    if isinstance(value, str):
        out = value.replace(tree.rstrip("/") + "/", "<image>/")
        out = "<image>" if out == tree.rstrip("/") else out.replace(tree.rstrip("/"), "<image>")
        return _COLLECTION_PATH.sub("<collection>/", out)
    if isinstance(value, dict):
        return {k: _publishable(v, tree) for k, v in value.items()}
    if isinstance(value, list):
        return [_publishable(v, tree) for v in value]
    return value


@dataclass
class Options:
    """prune_kernel's settings; a field that is one of its options has the module's default (``_options.PRUNE``)."""

    root: Path
    kernel_version: str | None = None
    profiles: list[str] = field(default_factory=lambda: list(PRUNE["profiles"]["default"]))
    hardware_profiles: list[str] = field(default_factory=lambda: list(PRUNE["hardware_profiles"]["default"]))
    keep_modules: list[str] = field(default_factory=lambda: list(PRUNE["keep_modules"]["default"]))
    module_compression: str = PRUNE["module_compression"]["default"]
    firmware_compression: str = PRUNE["firmware_compression"]["default"]
    firmware_audit: str = PRUNE["firmware_audit"]["default"]
    # select: keep only what hardware needs; audit: keep all, audit hardware strictly
    hardware_mode: str = PRUNE["hardware_mode"]["default"]
    strip: bool = PRUNE["strip"]["default"]
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


def _stats(entries: list[Entry]) -> dict[str, int]:
    return {"count": len(entries), "bytes": sum(e.size for e in entries)}


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


def _check_options(opts: Options) -> None:
    for key in ("module_compression", "firmware_compression", "firmware_audit", "hardware_mode"):
        allowed = PRUNE[key]["choices"]
        if getattr(opts, key) not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}, not {getattr(opts, key)!r}")


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
    plan.report = _publishable(_report(plan, mod_entries, fw_entries, file_entries, rules=rules, hardware=hardware,
                                       moddir_rel=moddir_rel), str(root))
    return plan


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


def _tally(counts: dict[str, dict[str, int]], key: str, size: int) -> None:
    s = counts.setdefault(key, {"count": 0, "bytes": 0})
    s["count"] += 1
    s["bytes"] += size


def _kept_modules_by_reason(plan: Plan, mods: dict[str, Entry], moddir_rel: str) -> dict[str, dict[str, int]]:
    kept_by: dict[str, dict[str, int]] = {}
    sizes = {e.rel: e.size for e in mods.values()}
    for name, why in plan.kept_modules.items():
        # a rule or hardware line without its pattern or line number (hardware:<file>:<line>, <profile>:<key>:<glob>)
        key = ("dependency closure" if why.startswith("dependency of")
               else why.rsplit(":", 1)[0] if why.count(":") >= 2 else why)
        _tally(kept_by, key, sizes.get(f"{moddir_rel}/{plan.module_paths.get(name, '')}", 0))
    return dict(sorted(kept_by.items()))


def _report(plan: Plan, mods: dict[str, Entry], fws: dict[str, Entry], files: dict[str, Entry], *, rules: Rules,
            hardware: list[Hardware], moddir_rel: str) -> dict[str, Any]:
    def area(entries: dict[str, Entry], only_modules: bool = False) -> dict[str, Any]:
        ents = [e for r, e in entries.items() if not only_modules or _kmod.is_module_file(r)]
        removed = [e for e in ents if e.rel in plan.remove]
        kept = [e for e in ents if e.rel not in plan.remove]
        return {"before": _stats(ents), "removed": _stats(removed), "after": _stats(kept)}

    by_rule: dict[str, dict[str, int]] = {}
    for rel, rule in plan.remove.items():
        _tally(by_rule, rule, plan.remove_sizes.get(rel, 0))
    fw_sizes = {e.rel: e.size for e in fws.values()}
    kept_fw: dict[str, dict[str, int]] = {}
    for rel, why in plan.firmware_kept.items():
        _tally(kept_fw, "named by kept modules" if why.startswith("named by ") else why, fw_sizes.get(rel, 0))
    by_top: dict[str, dict[str, dict[str, int]]] = {}
    for entries in (mods, fws, files):
        for rel, e in entries.items():
            t = by_top.setdefault(_top(rel, plan.kver), {"removed": {"count": 0, "bytes": 0},
                                                         "kept": {"count": 0, "bytes": 0}})
            _tally(t, "removed" if rel in plan.remove else "kept", e.size)
    return {
        "kernel_version": plan.kver,
        "profiles": rules.sources,
        "hardware_profiles": [h.source for h in hardware],
        "modules": area(mods, only_modules=True),
        "module_tree": area(mods),
        "firmware": area(fws),
        "files": area(files),
        "removed_by_rule": dict(sorted(by_rule.items())),
        "kept_modules_by_reason": _kept_modules_by_reason(plan, mods, moddir_rel),
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
