"""_deps: a module whose module_utils lack a third-party library fails first, naming what to pip install."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _deps
from tests.fixtures.material import REPO

MODULES = sorted((REPO / "plugins" / "modules").glob("*.py"))
# Runs a module file as Ansible does (args file in argv) with some libraries made unimportable (None in sys.modules).
HIDE_AND_RUN = (
    "import runpy, sys\n"
    "for name in sys.argv[3:]:\n"
    "    sys.modules[name] = None\n"
    "sys.argv = sys.argv[1:3]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def run_without(module: str, args: dict[str, Any], hidden: list[str], tmp_path: Path) -> tuple[int, dict[str, Any]]:
    argfile = tmp_path / "args.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run(
        [sys.executable, "-c", HIDE_AND_RUN, str(REPO / "plugins" / "modules" / f"{module}.py"), str(argfile), *hidden],
        capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO / ".collections")},
    )
    assert "{" in proc.stdout, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout[proc.stdout.index("{"):])
    return proc.returncode, result


def test_guarded_top_level_import_fails_the_module_naming_the_requirement(tmp_path: Path) -> None:
    dest = tmp_path / "boot.ipxe"
    rc, res = run_without("ipxe_script", {"dest": str(dest), "boot_server_url": "http://10.0.0.1"}, ["jinja2"],
                          tmp_path)
    assert rc == 1 and res["failed"] is True
    assert "Failed to import the required Python library (Jinja2)" in res["msg"]
    assert not dest.exists()  # failed before doing anything


def test_lazily_imported_library_fails_the_module_before_any_work(tmp_path: Path) -> None:
    rc, res = run_without("netboot_sbom", {"rootfs": str(tmp_path / "nope"), "dest": str(tmp_path / "dist")},
                          ["cyclonedx"], tmp_path)
    assert rc == 1 and "(cyclonedx-python-lib[json-validation])" in res["msg"]
    assert not (tmp_path / "dist").exists()


def test_every_missing_library_is_reported_and_a_present_one_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_deps, "_MISSING", {})
    _deps.lazy("json")  # stdlib: found, not recorded
    _deps.lazy("netboot_no_such_library")
    try:
        import netboot_no_such_library_either  # noqa: F401
    except ImportError:
        _deps.missing("yaml")  # recorded under its import name, reported as its pip requirement
    assert [name for name, _trace in _deps.missing_libraries()] == ["netboot_no_such_library", "PyYAML"]
    assert "netboot_no_such_library_either" in dict(_deps.missing_libraries())["PyYAML"]


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_every_module_checks_its_libraries_right_after_parsing_arguments(path: Path) -> None:
    main = next(n for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef) and n.name == "main")
    first = next(i for i, n in enumerate(main.body) if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
                 and getattr(n.value.func, "id", "") == "AnsibleModule")
    module = main.body[first].targets[0]
    assert isinstance(module, ast.Name)
    check = main.body[first + 1]
    assert ast.unparse(check) == f"fail_if_missing({module.id})", (
        f"{path.name}: call fail_if_missing({module.id}) right after AnsibleModule(...) (module_utils/common/_deps.py)")
