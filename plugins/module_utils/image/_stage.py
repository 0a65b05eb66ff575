# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Staging a working copy of a tree for the stages that modify it (pruning, /init), keeping the source pristine.

``build/rootfs`` is what ``alpine_rootfs`` made; ``build/image`` is a copy that ``prune_kernel`` and friends edit.
The copy is redone only when the source's manifest or the editing stages' inputs change (``stage_inputs``: their
settings and the contents of every file they load, read through the resolvers the stages use), so a rerun with
unchanged inputs touches nothing, and any changed input starts again from the full tree: an input changed and
changed back gives the first image again, bit for bit.

What the copy was made from is recorded beside it in the build directory (``build/image.stage.json``), never inside
the tree: everything in ``build/image`` ships in the initramfs, and build state (with the builder's absolute paths)
has no place in a published image.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import (
    atomic_write_bytes,
    read_json_object,
    replacing_dir,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._options import NODE, PRUNE, with_defaults
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import (
    _binaries,
    _glibc,
    _nodeconf,
    _prune,
    _prunerules,
    _pruneselect,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._rootfs_spec import ROOTFS_MANIFEST

STAMP_SUFFIX = ".stage.json"


def _file(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _prune_inputs(args: Mapping[str, Any]) -> dict[str, Any]:
    def loaded(refs: list[str], dirs: list[str], kind: _prunerules.ProfileKind) -> list[list[str]]:
        found = (_prunerules.find_profile(r, [Path(d) for d in dirs], kind) for r in refs)
        return [[s.name, hashlib.sha256(s.text.encode()).hexdigest()] for s in found]
    a = with_defaults(PRUNE, args)
    return {"kernel_version": a["kernel_version"] or "", "strip": bool(a["strip"]),
            **{k: a[k] for k in ("hardware_mode", "keep_modules", "module_compression", "firmware_compression",
                                 "firmware_audit")},
            "profiles": loaded(a["profiles"], a["profile_dirs"], _prunerules.RULE_PROFILES),
            "hardware_profiles": loaded(a["hardware_profiles"], a["hardware_dirs"], _prunerules.HARDWARE_PROFILES)}


def _node_inputs(args: Mapping[str, Any]) -> dict[str, Any]:
    a = with_defaults(NODE, args)
    return {**{k: a[k] for k in ("roles", "default_role", "authorized_keys", "nomad_servers", "serial_tty")},
            "boot_script": _file(a["boot_script"]), "init_scripts": {k: _file(v) for k, v in a["init_scripts"].items()}}


def _binaries_inputs(a: Mapping[str, Any]) -> dict[str, Any]:
    # each pinned by its sha256: the entry is the content; so is the glibc runtime's pin
    return {"binaries": a.get("binaries", []), "glibc_pin": a.get("glibc_pin"), "glibc_url": a.get("glibc_url")}


# stage -> (what it loads, the code that applies it)
STAGES: dict[str, tuple[Callable[[Mapping[str, Any]], dict[str, Any]], tuple[Any, ...]]] = {
    "prune": (_prune_inputs, (_prune, _prunerules, _pruneselect)), "node": (_node_inputs, (_nodeconf,)),
    "binaries": (_binaries_inputs, (_binaries, _glibc)),
}


def code_closure(modules: tuple[ModuleType, ...]) -> list[ModuleType]:
    """``modules`` and every collection module_utils module they import, transitively, sorted by name: the code a
    stage runs (a change to a helper it imports re-copies the image as surely as one to the stage itself)."""
    pkg = __name__.rsplit(".", 2)[0]  # ...plugins.module_utils
    seen: dict[str, ModuleType] = {}
    todo = list(modules)
    while todo:
        mod = todo.pop()
        if mod.__name__ in seen:
            continue
        seen[mod.__name__] = mod
        for node in ast.walk(ast.parse(inspect.getsource(mod))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(pkg):
                names = [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
                for name in names if node.module.count(".") == pkg.count(".") + 1 else [node.module]:
                    todo.append(importlib.import_module(name))
    return [seen[n] for n in sorted(seen)]


def code_digest(modules: tuple[ModuleType, ...]) -> str:
    h = hashlib.sha256()
    for mod in code_closure(modules):
        h.update(f"{mod.__name__}\0{inspect.getsource(mod)}\0".encode())
    return h.hexdigest()


def stage_inputs(stages: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Per stage that edits the copy (its module's options, as the role passes them to it), the digest of what it
    loads: its settings, the contents of the files it reads (profiles found by name or given by path, scripts) and
    the collection code that applies them (``code_closure``). A missing file fails here as it would in the stage."""
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ConfigError(f"unknown image stage(s) {', '.join(unknown)} (known: {', '.join(STAGES)})")
    out = {}
    for name, args in sorted(stages.items()):
        loader, code = STAGES[name]
        data = {"inputs": loader(args), "code": code_digest(code)}
        out[name] = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    return out


def stage_key(inputs: Mapping[str, str]) -> str:
    """The key of the copy: one digest over ``stage_inputs``."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class StagePlan:
    src: Path
    dest: Path
    digest: str
    current: str | None

    @property
    def stamp(self) -> Path:
        return stamp_path(self.dest)

    @property
    def changed(self) -> bool:
        return self.digest != self.current


def stamp_path(dest: Path) -> Path:
    """The bookkeeping file of the copy ``dest``: beside it (``build/image`` -> ``build/image.stage.json``)."""
    return dest.with_name(dest.name + STAMP_SUFFIX)


def plan_stage(src: Path, dest: Path, key: str) -> StagePlan:
    if not src.is_dir():
        raise ConfigError(f"stage source {src} does not exist: build the rootfs first (playbooks/build.yml --tags rootfs)")
    if dest.resolve() == src.resolve() or src.resolve() in dest.resolve().parents:
        raise ConfigError(f"stage destination {dest} must not be {src} or inside it")
    h = hashlib.sha256()
    manifest = src / ROOTFS_MANIFEST
    h.update(manifest.read_bytes() if manifest.is_file() else str(src.stat().st_mtime_ns).encode())
    h.update(b"\0" + key.encode())
    current = (read_json_object(stamp_path(dest)) or {}).get("digest") if dest.is_dir() else None
    return StagePlan(src, dest, h.hexdigest(), current)


def apply_stage(plan: StagePlan, runner: Runner) -> None:
    """Copy ``src`` to ``dest`` (hardlinks, owners, modes, xattrs kept; reflinks where the filesystem can), then
    swap it in; the old copy is removed only after the new one is complete. The stamp is removed first and
    written last, so an interrupted copy is never taken for a finished one."""
    plan.stamp.unlink(missing_ok=True)
    with replacing_dir(plan.dest) as tmp:
        runner.run(["cp", "-a", "--reflink=auto", f"{plan.src}/.", str(tmp)], what="copying the rootfs")
    atomic_write_bytes(plan.stamp, json.dumps({"digest": plan.digest, "src": str(plan.src)}).encode() + b"\n")
