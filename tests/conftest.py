"""Shared pytest set-up: make ``ansible_collections.homelab.alpine_netboot`` importable from the checkout, and the
fixtures several test files use (material-backed ones live in ``tests/integration/conftest.py``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COLLECTIONS = REPO / ".collections"
for p in (str(COLLECTIONS), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A tiny image tree with the links that make path handling hard: a merged-usr ``bin -> usr/bin`` relative link
    and an absolute ``usr/bin/sh -> /usr/bin/busybox`` that means the image's own busybox, not the host's."""
    root = tmp_path / "rootfs"
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc").mkdir()
    os.symlink("usr/bin", root / "bin")
    os.symlink("/usr/bin/busybox", root / "usr/bin/sh")
    return root
