"""_prunerules: profile files and hardware profiles (the rules of kernel pruning)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _prunerules
from tests.fixtures.prune import HARDWARE, PROFILES, RTL8156B


def test_hardware_profile_lines(tmp_path: Path) -> None:
    f = tmp_path / "box.modalias"
    f.write_text(
        "pci:v00008086d0000125Csv00008086sd00000000bc02sc00i00\n"
        "dmi:bvnAmericanMegatrendsInternational,LLC.:bvrALN4L102:pnNUCBOX G3 :\n"
        "\n# comment\n"
        "Module                  Size  Used by\n"
        "r8169                 106496  0\n"
        "nf_tables             344064  1 nft_chain_nat\n"
    )
    hw = _prunerules.find_hardware(str(f), [])
    assert hw.modaliases[0][1].startswith("pci:v00008086d0000125C")
    assert len(hw.modaliases) == 2
    assert hw.lsmod == [(6, "r8169"), (7, "nf_tables")]


def test_malformed_modalias_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.modalias"
    f.write_text(f"{RTL8156B}\n# ok so far\nthis is not a modalias\n")
    with pytest.raises(ConfigError, match=r"bad\.modalias:3: malformed line 'this is not a modalias'"):
        _prunerules.find_hardware(str(f), [])


def test_profile_errors(tmp_path: Path) -> None:
    shipped = ", ".join(sorted(f.stem for f in Path(PROFILES).glob("*.yml")))
    with pytest.raises(ConfigError, match=rf"unknown profile 'nope'.*available: {shipped}\)"):
        _prunerules.load_rules(["nope"], [PROFILES])
    bad = tmp_path / "bad.yml"
    bad.write_text("modules:\n  delete: [x]\n")
    with pytest.raises(ConfigError, match=r"bad\.yml: unknown key modules\.delete"):
        _prunerules.load_rules([str(bad)], [])
    bad.write_text("modules:\n  remove: kernel/fs\n")
    with pytest.raises(ConfigError, match=r"modules\.remove must be a list"):
        _prunerules.load_rules([str(bad)], [])
    rules = _prunerules.load_rules(["original"], [PROFILES])
    assert any(g.pattern == "kernel/drivers/net/wireless" for g in rules.module_remove)


def test_shipped_hardware_profiles_parse() -> None:
    for f in sorted(HARDWARE.glob("*.modalias")):
        hw = _prunerules.find_hardware(str(f), [])
        assert hw.modaliases, f
