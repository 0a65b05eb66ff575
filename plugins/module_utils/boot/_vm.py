# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The VM runner of the boot test (``boot_test`` role, ``qemu_boot_test`` module).

* ``run_vm(argv, ...)``: runs qemu, reads the serial console, passes on a marker, fails fast on a kernel panic or
  the failure line of ``boot.ipxe`` with the console tail, times qemu start -> marker and kernel -> marker, and
  parses the output of the checks run by the test hook (``_testhook``).
* ``boot_test(BootTest(...))``: stages the artefacts (the hook goes into a temporary copy, never into ``dist/``),
  serves them over HTTP when asked (``_bootserver``) and runs the VM; ``staged``/``run_staged`` are its two halves.
* ``node_cmdline``: the direct-mode kernel command line boot.ipxe would give a MAC.

qemu is the one long-running child here: it needs streaming and a kill on the marker, which ``Runner.run`` cannot
do, so it is started with ``subprocess.Popen`` (the argv is still recorded in the runner's log).
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shlex
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._bootserver import BootServer
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._ipxe import (
    DEFAULT_KERNEL_ARGS,
    FAILED_MARKER,
    cattle_hostname,
    normalise_mac,
    parse_nodes,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._qemu import (
    DEFAULT_MAC,
    QEMU,
    QemuSpec,
    build_argv,
    concat_initrds,
    pick_accel,
    stage_netboot,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._testhook import (
    DEFAULT_CHECKS,
    DEFAULT_MARKER,
    hook_cpio,
    parse_checks,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import sha256_file
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner

# Lines that end a boot for good. Single failed downloads are not here: boot.ipxe retries them and prints
# FAILED_MARKER when every server failed.
FATAL_PATTERNS: tuple[tuple[str, str], ...] = (
    ("Kernel panic - not syncing", "kernel panic"),
    (FAILED_MARKER, "iPXE: boot.ipxe gave up"),
    ("No more network devices", "iPXE: no network device could boot"),
    ("No bootable device", "firmware: no bootable device"),
    ("ZSTD-compressed data is corrupt", "initramfs unpack error"),
    ("Initramfs unpacking failed", "initramfs unpack error"),
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1bc")


@dataclass
class BootResult:
    ok: bool
    reason: str
    console: str
    accel: str
    argv: list[str]
    seconds_to_marker: float | None = None  # qemu start -> marker
    kernel_to_marker: float | None = None  # first kernel line -> marker
    seconds: float = 0.0  # total wall time
    checks: list[dict[str, object]] = field(default_factory=list)
    http_requests: list[str] = field(default_factory=list)  # "GET /vmlinuz 200" when the boot test served HTTP

    fatal_line: str = ""  # the console line that ended the boot, if any

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` console lines; after a fatal line, the 15 lines before it come first (the cause)."""
        all_lines = self.console.rstrip().splitlines()
        last = all_lines[-lines:]
        if self.fatal_line:
            idx = next((i for i, line in enumerate(all_lines) if self.fatal_line in line), None)
            if idx is not None and idx - 15 < len(all_lines) - lines:
                before = all_lines[max(0, idx - 15) : idx + 1]
                return "\n".join([*before, "[...]", *last])
        return "\n".join(last)

    def as_dict(self) -> dict[str, object]:
        """Every field but the whole console (its tail instead) and the fatal line."""
        fields = {k: v for k, v in vars(self).items() if k not in ("console", "fatal_line", "http_requests")}
        return {**fields, "seconds": round(self.seconds, 2), "console_tail": self.tail(),
                "http_requests": self.http_requests}


def clean_console(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").replace("\r", "")
    return _ANSI.sub("", text)


@dataclass
class _Console:
    """What qemu's serial console showed so far, and why the wait ended."""

    marker: str
    start: float
    raw: bytearray = field(default_factory=bytearray)
    t_kernel: float | None = None
    t_marker: float | None = None
    reason: str = ""
    ok: bool = False
    grace_until: float | None = None
    fatal_reason: str = ""
    fatal_pattern: str = ""

    def scan(self) -> bool:
        """After new output: the kernel's start, a fatal line, the marker (True: seen, the wait is over)."""
        text = clean_console(bytes(self.raw))
        now = time.monotonic()
        if self.t_kernel is None and re.search(r"Linux version \d", text):
            self.t_kernel = now
        if self.grace_until is None:
            for pattern, why in FATAL_PATTERNS:
                if text.find(pattern) >= 0:
                    self.fatal_reason, self.fatal_pattern = why, pattern
                    self.grace_until = now + 1.5  # let the rest of the message (call trace, reason) arrive
                    break
        if self.grace_until is None and self.marker in text:
            self.t_marker, self.ok, self.reason = now, True, "marker seen"
            return True
        return False

    def exited(self, proc: subprocess.Popen[bytes], stdout: IO[bytes]) -> None:
        """qemu's output ended or it exited: the rest of its output, then the marker or why it stopped."""
        self.raw += stdout.read() or b""
        if self.grace_until is None and self.marker in clean_console(bytes(self.raw)):
            self.t_marker, self.ok, self.reason = time.monotonic(), True, "marker seen"
        elif self.grace_until is None:
            rc = proc.wait()
            why = "qemu failed to start" if rc else "the guest reset or powered off (too little RAM?)"
            self.reason = f"qemu exited (rc {rc}) before {self.marker!r} appeared: {why}"

    def result(self, argv: Sequence[str], accel: str, checks: Sequence[str]) -> BootResult:
        console = clean_console(bytes(self.raw))
        end = time.monotonic()
        line, reason = "", self.reason
        if self.fatal_pattern:
            line = console[console.find(self.fatal_pattern) :].split("\n", 1)[0].strip()
            reason = f"{self.fatal_reason}: {line}"
        t_marker, start = self.t_marker, self.start
        return BootResult(
            ok=self.ok, reason=reason, console=console, accel=accel, argv=list(argv),
            seconds_to_marker=round(t_marker - start, 2) if t_marker else None,
            kernel_to_marker=round(t_marker - self.t_kernel, 2) if t_marker and self.t_kernel else None,
            seconds=end - start, checks=parse_checks(console, checks), fatal_line=line,
        )


def _read_output(sel: selectors.BaseSelector, stdout: IO[bytes], raw: bytearray, log_fh: BinaryIO | None) -> bool:
    """What qemu printed within 0.2 s, appended to ``raw`` (and the console log); True at the end of its output."""
    for _key, _unused in sel.select(timeout=0.2):
        chunk = stdout.read(65536)
        if not chunk:
            return True
        raw += chunk
        if log_fh:
            log_fh.write(chunk)
            log_fh.flush()
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_vm(argv: Sequence[str], *, marker: str, timeout: float, accel: str, checks: Sequence[str] = (),
           console_log: Path | None = None, runner: Runner | None = None) -> BootResult:
    """Run qemu (serial console on stdout) until ``marker``, a fatal line, qemu's exit or ``timeout``."""
    if runner is not None:
        runner.log.append(shlex.join(argv))
    con = _Console(marker, time.monotonic())
    log_fh: BinaryIO | None = open(console_log, "wb") if console_log else None
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    except FileNotFoundError as exc:
        if log_fh:
            log_fh.close()
        raise NetbootError(f"cannot run {argv[0]!r}: {exc.strerror}; install qemu-system-x86") from exc
    if proc.stdout is None:  # stdout=PIPE always gives one; checked for the type checker
        raise NetbootError(f"{argv[0]!r} started without an output pipe")
    stdout = proc.stdout
    sel = selectors.DefaultSelector()
    sel.register(stdout, selectors.EVENT_READ)
    os.set_blocking(stdout.fileno(), False)
    try:
        while True:
            now = time.monotonic()
            if con.grace_until is not None and now >= con.grace_until:
                break
            if now - con.start > timeout:
                con.reason = f"timeout: no {marker!r} on the console within {timeout:.0f} s"
                break
            eof = _read_output(sel, stdout, con.raw, log_fh)
            if con.scan():
                break
            if eof or proc.poll() is not None:
                con.exited(proc, stdout)
                break
    finally:
        _stop(proc)
        sel.close()
        stdout.close()
        if log_fh:
            log_fh.close()
    return con.result(argv, accel, checks)


@dataclass
class BootTest:
    """A boot test of built artefacts. ``initrds``: the image's initrds in boot order (microcode first)."""

    kernel: Path
    initrds: Sequence[Path]
    mode: str = "direct"  # direct | netboot
    dist_dir: Path | None = None  # netboot: served over TFTP (and HTTP by the caller); default kernel's dir
    boot_ipxe: Path | None = None  # netboot: the script served as boot.ipxe; default dist_dir/boot.ipxe
    bootfile: str | None = None  # netboot: DHCP bootfile; default boot.ipxe over TFTP, or an http:// URL
    http_port: int | None = None  # netboot: also serve the artefacts over HTTP on 127.0.0.1:PORT (0: any free port)
    initramfs_name: str | None = None  # netboot: the artefact the hook is appended to; default initrds[-1] name
    append: str = DEFAULT_KERNEL_ARGS  # direct mode kernel cmdline
    memory: str | int = "1G"
    smp: int = 1
    mac: str = DEFAULT_MAC
    nic: str = "virtio-net-pci"
    timeout: float = 300
    marker: str = DEFAULT_MARKER
    checks: Sequence[str] = DEFAULT_CHECKS
    hook: bool = True
    extra_initrds: Sequence[Path] = ()  # appended after the image (and before the hook)
    accel: str = "auto"
    console_log: Path | None = None
    qemu: str = QEMU


@contextlib.contextmanager
def staged(test: BootTest) -> Iterator[tuple[QemuSpec, Path | None]]:
    """Check ``test`` and stage it in a temporary directory: yields the VM and, in netboot mode, the directory to
    serve (TFTP root, and HTTP root when ``http_port`` is set). The hook goes into a temporary copy of the initrd."""
    if test.mode not in ("direct", "netboot"):
        raise ConfigError(f"boot_test_mode {test.mode!r}: use direct or netboot")
    for path in (test.kernel, *test.initrds, *test.extra_initrds):
        if not Path(path).is_file():
            raise ConfigError(f"boot test: {path} does not exist; build the image first (playbooks/build.yml)")
    with tempfile.TemporaryDirectory(prefix="netboot-boot-test-") as tmpdir:
        tmp = Path(tmpdir)
        tail: list[Path | bytes] = list(test.extra_initrds)
        if test.hook:
            tail.append(hook_cpio(test.checks, test.marker))
        if test.mode == "direct":
            parts: list[Path | bytes] = [*test.initrds, *tail]
            initrd = concat_initrds(parts, tmp / "initrd") if (len(parts) > 1) else Path(test.initrds[0])
            yield QemuSpec(kernel=Path(test.kernel), initrd=initrd, append=test.append, memory=test.memory,
                           smp=test.smp, mac=test.mac, nic=test.nic, qemu=test.qemu), None
            return
        dist = Path(test.dist_dir or Path(test.kernel).parent)
        script = Path(test.boot_ipxe or dist / "boot.ipxe")
        if not script.is_file():
            raise ConfigError(f"boot test: {script} does not exist; run the ipxe role first")
        name = test.initramfs_name or Path(test.initrds[-1]).name
        overrides: dict[str, Path] = {"boot.ipxe": script}
        if tail:
            overrides[name] = concat_initrds([dist / name, *tail], tmp / f"{name}.with-hook")
            # boot.ipxe checks the sha256 of what it fetched: the staged copy expects the copy with the hook
            old, new = sha256_file(dist / name), sha256_file(overrides[name])
            text = script.read_text()
            if old and new and old in text:
                overrides["boot.ipxe"] = tmp / "boot.ipxe"
                overrides["boot.ipxe"].write_text(text.replace(old, new))
        serve = stage_netboot(dist, tmp / "serve", overrides)
        yield QemuSpec(netboot=True, tftp_dir=serve, bootfile=test.bootfile or "boot.ipxe", memory=test.memory,
                       smp=test.smp, mac=test.mac, nic=test.nic, qemu=test.qemu), serve


def run_staged(test: BootTest, spec: QemuSpec, accel: str, runner: Runner | None = None,
               server: BootServer | None = None) -> BootResult:
    """Run the staged VM; with ``server``, the HTTP requests it answered go into the result."""
    result = run_vm(build_argv(spec, accel), marker=test.marker, timeout=test.timeout, accel=accel,
                    checks=test.checks, console_log=test.console_log, runner=runner)
    if server is not None:
        result.http_requests = [f"{m} {p} {s}" for m, p, s in server.requests]
    return result


def boot_test(test: BootTest, runner: Runner | None = None) -> BootResult:
    """Boot the artefacts once; the hook (if any) goes into a temporary copy, the artefacts stay untouched."""
    with staged(test) as (spec, serve):
        accel = pick_accel(test.accel, test.qemu, runner)
        if serve is not None and test.http_port is not None:
            with BootServer(serve, port=test.http_port) as srv:
                return run_staged(test, spec, accel, runner, srv)
        return run_staged(test, spec, accel, runner)


def node_cmdline(base: str, mac: str, nodes: Sequence[Mapping[str, object]], default_role: str) -> str:
    """Direct mode: the cmdline boot.ipxe would give the machine with ``mac`` (its node, else cattle)."""
    wanted = normalise_mac(mac, host="boot test guest")
    for node in parse_nodes(nodes, default_role=default_role):
        if node.mac == wanted:
            extra = f" {node.kernel_args}" if node.kernel_args else ""
            return f"{base} netboot.hostname={node.hostname} netboot.role={node.role}{extra}".strip()
    return f"{base} netboot.hostname={cattle_hostname(wanted)} netboot.role={default_role}".strip()
