"""_kernel: the one finder of an image tree's kernel (version, image, config, module directory) on small trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import (
    ConfigError,
    NetbootError,
    PathEscapeError,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._kernel import find_kernel, versions


def tree(root: Path, kvers: tuple[str, ...] = ("6.18.56-0-virt",), images: tuple[str, ...] = ("vmlinuz-virt",),
         configs: tuple[str, ...] = ("6.18.56-0-virt",)) -> Path:
    (root / "boot").mkdir(parents=True)
    for kver in kvers:
        (root / "lib/modules" / kver).mkdir(parents=True)
    for name in images:
        (root / "boot" / name).write_bytes(b"MZ")
    for kver in configs:
        (root / "boot" / f"config-{kver}").write_text("CONFIG_RD_ZSTD=y\n")
    return root


def test_finds_version_image_config_and_module_dir(tmp_path: Path) -> None:
    kernel = find_kernel(tree(tmp_path))
    assert kernel.version == "6.18.56-0-virt"
    assert kernel.image == tmp_path / "boot/vmlinuz-virt"
    assert kernel.config == tmp_path / "boot/config-6.18.56-0-virt"
    assert kernel.moddir == tmp_path / "lib/modules/6.18.56-0-virt"
    assert versions(tmp_path) == ["6.18.56-0-virt"]


def test_two_kernels_are_refused_naming_both(tmp_path: Path) -> None:
    root = tree(tmp_path, kvers=("6.1.0-1-amd64", "6.18.56-0-virt"), images=("vmlinuz-lts", "vmlinuz-virt"),
                configs=("6.1.0-1-amd64", "6.18.56-0-virt"))
    kernel = find_kernel(root)
    with pytest.raises(ConfigError, match=r"several kernels \(6\.1\.0-1-amd64, 6\.18\.56-0-virt\); set kernel_version"):
        assert not kernel.version
    with pytest.raises(ConfigError, match=r"several kernels in .*/boot \(vmlinuz-lts, vmlinuz-virt\); set the kernel"):
        assert not kernel.image
    with pytest.raises(ConfigError, match=r"several kernel configs \(config-6\.1\.0-1-amd64, config-6\.18\.56"):
        assert not kernel.config
    chosen = find_kernel(root, "6.18.56-0-virt", "vmlinuz-lts")
    assert chosen.version == "6.18.56-0-virt" and chosen.image.name == "vmlinuz-lts"
    assert chosen.config == root / "boot/config-6.18.56-0-virt"


def test_missing_pieces_are_named(tmp_path: Path) -> None:
    kernel = find_kernel(tree(tmp_path, kvers=(), images=(), configs=()))
    with pytest.raises(ConfigError, match=r"lib/modules does not exist: .* has no kernel modules; install"):
        assert not kernel.version
    with pytest.raises(NetbootError, match=r"no kernel \(boot/vmlinuz\*\) in .*; install a linux-\* package"):
        assert not kernel.image
    assert kernel.config is None and versions(tmp_path) == []
    (tmp_path / "lib/modules").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"lib/modules is empty: no kernel installed"):
        assert not kernel.version
    with pytest.raises(ConfigError, match=r"kernel_version '5\.0' not found in .*lib/modules \(present: none\)"):
        assert not find_kernel(tmp_path, "5.0").version


def test_named_image_stays_inside_the_tree(tmp_path: Path) -> None:
    root = tree(tmp_path)
    with pytest.raises(PathEscapeError):
        assert not find_kernel(root, image="../../etc/passwd").image
    with pytest.raises(NetbootError, match=r"kernel 'vmlinuz-edge' not found at .*boot/vmlinuz-edge"):
        assert not find_kernel(root, image="vmlinuz-edge").image
    assert find_kernel(root, image="boot/vmlinuz-virt").image == root / "boot/vmlinuz-virt"
