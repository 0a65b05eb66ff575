"""The VM runner on a real child process (a shell printing what a guest console would), the result's console
tail, and the direct-mode kernel command line. Real qemu boots are in tests/integration/test_boot.py."""

from __future__ import annotations

import hashlib
import shlex
import time
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._testhook import CHECK_BEGIN, CHECK_END
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._vm import (
    BootTest,
    boot_test,
    node_cmdline,
    run_vm,
    staged,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner


def console(script: str) -> list[str]:
    """A child that prints like a guest's serial console (with CRs and colour codes, as SeaBIOS/OpenRC do)."""
    return ["sh", "-c", script]


def test_marker_ends_the_run_with_timings_and_checks(tmp_path: Path) -> None:
    runner = Runner()
    script = (f"printf 'SeaBIOS\\r\\n\\033[1;32mLinux version 6.18\\033[0m\\r\\n'; sleep 0.3; "
              f"printf '{CHECK_BEGIN} 0\\nalpha\\n{CHECK_END} 0 rc=0\\nREADY-X\\n'; sleep 30")
    start = time.monotonic()
    r = run_vm(console(script), marker="READY-X", timeout=20, accel="tcg", checks=["hostname"],
               console_log=tmp_path / "console.log", runner=runner)
    assert time.monotonic() - start < 10  # the child is stopped at the marker, not waited for
    assert r.ok and r.reason == "marker seen"
    assert r.checks == [{"command": "hostname", "rc": 0, "output": "alpha"}]
    assert r.seconds_to_marker is not None and r.kernel_to_marker is not None
    assert 0 <= r.kernel_to_marker <= r.seconds_to_marker
    assert "\r" not in r.console and "\033" not in r.console and "Linux version 6.18" in r.console
    assert b"\033[1;32m" in (tmp_path / "console.log").read_bytes()  # the raw console is kept
    assert runner.log == [shlex.join(console(script))]
    assert r.as_dict()["console_tail"].endswith("READY-X")


def test_kernel_panic_fails_fast_with_the_cause_in_the_tail() -> None:
    trace = "".join(f"trace {i}\\n" for i in range(60))  # a long call trace after the panic line
    script = ("printf 'boot 1\\nthe cause\\nKernel panic - not syncing: Attempted to kill init\\n'; "
              f"printf '{trace}---[ end Kernel panic ]---\\n'; sleep 30")
    start = time.monotonic()
    r = run_vm(console(script), marker="READY", timeout=60, accel="tcg")
    assert time.monotonic() - start < 10
    assert not r.ok and r.reason == "kernel panic: Kernel panic - not syncing: Attempted to kill init"
    tail = r.tail()
    assert tail.startswith("boot 1\nthe cause\nKernel panic") and "\n[...]\n" in tail  # the cause comes first
    assert tail.endswith("trace 59\n---[ end Kernel panic ]---") and "trace 10\n" not in tail


def test_exit_timeout_and_missing_qemu() -> None:
    r = run_vm(console("echo booting; exit 0"), marker="READY", timeout=20, accel="kvm")
    assert not r.ok and "qemu exited (rc 0) before 'READY' appeared" in r.reason and "too little RAM" in r.reason
    r = run_vm(console("echo booting; exit 1"), marker="READY", timeout=20, accel="kvm")
    assert "qemu failed to start" in r.reason
    r = run_vm(console("echo booting; sleep 30"), marker="READY", timeout=1, accel="tcg")
    assert not r.ok and r.reason == "timeout: no 'READY' on the console within 1 s"
    with pytest.raises(NetbootError, match="install qemu-system-x86"):
        run_vm(["/nonexistent/qemu-system-x86_64"], marker="READY", timeout=5, accel="tcg")


def test_boot_test_refuses_missing_artefacts_and_modes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"boot test: {tmp_path}/vmlinuz does not exist; build the image first"):
        boot_test(BootTest(kernel=tmp_path / "vmlinuz", initrds=[tmp_path / "initramfs"]))
    with pytest.raises(ConfigError, match="boot_test_mode 'pxe'"):
        boot_test(BootTest(kernel=tmp_path / "vmlinuz", initrds=[], mode="pxe"))
    for name in ("vmlinuz", "initramfs"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ConfigError, match=f"{tmp_path}/boot.ipxe does not exist; run the ipxe role first"):
        boot_test(BootTest(kernel=tmp_path / "vmlinuz", initrds=[tmp_path / "initramfs"], mode="netboot"))


def test_direct_cmdline_matches_what_boot_ipxe_gives() -> None:
    nodes = [{"name": "n100-01", "mac": "AA-BB-CC-00-00-01", "hostname": "alpha", "role": "db",
              "kernel_args": "quiet"}]
    assert node_cmdline("console=ttyS0", "aabb.cc00.0001", nodes, "worker") == (
        "console=ttyS0 netboot.hostname=alpha netboot.role=db quiet")
    assert node_cmdline("console=ttyS0", "aa:bb:cc:00:00:02", nodes, "edge") == (
        "console=ttyS0 netboot.hostname=node-aabbcc000002 netboot.role=edge")


def test_netboot_staging_points_boot_ipxe_at_the_initramfs_with_the_hook(tmp_path: Path) -> None:
    """boot.ipxe checks the sha256 of what it fetched: the staged copy expects the initramfs with the hook, the
    published one stays as it was."""
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "vmlinuz").write_bytes(b"kernel")
    (dist / "initramfs").write_bytes(b"\x1f\x8b initramfs")
    old = hashlib.sha256(b"\x1f\x8b initramfs").hexdigest()
    script = f"#!ipxe\nset check_want {old}\n"
    (dist / "boot.ipxe").write_text(script)
    test = BootTest(kernel=dist / "vmlinuz", initrds=[dist / "initramfs"], mode="netboot", dist_dir=dist)
    with staged(test) as (_spec, serve):
        assert serve is not None
        new = hashlib.sha256((serve / "initramfs").read_bytes()).hexdigest()
        assert new != old and (serve / "boot.ipxe").read_text() == f"#!ipxe\nset check_want {new}\n"
    assert (dist / "boot.ipxe").read_text() == script
