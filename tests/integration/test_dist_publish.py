"""Issue 16: every stage writes under build/ (``netboot_artefact_dir``); the dist stage alone publishes dist/, by
one swap of the whole directory. On the session's e2e build: a rerun and a check-mode run change nothing (dist/
keeps its inode); a dist stage that fails after the initramfs changed leaves dist/ byte for byte as it was; ``--tags
dist`` alone publishes what build/ holds, or fails naming what is missing and the tag to run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import sha256_file
from tests.fixtures.e2e import Built

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="building the rootfs needs root"),
]


IMAGE = {"vmlinuz", "initramfs", "boot.ipxe", "audit.json", "sbom.cdx.json"}


def tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_dist_is_published_by_the_dist_stage_alone_by_one_swap(e2e_built: Built) -> None:
    built = e2e_built
    art = built.build / "artefacts"
    first, inode = tree(built.dist), built.dist.stat().st_ino
    for check in (False, True):
        res = built.run(check=check)
        assert res.rc == 0 and res.changed() == 0, res.stdout[-3000:]
        assert built.dist.stat().st_ino == inode and tree(built.dist) == first
    try:
        # the initramfs changes under build/; the dist stage fails (a budget): dist/ stays exactly as it was
        res = built.run(extravars={"initramfs_tmpfs_size": "60%", "netboot_budget_image_bytes": 1})
        assert res.rc != 0 and "netboot_budget_image_bytes" in " ".join(res.failure_messages())
        assert sha256_file(art / "initramfs") != sha256_file(built.dist / "initramfs")
        assert built.dist.stat().st_ino == inode and tree(built.dist) == first
        assert sorted(p.name for p in built.work.iterdir() if p.name.startswith("dist")) == ["dist"]
        # --tags dist alone publishes what build/ holds: a new directory swapped in
        res = built.run(tags="dist", extravars={"initramfs_tmpfs_size": "60%"})
        assert res.rc == 0 and res.changed() > 0, res.stdout[-3000:]
        assert built.dist.stat().st_ino != inode
        assert sha256_file(art / "initramfs") == sha256_file(built.dist / "initramfs")
        # what it cannot publish is named with the tag that makes it; dist/ is left alone
        published = tree(built.dist)
        (art / "boot.ipxe").rename(art / "boot.ipxe.aside")
        res = built.run(tags="dist", extravars={"initramfs_tmpfs_size": "60%"})
        (art / "boot.ipxe.aside").rename(art / "boot.ipxe")
        assert res.rc != 0 and "--tags ipxe" in " ".join(res.failure_messages()), res.stdout[-3000:]
        assert tree(built.dist) == published
    finally:
        res = built.run()
        assert res.rc == 0, res.stdout[-3000:]
    # the first inputs again: the first image; the ledger (and the manifest and sums hashing it) now has a delta
    assert {n: b for n, b in tree(built.dist).items() if n in IMAGE} == {n: b for n, b in first.items() if n in IMAGE}
