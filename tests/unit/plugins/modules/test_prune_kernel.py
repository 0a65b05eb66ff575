"""The prune_kernel module as Ansible runs it (module file + JSON args) without material (on real Alpine and Debian
trees: tests/integration/test_prune_kernel_module.py)."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.prune import run_prune_kernel


def test_no_lib_modules(tmp_path: Path) -> None:
    (tmp_path / "root/etc").mkdir(parents=True)
    r = run_prune_kernel(tmp_path, root=str(tmp_path / "root"))
    assert r["failed"] and "root/lib/modules does not exist" in r["msg"]
