"""The prune_kernel module as Ansible runs it (module file + JSON args) on real Alpine and Debian trees (downloaded
material); through the kernel role and ansible-playbook: test_prune_kernel.py."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.debian import DebianKernel, clone_tree
from tests.fixtures.material import QuicksandImage
from tests.fixtures.prune import HARDWARE, PROFILES, run_prune_kernel

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="hard-links root-owned material trees and keeps ownership: needs root"),
]


def warning_texts(result: dict[str, Any]) -> list[str]:
    """Warnings of a module result (plain strings, or ansible-core 2.19 WarningSummary dicts)."""
    out = []
    for w in result.get("warnings", []):
        out.append(w if isinstance(w, str) else str(w.get("msg") or w.get("event", {}).get("msg", "")))
    return out


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif rel.endswith(("modules.dep", "modules.alias")) or "/bin/" in f"/{rel}":
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = str(p.stat().st_size)
    return out


def test_two_kernels_none_chosen(alpine: QuicksandImage, tmp_path: Path) -> None:
    root = clone_tree(alpine.root, tmp_path / "root")
    (root / "lib/modules/6.6.1-0-lts").mkdir()
    r = run_prune_kernel(tmp_path, root=str(root), profiles=["original"])
    assert r["failed"] and "several kernels (6.18.56-0-virt, 6.6.1-0-lts); set kernel_version" in r["msg"]
    r = run_prune_kernel(tmp_path, root=str(root), kernel_version="6.18.56-0-virt", profiles=["original"],
                         firmware_audit="warn", check=True)
    assert not r.get("failed") and r["kernel_version"] == "6.18.56-0-virt"


def test_malformed_modalias_and_unknown_keep(debian: DebianKernel, tmp_path: Path) -> None:
    bad = tmp_path / "box.modalias"
    bad.write_text("usb:v0BDAp8156d3000dc00dsc00dp00icFFiscFFip00in00\n\nr8152 0x1f\n")
    r = run_prune_kernel(tmp_path, root=str(debian.root), hardware_profiles=[str(bad)], check=True)
    assert r["failed"] and f"{bad}:3: malformed line 'r8152 0x1f'" in r["msg"]
    r = run_prune_kernel(tmp_path, root=str(debian.root), keep_modules=["r8152", "nvidia_drm"], check=True)
    assert r["failed"] and "keep_modules names 'nvidia_drm'" in r["msg"]
    # a role's modules are kept like keep_modules, with the role's '-' -> '_' normalisation (_noderoles)
    r = run_prune_kernel(tmp_path, root=str(debian.root), node_roles={"gpu": {"services": [], "modules": ["nvidia-drm"]}},
                         check=True)
    assert r["failed"] and "keep_modules names 'nvidia_drm'" in r["msg"]


def test_unmatched_glob_and_alias_file_warn(debian: DebianKernel, tmp_path: Path) -> None:
    prof = tmp_path / "extra.yml"
    prof.write_text("files:\n  remove: [usr/share/doc/nothing-here]\n")
    hw = tmp_path / "alien.modalias"
    hw.write_text("usb:vFFFFpFFFFd0000dc00dsc00dp00icFEiscFEipFEin00\n")
    r = run_prune_kernel(tmp_path, root=str(debian.root), profiles=["base", str(prof)],
                         hardware_profiles=[str(hw)], check=True)
    assert not r.get("failed"), r.get("msg")
    warnings = "\n".join(warning_texts(r))
    assert "extra:files.remove: 'usr/share/doc/nothing-here' matches nothing" in warnings
    assert f"hardware profile {hw} matches no module" in warnings


def test_check_mode_diff_then_run_then_rerun_unchanged(alpine: QuicksandImage, tmp_path: Path) -> None:
    root = clone_tree(alpine.root, tmp_path / "root")
    kver = alpine.kernel_version
    report = tmp_path / "prune-report.json"
    args: dict[str, Any] = {"root": str(root), "profiles": ["original"], "hardware_profiles": [],
                            "module_compression": "decompress", "firmware_audit": "warn", "strip": True,
                            "report": str(report), "keep_modules": ["virtio_net"]}
    prof = tmp_path / "drop.yml"  # the virt tree has little the original table names: drop a few more
    prof.write_text("modules:\n  remove: [kernel/drivers/net/wireguard, kernel/net/sctp]\n")
    args["profiles"] = ["original", str(prof)]
    before = snapshot(root)
    r = run_prune_kernel(tmp_path, check=True, diff=True, **args)
    assert r["changed"] and not r.get("failed")
    assert snapshot(root) == before and not report.exists()  # check mode touches nothing
    gone = r["diff"]["before"].splitlines()
    assert f"lib/modules/{kver}/kernel/drivers/net/wireguard/wireguard.ko.gz  [drop:modules.remove:" \
           "kernel/drivers/net/wireguard]" in gone
    assert f"lib/modules/{kver}/kernel/fs/ext4/ext4.ko.gz  [decompress]" in gone
    plan_report = r["report"]

    r = run_prune_kernel(tmp_path, diff=True, **args)
    assert r["changed"] and not r.get("failed"), r.get("msg")
    assert not (root / f"lib/modules/{kver}/kernel/drivers/net/wireguard").exists()
    assert (root / f"lib/modules/{kver}/kernel/fs/ext4/ext4.ko").is_file()
    assert not list((root / f"lib/modules/{kver}").rglob("*.ko.gz"))
    assert any("depmod" in c for c in r["commands"]) and any("--show-depends" in c for c in r["commands"])
    saved = json.loads(report.read_text())
    assert saved["modules"] == plan_report["modules"]
    assert saved["modules"]["removed"]["count"] >= 3
    assert saved["removed_by_rule"]["drop:modules.remove:kernel/net/sctp"]["count"] >= 2
    assert saved["by_top_dir"][f"lib/modules/{kver}/kernel/drivers/net"]["removed"]["count"] >= 1
    dep = (root / f"lib/modules/{kver}/modules.dep").read_text()
    assert "kernel/fs/ext4/ext4.ko:" in dep and "wireguard" not in dep

    after = snapshot(root)
    r = run_prune_kernel(tmp_path, **args)
    assert not r["changed"] and not r.get("failed"), r.get("msg")
    # the remove rules did their work in the first run: no "matches nothing" noise on the rerun
    assert not [w for w in warning_texts(r) if w.startswith("drop:modules.remove")], warning_texts(r)
    assert r["commands"] == [] or all("--version" in c for c in r["commands"])
    assert snapshot(root) == after
    assert json.loads(report.read_text()) == saved  # the report still describes the prune that happened
    r = run_prune_kernel(tmp_path, check=True, **args)
    assert not r["changed"]


def test_shipped_profiles_by_name_without_search_dirs(debian: DebianKernel, tmp_path: Path) -> None:
    r = run_prune_kernel(tmp_path, root=str(debian.root), profiles=["original"], hardware_profiles=["n100-i226"],
                         hardware_mode="audit", profile_dirs=[], hardware_dirs=[], check=True)
    assert not r.get("failed"), r.get("msg")
    assert r["changed"] and {"r8152", "igc", "i915"} <= set(r["kept_modules"])
    # found in the collection this module file belongs to (a direct run, not an AnsiballZ payload)
    assert r["report"]["profiles"] == [f"{PROFILES}/original.yml"]
    assert r["report"]["hardware_profiles"] == [f"{HARDWARE}/n100-i226.modalias"]
