# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The kernel of an image tree, found in one place: its version (``lib/modules/<version>``), image (``boot/vmlinuz*``)
and config (``boot/config-*``). Each piece is looked up when read, so a caller needing one is not refused over
another; a missing or ambiguous piece is an error naming the files and the fix."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import resolve_in_root


def versions(root: str | os.PathLike[str]) -> list[str]:
    base = Path(root, "lib", "modules")
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.is_symlink()) if base.is_dir() else []


@dataclass(frozen=True)
class Kernel:
    """The kernel ``kver`` (else the only one) of ``root``, booted from ``image_name`` (else the only boot/vmlinuz*)."""

    root: Path
    kver: str | None = None
    image_name: str | None = None

    @property
    def version(self) -> str:
        base, found = self.root / "lib" / "modules", versions(self.root)
        if not base.is_dir():
            raise ConfigError(f"{base} does not exist: {self.root} has no kernel modules; install a kernel package "
                              "(e.g. linux-lts) in the rootfs or point `root` at the right tree")
        if self.kver and self.kver not in found:
            raise ConfigError(f"kernel_version {self.kver!r} not found in {base} (present: {', '.join(found) or 'none'})")
        if not found:
            raise ConfigError(f"{base} is empty: no kernel installed in {self.root}")
        if len(found) > 1 and not self.kver:
            raise ConfigError(f"{base} holds several kernels ({', '.join(found)}); set kernel_version to one of them")
        return self.kver or found[0]

    @property
    def moddir(self) -> Path:
        return self.root / "lib" / "modules" / self.version

    @property
    def image(self) -> Path:
        if self.image_name:
            path = resolve_in_root(self.root, self.image_name if "/" in self.image_name else f"boot/{self.image_name}")
            if not path.is_file():
                raise NetbootError(f"kernel {self.image_name!r} not found at {path}; check dist kernel setting")
            return path
        found = sorted(p for p in (self.root / "boot").glob("vmlinuz*") if p.is_file())
        if not found:
            raise NetbootError(f"no kernel (boot/vmlinuz*) in {self.root}; install a linux-* package in the rootfs "
                               "or set the kernel option")
        if len(found) > 1:
            raise ConfigError(f"several kernels in {self.root}/boot ({', '.join(p.name for p in found)}); "
                              "set the kernel option to one")
        return found[0]

    @property
    def config(self) -> Path | None:
        """``boot/config-<kver>`` when there is one, else the only ``boot/config-*``, else None."""
        if self.kver and (self.root / "boot" / f"config-{self.kver}").is_file():
            return self.root / "boot" / f"config-{self.kver}"
        configs = sorted((self.root / "boot").glob("config-*"))
        if len(configs) > 1:
            raise ConfigError(f"the image has several kernel configs ({', '.join(c.name for c in configs)}); set "
                              "kernel_config to the one of the kernel you boot, or remove the others from the rootfs")
        return configs[0] if configs else None


def find_kernel(root: str | os.PathLike[str], kver: str | None = None, image: str | None = None) -> Kernel:
    """The kernel of the image tree ``root``; its pieces are checked when read (``version``, ``image``, ``config``)."""
    return Kernel(Path(root), kver or None, image or None)
