"""Issue 16: the image follows what its editing stages load (``stage_tree``'s key: ``_stage.stage_inputs``).

On the session's e2e build, one input class at a time: a prune rule file given by path (edited), a binary dropped
from ``netboot_binaries``, ``kernel_profile_dirs``, ``kernel_hardware_mode`` and a hardware capture file (edited);
each takes effect on the next run, and going back to the first inputs gives the first image bit for bit. The key
is computed from the very options the stages' modules are given (no drift between the two).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import sha256_file
from tests.fixtures.e2e import Built

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="building the rootfs needs root"),
]

STAGE_TASKS = {"prune": "Prune kernel modules", "node": "Write the node roles", "binaries": "Install the pinned"}


def modules(built: Built) -> set[str]:
    return {p.name.split(".ko")[0] for p in (built.build / "image/lib/modules").rglob("*.ko*")}


def run(built: Built, tags: str | None = "kernel", **extravars: Any) -> dict[str, Any]:
    """One build with ``extravars``; by default only up to the image's stages (``--tags kernel``: image, node, kernel,
    audit), which is all the assertions read, so no initramfs, ledger or dist/ is made on the way."""
    res = built.run(extravars=extravars, tags=tags)
    assert res.rc == 0, res.stdout[-4000:]
    stage = res.task_results("Stage the image tree")[0]
    for name, task in STAGE_TASKS.items():  # the key reads what the stage's module is given, nothing else
        assert stage["stage_inputs"][name] == res.task_results(task)[-1]["stage_input"], name
    return dict(stage)


def test_each_input_class_takes_effect_and_changing_back_gives_the_first_image(e2e_built: Built,
                                                                               tmp_path: Path) -> None:
    built = e2e_built
    first = {n: sha256_file(built.dist / n) for n in ("initramfs", "vmlinuz")}  # the ledger has a delta now
    base = built.extravars["kernel_prune_profiles"]
    rule = tmp_path / "fs.yml"
    rule.write_text("modules:\n  remove: [kernel/fs/btrfs]\n")
    hello = tmp_path / "hello"
    hello.write_text("#!/bin/sh\necho hello\n")
    binary = {"name": "hello", "url": hello.as_uri(), "sha256": hashlib.sha256(hello.read_bytes()).hexdigest(),
              "dest": "/usr/local/bin/hello", "strip": False}
    try:
        # a rule file given by path, and a pinned binary
        assert run(built, kernel_prune_profiles=[*base, str(rule)], netboot_binaries=[binary])["changed"]
        assert "btrfs" not in modules(built) and "xfs" in modules(built)
        assert (built.build / "image/usr/local/bin/hello").is_file()
        # the rule file edited (btrfs -> xfs), same name: takes effect
        rule.write_text("modules:\n  remove: [kernel/fs/xfs]\n")
        assert run(built, kernel_prune_profiles=[*base, str(rule)], netboot_binaries=[binary])["changed"]
        assert "btrfs" in modules(built) and "xfs" not in modules(built)
        # the binary dropped from netboot_binaries: gone from the image
        assert run(built, kernel_prune_profiles=[*base, str(rule)])["changed"]
        assert not (built.build / "image/usr/local/bin/hello").exists()
        # kernel_profile_dirs: the same profile name found in another directory
        for sub, fs in (("a", "udf"), ("b", "isofs")):
            (tmp_path / sub).mkdir()
            (tmp_path / sub / "extra.yml").write_text(f"modules:\n  remove: [kernel/fs/{fs}]\n")
        assert run(built, kernel_prune_profiles=[*base, "extra"], kernel_profile_dirs=[str(tmp_path / "a")])["changed"]
        assert "udf" not in modules(built) and "isofs" in modules(built)
        assert run(built, kernel_prune_profiles=[*base, "extra"], kernel_profile_dirs=[str(tmp_path / "b")])["changed"]
        assert "udf" in modules(built) and "isofs" not in modules(built)
        # kernel_hardware_mode with a hardware capture file given by path, then the capture file edited
        box = tmp_path / "box.modalias"
        box.write_text("virtio:d00000001v00001AF4\n")
        hw = {"kernel_hardware_profiles": [str(box)]}
        run(built, **hw)
        audit = modules(built)
        assert "virtio_blk" in audit
        assert run(built, kernel_hardware_mode="select", **hw)["changed"]
        assert "virtio_blk" not in modules(built) and len(modules(built)) < len(audit)
        box.write_text("virtio:d00000001v00001AF4\nvirtio:d00000002v00001AF4\n")
        assert run(built, kernel_hardware_mode="select", **hw)["changed"]
        assert "virtio_blk" in modules(built)
    finally:
        # back to the first inputs: the first image, bit for bit, and a rerun changes nothing
        assert run(built, tags=None)["changed"]
        assert {n: sha256_file(built.dist / n) for n in first} == first
        res = built.run()
        assert res.rc == 0 and res.changed() == 0, res.stdout[-4000:]
