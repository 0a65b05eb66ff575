"""The kernel role's meta/argument_specs.yml covers every default with the same value (moved from the
prune_kernel docs test when module docs got one test for all modules)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.fixtures.material import REPO


def test_role_argument_specs_cover_defaults() -> None:
    role = REPO / "roles/kernel"
    common = yaml.safe_load((REPO / "roles/common/defaults/main.yml").read_text())  # the settings the image role reads
    defaults = {**yaml.safe_load((role / "defaults/main.yml").read_text()),
                **{k: v for k, v in common.items() if k.startswith("kernel_")}}
    specs = yaml.safe_load((role / "meta/argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert set(defaults) <= set(specs)
    for name, value in defaults.items():
        assert specs[name].get("default") == value, name
    inventory = {"kernel_prune_profiles", "kernel_hardware_profiles", "kernel_keep_modules",
                 "kernel_module_compression", "kernel_firmware_compression", "kernel_firmware_audit", "kernel_strip"}
    assert inventory <= set(defaults)
    assert Path(role / "tasks/main.yml").is_file()
