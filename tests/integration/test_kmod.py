"""_kmod on real module trees: Alpine linux-virt 6.18 (.ko.gz, kmod 34.2 musl) and Debian 6.1 (.ko) (downloaded
material)."""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import zstandard

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _kmod
from tests.fixtures.debian import DebianKernel, clone_tree
from tests.fixtures.material import QuicksandImage

R8152_FW = {"rtl_nic/rtl8156b-2.fw", "rtl_nic/rtl8156a-2.fw", "rtl_nic/rtl8153c-1.fw", "rtl_nic/rtl8153b-2.fw",
            "rtl_nic/rtl8153a-4.fw", "rtl_nic/rtl8153a-3.fw", "rtl_nic/rtl8153a-2.fw"}


def test_modinfo_reads_firmware_of_real_r8152_in_every_compression(debian: DebianKernel, tmp_path: Path) -> None:
    ko = debian.modules / "kernel/drivers/net/usb/r8152.ko"
    raw = ko.read_bytes()
    variants = {
        "r8152.ko": raw,
        "r8152.ko.gz": gzip.compress(raw),
        "r8152.ko.xz": lzma.compress(raw, format=lzma.FORMAT_XZ),
        "r8152.ko.zst": zstandard.ZstdCompressor().compress(raw),
    }
    for name, data in variants.items():
        (tmp_path / name).write_bytes(data)
        info = _kmod.modinfo(tmp_path / name)
        assert {v for k, v in info if k == "firmware"} == R8152_FW, name
        assert any(k == "alias" and v.startswith("usb:v0BDAp8156") for k, v in info), name


def test_modinfo_of_alpine_gz_module(alpine: QuicksandImage) -> None:
    moddir = alpine.root / "lib/modules" / alpine.kernel_version
    info = dict(_kmod.modinfo(next(moddir.rglob("virtio_net.ko.gz"))))
    assert info["description"] == "Virtio network driver"
    assert info["depends"] == "net_failover"


def test_read_tree_alias_and_closure_on_alpine(alpine: QuicksandImage) -> None:
    tree = _kmod.read_tree(alpine.root, alpine.kernel_version)
    assert len(tree.modules) == 889
    assert tree.match_alias("virtio:d00000001v00001AF4") == {"virtio_net"}
    closure = tree.closure(["virtio_net"])
    assert {"virtio_net", "net_failover", "failover"} <= set(closure)
    assert closure["failover"] in {"virtio_net", "net_failover"}  # modules.dep lists transitive deps too


def test_softdep_targets_resolve_through_aliases_on_debian(debian: DebianKernel) -> None:
    tree = _kmod.read_tree(debian.root, debian.kernel_version)
    assert tree.softdeps["ext4"] == ["crypto-crc32c"]
    closure = tree.closure(["ext4"])
    assert {"ext4", "jbd2", "mbcache", "crc16"} <= set(closure)
    assert {"crc32c_generic", "crc32c_intel"} <= set(closure)  # alias crypto-crc32c
    assert tree.match_alias("usb:v0BDAp8156d3000dc00dsc00dp00icFFiscFFip00in00") == {"r8152"}
    assert "igc" in tree.match_alias("pci:v00008086d0000125Csv00008086sd00000000bc02sc00i00")


def test_target_kmod_is_the_trees_own_musl_kmod(alpine: QuicksandImage, debian: DebianKernel) -> None:
    k = _kmod.find_kmod(alpine.root, Runner())
    assert k.target and k.binary == str(alpine.root / "bin/kmod")
    assert "ZLIB" in k.features
    host = _kmod.find_kmod(debian.root, Runner())
    assert not host.target


def test_host_depmod_empty_modules_dep_is_caught(alpine: QuicksandImage, tmp_path: Path) -> None:
    """The Debian host kmod has no zlib: over .ko.gz it writes an empty modules.dep and exits 0."""
    host = subprocess.run(["depmod", "--version"], capture_output=True, text=True, check=True).stdout
    if "+ZLIB" in host:
        pytest.skip("this host's kmod supports zlib: the pitfall cannot be reproduced")
    kver = alpine.kernel_version
    root = tmp_path / "root"
    src = alpine.root / "lib/modules" / kver
    dst = root / "lib/modules" / kver
    (dst / "kernel/fs").mkdir(parents=True)
    shutil.copytree(src / "kernel/fs/ext4", dst / "kernel/fs/ext4")
    shutil.copytree(src / "kernel/fs/jbd2", dst / "kernel/fs/jbd2")
    shutil.copy(src / "kernel/fs/mbcache.ko.gz", dst / "kernel/fs/")
    shutil.copy(src / "modules.order", dst)
    hostkmod = _kmod.Kmod((), "depmod", False, frozenset({"XZ", "ZSTD"}))
    _kmod.depmod(root, kver, hostkmod, Runner())  # exit 0 ...
    assert (dst / "modules.dep").read_text() == ""  # ... and nothing in it
    files = _kmod.list_module_files(dst)
    with pytest.raises(NetbootError, match=r"modules\.dep is empty although 3 modules remain"):
        _kmod.verify_dep(root, kver, files)
    with pytest.raises(NetbootError, match=r"host kmod .* lacks ZLIB"):
        _kmod.check_kmod_supports(hostkmod, files)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="hard-links the root-owned Alpine material: needs root")
def test_target_depmod_regenerates_and_verifies(alpine: QuicksandImage, tmp_path: Path) -> None:
    root = clone_tree(alpine.root, tmp_path / "root")
    kver = alpine.kernel_version
    moddir = root / "lib/modules" / kver
    (moddir / "modules.dep").write_text("")
    (moddir / "modules.dep.bin").unlink()
    k = _kmod.find_kmod(root, Runner())
    _kmod.depmod(root, kver, k, Runner())
    _kmod.verify_dep(root, kver, _kmod.list_module_files(moddir))
    files = _kmod.show_depends(root, kver, k, ["ext4", "virtio_net"], Runner())
    assert str(moddir / "kernel/fs/jbd2/jbd2.ko.gz") in files
