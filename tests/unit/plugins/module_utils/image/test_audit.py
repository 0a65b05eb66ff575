"""_audit: each check fails naming the file, on small trees (real Alpine binaries and tree:
tests/integration/test_audit.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _audit
from tests.fixtures.audit import errors, tree

KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\n" + "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n" * 3
       + "-----END OPENSSH PRIVATE KEY-----\n")


def test_clean_tree_passes(tmp_path: Path) -> None:
    assert errors(tree(tmp_path)) == []


def test_private_key_fails_naming_the_file_unless_allowed(tmp_path: Path) -> None:
    root = tree(tmp_path)
    (root / "etc/ssh").mkdir()
    (root / "etc/ssh/ssh_host_ed25519_key").write_text(KEY)
    (root / "etc/ssh/ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAA x\n")
    # a program quoting the header is not a key
    (root / "etc/ssh/notes").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n\0-----END OPENSSH PRIVATE KEY-----\n")
    report = _audit.audit(root)
    assert [(e.check, e.path) for e in report.errors] == [("private_keys", "/etc/ssh/ssh_host_ed25519_key")]
    assert "/etc/ssh/ssh_host_ed25519_key" in report.message()
    allowed = _audit.audit(root, allow_private_keys=["/etc/ssh/ssh_host_ed25519_key"])
    assert allowed.passed and allowed.allowed_private_keys == ["/etc/ssh/ssh_host_ed25519_key"]


@pytest.mark.parametrize(("shadow", "detail"), [
    ("root:$6$salt$hash:19000:0:::::\n", "usable password hash"),
    ("root::19000:0:::::\n", "empty password"),
])
def test_passworded_root_fails(tmp_path: Path, shadow: str, detail: str) -> None:
    root = tree(tmp_path)
    (root / "etc/shadow").write_text(shadow)
    report = _audit.audit(root)
    assert [(e.check, e.path) for e in report.errors] == [("passwords", "/etc/shadow")]
    assert detail in report.errors[0].detail and "user root" in report.errors[0].detail


def test_world_writable_outside_tmp_and_loose_authorized_keys(tmp_path: Path) -> None:
    root = tree(tmp_path)
    (root / "etc/motd").write_text("hi\n")
    (root / "etc/motd").chmod(0o666)
    (root / "tmp/scratch").write_text("x")
    (root / "tmp/scratch").chmod(0o666)
    ssh = root / "root/.ssh"
    ssh.mkdir(parents=True)
    ssh.chmod(0o755)
    (ssh / "authorized_keys").write_text("ssh-ed25519 AAAA x\n")
    (ssh / "authorized_keys").chmod(0o644)
    assert sorted(errors(root)) == [("authorized_keys", "/root/.ssh"), ("authorized_keys", "/root/.ssh/authorized_keys"),
                                    ("world_writable", "/etc/motd")]
    ssh.chmod(0o700)
    (ssh / "authorized_keys").chmod(0o600)
    (root / "etc/motd").chmod(0o644)
    assert errors(root) == []


def test_role_module_missing_from_the_kernel_tree(tmp_path: Path) -> None:
    root = tree(tmp_path)
    k = root / "lib/modules/6.18.56-0-virt"
    k.mkdir(parents=True)
    (k / "modules.dep").write_text("kernel/drivers/net/tun.ko:\nkernel/arch/x86/kvm/kvm-intel.ko: kernel/arch/x86/kvm/kvm.ko\n")
    (k / "modules.builtin").write_text("kernel/fs/overlayfs/overlay.ko\n")
    assert errors(root, role_modules={"worker": ["tun", "kvm_intel", "overlay"]}) == []
    report = _audit.audit(root, role_modules={"storage": ["zfs"]})
    assert [(e.check, e.path) for e in report.errors] == [("role_modules", "/lib/modules/6.18.56-0-virt")]
    assert "role storage loads module zfs" in report.errors[0].detail


def test_the_report_reads_back_and_an_old_format_is_refused(tmp_path: Path) -> None:
    doc = _audit.audit(tree(tmp_path)).as_dict()
    path = tmp_path / "audit.json"
    path.write_bytes(_audit.AUDIT.dump(doc))
    assert _audit.AUDIT.load(path) == {**doc, "format": "homelab.alpine_netboot/audit/2"}
    path.write_text(json.dumps({**doc, "format": 1}))
    with pytest.raises(ConfigError, match=rf"{path} has format 1, expected .*--tags audit"):
        _audit.AUDIT.load(path)
