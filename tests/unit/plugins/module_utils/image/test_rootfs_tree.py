"""_rootfs_tree: what is done to the tree around apk - mkinitfs' trigger off, OpenRC services, pinned shadow dates."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._rootfs_tree import (
    MKINITFS_CONF,
    clamp_shadow,
    enable_services,
    seed_tree,
)


def test_the_seed_keeps_mkinitfs_from_building_inside_the_rootfs(tmp_path: Path) -> None:
    seed_tree(tmp_path / "new")
    assert (tmp_path / "new" / MKINITFS_CONF).read_text() == "disable_trigger=yes\n"


def test_enable_services_links_init_scripts_once(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc/init.d").mkdir(parents=True)
    (root / "etc/init.d/sshd").write_text("#!/sbin/openrc-run\n")
    enable_services(root, (("default", "sshd"),))
    enable_services(root, (("default", "sshd"),))  # again: no error, same link
    link = root / "etc/runlevels/default/sshd"
    assert link.is_symlink() and str(link.readlink()) == "/etc/init.d/sshd"


def test_enable_services_errors_name_the_service_and_the_fix(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc/init.d").mkdir(parents=True)
    (root / "etc/init.d/sshd").write_text("#!/sbin/openrc-run\n")
    with pytest.raises(ConfigError, match=r"alpine_services: unknown runlevel 'multiuser' \(use one of sysinit, boot, "
                                          r"default, shutdown, nonetwork\)"):
        enable_services(root, (("multiuser", "sshd"),))
    with pytest.raises(ConfigError) as err:
        enable_services(root, (("default", "chronyd"),))
    assert str(err.value) == ("alpine_services: no init script /etc/init.d/chronyd in the rootfs for runlevel "
                              "default; add the package that ships it to alpine_packages")
    assert not (root / "etc/runlevels").exists()


def test_shadow_change_dates_are_pinned_to_the_build_time(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text("root:*:20400:0:::::\nnode:!:20411:0:99999:7:::\nbroken-line\nhalt:*::::::\n")
    clamp_shadow(shadow, 1_700_000_500)
    day = str(1_700_000_500 // 86400)
    assert shadow.read_text() == f"root:*:{day}:0:::::\nnode:!:{day}:0:99999:7:::\nbroken-line\nhalt:*::::::\n"
    before = shadow.read_text()
    clamp_shadow(shadow, 0)  # no build time known: leave it
    assert shadow.read_text() == before
