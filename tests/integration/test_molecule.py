"""Every molecule scenario under extensions/molecule/ (one per role) passes ``molecule test``: create/destroy are
no-ops (default driver, unmanaged: this machine), converge applies the role to small fixture inputs, idempotence
runs it again and fails on any change, verify asserts the outputs with Ansible tasks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.molecule import molecule_env
from tests.fixtures.material import REPO

SCENARIOS = sorted(p.parent.name for p in (REPO / "extensions/molecule").glob("*/molecule.yml"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the roles build image trees owned by root"),
]


def test_every_role_has_a_scenario() -> None:
    roles = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta").is_dir())
    missing = sorted(set(roles) - set(SCENARIOS))
    assert not missing, f"roles without a molecule scenario: {missing}"


def _molecule(scenario: str, env: dict[str, str]) -> tuple[int, str]:
    r = subprocess.run([str(Path(sys.executable).parent / "molecule"), "test", "-s", scenario], cwd=REPO, env=env,
                       capture_output=True, text=True, check=False, timeout=900)
    return r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario: str, tmp_path: Path) -> None:
    """What `make molecule SCENARIO=<scenario>` runs (scripts/molecule.py sets the same environment)."""
    env = molecule_env({**os.environ, "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1",
                        "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path / "ephemeral")})
    rc, out = _molecule(scenario, env)
    assert rc == 0, out[-6000:]
    assert "idempotence" in out and "failed=0" in out, out[-3000:]


def test_bare_scenario_names_what_to_set(tmp_path: Path) -> None:
    """`molecule test -s kernel` run bare (no fixture variables) stops at once, naming the variable and the command."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETBOOT_FIXTURE_")}
    env.update(PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""), ANSIBLE_NOCOLOR="1",
               NO_COLOR="1", MOLECULE_EPHEMERAL_DIRECTORY=str(tmp_path / "ephemeral"))
    rc, out = _molecule("kernel", env)
    assert rc != 0
    assert "NETBOOT_FIXTURE_KERNEL_TREE is not set" in out, out[-3000:]
    assert "make molecule SCENARIO=kernel" in out, out[-3000:]
    assert "No module named" not in out, out[-3000:]
