"""The shipped profiles embedded in _prune_profiles are exactly the role's files, and resolve by name alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils import _prune, _prune_profiles
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import ConfigError
from tests.fixtures.material import REPO

FILES = REPO / "roles/kernel/files"


@pytest.mark.parametrize(("embedded", "sub", "suffix"), [(_prune_profiles.PROFILES, "profiles", ".yml"),
                                                         (_prune_profiles.HARDWARE, "hardware", ".modalias")])
def test_embedded_copies_match_the_role_files(embedded: dict[str, str], sub: str, suffix: str) -> None:
    files = {f.name[: -len(suffix)]: f.read_text() for f in sorted((FILES / sub).glob(f"*{suffix}"))}
    assert files, sub
    for name, text in files.items():
        assert embedded.get(name) == text, (
            f"plugins/module_utils/_prune_profiles.py is out of date for {sub}/{name}{suffix}: copy the file's text "
            "into it verbatim")
    assert set(embedded) == set(files)


def test_shipped_names_resolve_without_search_dirs(tmp_path: Path) -> None:
    rules = _prune.load_rules(["original", "headless", "base"], [])
    assert rules.sources == ["original (shipped)", "headless (shipped)", "base (shipped)"]
    assert any(g.pattern == "kernel/drivers/net/wireless" for g in rules.module_remove)
    hw = _prune.find_hardware("n100-i226", [])
    assert any(a.startswith("usb:v0BDAp8156") for _, a in hw.modaliases)
    mine = tmp_path / "original.yml"  # a search dir wins over the shipped copy
    mine.write_text("modules:\n  remove: [kernel/sound]\n")
    assert _prune.load_rules(["original"], [tmp_path]).sources == [str(mine)]
    with pytest.raises(ConfigError, match=r"unknown profile 'n200'.*available: n100-i226, n100-rtl8111"):
        _prune.find_hardware("n200", [])
