"""_manifest on a real Alpine image (downloaded material): SOURCE_DATE_EPOCH from its apk database. The rest:
tests/unit/plugins/module_utils/records/test_manifest.py."""

from __future__ import annotations

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records import _manifest as mf
from tests.fixtures.material import QuicksandImage


def test_sde_falls_back_to_the_apk_database_of_a_real_image(alpine: QuicksandImage) -> None:
    root = alpine.root
    pkgs = mf.apk_installed(root)
    assert len(pkgs) == 59 and {"busybox", "openrc", "musl"} <= {p["name"] for p in pkgs}
    sde, why = mf.source_date_epoch(root)
    assert sde == max(p["build_time"] for p in pkgs) and "lib/apk/db/installed" in why
