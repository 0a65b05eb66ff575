"""Module documentation of ipxe_script and qemu_boot_test parses and matches their argument specs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

MODULES = Path(__file__).resolve().parents[4] / "plugins" / "modules"


def _module_parts(name: str) -> tuple[dict[str, object], set[str]]:
    tree = ast.parse((MODULES / f"{name}.py").read_text())
    doc: dict[str, object] = {}
    spec_keys: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") in ("DOCUMENTATION", "RETURN",
                                                                                  "EXAMPLES"):
            doc[node.targets[0].id] = yaml.safe_load(ast.literal_eval(node.value))  # type: ignore[attr-defined]
        if isinstance(node, ast.keyword) and node.arg == "argument_spec" and isinstance(node.value, ast.Dict):
            spec_keys = {ast.literal_eval(k) for k in node.value.keys if k is not None}
    return doc, spec_keys


@pytest.mark.parametrize("name", ["ipxe_script", "qemu_boot_test"])
def test_docs_parse_and_match_the_argument_spec(name: str) -> None:
    doc, spec_keys = _module_parts(name)
    documentation = doc["DOCUMENTATION"]
    assert isinstance(documentation, dict) and documentation["module"] == name
    assert set(documentation["options"]) == spec_keys
    assert isinstance(doc["RETURN"], dict) and isinstance(doc["EXAMPLES"], list)
