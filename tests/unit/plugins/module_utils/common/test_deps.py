"""_deps: a module whose module_utils lack a third-party library fails first, naming what to pip install; stage()
runs a module's work and exits with its result."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _deps
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import IMAGE_UMASK
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
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
    """main() is ``with stage(ARGUMENT_SPEC, ...)``, which makes the AnsibleModule and checks at once (tests below)."""
    main = next(n for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef) and n.name == "main")
    first = next(n for n in main.body if ast.unparse(n) != "runner = Runner()")
    call = first.items[0].context_expr if isinstance(first, ast.With) else None
    assert isinstance(call, ast.Call) and ast.unparse(call.func) == "stage", (
        f"{path.name}: main() is 'with stage(ARGUMENT_SPEC, ...) as (module, result):' (module_utils/common/_deps.py)")


SPEC: dict[str, Any] = {"name": {"type": "str", "default": "x"}}


def run_stage(capsys: pytest.CaptureFixture[str], work: Callable[[Any, dict[str, Any]], None], *, diff_mode: bool = False,
              **options: Any) -> tuple[int, dict[str, Any]]:
    """Run ``work`` in ``stage(SPEC, ...)`` in this process as a module would; (exit code, the JSON it printed)."""
    with patch_module_args({"_ansible_diff": diff_mode}), pytest.raises(SystemExit) as exited:
        with _deps.stage(SPEC, supports_check_mode=True, **options) as (module, result):
            work(module, result)
    code = exited.value.code
    return code if isinstance(code, int) else 0, json.loads(capsys.readouterr().out)


def test_stage_exits_with_the_result_its_commands_warnings_and_the_diff_only_in_diff_mode(
        capsys: pytest.CaptureFixture[str]) -> None:
    runner = Runner(log=["true"])

    def work(module: Any, result: dict[str, Any]) -> None:
        assert module.params["name"] == "x"
        result.update(changed=True, warnings=["look"], diff={"before": "a", "after": "b"})

    rc, out = run_stage(capsys, work, runner=runner, diff=True, diff_mode=True)
    assert rc == 0 and out["changed"] is True and out["commands"] == ["true"] and out["diff"]["after"] == "b"
    assert any("look" in str(w) for w in out["warnings"])
    for diff, diff_mode in ((True, False), (False, True)):
        rc, out = run_stage(capsys, work, diff=diff, diff_mode=diff_mode)
        assert rc == 0 and "diff" not in out and out["commands"] == []


def test_stage_fails_on_a_netboot_error_with_the_result_so_far_and_lets_other_errors_through(
        capsys: pytest.CaptureFixture[str]) -> None:
    def work(module: Any, result: dict[str, Any]) -> None:
        result.update(commands=["mine"], partial=1)
        raise ConfigError("name: no such thing; use another")

    rc, out = run_stage(capsys, work)
    assert rc == 1 and out["failed"] is True and out["msg"] == "name: no such thing; use another"
    assert out["commands"] == ["mine"] and out["partial"] == 1

    def bug(module: Any, result: dict[str, Any]) -> None:
        raise KeyError("bug")

    with patch_module_args({}), pytest.raises(KeyError), _deps.stage(SPEC) as (module, result):
        bug(module, result)


def test_stage_fails_on_a_missing_library_before_the_work(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_deps, "_MISSING", {"yaml": "ModuleNotFoundError: No module named 'yaml'\n"})
    ran: list[bool] = []
    rc, out = run_stage(capsys, lambda module, result: ran.append(True))
    assert rc == 1 and "(PyYAML)" in out["msg"] and not ran


def test_stage_for_an_image_tree_sets_the_image_umask(capsys: pytest.CaptureFixture[str]) -> None:
    old = os.umask(0o077)
    try:
        seen: list[int] = []

        def work(module: Any, result: dict[str, Any]) -> None:
            seen.append(os.umask(0o022))
            os.umask(seen[0])

        run_stage(capsys, work, image=True)
        assert seen == [IMAGE_UMASK]
    finally:
        os.umask(old)
