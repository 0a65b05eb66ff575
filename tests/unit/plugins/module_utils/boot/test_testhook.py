"""The test hook cpio (GNU cpio reads it, its script prints what parse_checks reads back) and its marker."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._testhook import (
    CHECK_BEGIN,
    CHECK_END,
    DEFAULT_CHECKS,
    DEFAULT_MARKER,
    hook_cpio,
    parse_checks,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError

ROLES = Path(__file__).resolve().parents[5] / "roles"


def test_hook_cpio_is_a_valid_newc_archive_gnu_cpio_reads(tmp_path: Path) -> None:
    data = hook_cpio(["cat /etc/hostname", "echo 'quoted' \"x\""], marker="READY-1")
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=data, capture_output=True, check=True).stdout.decode()
    names = [line.split()[-1] if "->" not in line else line.split()[-3] for line in listing.splitlines()]
    assert names == ["etc", "etc/local.d", "etc/local.d/zz-netboot-boot-test.start", "etc/runlevels",
                     "etc/runlevels/default", "etc/runlevels/default/local"]
    assert "-> /etc/init.d/local" in listing
    subprocess.run(["cpio", "-id", "--quiet"], input=data, cwd=tmp_path, check=True)
    script = tmp_path / "etc/local.d/zz-netboot-boot-test.start"
    assert os.access(script, os.X_OK)
    # Run the hook script on the host (with the console redirected) and parse what it prints.
    text = script.read_text().replace("out=/dev/ttyS0; [ -c $out ] || out=/dev/console", f"out={tmp_path}/console")
    assert text.count("dmesg -n 1") == 1
    text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("dmesg "))  # not on the host!
    (tmp_path / "etc/hostname").write_text("alpha\n")
    text = text.replace("/etc/hostname", f"{tmp_path}/etc/hostname")
    runnable = tmp_path / "hook.sh"
    runnable.write_text(text)
    subprocess.run(["sh", str(runnable)], check=True)
    console = (tmp_path / "console").read_text()
    assert console.endswith("READY-1\n")
    assert parse_checks(console, ["cat /etc/hostname", "echo 'quoted' \"x\""]) == [
        {"command": "cat /etc/hostname", "rc": 0, "output": "alpha"},
        {"command": "echo 'quoted' \"x\"", "rc": 0, "output": 'quoted x'},
    ]
    assert parse_checks(f"{CHECK_BEGIN} 0\nboom\n{CHECK_END} 0 rc=3\n", ["false"])[0]["rc"] == 3
    interleaved = f"{CHECK_BEGIN} 0\n[    2.184546] tsc: Refined TSC\nedge\n{CHECK_END} 0 rc=0\n"
    assert parse_checks(interleaved, ["cat /etc/netboot/role"])[0]["output"] == "edge"
    assert parse_checks("no hook output", ["true"]) == [{"command": "true", "rc": None, "output": None}]
    shared = f" * Starting local ...{CHECK_BEGIN} 0\nno-newline{CHECK_END} 0 rc=0\n"
    assert parse_checks(shared, ["printf no-newline"])[0]["output"] == "no-newline"
    with pytest.raises(ConfigError, match="boot_test_marker"):
        hook_cpio([], marker="it's")


def test_the_default_marker_ends_the_hook_script_and_is_the_role_default() -> None:
    data = hook_cpio(["true"])
    assert f"echo {DEFAULT_MARKER}\n}} >$out 2>&1".encode() in data
    # YAML cannot import: the one role default must carry the same value
    defaults = [yaml.safe_load(p.read_text()) or {} for p in sorted(ROLES.glob("*/defaults/main.yml"))]
    assert [d["boot_test_marker"] for d in defaults if "boot_test_marker" in d] == [DEFAULT_MARKER]
    assert [d["boot_test_checks"] for d in defaults if "boot_test_checks" in d] == [list(DEFAULT_CHECKS)]
