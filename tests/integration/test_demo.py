"""``make demo`` (scripts/demo.py): says clearly why it cannot run when qemu is missing; builds and boots the image
to the ready marker otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.material import MATERIAL, REPO

DEMO = str(REPO / "scripts/demo.py")


def test_without_qemu_it_says_what_is_missing_and_how_to_get_it(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    env = {**os.environ, "PATH": str(bindir)}  # no qemu-system-x86_64 on this PATH
    r = subprocess.run([sys.executable, DEMO, "--work", str(tmp_path / "demo")], env=env, capture_output=True,
                       text=True, check=False, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "qemu-system-x86_64 is not installed" in r.stderr and "apt-get install qemu-system-x86" in r.stderr
    assert not (tmp_path / "demo").exists(), "nothing is built when the demo cannot boot it"


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="the build needs root")
def test_demo_builds_and_boots_to_the_ready_marker(tmp_path: Path) -> None:
    env = {**os.environ, "NETBOOT_TEST_MATERIAL": str(MATERIAL)}
    r = subprocess.run([sys.executable, DEMO, "--work", str(tmp_path / "demo")], env=env, capture_output=True,
                       text=True, check=False, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "booted to the ready marker" in r.stdout
    assert f"dist/ is {tmp_path / 'demo' / 'dist'}" in r.stdout
    print(r.stdout)
