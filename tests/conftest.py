"""Shared pytest set-up: make ``ansible_collections.homelab.alpine_netboot`` importable from the checkout."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLLECTIONS = REPO / ".collections"
for p in (str(COLLECTIONS), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)
