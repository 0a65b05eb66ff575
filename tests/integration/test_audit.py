"""_audit on real Alpine (musl) binaries and the whole real tree (downloaded material). Each check on small trees:
tests/unit/plugins/module_utils/image/test_audit.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _audit, _elf
from tests.fixtures.audit import errors, tree
from tests.fixtures.material import QuicksandImage


def test_glibc_binary_on_musl_fails_naming_interpreter_and_library(alpine: QuicksandImage, tmp_path: Path) -> None:
    musl = alpine.root
    root = tree(tmp_path)
    for rel in ("lib/ld-musl-x86_64.so.1", "lib/libc.musl-x86_64.so.1", "bin/busybox"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if (musl / rel).is_symlink():
            os.symlink(os.readlink(musl / rel), root / rel)
        else:
            shutil.copy(musl / rel, root / rel)
    assert errors(root) == []  # musl busybox resolves
    shutil.copy("/bin/true", root / "bin/true")  # the Debian host's glibc build
    dyn = _elf.dynamic((root / "bin/true").read_bytes())
    assert dyn is not None and "libc.so.6" in dyn.needed and dyn.interp
    report = _audit.audit(root)
    assert {(e.check, e.path) for e in report.errors} == {("elf_links", "/bin/true")}
    text = report.message()
    assert dyn.interp in text and "libc.so.6" in text


def test_real_alpine_tree_passes_and_reports_services(alpine: QuicksandImage) -> None:
    report = _audit.audit(alpine.root)
    assert report.passed, report.message()
    assert report.elf_files > 100
    assert "modules" in report.services["runlevels"]["boot"]
    doc = report.as_dict()
    assert doc["passed"] and set(doc["checks"]) == set(_audit.CHECKS)
