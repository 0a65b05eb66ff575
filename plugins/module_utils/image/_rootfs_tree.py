# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""What is done to a rootfs tree around ``apk add``: mkinitfs' trigger kept off before, then world, repositories,
keys, OpenRC services and a reproducible ``/etc/shadow`` after."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apk import world_entries
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apkformat import Keyring
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._nodeconf import edit_fields
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._rootfs_spec import RootfsSpec

MKINITFS_CONF = "etc/mkinitfs/mkinitfs.conf"


def seed_tree(new: Path) -> None:
    """Before apk runs: keep mkinitfs' trigger from building an initramfs inside the rootfs (we make our own)."""
    conf = new / MKINITFS_CONF
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("disable_trigger=yes\n")


def finish_tree(root: Path, spec: RootfsSpec, keyring: Keyring, epoch: int, warnings: list[str]) -> None:
    """After apk: world = what was asked for, repositories = the real mirrors, reproducible leftovers cleaned."""
    (root / "etc/apk/world").write_text(world_entries(list(spec.packages)))
    (root / "etc/apk/repositories").write_text(
        "".join(f"{spec.mirrors[0].rstrip('/')}/{spec.release_dir}/{r}\n" for r in spec.repositories)
    )
    Keyring({n: k for n, k in keyring.keys.items() if k.origin != "pinned"}).write(root / "etc/apk/keys")
    conf = root / MKINITFS_CONF
    new_conf = conf.with_name(conf.name + ".apk-new")
    if new_conf.exists():
        body = "".join(ln + "\n" for ln in new_conf.read_text().splitlines() if not ln.startswith("disable_trigger="))
        conf.write_text(body + "disable_trigger=yes\n")
        new_conf.unlink()
    for img in (root / "boot").glob("initramfs-*"):
        warnings.append(f"removed {img.name} that a package script generated inside the rootfs")
        img.unlink()
    with contextlib.suppress(FileNotFoundError):
        (root / "var/log/apk.log").unlink()
    clamp_shadow(root / "etc/shadow", epoch)
    enable_services(root, spec.services)


RUNLEVELS = ("sysinit", "boot", "default", "shutdown", "nonetwork")


def enable_services(root: Path, services: tuple[tuple[str, str], ...]) -> None:
    """Enable OpenRC services (``rc-update add`` without running anything in the rootfs)."""
    for level, svc in services:
        if level not in RUNLEVELS:
            raise ConfigError(f"alpine_services: unknown runlevel {level!r} (use one of {', '.join(RUNLEVELS)})")
        if not (root / "etc/init.d" / svc).is_file():
            raise ConfigError(
                f"alpine_services: no init script /etc/init.d/{svc} in the rootfs for runlevel {level}; "
                f"add the package that ships it to alpine_packages"
            )
        link = root / "etc/runlevels" / level / svc
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(f"/etc/init.d/{svc}")


def clamp_shadow(shadow: Path, epoch: int) -> None:
    """Account creation stamps 'days since 1970' of today into /etc/shadow; pin it for a reproducible tree."""
    if not shadow.is_file() or epoch <= 0:
        return
    day = str(epoch // 86400)
    text = edit_fields(shadow.read_text(), lambda f: [*f[:2], day, *f[3:]] if len(f) >= 3 and f[2].isdigit() else f)
    shadow.write_text(text)
