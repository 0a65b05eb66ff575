"""_apkdb without material: a tree without a database, the parser on text (a real Alpine image's database:
tests/integration/test_apkdb.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _apkdb


def test_a_tree_without_a_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NetbootError, match="lib/apk/db/installed does not exist"):
        _apkdb.read_installed(tmp_path)
    assert _apkdb.parse_installed("junk\n\nP:x\nV:1-r0\n") == [_apkdb.InstalledPackage(name="x", version="1-r0")]
    assert _apkdb.InstalledPackage(name="x", version="1", checksum="Q2abc").checksum_sha1_hex() is None
