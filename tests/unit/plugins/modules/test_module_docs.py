"""Every module follows the collection's module convention (README, "Writing a module").

DOCUMENTATION is read as ansible-doc renders it (doc fragments merged) and compared with the module-level
``ARGUMENT_SPEC``: option names, types, defaults, choices, required, elements and no_log. ``version_added`` is a
released or the current galaxy.yml version; ``attributes`` documents check mode, diff mode and platform, and agrees
with what the code does; a diff is returned only in diff mode.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.fixtures.material import REPO

COLLECTION = "homelab.alpine_netboot"
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
# Option names that smell of a secret must decide no_log explicitly (Ansible's own heuristic plus key/token/secret).
SECRET_NAME = re.compile(r"pass(word|phrase|wd)?|secret|token|(^|_)key($|_)", re.I)
SPEC_KEYS = {"type", "required", "default", "choices", "elements", "no_log", "aliases", "deprecated_aliases", "options"}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in str(text).split("."))


@cache
def _rendered_one(name: str) -> dict[str, Any]:
    """ansible-doc --json for one module (fragments merged exactly as users see them); one broken module fails alone."""
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "--json", "-t", "module", f"{COLLECTION}.{name}"],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=300,
        env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections")},
    )
    assert proc.returncode == 0, f"ansible-doc {name}: {proc.stderr}"
    assert "WARNING" not in proc.stderr, proc.stderr
    docs: dict[str, Any] = json.loads(proc.stdout)
    return docs


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_doc_check_{name}", REPO / "plugins" / "modules" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@cache
def _releases() -> dict[str, Any]:
    """changelogs/changelog.yaml's releases: version -> what it brought (``modules`` lists the new modules)."""
    changelog = yaml.safe_load((REPO / "changelogs" / "changelog.yaml").read_text())
    return {str(v): r or {} for v, r in (changelog.get("releases") or {}).items()}


def test_every_module_is_covered() -> None:
    assert len(MODULES) >= 7
    for m in MODULES:
        assert set(_rendered_one(m)) == {f"{COLLECTION}.{m}"}


@pytest.mark.parametrize("name", MODULES)
def test_argument_spec_is_a_module_constant(name: str) -> None:
    tree = ast.parse((REPO / "plugins" / "modules" / f"{name}.py").read_text())
    assigned = {t.id for node in tree.body if isinstance(node, ast.Assign | ast.AnnAssign)
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}
    assert "ARGUMENT_SPEC" in assigned, f"{name}: the argument spec must be a module-level ARGUMENT_SPEC"
    # stage(ARGUMENT_SPEC, ...) (module_utils/common/_deps.py) makes the AnsibleModule
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "stage"]
    assert calls, f"{name}: no stage(...)"
    for call in calls:
        assert call.args and isinstance(call.args[0], ast.Name) and call.args[0].id == "ARGUMENT_SPEC", \
            f"{name}: stage(ARGUMENT_SPEC, ...), not an inline dict"


@pytest.mark.parametrize("name", MODULES)
def test_docs_match_argument_spec(name: str) -> None:
    mod = _load(name)
    doc = _rendered_one(name)[f"{COLLECTION}.{name}"]["doc"]
    assert doc["module"] == name
    options: dict[str, dict[str, Any]] = doc.get("options") or {}
    spec: dict[str, dict[str, Any]] = mod.ARGUMENT_SPEC
    assert set(options) == set(spec), (
        f"{name}: documented but not in ARGUMENT_SPEC: {sorted(set(options) - set(spec))}; "
        f"in ARGUMENT_SPEC but not documented: {sorted(set(spec) - set(options))}")
    for opt_name, arg in spec.items():
        opt, where = options[opt_name], f"{name}: option {opt_name}"
        assert set(arg) <= SPEC_KEYS, f"{where}: unexpected spec keys {sorted(set(arg) - SPEC_KEYS)}"
        assert "type" in arg and opt.get("type") == arg["type"], f"{where}: type {opt.get('type')} vs {arg.get('type')}"
        assert opt.get("default") == arg.get("default"), f"{where}: default {opt.get('default')!r} vs {arg.get('default')!r}"
        assert opt.get("choices") == arg.get("choices"), f"{where}: choices"
        assert bool(opt.get("required")) == bool(arg.get("required")), f"{where}: required"
        assert opt.get("elements") == arg.get("elements"), f"{where}: elements"
        assert not (arg.get("required") and "default" in arg), f"{where}: required with a default"
        assert opt.get("description"), f"{where}: no description"
        if SECRET_NAME.search(opt_name):
            assert "no_log" in arg, f"{where}: looks like a secret; set no_log (True, or False if it is not one)"
        if arg.get("no_log"):
            text = " ".join(opt["description"]) if isinstance(opt["description"], list) else opt["description"]
            assert "never logged" in text.lower(), f"{where}: no_log=True; its description must say 'never logged'"
            assert "default" not in arg, f"{where}: a secret has no default"


@pytest.mark.parametrize("name", MODULES)
def test_version_added_matches_galaxy(name: str) -> None:
    doc = _rendered_one(name)[f"{COLLECTION}.{name}"]["doc"]
    galaxy = str(yaml.safe_load((REPO / "galaxy.yml").read_text())["version"])
    releases = _releases()
    assert galaxy not in releases or galaxy == max(releases, key=_version), "galaxy.yml's version is an old release"
    added = str(doc.get("version_added"))
    if added in releases:  # a released module is listed as new in that release
        new = {m["name"] for m in releases[added].get("modules") or []}
        assert name in new, f"{name}: version_added {added} but the {added} release did not bring it; use {galaxy}"
    else:
        assert added == galaxy, f"{name}: version_added {added!r} must be galaxy.yml's version {galaxy} (new module)"
    for opt_name, opt in (doc.get("options") or {}).items():
        if "version_added" in opt:
            version = str(opt["version_added"])
            assert version in releases or version == galaxy, f"{name}: option {opt_name} version_added {version!r}"
            assert _version(added) <= _version(version) <= _version(galaxy), f"{name}: option {opt_name} version_added"


@pytest.mark.parametrize("name", MODULES)
def test_attributes_documented_and_true(name: str) -> None:
    doc = _rendered_one(name)[f"{COLLECTION}.{name}"]["doc"]
    source = (REPO / "plugins" / "modules" / f"{name}.py").read_text()
    attributes = doc.get("attributes") or {}
    for key in ("check_mode", "diff_mode", "platform"):
        assert key in attributes, f"{name}: attributes.{key} missing"
        assert attributes[key].get("description"), f"{name}: attributes.{key} has no description"
        assert attributes[key].get("support") in ("full", "partial", "none", "N/A"), f"{name}: attributes.{key}"
        if attributes[key]["support"] == "partial":
            assert attributes[key].get("details"), f"{name}: partial {key} support needs details"
    assert attributes["platform"].get("platforms") == "posix", name
    check = attributes["check_mode"]["support"] != "none"
    assert check == bool(re.search(r"supports_check_mode\s*=\s*True", source)), f"{name}: check_mode attribute"
    diff = attributes["diff_mode"]["support"] != "none"
    returns_diff = bool(re.search(r"\bstage\([^)]*\bdiff=True", source))
    assert diff == returns_diff, f"{name}: diff_mode attribute vs stage(..., diff=True)"


@pytest.mark.parametrize("name", MODULES)
def test_diff_only_in_diff_mode(name: str) -> None:
    tree = ast.parse((REPO / "plugins" / "modules" / f"{name}.py").read_text())
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "attr", "") in ("exit_json", "fail_json"):
            assert all(k.arg != "diff" for k in call.keywords), (
                f"{name} line {call.lineno}: diff= passed unconditionally; return a diff only when module._diff")


@pytest.mark.parametrize("name", MODULES)
def test_examples_and_return_parse(name: str) -> None:
    rendered = _rendered_one(name)[f"{COLLECTION}.{name}"]
    examples = yaml.safe_load(rendered["examples"])
    assert isinstance(examples, list) and examples, f"{name}: EXAMPLES is not a list of tasks"
    for task in examples:
        assert f"{COLLECTION}.{name}" in task, f"{name}: example {task.get('name')!r} must call the module by FQCN"
    assert isinstance(rendered["return"], dict) and "commands" in rendered["return"], f"{name}: RETURN"
