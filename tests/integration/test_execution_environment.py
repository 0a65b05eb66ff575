"""The execution environment: `ansible-builder create` makes a build context from execution-environment.yml that
carries the collection, and the collection's metadata gives ansible-builder every Python requirement a module
imports (the ``_deps`` registry) and the system packages the deploy, verify and update playbooks need."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _deps

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TARBALL = "homelab-alpine_netboot.tar.gz"


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement line (PEP 503), extras and versions dropped."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~; #]", requirement.strip(), maxsplit=1)[0]).lower()


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("galaxy")
    subprocess.run([BIN / "ansible-galaxy", "collection", "build", "--output-path", out, REPO],
                   check=True, capture_output=True)
    (built,) = out.glob("homelab-alpine_netboot-*.tar.gz")
    return built


def test_create_makes_a_context_that_installs_the_collection(collection: Path, tmp_path: Path) -> None:
    shutil.copy(REPO / "execution-environment.yml", tmp_path)
    (tmp_path / "build/galaxy").mkdir(parents=True)
    shutil.copy(collection, tmp_path / "build/galaxy" / TARBALL)
    subprocess.run([BIN / "ansible-builder", "create", "-f", tmp_path / "execution-environment.yml",
                    "-c", tmp_path / "ee", "--output-filename", "Containerfile"], check=True, capture_output=True)
    containerfile = (tmp_path / "ee/Containerfile").read_text()
    assert 'ARG EE_BASE_IMAGE="quay.io/centos/centos:stream9"' in containerfile
    assert 'ARG PYCMD="/usr/bin/python3.11"' in containerfile
    assert "ansible-galaxy collection install" in containerfile
    requirements = yaml.safe_load((tmp_path / "ee/_build/requirements.yml").read_text())
    (entry,) = requirements["collections"]
    assert entry["type"] == "file" and entry["name"] == f"/build/collection/{TARBALL}"
    with tarfile.open(tmp_path / "ee/_build/collection" / TARBALL) as tar:
        names = set(tar.getnames())
    assert {"MANIFEST.json", "LICENSE", "requirements.txt", "bindep.txt", "meta/execution-environment.yml"} <= names


def test_introspection_finds_every_python_and_system_requirement(collection: Path, tmp_path: Path) -> None:
    installed = tmp_path / "installed"
    subprocess.run([BIN / "ansible-galaxy", "collection", "install", "--force", "-p", installed, collection],
                   check=True, capture_output=True)
    out = subprocess.run([BIN / "ansible-builder", "introspect", installed], check=True, capture_output=True,
                         text=True).stdout
    found = yaml.safe_load(out[out.index("---"):])
    python = {_name(line) for line in found["python"]}
    # ansible-core and PyYAML come with every EE: introspection leaves them out of what it installs.
    assert {_name(dist) for dist in _deps.REQUIREMENTS.values()} - {"pyyaml"} <= python
    assert "ansible-runner" in python
    declared = {_name(line) for line in (REPO / "requirements.txt").read_text().splitlines() if line[:1].isalnum()}
    assert {_name(dist) for dist in _deps.REQUIREMENTS.values()} | {"ansible-core"} <= declared
    # What ansible-builder installs on an RPM base image without a bindep profile: what update_herd.yml needs (ssh).
    system = [line.split("#")[0].strip() for line in found["system"]]
    rpm_runtime = [line for line in system if "[" in line and line.split("[")[1].strip("]") == "platform:rpm"]
    assert rpm_runtime == ["openssh-clients [platform:rpm]"]
    # The build host's profiles name an RPM package beside every Debian one.
    for profile in ("build", "test"):
        dpkg = [line for line in system if f"[{profile} platform:dpkg]" in line]
        rpm = [line for line in system if f"[{profile} platform:rpm]" in line]
        assert len(dpkg) == len(rpm), (profile, dpkg, rpm)
