"""Resolving paths inside an image root the way the image itself will see them.

Symlinks are followed with absolute targets re-rooted at the image root, so ``/bin/sh -> /bin/busybox`` resolves
inside the tree instead of on the build host.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import PathEscapeError

MAX_LINKS = 40


def resolve_in_root(
    root: Path,
    rel: str | PurePosixPath,
    *,
    follow_last: bool = True,
    clamp: bool = False,
    links: list[str] | None = None,
) -> Path:
    """Resolve ``rel`` inside ``root``. A ``..`` above the root raises ``PathEscapeError`` (or, with ``clamp``,
    stays at the root as a chroot would); so does a symlink loop. ``links`` collects the symlinks traversed
    (paths relative to the root)."""
    parts = list(PurePosixPath(rel).parts)
    if parts and parts[0] == "/":
        parts = parts[1:]
    resolved: list[str] = []
    hops = 0
    while parts:
        name = parts.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            if resolved:
                resolved.pop()
            elif not clamp:
                raise PathEscapeError(f"{rel!s} climbs above the root {root}")
            continue
        candidate = root.joinpath(*resolved, name)
        if candidate.is_symlink() and (parts or follow_last):
            hops += 1
            if hops > MAX_LINKS:
                raise PathEscapeError(f"{rel!s}: too many levels of symbolic links under {root}")
            if links is not None:
                links.append("/".join([*resolved, name]))
            target = PurePosixPath(os.readlink(candidate))
            if target.is_absolute():
                resolved = []
                parts = list(target.parts[1:]) + parts
            else:
                parts = list(target.parts) + parts
            continue
        resolved.append(name)
    return root.joinpath(*resolved)
