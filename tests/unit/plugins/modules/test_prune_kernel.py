"""The prune_kernel module as Ansible runs it (module file + JSON args) without material (on real Alpine and Debian
trees: tests/integration/test_prune_kernel_module.py)."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.prune import run_prune_kernel


def test_no_lib_modules(tmp_path: Path) -> None:
    (tmp_path / "root/etc").mkdir(parents=True)
    r = run_prune_kernel(tmp_path, root=str(tmp_path / "root"))
    assert r["failed"] and "root/lib/modules does not exist" in r["msg"]


def test_bad_node_roles_fail_naming_the_role_and_key(tmp_path: Path) -> None:
    (tmp_path / "root/etc").mkdir(parents=True)
    r = run_prune_kernel(tmp_path, root=str(tmp_path / "root"), node_roles={"worker": {"modules": ["tun"]}})
    assert r["failed"] and "node_roles.worker: 'services' is required" in r["msg"]
