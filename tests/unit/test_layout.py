# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The tree keeps the shape issue 23 set: headers on every plugin file, no function over 60 lines and no file over
500 in plugins/, module_utils grouped by concern with a docstring per group, and a unit test file per module_utils
file, mirroring its place."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "plugins"
MODULE_UTILS = PLUGINS / "module_utils"
UNIT = REPO / "tests/unit/plugins/module_utils"
MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 500


def plugin_files() -> list[Path]:
    return sorted(p for p in PLUGINS.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", plugin_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_plugin_file_has_the_copyright_and_spdx_header(path: Path) -> None:
    head = path.read_text().split("\n")[:4]
    assert "# Copyright: homelab.alpine_netboot contributors" in head, path
    assert "# SPDX-License-Identifier: MIT" in head, path


def test_no_plugin_function_or_file_is_over_the_limit() -> None:
    over = []
    for path in plugin_files():
        text = path.read_text()
        rel = path.relative_to(REPO)
        if text.count("\n") > MAX_FILE_LINES:
            over.append(f"{rel}: {text.count(chr(10))} lines (at most {MAX_FILE_LINES}: split it by concern)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    over.append(f"{rel}:{node.lineno} {node.name}() has {length} lines (at most {MAX_FUNCTION_LINES})")
    assert not over, "\n".join(over)


def test_module_utils_is_grouped_by_concern_with_a_docstring_each() -> None:
    assert not list(MODULE_UTILS.glob("_*.py")), "module_utils files belong in a concern subpackage"
    groups = sorted(p for p in MODULE_UTILS.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert len(groups) >= 3
    for group in groups:
        doc = ast.get_docstring(ast.parse((group / "__init__.py").read_text()))
        assert doc and len(doc.split()) >= 20, f"{group}/__init__.py needs a one-paragraph docstring"


def test_every_module_utils_file_has_a_unit_test_file_named_after_it() -> None:
    missing = [str(p.relative_to(REPO)) for p in sorted(MODULE_UTILS.glob("*/_*.py"))
               if p.name != "__init__.py" and not (UNIT / p.parent.name / f"test{p.stem}.py").is_file()]
    assert not missing, f"no tests/unit/plugins/module_utils/<group>/test_<name>.py for: {missing}"
