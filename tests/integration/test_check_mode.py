"""``playbooks/build.yml --check`` through every stage (issue 12): on a fresh directory each stage whose input an
earlier stage would have made says what it would do and why it cannot say more, the play succeeds and nothing is
written; on a built directory check mode reports ``changed=0`` and touches nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fixtures.apkrepo import alpine_mirror, serve
from tests.fixtures.e2e import NODES, build_fixture_image, fixture_extravars, free_port
from tests.fixtures.playbook import run_playbook, write_inventory

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="building the rootfs needs root"),
]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` except ansible-runner's own directories -> (size, mtime_ns)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith("runner-")]
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def test_check_on_a_fresh_directory_succeeds_and_writes_nothing(tmp_path: Path) -> None:
    mirror = alpine_mirror()
    mirror_port = free_port()
    inventory = write_inventory(tmp_path / "hosts.yml", NODES)
    before = snapshot(tmp_path)
    with serve(mirror.path, mirror_port):
        res = run_playbook("build.yml", tmp_path,
                           fixture_extravars(tmp_path, mirror, mirror_port, free_port()),
                           inventory=inventory, check=True)
    assert res.rc == 0, res.stdout[-4000:]
    assert snapshot(tmp_path) == before, "check mode wrote files"
    # the stages after the rootfs say what they would do and why they cannot say more
    for task in ("Stage the image tree", "Prune kernel modules", "Build the initramfs", "Publish dist/"):
        results = [r for r in res.task_results(task) if "validate_args_context" not in r]
        assert results and results[0].get("changed") is True, (task, results)
        assert "cannot say more" in str(results[0].get("msg")), (task, results[0])
    # the iPXE script needs no earlier stage: check mode renders it in memory
    assert res.task_results("Render boot.ipxe")[-1].get("changed") is True


def test_check_on_a_built_directory_reports_no_change(tmp_path: Path) -> None:
    built = build_fixture_image(tmp_path / "work", initramfs_level=1)
    before = snapshot(built.work)
    res = built.run(check=True)
    assert res.rc == 0, res.stdout[-4000:]
    assert res.changed() == 0, res.stdout[-4000:]
    assert snapshot(built.work) == before
