"""_nodeconf: the generated sshd_config, authorized_keys and nomad HCL (role files and edits on the real Alpine
/etc: tests/integration/test_nodeconf.py)."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _nodeconf


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
