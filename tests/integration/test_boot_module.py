"""qemu_boot_test module without booting: the minimum-RAM report and the ram_limit check (check mode)."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.bootimage import boot_image
from tests.fixtures.module import run_module as _run_module


def run_module(tmp_path: Path, args: dict[str, object]) -> tuple[int, dict[str, object]]:
    return _run_module("qemu_boot_test", tmp_path, args, check=True, timeout=60)


def test_check_mode_reports_minimum_ram_and_enforces_the_limit(tmp_path: Path) -> None:
    image = boot_image()
    args = {"kernel": str(image.kernel), "initrds": [str(image.initramfs)], "ram_limit": "1G"}
    rc, res = run_module(tmp_path, args)
    assert rc == 0 and res["changed"] is False and res["booted"] is False
    ram = res["minimum_ram"]
    assert isinstance(ram, dict) and 64 < ram["minimum_mib"] < 256 and ram["limited_by"] == "unpack"
    rc, res = run_module(tmp_path, {**args, "ram_limit": "64M"})
    assert rc == 1
    assert f"needs at least {ram['minimum_mib']} MiB of RAM" in str(res["msg"]) and "ram_limit 64M" in str(res["msg"])
    rc, res = run_module(tmp_path, {**args, "kernel": str(tmp_path / "nope")})
    assert rc == 1 and "nope" in str(res["msg"])
