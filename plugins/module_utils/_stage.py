"""Staging a working copy of a tree for the stages that modify it (pruning, /init), keeping the source pristine.

``build/rootfs`` is what ``alpine_rootfs`` made; ``build/image`` is a copy that ``prune_kernel`` and friends edit.
The copy is redone only when the source's manifest or the given key (a digest of the editing stages' inputs)
changes, so a rerun with unchanged inputs touches nothing, and changed pruning rules start again from the full
tree instead of an already-pruned one.

What the copy was made from is recorded beside it in the build directory (``build/image.stage.json``), never inside
the tree: everything in ``build/image`` ships in the initramfs, and build state (with the builder's absolute paths)
has no place in a published image.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._fs import atomic_write_bytes, remove_dead_temps
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._manifest import ROOTFS_MANIFEST
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._run import Runner

STAMP_SUFFIX = ".stage.json"


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
    current = None
    try:
        current = json.loads(stamp_path(dest).read_text()).get("digest") if dest.is_dir() else None
    except (OSError, ValueError, AttributeError):
        current = None
    return StagePlan(src, dest, h.hexdigest(), current)


def apply_stage(plan: StagePlan, runner: Runner) -> None:
    """Copy ``src`` to ``dest`` (hardlinks, owners, modes, xattrs kept; reflinks where the filesystem can), then
    swap it in; the old copy is removed only after the new one is complete. The stamp is removed first and
    written last, so an interrupted copy is never taken for a finished one."""
    dest = plan.dest
    tmp = dest.with_name(f".{dest.name}.new-{os.getpid()}")
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (f".{dest.name}.new-", f".{dest.name}.old-"):  # of a killed run
        remove_dead_temps(dest.parent, leftover)
    plan.stamp.unlink(missing_ok=True)
    try:
        runner.run(["cp", "-a", "--reflink=auto", f"{plan.src}/.", str(tmp)], what="copying the rootfs")
        if dest.exists():
            dest.rename(old)
        tmp.rename(dest)
        atomic_write_bytes(plan.stamp, json.dumps({"digest": plan.digest, "src": str(plan.src)}).encode() + b"\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
