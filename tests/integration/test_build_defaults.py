"""``playbooks/build.yml`` with the shipped inventory's group_vars and no path overrides, on the fixture mirror.

Covers the defaults of issue 8: one microcode switch (``initramfs_microcode: false`` with the shipped group_vars
gives a ``boot.ipxe`` that names only files in ``dist/``), the dist stage refusing a ``boot.ipxe`` that names a file
``dist/`` lacks, and the path defaults (cache/, build/, dist/ beside the inventory, never inside the collection).
One full build per module; the other runs are single stages.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.apkrepo import Mirror, alpine_mirror, serve
from tests.fixtures.e2e import NODES, fixture_extravars, free_port
from tests.fixtures.material import REPO
from tests.fixtures.playbook import PlaybookResult, run_playbook, write_inventory

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="building the rootfs needs root"),
]

# The path settings the fixture normally passes; left out here so the defaults decide.
PATH_VARS = ("netboot_cache_dir", "netboot_build_dir", "netboot_overlay_dir", "netboot_dist_dir", "alpine_lockfile")
FETCHED = re.compile(r"^(?:kernel|initrd) \$\{base\}/([^$\s]+)", re.MULTILINE)  # not ${node_initrd}


@dataclass
class Project:
    root: Path  # what the shipped group_vars make netboot_project_dir: the inventory directory's parent
    inventory: Path
    mirror: Mirror
    mirror_port: int
    extravars: dict[str, Any]
    first: PlaybookResult

    def run(self, inventory: Path | None = None, **kw: Any) -> PlaybookResult:
        extravars = {**self.extravars, **kw.pop("extravars", {})}
        with serve(self.mirror.path, self.mirror_port):
            return run_playbook("build.yml", self.root / "runs", extravars, inventory=inventory or self.inventory,
                                **kw)


def user_extravars(work: Path, mirror: Mirror, mirror_port: int, **overrides: Any) -> dict[str, Any]:
    """The fixture build's settings (mirror, packages, fast compression) without any path setting."""
    v = fixture_extravars(work, mirror, mirror_port, free_port(), **overrides)
    for name in PATH_VARS:
        v.pop(name)
    return v


def repo_outputs() -> dict[str, int]:
    """mtimes of the checkout's own outputs, to show a run elsewhere leaves them alone."""
    return {str(p): p.stat().st_mtime_ns for d in ("cache", "build", "dist") for p in (REPO / d).glob("*")}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("shipped-inventory")
    inv_dir = root / "inventory"
    inv_dir.mkdir()
    shutil.copytree(REPO / "inventory" / "group_vars", inv_dir / "group_vars")
    inventory = write_inventory(inv_dir / "hosts.yml", NODES)
    mirror = alpine_mirror()
    mirror_port = free_port()
    # the user's choice under test: no microcode (the shipped group_vars say true; -e wins as it does for a user)
    extravars = user_extravars(root, mirror, mirror_port, initramfs_microcode=False)
    before = repo_outputs()
    with serve(mirror.path, mirror_port):
        first = run_playbook("build.yml", root / "runs", extravars, inventory=inventory)
    if first.rc != 0:
        raise AssertionError("build.yml failed on the fixture mirror:\n" + first.stdout[-6000:])
    assert repo_outputs() == before, "a build with another inventory touched the checkout's cache/build/dist"
    yield Project(root, inventory, mirror, mirror_port, extravars, first)


def test_microcode_off_boot_ipxe_names_only_files_in_dist(project: Project) -> None:
    dist = project.root / "dist"
    script = (dist / "boot.ipxe").read_text()
    fetched = set(FETCHED.findall(script))
    assert fetched == {"vmlinuz", "initramfs"}, fetched
    assert "intel-ucode" not in script and not (dist / "intel-ucode.img").exists()
    for name in fetched:
        assert (dist / name).is_file(), name
    # the shipped group_vars put the outputs in the checkout root = the inventory directory's parent
    assert (project.root / "cache").is_dir() and (project.root / "build" / "rootfs" / "etc").is_dir()
    assert (project.root / "inventory" / "alpine-lock.json").is_file()
    listed = json.loads((dist / "manifest.json").read_text())["artefacts"]
    assert {"vmlinuz", "initramfs", "boot.ipxe"} <= set(listed)


def test_stage_rerun_and_check_mode_change_nothing(project: Project) -> None:
    again = project.run(tags="ipxe,dist")
    assert again.rc == 0 and again.changed() == 0, again.stdout[-3000:]
    check = project.run(tags="ipxe,dist", check=True)
    assert check.rc == 0 and check.changed() == 0, check.stdout[-3000:]


def test_boot_ipxe_naming_a_missing_artefact_fails_the_build(project: Project) -> None:
    dist = project.root / "dist"
    artefacts = project.root / "build" / "artefacts"
    published = {p.name: p.read_bytes() for p in dist.iterdir()}
    # microcode switched on after the initramfs stage: boot.ipxe would fetch intel-ucode.img, which the build lacks
    res = project.run(tags="ipxe,dist", extravars={"initramfs_microcode": True})
    assert res.rc != 0
    msg = " ".join(res.failure_messages())
    assert "intel-ucode.img" in msg and "initramfs_microcode" in msg and str(artefacts) in msg, msg
    assert {p.name: p.read_bytes() for p in dist.iterdir()} == published  # dist/ is published by the dist stage only
    # a node's own initrd that nobody put in the build
    inv = write_inventory(project.root / "inventory" / "initrd-hosts.yml",
                          NODES + "          initrd: alpha-extra.img\n")
    res = project.run(inventory=inv, tags="ipxe,dist")
    assert res.rc != 0
    msg = " ".join(res.failure_messages())
    assert "alpha-extra.img" in msg, msg
    assert {p.name: p.read_bytes() for p in dist.iterdir()} == published
    # put right, the same stages pass again
    assert project.run(tags="ipxe,dist").rc == 0


def test_the_dist_stage_alone_checks_what_boot_ipxe_fetches(project: Project) -> None:
    dist = project.root / "dist"
    artefacts = project.root / "build" / "artefacts"
    inv = write_inventory(project.root / "inventory" / "initrd-hosts.yml",
                          NODES + "          initrd: alpha-extra.img\n")
    (artefacts / "alpha-extra.img").write_bytes(b"alpha's own initrd")
    assert project.run(inventory=inv, tags="ipxe,dist").rc == 0
    assert (dist / "alpha-extra.img").read_bytes() == b"alpha's own initrd"
    published = {p.name: p.read_bytes() for p in dist.iterdir()}
    (artefacts / "alpha-extra.img").unlink()  # gone from the build while boot.ipxe still fetches it
    res = project.run(inventory=inv, tags="dist")
    assert res.rc != 0
    msg = " ".join(res.failure_messages())
    assert "alpha-extra.img" in msg, msg
    assert {p.name: p.read_bytes() for p in dist.iterdir()} == published  # the old dist/ stays whole
    # put right: the default inventory's script, then the dist stage alone changes nothing
    assert project.run(tags="ipxe,dist").rc == 0
    again = project.run(tags="dist")
    assert again.rc == 0 and again.changed() == 0, again.stdout[-3000:]


def test_paths_default_to_the_inventory_directory(project: Project, tmp_path: Path) -> None:
    """An inventory of the user's own (no group_vars, no path settings): everything lands beside it."""
    site = tmp_path / "site"
    site.mkdir()
    inventory = write_inventory(site / "hosts.yml", NODES)
    before = repo_outputs()
    res = project.run(inventory=inventory, tags="rootfs,ipxe",
                      extravars=user_extravars(site, project.mirror, project.mirror_port))
    # boot.ipxe carries the sha256 of what it fetches: the ipxe stage looks for them beside the inventory, and
    # without the image stages it names what to build (and writes no script)
    assert res.rc != 0, res.stdout[-4000:]
    msg = " ".join(res.failure_messages())
    assert f"{site / 'build' / 'artefacts' / 'initramfs'} (initramfs) does not exist" in msg, msg
    assert "--tags initramfs" in msg and not (site / "build" / "artefacts" / "boot.ipxe").exists()
    assert any((site / "cache").rglob("APKINDEX.tar.gz"))
    assert (site / "build" / "rootfs" / "lib" / "apk" / "db" / "installed").is_file()
    assert (site / "alpine-lock.json").is_file()
    assert repo_outputs() == before
    assert not (REPO / "playbooks" / "dist").exists() and not (REPO / "playbooks" / "cache").exists()


def test_the_dist_stage_refuses_a_boot_ipxe_checking_other_files(project: Project) -> None:
    """The initramfs rebuilt without the ipxe stage (--tags initramfs,dist): boot.ipxe still expects the old
    initramfs's sha256, every node would refuse the new one, so dist/ is not published."""
    dist = project.root / "dist"
    artefacts = project.root / "build" / "artefacts"
    published = {p.name: p.read_bytes() for p in dist.iterdir() if p.is_file()}
    old = hashlib.sha256((artefacts / "initramfs").read_bytes()).hexdigest()
    assert f"set check_want {old}" in (dist / "boot.ipxe").read_text()
    res = project.run(tags="initramfs,dist", extravars={"initramfs_level": 4})
    assert res.rc != 0
    new = hashlib.sha256((artefacts / "initramfs").read_bytes()).hexdigest()
    msg = " ".join(res.failure_messages())
    assert old != new and f"expects initramfs with sha256 {old}" in msg and f"has sha256 {new}" in msg, msg
    assert "--tags ipxe,dist" in msg
    assert {p.name: p.read_bytes() for p in dist.iterdir() if p.is_file()} == published
    # the fix the message names
    res = project.run(tags="ipxe,dist", extravars={"initramfs_level": 4})
    assert res.rc == 0, res.stdout[-3000:]
    assert f"set check_want {new}" in (dist / "boot.ipxe").read_text()
    assert hashlib.sha256((dist / "initramfs").read_bytes()).hexdigest() == new
