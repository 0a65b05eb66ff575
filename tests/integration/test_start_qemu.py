"""./start_qemu.sh driven non-interactively: stdin/stdout are pipes, we read the console and quit with Ctrl-a x."""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._ipxe import (
    DEFAULT_KERNEL_ARGS,
    UNCHECKED_MARKER,
)
from tests.fixtures.bootimage import READY, boot_image

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "start_qemu.sh"


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    image = boot_image()
    d = tmp_path / "dist"
    d.mkdir()
    shutil.copyfile(image.kernel, d / "vmlinuz")
    shutil.copyfile(image.initramfs, d / "initramfs")
    return d


def drive(args: list[str], until: str, timeout: float = 300) -> tuple[str, float, int]:
    """Run start_qemu.sh, read until ``until``, then type Ctrl-a x (qemu's quit key) and wait for the exit."""
    start = time.monotonic()
    proc = subprocess.Popen([str(SCRIPT), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    assert proc.stdout is not None and proc.stdin is not None
    os.set_blocking(proc.stdout.fileno(), False)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    out = b""
    try:
        while until.encode() not in out:
            assert time.monotonic() - start < timeout, out.decode(errors="replace")[-3000:]
            assert proc.poll() is None, out.decode(errors="replace")[-3000:]
            if sel.select(0.5):
                out += proc.stdout.read() or b""
        took = time.monotonic() - start
        proc.stdin.write(b"\x01x")  # Ctrl-a x: quit
        proc.stdin.flush()
        rc = proc.wait(timeout=20)
        out += proc.stdout.read() or b""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # start_qemu.sh's python and its qemu child
            proc.wait()
        sel.close()
    return out.decode(errors="replace").replace("\r", ""), took, rc


@pytest.mark.slow
def test_start_qemu_memory_1g_smp_2_boots_and_ctrl_a_x_quits(dist: Path) -> None:
    """Must show 5: ./start_qemu.sh --memory 1G --smp 2 boots to the marker; Ctrl-a x ends it."""
    out, took, rc = drive(["--dist", str(dist), "--memory", "1G", "--smp", "2"], READY)
    tail = out[-3000:]
    assert "-m 1024M -smp 2 -nographic -serial mon:stdio" in out, tail  # the command line it ran
    assert "smp: Brought up 1 node, 2 CPUs" in out, tail
    assert DEFAULT_KERNEL_ARGS in out, tail
    assert rc == 0, out[-2000:]
    print(f"start_qemu.sh direct: marker after {took:.1f} s")


@pytest.mark.slow
def test_start_qemu_netboot_cattle(dist: Path) -> None:
    """--netboot: PXE ROM -> iPXE -> a cattle boot.ipxe -> kernel + initramfs over HTTP from start_qemu itself."""
    out, took, rc = drive(["--dist", str(dist), "--netboot", "--mac", "AA-BB-CC-00-11-22", "--memory", "512M"],
                          READY)
    tail = out[-3000:]
    assert "netboot: unknown MAC aa:bb:cc:00:11:22" in out, tail
    assert "TESTIMAGE hostname=node-aabbcc001122" in out, tail
    assert "http://10.0.2.2:" in out and "/vmlinuz..." in out, tail
    # the script carries the images' sha256; qemu's NIC ROM (bookworm's iPXE) has no sha256sum: it says so, boots
    assert UNCHECKED_MARKER in out, tail
    assert rc == 0, tail
    print(f"start_qemu.sh --netboot: marker after {took:.1f} s")


def test_start_qemu_dry_run_graphical_and_mac(dist: Path) -> None:
    proc = subprocess.run([str(SCRIPT), "--dist", str(dist), "--dry-run", "--graphical", "--memory", "4G",
                           "--smp", "4", "--mac", "aabb.cc00.1122", "--accel", "tcg"],
                          capture_output=True, text=True, check=True)
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("+ qemu-system-x86_64 -accel tcg,thread=single -cpu max")  # several vCPUs: one host thread
    assert "-nographic" not in line and "-serial mon:stdio" in line
    assert "-m 4096M -smp 4" in line and "mac=aa:bb:cc:00:11:22" in line
    assert f"-kernel {dist}/vmlinuz -initrd {dist}/initramfs" in line


def test_start_qemu_missing_image_says_what_to_do(tmp_path: Path) -> None:
    proc = subprocess.run([str(SCRIPT), "--dist", str(tmp_path), "--dry-run"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2
    assert f"{tmp_path}/vmlinuz not found: build first" in proc.stderr
