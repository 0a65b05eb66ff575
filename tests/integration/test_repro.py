"""``make repro`` (scripts/repro.py): two offline builds of the same inputs under another umask, TZ, locale, file
order, mtimes and build directory are bit-identical; an injected nondeterminism fails the gate, naming the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.glibc import deb_urls, glibc_probe
from tests.fixtures.material import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="building the rootfs needs root"),
]


def repro(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "scripts/repro.py"), "--work", str(tmp_path), "--level", "1",
                           *args], capture_output=True, text=True, check=False, timeout=1200)


def test_two_builds_are_bit_identical(tmp_path: Path) -> None:
    """With a glibc-linked netboot_binaries entry: its glibc runtime (libc6 from the cache) rebuilds offline
    byte for byte too (issue 22)."""
    probe = glibc_probe()
    r = repro(tmp_path, "--extravars", json.dumps({"netboot_binaries": [probe.entry()], "netboot_deb_urls": deb_urls()}))
    assert r.returncode == 0, r.stdout + r.stderr
    same = next(line for line in r.stdout.splitlines() if "bit-identical: " in line)
    for name in ("initramfs", "boot.ipxe", "manifest.json", "SHA256SUMS", "vmlinuz", "ledger.json"):
        assert name in same.split("bit-identical: ")[1].split(", "), r.stdout
    assert "umask 077, TZ=Pacific/Chatham" in r.stdout and "PYTHONHASHSEED=4242" in r.stdout and "in reverse order" in r.stdout
    print(r.stdout)


def test_an_injected_nondeterminism_fails_the_gate_naming_the_file(tmp_path: Path) -> None:
    r = repro(tmp_path, "--inject-nondeterminism")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "NOT reproducible" in r.stdout
    assert "initramfs: differs" in r.stdout
    # the cpio entry, the field and both values
    probe = [line for line in r.stdout.splitlines() if "initramfs entry etc/netboot-repro-probe: sha256 " in line]
    assert probe, r.stdout
    a, b = probe[0].split(": sha256 ")[1].split(" != ")
    assert a != b
