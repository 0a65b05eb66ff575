# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Copying ``overlay/`` into a rootfs verbatim, without ever writing outside it.

Symlinks inside the rootfs are interpreted as they would be inside the image (absolute targets are relative to
the rootfs), so ``/bin/sh -> /bin/busybox`` is fine but ``etc/evil -> ../../../../tmp`` is refused, as is any
overlay path whose parents resolve outside the rootfs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import resolve_in_root


@dataclass
class OverlayResult:
    files: list[str] = field(default_factory=list)
    digest: str = ""


def overlay_digest(overlay: Path) -> str:
    """A digest of everything the overlay would copy (paths, types, modes, contents, link targets)."""
    h = hashlib.sha256()
    if not overlay.is_dir():
        return h.hexdigest()
    for path in sorted(_walk(overlay)):
        st = path.lstat()
        rel = path.relative_to(overlay).as_posix()
        h.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode())
        if stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(path).encode())
        elif stat.S_ISREG(st.st_mode):
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
        h.update(b"\n")
    return h.hexdigest()


def _walk(top: Path) -> list[Path]:
    return [Path(dirpath, name) for dirpath, dirnames, filenames in os.walk(top) for name in dirnames + filenames]


IGNORED = {".keep", ".gitkeep", ".gitignore"}


def copy_overlay(overlay: Path, root: Path) -> OverlayResult:
    """Copy ``overlay`` into ``root``: modes kept, owned by root:root, parents first."""
    result = OverlayResult(digest=overlay_digest(overlay))
    if not overlay.is_dir():
        return result
    for src in sorted(_walk(overlay), key=lambda p: p.relative_to(overlay).parts):
        rel = src.relative_to(overlay)
        if src.name in IGNORED and src.is_file():
            continue
        st = src.lstat()
        parent = resolve_in_root(root, rel.parent.as_posix())
        dest = parent / rel.name
        if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
            if stat.S_ISDIR(st.st_mode) and dest.is_symlink():
                # a directory in the overlay over a symlinked directory in the image: follow it, inside the root
                resolve_in_root(root, rel.as_posix())
                continue
            dest.unlink()
        if stat.S_ISDIR(st.st_mode):
            dest.mkdir(exist_ok=True)
            os.chmod(dest, stat.S_IMODE(st.st_mode))
        elif stat.S_ISLNK(st.st_mode):
            target = os.readlink(src)
            # the link itself is copied verbatim; it must not point outside the image
            resolve_in_root(root, (PurePosixPath(rel.parent.as_posix()) / target).as_posix()
                            if not target.startswith("/") else target)
            os.symlink(target, dest)
        elif stat.S_ISREG(st.st_mode):
            shutil.copyfile(src, dest, follow_symlinks=False)
            os.chmod(dest, stat.S_IMODE(st.st_mode))
        else:
            raise ConfigError(f"overlay entry {src} is not a file, directory or symlink; remove it")
        os.lchown(dest, 0, 0)
        result.files.append("/" + rel.as_posix())
    return result
