"""prune_kernel's DOCUMENTATION parses and matches its argument spec (names, types, defaults, choices)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

from tests.fixtures.material import REPO


def test_docs_match_argument_spec() -> None:
    path = REPO / "plugins/modules/prune_kernel.py"
    spec = importlib.util.spec_from_file_location("prune_kernel_doc_check", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    doc = yaml.safe_load(mod.DOCUMENTATION)
    assert doc["module"] == "prune_kernel"
    assert isinstance(yaml.safe_load(mod.EXAMPLES), list) and isinstance(yaml.safe_load(mod.RETURN), dict)
    options, args = doc["options"], mod.ARGS
    assert set(options) == set(args)
    for name, arg in args.items():
        opt = options[name]
        assert opt["type"] == arg["type"], name
        assert opt.get("default") == arg.get("default"), name
        assert opt.get("choices") == arg.get("choices"), name
        assert bool(opt.get("required")) == bool(arg.get("required")), name
        assert opt.get("elements") == arg.get("elements"), name
    interface = {"root", "kernel_version", "profiles", "hardware_profiles", "keep_modules", "module_compression",
                 "firmware_compression", "firmware_audit", "strip", "report"}  # issue 3's Interface section
    assert interface <= set(args)


def test_role_argument_specs_cover_defaults() -> None:
    role = REPO / "roles/kernel"
    defaults = yaml.safe_load((role / "defaults/main.yml").read_text())
    specs = yaml.safe_load((role / "meta/argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert set(defaults) <= set(specs)
    for name, value in defaults.items():
        assert specs[name].get("default") == value, name
    inventory = {"kernel_prune_profiles", "kernel_hardware_profiles", "kernel_keep_modules",
                 "kernel_module_compression", "kernel_firmware_compression", "kernel_firmware_audit", "kernel_strip"}
    assert inventory <= set(defaults)
    assert Path(role / "tasks/main.yml").is_file()
