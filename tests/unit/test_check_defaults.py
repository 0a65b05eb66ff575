"""scripts/check_defaults.py on a tiny fake collection: a module default and a role default of one setting differ."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts import check_defaults


def _collection(root: Path, role_default: str, task_default: str = "select") -> None:
    (root / "plugins/modules").mkdir(parents=True)
    (root / "plugins/module_utils").mkdir(parents=True)
    (root / "plugins/modules/prune.py").write_text(
        'ARGUMENT_SPEC = {"mode": {"type": "str", "default": "select"}}\n')
    for sub in ("defaults", "tasks", "meta"):
        (root / "roles/kernel" / sub).mkdir(parents=True)
    (root / "roles/kernel/defaults/main.yml").write_text(f"kernel_mode: {role_default}\n")
    (root / "roles/kernel/tasks/main.yml").write_text(
        "- name: Prune\n  homelab.alpine_netboot.prune:\n    mode: \"{{ kernel_mode }}\"\n"
        f"- name: Show\n  ansible.builtin.debug:\n    msg: \"{{{{ kernel_mode | default('{task_default}') }}}}\"\n")


def test_agreeing_defaults_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _collection(tmp_path, "select")
    assert check_defaults.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "prune.mode = 'select'  (plugins/modules/prune.py)" in out
    assert "kernel_mode = 'select'  (roles/kernel/defaults/main.yml)" in out


def test_a_second_default_fails_naming_both(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _collection(tmp_path, "audit", task_default="other")
    assert check_defaults.main([str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert ("kernel_mode: roles/kernel/defaults/main.yml = 'audit' but plugins/modules/prune.py option mode = "
            "'select'") in err
    assert "roles/kernel/tasks/main.yml:6 (kernel_mode | default) = 'other'" in err


def test_one_variable_in_two_roles_defaults_fails_even_when_equal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _collection(tmp_path, "select")
    (tmp_path / "roles/verify/defaults").mkdir(parents=True)
    (tmp_path / "roles/verify/defaults/main.yml").write_text("kernel_mode: select\n")
    assert check_defaults.main([str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert ("kernel_mode: defined in roles/kernel/defaults/main.yml and in roles/verify/defaults/main.yml; keep one, "
            "in roles/common/defaults/main.yml") in err


@pytest.mark.parametrize("built", [True, False])
def test_a_dataclass_the_module_builds_may_not_default_otherwise(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], built: bool) -> None:
    _collection(tmp_path, "select")
    (tmp_path / "plugins/module_utils/image").mkdir()
    (tmp_path / "plugins/module_utils/image/_prune.py").write_text(
        "from dataclasses import dataclass\n\n@dataclass\nclass Options:\n    mode: str = 'keep'\n\n"
        "@dataclass\nclass Report:\n    mode: str = ''\n")
    module = tmp_path / "plugins/modules/prune.py"
    body = "_prune.Options(mode='select')" if built else "_prune.Report"
    module.write_text(module.read_text() + f"\n\ndef main():  # not called: the check reads the source\n    return {body}\n")
    assert check_defaults.main([str(tmp_path), "--quiet"]) == (1 if built else 0)
    err = capsys.readouterr().err
    assert ("prune.mode: plugins/modules/prune.py = 'select' but plugins/module_utils/image/_prune.py:Options.mode = "
            "'keep'" in err) is built
    assert "Report.mode" not in err


def test_a_module_defaults_declaration_is_checked_through_its_variables(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _collection(tmp_path, "select")
    module = tmp_path / "plugins/modules/prune.py"
    module.write_text('ARGUMENT_SPEC = {"mode": {"type": "str", "default": "select"}, '
                      '"timeout": {"type": "int", "default": 15}, "strip": {"type": "bool", "default": True}}\n')
    (tmp_path / "roles/kernel/defaults/main.yml").write_text(
        "kernel_mode: select\nkernel_timeout: 20\n"
        "kernel_options: {timeout: '{{ kernel_timeout | int }}'}\nkernel_more: {strip: false}\n")
    (tmp_path / "roles/kernel/tasks/main.yml").write_text(
        "- name: Prune\n  homelab.alpine_netboot.prune: {}\n  module_defaults:\n"
        "    homelab.alpine_netboot.prune: \"{{ kernel_options | combine(kernel_more) }}\"\n")
    assert check_defaults.main([str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "kernel_timeout: roles/kernel/defaults/main.yml = 20 but plugins/modules/prune.py option timeout = 15" in err
    assert ("prune.strip: plugins/modules/prune.py = True but roles/kernel/tasks/main.yml module_defaults "
            "{{ kernel_options | combine(kernel_more) }} (strip) = False") in err
