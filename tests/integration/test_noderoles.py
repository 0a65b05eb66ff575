"""_noderoles with a real Alpine package cache (downloaded material): the package that ships a missing init script.
The rest: tests/unit/plugins/module_utils/image/test_noderoles.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _noderoles
from tests.fixtures.apkrepo import Mirror


def test_missing_init_script_package_found_in_the_package_cache(mirror: Mirror, tmp_path: Path) -> None:
    """The real fixture mirror's busybox-openrc .apk ships etc/init.d/ntpd: the cache scan names it."""
    cache = tmp_path / "cache"
    cache.mkdir()
    apk = next(mirror.repo_dir.glob("busybox-openrc-*.apk"))
    shutil.copy(apk, cache / apk.name)
    root = tmp_path / "root"
    (root / "etc/init.d").mkdir(parents=True)
    assert _noderoles.cached_providers(cache, {"ntpd", "nothing"}) == {"ntpd": "busybox-openrc"}
    with pytest.raises(ConfigError, match=r"service ntpd has no /etc/init\.d/ntpd in the image; package busybox-openrc"):
        _noderoles.check_services(root, _noderoles.parse_roles({"w": {"services": ["ntpd"]}}), cache)
