"""qemu_boot_test module logic without booting (check mode): which kernel command line the RAM computation sees
(direct mode with nodes as boot.ipxe would give them, none in netboot mode), and the ram_limit refusal."""

from __future__ import annotations

import gzip
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._minram import MIB
from tests.fixtures.bootimage import bzimage_header
from tests.fixtures.module import run_module

MAC = "52:54:00:aa:bb:01"


def image(tmp_path: Path) -> dict[str, object]:
    kernel = bzimage_header(tmp_path / "vmlinuz", 24 * MIB)
    (tmp_path / "initramfs").write_bytes(gzip.compress(b"\0" * (64 * MIB), 1))
    return {"kernel": str(kernel), "initrds": [str(tmp_path / "initramfs")], "mac": MAC}


def check(tmp_path: Path, args: dict[str, object]) -> tuple[int, dict[str, object]]:
    return run_module("qemu_boot_test", tmp_path / "run", args, check=True, timeout=60)


def test_check_mode_ram_sees_the_node_cmdline_in_direct_mode_only(tmp_path: Path) -> None:
    args = image(tmp_path)
    rc, res = check(tmp_path, args)
    assert rc == 0 and res["changed"] is False and res["booted"] is False and res["commands"] == []
    ram = res["minimum_ram"]
    assert isinstance(ram, dict) and ram["tmpfs_cap"] == 0.5 and ram["unpacked_bytes"] == 64 * MIB
    nodes = [{"name": "n1", "mac": MAC, "hostname": "alpha", "kernel_args": "root=/dev/ram0"}]
    rc, res = check(tmp_path, {**args, "nodes": nodes})
    assert rc == 0 and res["minimum_ram"]["tmpfs_cap"] == 1.0  # type: ignore[index]
    rc, res = check(tmp_path, {**args, "nodes": nodes, "mode": "netboot"})
    assert rc == 0 and res["minimum_ram"]["tmpfs_cap"] == 0.5  # type: ignore[index]
    rc, res = check(tmp_path, {**args, "kernel_args": "console=ttyS0 initramfs_options=size=90%"})
    assert rc == 0 and res["minimum_ram"]["tmpfs_cap"] == 0.9  # type: ignore[index]


def test_ram_limit_fails_with_the_need_and_keeps_the_report(tmp_path: Path) -> None:
    args = image(tmp_path)
    rc, res = check(tmp_path, {**args, "ram_limit": "64M"})
    assert rc == 1
    need = res["minimum_ram"]["minimum_mib"]  # type: ignore[index]
    assert f"the image needs at least {need} MiB of RAM" in str(res["msg"]) and "ram_limit 64M" in str(res["msg"])
    rc, res = check(tmp_path, {**args, "ram_limit": "4G"})
    assert rc == 0
