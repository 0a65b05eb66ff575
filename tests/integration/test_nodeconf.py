"""_nodeconf on the real Alpine /etc (downloaded material): node files with their modes, a second run changes
nothing, bash as root's shell. The rest: tests/unit/plugins/module_utils/image/test_nodeconf.py."""

from __future__ import annotations

import base64
import shutil
import stat
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _nodeconf, _noderoles
from tests.fixtures.material import REPO, QuicksandImage

KEY = "ssh-ed25519 " + base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + b"k" * 32).decode() + " admin@laptop"


def image(alpine: QuicksandImage, tmp_path: Path) -> Path:
    root = tmp_path / "image"
    shutil.copytree(alpine.root / "etc", root / "etc", symlinks=True)
    (root / "bin").mkdir()
    return root


def spec(**kw: object) -> _nodeconf.NodeSpec:
    roles = _noderoles.parse_roles({"worker": {"services": ["crond"], "modules": ["tun"]},
                                    "server": {"services": [], "nomad_server": True}})
    base: dict[str, object] = {"roles": tuple(roles), "default_role": "worker", "cattle_prefix": "node-",
                               "boot_script": (REPO / "roles/node/files/netboot-node").read_text(),
                               "authorized_keys": (KEY,), "nomad_servers": ("10.0.0.1", "10.0.0.2:4647")}
    base.update(kw)
    return _nodeconf.NodeSpec(**base)  # type: ignore[arg-type]


def test_node_files_written_with_modes_and_second_run_changes_nothing(alpine: QuicksandImage, tmp_path: Path) -> None:
    root = image(alpine, tmp_path)
    plan = _nodeconf.plan_node(root, spec())
    _nodeconf.apply_node(plan)
    assert _nodeconf.plan_node(root, spec()).changes == []
    ak = root / "root/.ssh/authorized_keys"
    assert ak.read_text() == KEY + "\n"
    assert stat.S_IMODE(ak.stat().st_mode) == 0o600 and stat.S_IMODE(ak.parent.stat().st_mode) == 0o700
    assert (root / "etc/runlevels/boot/netboot-node").is_symlink()
    assert stat.S_IMODE((root / "etc/init.d/netboot-node").stat().st_mode) == 0o755
    assert _noderoles.parse_role_file((root / "etc/netboot/roles/worker").read_text())["services"] == ["crond"]
    assert 'default_role="worker"' in (root / "etc/netboot/node.conf").read_text()
    assert 'rc_cgroup_mode="unified"' in (root / "etc/rc.conf").read_text().splitlines()
    assert "ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100" in (root / "etc/inittab").read_text().splitlines()
    assert (root / "etc/shadow").read_text().startswith("root:*:")
    assert "kvm\t\troot:kvm 0660" in (root / "etc/mdev.conf").read_text()
    assert (root / "etc/subuid").read_text() == "root:100000:65536\n"
    assert 'driver = "overlay"' in (root / "etc/containers/storage.conf").read_text()
    assert f"build {plan.build_id}" in (root / "etc/motd").read_text()
    # a role taken out of node_roles is removed from the image
    roles = _noderoles.parse_roles({"worker": {"services": []}})
    plan2 = _nodeconf.plan_node(root, spec(roles=tuple(roles)))
    _nodeconf.apply_node(plan2)
    assert sorted(p.name for p in (root / "etc/netboot/roles").iterdir()) == ["worker"]


def test_bash_becomes_roots_shell_only_when_present(alpine: QuicksandImage, tmp_path: Path) -> None:
    root = image(alpine, tmp_path)
    _nodeconf.apply_node(_nodeconf.plan_node(root, spec()))
    assert "root:x:0:0:root:/root:/bin/sh" in (root / "etc/passwd").read_text()
    (root / "bin/bash").write_text("")
    _nodeconf.apply_node(_nodeconf.plan_node(root, spec()))
    assert "root:x:0:0:root:/root:/bin/bash" in (root / "etc/passwd").read_text()


def test_the_nomad_service_runs_the_binary_where_the_inventory_put_it(alpine: QuicksandImage, tmp_path: Path) -> None:
    """Issue 22: netboot_binaries installs nomad at /usr/local/bin/nomad (README, shipped inventory) while the init
    script runs ${NOMAD_BINARY:-/usr/bin/nomad}. node_config reads where the binaries stage put it (binaries.json)
    and says so in /etc/conf.d/nomad, which openrc-run sources before the script: the service starts a stand-in."""
    import json
    import subprocess

    from tests.fixtures.module import run_module

    root = image(alpine, tmp_path)
    standin = root / "usr/local/bin/nomad"
    standin.parent.mkdir(parents=True)
    standin.write_text('#!/bin/sh\necho "nomad stand-in started: $*"\n')
    standin.chmod(0o755)
    (root / "etc/netboot").mkdir(parents=True, exist_ok=True)
    (root / "etc/netboot/binaries.json").write_text(json.dumps({"binaries": [
        {"name": "nomad", "dest": "/usr/local/bin/nomad", "url": "file:///nomad.zip", "sha256": "0" * 64}]}))
    args = {"root": str(root), "roles": {"worker": {"services": ["nomad"]}}, "default_role": "worker",
            "boot_script": str(REPO / "roles/node/files/netboot-node"),
            "init_scripts": {"nomad": str(REPO / "roles/node/files/nomad")}}
    rc, res = run_module("node_config", tmp_path / "w", args)
    assert rc == 0, res
    assert (root / "etc/conf.d/nomad").read_text().splitlines()[-1] == "NOMAD_BINARY=/usr/local/bin/nomad"
    # what openrc-run does: source conf.d/<service>, then the script; then start $command $command_args
    out = subprocess.run(["sh", "-c", '. ./etc/conf.d/nomad; . ./etc/init.d/nomad; exec "./$command" $command_args'],
                         cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "nomad stand-in started: agent -config=/etc/nomad.d", out
    # the defect it mends: without conf.d the script would start /usr/bin/nomad, which the image does not have
    bare = subprocess.run(["sh", "-c", '. ./etc/init.d/nomad; echo "$command"'], cwd=root, capture_output=True,
                          text=True, check=True)
    assert bare.stdout.strip() == "/usr/bin/nomad" and not (root / "usr/bin/nomad").exists()


def test_openrcs_dependency_cache_is_made_at_build_time(alpine: QuicksandImage, tmp_path: Path) -> None:
    """rc-depend -u of the image's own OpenRC, chrooted into a copy of the real Alpine rootfs with the node files:
    the cache lists every init script with its dependencies, a second run changes nothing, and nothing is left in
    the image (no /run/openrc, no /dev/null)."""
    import os

    import pytest

    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner

    if os.geteuid() != 0:
        pytest.skip("chroot needs root (the build runs as root: alpine_rootfs)")
    root = tmp_path / "image"
    shutil.copytree(alpine.root, root, symlinks=True)
    shutil.rmtree(root / "dev", ignore_errors=True)
    (root / "dev").mkdir()
    # the quicksand image was set up as a container (rc_sys="lxc" in its rc.conf and a /.dockerenv, either of which
    # drops hostname, fsck, ... from the tree); an image the build makes has neither (the openrc package's rc.conf)
    (root / ".dockerenv").unlink(missing_ok=True)
    conf = root / "etc/rc.conf"
    conf.write_text("".join(ln for ln in conf.read_text().splitlines(True) if not ln.startswith("rc_sys=")))
    _nodeconf.apply_node(_nodeconf.plan_node(root, spec()))
    runner = Runner()
    assert _nodeconf.refresh_deptree(root, runner) == ["var/cache/rc/deptree", "var/cache/rc/depconfig"]
    tree = (root / "var/cache/rc/deptree").read_text()
    services = {ln.split("=", 1)[1].strip("'") for ln in tree.splitlines() if "_service=" in ln}
    assert {"netboot-node", "crond", "hostname", "fsck"} <= services
    missing = {p.name for p in (root / "etc/init.d").iterdir() if p.is_file()} - services
    assert not missing, missing
    assert "/etc/fstab" in (root / "var/cache/rc/depconfig").read_text()
    before = {d: (root / d).stat().st_mtime_ns for d in ("run", "dev")}
    assert _nodeconf.refresh_deptree(root, runner) == []
    assert {d: (root / d).stat().st_mtime_ns for d in ("run", "dev")} == before  # a rerun leaves the tree as it was
    assert not (root / "run/openrc").exists() and list((root / "dev").iterdir()) == []
    assert runner.log[0].endswith(f"chroot {root} /usr/libexec/rc/bin/rc-depend -u")


def test_secure_boot_node_table_is_baked_in_and_removed_when_off(alpine: QuicksandImage, tmp_path: Path) -> None:
    """Issue 26: with Secure Boot the image carries the inventory's nodes (the UKI's command line names none); the
    image changes with the table (build id), a rerun changes nothing, Secure Boot off removes it."""
    root = image(alpine, tmp_path)
    rows = (("52:54:00:aa:bb:02", "n100-beta", "server"), ("52:54:00:aa:bb:01", "n100-alpha", "worker"))
    plain = _nodeconf.plan_node(root, spec())
    plan = _nodeconf.plan_node(root, spec(node_table=rows))
    assert plan.build_id != plain.build_id
    _nodeconf.apply_node(plan)
    lines = (root / _nodeconf.NODE_TABLE).read_text().splitlines()
    want = ["52:54:00:aa:bb:01 n100-alpha worker", "52:54:00:aa:bb:02 n100-beta server"]
    assert [ln for ln in lines if not ln.startswith("#")] == want
    assert _nodeconf.plan_node(root, spec(node_table=rows)).changes == []
    off = _nodeconf.plan_node(root, spec())
    assert [(c.path, c.after) for c in off.changes if c.path == _nodeconf.NODE_TABLE] == [(_nodeconf.NODE_TABLE, None)]
    _nodeconf.apply_node(off)
    assert not (root / _nodeconf.NODE_TABLE).exists()
