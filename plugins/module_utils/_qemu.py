"""The one qemu argument builder, plus the boot test runner used by the ``boot_test`` role and ``start_qemu.sh``.

* ``build_argv(spec, accel)``: pure; direct mode (``-kernel/-initrd/-append``) or netboot mode (the NIC's PXE ROM,
  Debian ``ipxe-qemu``, gets DHCP + ``bootfile`` from qemu's user network and runs ``boot.ipxe``), serial console,
  ``-nographic`` (SeaBIOS and iPXE then print on the serial port too) or a graphical window.
* ``pick_accel()``: KVM when it really works (a probe VM must survive a moment), else ``-accel tcg -cpu max``.
* ``boot(...)``: runs qemu, reads the serial console, passes on a marker, fails fast on a kernel panic or the
  failure line of ``boot.ipxe`` with the console tail, times qemu start -> marker and kernel -> marker, collects the
  output of check commands run by a TEST-ONLY hook initrd (``hook_cpio``; never part of ``dist/``).
* ``minimum_ram(kernel, initrds, cmdline)``: RAM the image needs to unpack (kernel init size + compressed +
  unpacked + decoder window, and the initramfs tmpfs cap of 50 % of RAM).

qemu is the one long-running child here: it needs streaming and a kill on the marker, which ``Runner.run`` cannot
do, so it is started with ``subprocess.Popen`` (the argv is still recorded in the runner's log).
"""

from __future__ import annotations

import argparse
import lzma
import os
import re
import selectors
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from ansible_collections.homelab.alpine_netboot.plugins.module_utils._bootserver import BootServer
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import (
    CommandError,
    ConfigError,
    NetbootError,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._ipxe import (
    FAILED_MARKER,
    ScriptSpec,
    cattle_hostname,
    normalise_mac,
    parse_nodes,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._ipxe import render as render_ipxe
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._run import Runner

QEMU = "qemu-system-x86_64"
DEFAULT_MARKER = "NETBOOT-BOOT-TEST-READY"
DEFAULT_MAC = "52:54:00:12:34:56"
DEFAULT_APPEND = "console=tty0 console=ttyS0,115200"
NIC_MODELS = ("virtio-net-pci", "e1000", "e1000e", "rtl8139")
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
CHECK_BEGIN = "BOOT-TEST-CHECK-BEGIN"
CHECK_END = "BOOT-TEST-CHECK-END"
_PRINTK = re.compile(r"\[\s*\d+\.\d{6}\] ")  # a kernel console message interleaved with check output
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1bc")


# --------------------------------------------------------------------------------------------------------------------
# Argument builder


def parse_memory(value: str | int) -> int:
    """``"4G"``, ``"512M"``, ``"512"`` (MiB), ``1024`` -> MiB."""
    if isinstance(value, int) and not isinstance(value, bool):
        mib = value
    else:
        m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", str(value), re.IGNORECASE)
        if not m:
            raise ConfigError(f"memory {value!r}: use a size like 512M, 1G or 4G")
        num, unit = int(m.group(1)), m.group(2).upper()
        mib = {"K": num // 1024, "": num, "M": num, "G": num * 1024, "T": num * 1024 * 1024}[unit]
    if mib < 32:
        raise ConfigError(f"memory {value!r} is below 32 MiB; a Linux guest cannot start with that")
    return mib


def _opt(value: str | os.PathLike[str]) -> str:
    """Escape a value for a qemu ``-netdev``/``-device`` option list (commas are doubled)."""
    return os.fspath(value).replace(",", ",,")


@dataclass
class QemuSpec:
    """One VM. ``initrd`` is a single file: concatenate several with ``concat_initrds`` first."""

    kernel: Path | None = None
    initrd: Path | None = None
    append: str = DEFAULT_APPEND
    netboot: bool = False
    tftp_dir: Path | None = None
    bootfile: str = "boot.ipxe"
    memory: str | int = "1G"
    smp: int = 1
    mac: str = DEFAULT_MAC
    nic: str = "virtio-net-pci"
    graphical: bool = False
    interactive: bool = False  # serial on the terminal with qemu's monitor mux (Ctrl-a x quits)
    serial: str = "stdio"  # chardev for the serial port when not interactive
    no_reboot: bool = True
    qemu: str = QEMU
    extra_args: Sequence[str] = ()


def build_argv(spec: QemuSpec, accel: str) -> list[str]:
    """The qemu command line for ``spec``; ``accel`` is ``kvm`` or ``tcg``."""
    if accel == "kvm":
        argv = [spec.qemu, "-accel", "kvm", "-cpu", "host"]
    elif accel == "tcg":
        argv = [spec.qemu, "-accel", "tcg", "-cpu", "max"]
    else:
        raise ConfigError(f"accel {accel!r}: use kvm or tcg")
    if not isinstance(spec.smp, int) or not 1 <= spec.smp <= 64:
        raise ConfigError(f"smp {spec.smp!r}: use 1..64 CPUs")
    if spec.nic not in NIC_MODELS:
        raise ConfigError(f"nic {spec.nic!r}: use one of {', '.join(NIC_MODELS)} (they carry an iPXE PXE ROM)")
    argv += ["-machine", "pc", "-m", f"{parse_memory(spec.memory)}M", "-smp", str(spec.smp)]
    if spec.graphical:
        argv += ["-serial", "mon:stdio" if spec.interactive else spec.serial]
        if not spec.interactive:
            argv += ["-monitor", "none"]
    else:
        # -nographic makes SeaBIOS (and the iPXE ROM it runs) print on the serial port as well.
        argv += ["-nographic"]
        argv += ["-serial", "mon:stdio"] if spec.interactive else ["-serial", spec.serial, "-monitor", "none"]
    if spec.no_reboot:
        argv += ["-no-reboot"]
    mac = normalise_mac(spec.mac, host="qemu guest")
    netdev = "user,id=n0"
    if spec.netboot:
        if spec.tftp_dir is None:
            raise ConfigError("netboot mode needs tftp_dir (the directory served as the TFTP root)")
        if not spec.bootfile or any(c in spec.bootfile for c in " \n"):
            raise ConfigError(f"bootfile {spec.bootfile!r}: give a file name in tftp_dir or an http:// URL")
        netdev += f",tftp={_opt(spec.tftp_dir)},bootfile={_opt(spec.bootfile)}"
        argv += ["-netdev", netdev, "-device", f"{spec.nic},netdev=n0,mac={mac},bootindex=1", "-boot", "order=n"]
    else:
        if spec.kernel is None:
            raise ConfigError("direct mode needs a kernel (vmlinuz)")
        argv += ["-netdev", netdev, "-device", f"{spec.nic},netdev=n0,mac={mac},romfile="]
        argv += ["-kernel", os.fspath(spec.kernel)]
        if spec.initrd is not None:
            argv += ["-initrd", os.fspath(spec.initrd)]
        if spec.append:
            argv += ["-append", spec.append]
    argv += list(spec.extra_args)
    return argv


_KVM_CACHE: dict[str, bool] = {}


def kvm_works(qemu: str = QEMU, runner: Runner | None = None) -> bool:
    """True when a KVM guest really runs: on some hosts /dev/kvm opens but the first vCPU run aborts (MSR error)."""
    if qemu in _KVM_CACHE:
        return _KVM_CACHE[qemu]
    ok = False
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        probe = [qemu, "-accel", "kvm", "-cpu", "host", "-machine", "pc", "-nodefaults", "-display", "none",
                 "-m", "32", "-no-reboot", "-monitor", "none", "-serial", "none"]
        try:
            (runner or Runner()).run(probe, timeout=3, what="KVM probe")
        except CommandError as exc:
            ok = exc.rc == -1  # still running after 3 s: the vCPU runs
        except NetbootError:
            ok = False
    _KVM_CACHE[qemu] = ok
    return ok


def pick_accel(requested: str = "auto", qemu: str = QEMU, runner: Runner | None = None) -> str:
    if requested in ("kvm", "tcg"):
        return requested
    if requested != "auto":
        raise ConfigError(f"accel {requested!r}: use auto, kvm or tcg")
    return "kvm" if kvm_works(qemu, runner) else "tcg"


# --------------------------------------------------------------------------------------------------------------------
# Initrds: test hook and concatenation


def _newc(name: str, mode: int, data: bytes = b"", ino: int = 0) -> bytes:
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0)
    hdr = b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
    hdr += b"\0" * (-len(hdr) % 4)
    return hdr + data + b"\0" * (-len(data) % 4)


def hook_cpio(checks: Sequence[str], marker: str = DEFAULT_MARKER) -> bytes:
    """A TEST-ONLY uncompressed newc cpio appended after the image's initramfs.

    Adds an OpenRC ``local.d`` script (enabled in the default runlevel) that prints the output of ``checks``
    between ``BOOT-TEST-CHECK-BEGIN/END`` lines and then ``marker`` on the serial console. It gives no shell and no
    login; it only exists in the boot test's temporary copy of the initrd.
    """
    if not marker or "\n" in marker or "'" in marker:
        raise ConfigError(f"boot_test_marker {marker!r} must be one line without single quotes")
    lines = [
        "#!/bin/sh",
        "# homelab.alpine_netboot boot test hook (TEST ONLY: appended by the boot test, never shipped in dist/)",
        "out=/dev/ttyS0; [ -c $out ] || out=/dev/console",
        "dmesg -n 1 2>/dev/null  # keep kernel messages from interleaving with the check output (panics still show)",
        "{",
        "echo",  # OpenRC's "Starting local ..." has no newline yet
    ]
    for i, cmd in enumerate(checks):
        lines += [f"echo '{CHECK_BEGIN} {i}'", f"sh -c {shlex.quote(cmd)} </dev/null 2>&1",
                  f"echo \"{CHECK_END} {i} rc=$?\""]
    lines += [f"echo {shlex.quote(marker)}", "} >$out 2>&1", ""]
    script = "\n".join(lines).encode()
    entries = [
        ("etc", 0o40755, b""),
        ("etc/local.d", 0o40755, b""),
        ("etc/local.d/zz-netboot-boot-test.start", 0o100755, script),
        ("etc/runlevels", 0o40755, b""),
        ("etc/runlevels/default", 0o40755, b""),
        ("etc/runlevels/default/local", 0o120777, b"/etc/init.d/local"),
    ]
    out = b"".join(_newc(n, m, d, ino=i + 1) for i, (n, m, d) in enumerate(entries))
    return out + _newc("TRAILER!!!", 0)


def concat_initrds(parts: Sequence[Path | bytes], dest: Path) -> Path:
    """Concatenate initrds (files or bytes) the way the kernel reads them: each starting 4-byte aligned."""
    with open(dest, "wb") as out:
        for part in parts:
            if isinstance(part, bytes):
                out.write(part)
            else:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            out.write(b"\0" * (-out.tell() % 4))
    return dest


def stage_netboot(dist_dir: Path, dest: Path, overrides: Mapping[str, Path]) -> Path:
    """A serving directory: symlinks to every file of ``dist_dir`` except ``overrides`` (name -> replacement)."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in sorted(dist_dir.iterdir()):
        if item.is_file() and item.name not in overrides:
            (dest / item.name).symlink_to(item.resolve())
    for name, path in overrides.items():
        if not name or "/" in name or name in (".", ".."):
            raise ConfigError(f"artefact name {name!r} must be a plain file name inside the serving directory")
        target = dest / name
        target.unlink(missing_ok=True)
        target.symlink_to(Path(path).resolve())
    return dest


def node_cmdline(base: str, mac: str, nodes: Sequence[Mapping[str, object]], default_role: str) -> str:
    """Direct mode: the cmdline boot.ipxe would give the machine with ``mac`` (its node, else cattle)."""
    wanted = normalise_mac(mac, host="boot test guest")
    for node in parse_nodes(nodes, default_role=default_role):
        if node.mac == wanted:
            extra = f" {node.kernel_args}" if node.kernel_args else ""
            return f"{base} netboot.hostname={node.hostname} netboot.role={node.role}{extra}".strip()
    return f"{base} netboot.hostname={cattle_hostname(wanted)} netboot.role={default_role}".strip()


# --------------------------------------------------------------------------------------------------------------------
# Running a boot


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
        return {
            "ok": self.ok, "reason": self.reason, "accel": self.accel, "argv": self.argv,
            "seconds_to_marker": self.seconds_to_marker, "kernel_to_marker": self.kernel_to_marker,
            "seconds": round(self.seconds, 2), "checks": self.checks, "console_tail": self.tail(),
            "http_requests": self.http_requests,
        }


def clean_console(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").replace("\r", "")
    return _ANSI.sub("", text)


def parse_checks(console: str, checks: Sequence[str]) -> list[dict[str, object]]:
    """Output and exit status of each hook check, from the console text."""
    results: list[dict[str, object]] = []
    for i, cmd in enumerate(checks):
        # not anchored: OpenRC's "Starting local ..." or output without a final newline may share the line
        m = re.search(rf"{CHECK_BEGIN} {i}\n(.*?)\n?{CHECK_END} {i} rc=(\d+)$", console, re.M | re.S)
        if m:
            output = "\n".join(ln for ln in m.group(1).splitlines() if not _PRINTK.match(ln))
            results.append({"command": cmd, "rc": int(m.group(2)), "output": output})
        else:
            results.append({"command": cmd, "rc": None, "output": None})
    return results


def run_vm(
    argv: Sequence[str],
    *,
    marker: str,
    timeout: float,
    accel: str,
    checks: Sequence[str] = (),
    fatal: Sequence[tuple[str, str]] = FATAL_PATTERNS,
    console_log: Path | None = None,
    runner: Runner | None = None,
    on_output: Callable[[bytes], None] | None = None,
) -> BootResult:
    """Run qemu (serial console on stdout) until ``marker``, a fatal line, qemu's exit or ``timeout``."""
    if runner is not None:
        runner.log.append(shlex.join(argv))
    raw = bytearray()
    start = time.monotonic()
    t_kernel: float | None = None
    t_marker: float | None = None
    reason = ""
    ok = False
    grace_until: float | None = None
    fatal_reason = fatal_pattern = ""
    log_fh: BinaryIO | None = open(console_log, "wb") if console_log else None
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    except FileNotFoundError as exc:
        if log_fh:
            log_fh.close()
        raise NetbootError(f"cannot run {argv[0]!r}: {exc.strerror}; install qemu-system-x86") from exc
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    os.set_blocking(proc.stdout.fileno(), False)
    try:
        while True:
            now = time.monotonic()
            if grace_until is not None and now >= grace_until:
                break
            if now - start > timeout:
                reason = f"timeout: no {marker!r} on the console within {timeout:.0f} s"
                break
            events = sel.select(timeout=0.2)
            eof = False
            for _key, _ in events:
                chunk = proc.stdout.read(65536)
                if not chunk:
                    eof = True
                    break
                raw += chunk
                if log_fh:
                    log_fh.write(chunk)
                    log_fh.flush()
                if on_output:
                    on_output(chunk)
            text = clean_console(bytes(raw))
            now = time.monotonic()
            if t_kernel is None and re.search(r"Linux version \d", text):
                t_kernel = now
            if grace_until is None:
                for pattern, why in fatal:
                    idx = text.find(pattern)
                    if idx >= 0:
                        fatal_reason = why
                        fatal_pattern = pattern
                        grace_until = now + 1.5  # let the rest of the message (call trace, reason) arrive
                        break
            if grace_until is None and marker in text:
                t_marker = now
                ok = True
                reason = "marker seen"
                break
            if eof or proc.poll() is not None:
                rest = proc.stdout.read() or b""
                raw += rest
                text = clean_console(bytes(raw))
                if grace_until is None and marker in text:
                    t_marker = time.monotonic()
                    ok, reason = True, "marker seen"
                elif grace_until is not None:
                    pass
                else:
                    rc = proc.wait()
                    why = "qemu failed to start" if rc else "the guest reset or powered off (too little RAM?)"
                    reason = f"qemu exited (rc {rc}) before {marker!r} appeared: {why}"
                break
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        sel.close()
        proc.stdout.close()
        if log_fh:
            log_fh.close()
    console = clean_console(bytes(raw))
    end = time.monotonic()
    line = ""
    if fatal_pattern:
        line = console[console.find(fatal_pattern) :].split("\n", 1)[0].strip()
        reason = f"{fatal_reason}: {line}"
    return BootResult(
        ok=ok,
        reason=reason,
        console=console,
        accel=accel,
        argv=list(argv),
        seconds_to_marker=round(t_marker - start, 2) if t_marker else None,
        kernel_to_marker=round(t_marker - t_kernel, 2) if t_marker and t_kernel else None,
        seconds=end - start,
        checks=parse_checks(console, checks) if checks else [],
        fatal_line=line,
    )


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
    http_refuse: Mapping[str, int] = field(default_factory=dict)  # name -> refuse the first N GETs (503)
    initramfs_name: str | None = None  # netboot: the artefact the hook is appended to; default initrds[-1] name
    append: str = DEFAULT_APPEND  # direct mode kernel cmdline
    memory: str | int = "1G"
    smp: int = 1
    mac: str = DEFAULT_MAC
    nic: str = "virtio-net-pci"
    timeout: float = 300
    marker: str = DEFAULT_MARKER
    checks: Sequence[str] = ()
    hook: bool = True
    extra_initrds: Sequence[Path] = ()  # appended after the image (and before the hook)
    accel: str = "auto"
    console_log: Path | None = None
    qemu: str = QEMU


def boot_test(test: BootTest, runner: Runner | None = None, workdir: Path | None = None) -> BootResult:
    """Boot the artefacts once; the hook (if any) goes into a temporary copy, the artefacts stay untouched."""
    if test.mode not in ("direct", "netboot"):
        raise ConfigError(f"boot_test_mode {test.mode!r}: use direct or netboot")
    for path in (test.kernel, *test.initrds, *test.extra_initrds):
        if not Path(path).is_file():
            raise ConfigError(f"boot test: {path} does not exist; build the image first (playbooks/build.yml)")
    accel = pick_accel(test.accel, test.qemu, runner)
    with tempfile.TemporaryDirectory(prefix="netboot-boot-test-", dir=workdir) as tmpdir:
        tmp = Path(tmpdir)
        tail: list[Path | bytes] = list(test.extra_initrds)
        if test.hook:
            tail.append(hook_cpio(test.checks, test.marker))
        if test.mode == "direct":
            parts: list[Path | bytes] = [*test.initrds, *tail]
            initrd = concat_initrds(parts, tmp / "initrd") if (len(parts) > 1) else Path(test.initrds[0])
            spec = QemuSpec(kernel=Path(test.kernel), initrd=initrd, append=test.append, memory=test.memory,
                            smp=test.smp, mac=test.mac, nic=test.nic, qemu=test.qemu)
        else:
            dist = Path(test.dist_dir or Path(test.kernel).parent)
            script = Path(test.boot_ipxe or dist / "boot.ipxe")
            if not script.is_file():
                raise ConfigError(f"boot test: {script} does not exist; run the ipxe role first")
            name = test.initramfs_name or Path(test.initrds[-1]).name
            overrides: dict[str, Path] = {"boot.ipxe": script}
            if tail:
                overrides[name] = concat_initrds([dist / name, *tail], tmp / f"{name}.with-hook")
            serve = stage_netboot(dist, tmp / "serve", overrides)
            spec = QemuSpec(netboot=True, tftp_dir=serve, bootfile=test.bootfile or "boot.ipxe",
                            memory=test.memory, smp=test.smp, mac=test.mac, nic=test.nic, qemu=test.qemu)
            if test.http_port is not None:
                with BootServer(serve, port=test.http_port, refuse=test.http_refuse) as srv:
                    result = run_vm(build_argv(spec, accel), marker=test.marker, timeout=test.timeout, accel=accel,
                                    checks=test.checks, console_log=test.console_log, runner=runner)
                result.http_requests = [f"{m} {p} {s}" for m, p, s in srv.requests]
                return result
        argv = build_argv(spec, accel)
        return run_vm(argv, marker=test.marker, timeout=test.timeout, accel=accel, checks=test.checks,
                      console_log=test.console_log, runner=runner)


# --------------------------------------------------------------------------------------------------------------------
# Minimum RAM


MIB = 1024 * 1024
KERNEL_BASELINE = 48 * MIB  # kernel data structures, page tables, early userspace (measured order of magnitude)


def bzimage_init_size(kernel: Path) -> int:
    """The bzImage header's ``init_size``: memory the kernel needs from its load address to start."""
    with open(kernel, "rb") as fh:
        head = fh.read(0x270)
    if len(head) < 0x264 or head[0x202:0x206] != b"HdrS":
        raise ConfigError(f"{kernel} is not an x86 bzImage (no HdrS header)")
    (version,) = struct.unpack_from("<H", head, 0x206)
    if version < 0x20A:
        return os.path.getsize(kernel) * 4
    (init_size,) = struct.unpack_from("<I", head, 0x260)
    return int(init_size)


@dataclass
class Segment:
    kind: str  # gzip | zstd | xz | cpio
    compressed: int
    unpacked: int
    window: int


def _read_chunks(fh: BinaryIO, first: bytes) -> Iterator[bytes]:
    if first:
        yield first
    while chunk := fh.read(1 << 20):
        yield chunk


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes) -> bytes: ...


def _drain(dec: _Decompressor, fh: BinaryIO, pending: bytes) -> tuple[int, int, bytes]:
    """Feed one compressed member (zlib/zstd/lzma decompressobj) to its end.
    Returns (bytes unpacked, compressed bytes consumed, what follows the member)."""
    unpacked = consumed = 0
    rest = b""
    for chunk in _read_chunks(fh, pending):
        unpacked += len(dec.decompress(chunk))
        consumed += len(chunk)
        if dec.eof:
            rest = dec.unused_data
            break
    return unpacked, consumed - len(rest), rest


def initrd_segments(path: Path) -> list[Segment]:
    """Walk the concatenated archives of an initrd: compressed members and plain newc cpios."""
    import zstandard  # only needed here

    segments: list[Segment] = []
    with open(path, "rb") as fh:
        pending = b""
        while True:
            if len(pending) < 16:
                pending += fh.read(1 << 20)
            pending = pending.lstrip(b"\0")
            while not pending:
                more = fh.read(1 << 20)
                if not more:
                    return segments
                pending = more.lstrip(b"\0")
            if len(pending) < 16:
                pending += fh.read(1 << 20)
            magic = pending[:6]
            unpacked = consumed = 0
            window = 0
            rest = b""
            if magic[:2] == b"\x1f\x8b":
                kind, window = "gzip", 32 * 1024
                unpacked, consumed, rest = _drain(zlib.decompressobj(wbits=31), fh, pending)
            elif magic[:4] == b"\x28\xb5\x2f\xfd":
                kind = "zstd"
                window = int(zstandard.get_frame_parameters(pending).window_size)
                zd = zstandard.ZstdDecompressor(max_window_size=1 << 31).decompressobj()
                unpacked, consumed, rest = _drain(zd, fh, pending)
            elif magic == b"\xfd7zXZ\0":
                kind, window = "xz", 64 * MIB  # upper bound (xz -9 dictionary); the header is not parsed
                unpacked, consumed, rest = _drain(lzma.LZMADecompressor(format=lzma.FORMAT_XZ), fh, pending)
            elif magic in (b"070701", b"070702"):
                kind = "cpio"
                buf = pending
                pos = 0
                while True:
                    while len(buf) - pos < 110:
                        more = fh.read(1 << 20)
                        if not more:
                            raise ConfigError(f"{path}: truncated cpio archive")
                        buf = buf[pos:] + more
                        consumed += pos
                        pos = 0
                    hdr = buf[pos : pos + 110]
                    filesize = int(hdr[54:62], 16)
                    namesize = int(hdr[94:102], 16)
                    name_end = pos + 110 + namesize
                    data_start = name_end + (-(110 + namesize) % 4)
                    need = data_start + filesize + (-filesize % 4)
                    while len(buf) < max(need, name_end):
                        more = fh.read(max(1 << 20, need - len(buf)))
                        if not more:
                            raise ConfigError(f"{path}: truncated cpio archive")
                        buf += more
                    name = buf[pos + 110 : name_end - 1]
                    pos = need
                    if name == b"TRAILER!!!":
                        break
                consumed += pos
                rest = buf[pos:]
                unpacked = consumed
            else:
                raise ConfigError(f"{path}: unknown initrd data at a segment start ({magic!r}); "
                                  "expected gzip, zstd, xz or a newc cpio")
            segments.append(Segment(kind, consumed if kind != "cpio" else unpacked, unpacked, window))
            pending = rest


def minimum_ram(kernel: Path, initrds: Sequence[Path], cmdline: str = "") -> dict[str, object]:
    """The RAM (MiB) needed to get the image running.

    ``unpack`` = kernel init size + every initrd as loaded (compressed) + its unpacked contents + the largest
    decoder window + a kernel baseline. The initramfs root is a tmpfs capped at 50 % of the RAM the kernel manages
    (not counting the kernel image, the loaded initrds and page structs) unless the cmdline sets
    ``initramfs_options=size=N%`` or ``root=``, so RAM must also be at least ``unpacked / cap`` + those.
    Measured on the build.yml fixture image (29.7 MB zstd, 116 MB unpacked): 272 MiB fails with "Initramfs
    unpacking failed: write error" although unpacked < 50 % of 272 MiB.
    """
    for path in (kernel, *initrds):
        if not Path(path).is_file():
            raise ConfigError(f"{path} does not exist; build the image first (playbooks/build.yml)")
    init_size = bzimage_init_size(kernel)
    segments = [s for p in initrds for s in initrd_segments(Path(p))]
    compressed = sum(Path(p).stat().st_size for p in initrds)
    unpacked = sum(s.unpacked for s in segments)
    window = max((s.window for s in segments), default=0)
    unpack_need = init_size + compressed + unpacked + window + KERNEL_BASELINE
    cap = 0.5
    m = re.search(r"(?:^|\s)initramfs_options=\S*size=(\d+)%", cmdline)
    if m:
        cap = int(m.group(1)) / 100
    if re.search(r"(?:^|\s)root=", cmdline):
        cap = 1.0
    # The rootfs tmpfs limit is cap x the RAM the kernel manages while unpacking: RAM minus the kernel image
    # (~init_size), the still-reserved compressed initrds and the page structs (1/64 of RAM), minus a little slack.
    tmpfs_need = int((unpacked / cap + compressed + init_size + 8 * MIB) * 64 / 63)
    need = max(unpack_need, tmpfs_need)
    return {
        "minimum_mib": -(-need // MIB),
        "kernel_init_size": init_size,
        "initrd_bytes": compressed,
        "unpacked_bytes": unpacked,
        "decoder_window": window,
        "tmpfs_cap": cap,
        "limited_by": "unpack" if unpack_need >= tmpfs_need else "initramfs tmpfs cap",
        "segments": [s.__dict__ for s in segments],
    }


# --------------------------------------------------------------------------------------------------------------------
# start_qemu.sh


def _cli_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="start_qemu.sh",
        description="Boot the built netboot image in qemu by hand. Serial console on this terminal (Ctrl-a x quits, "
        "Ctrl-a c toggles the qemu monitor) unless --graphical.",
    )
    ap.add_argument("--dist", default="dist", help="directory with vmlinuz, initramfs (default: ./dist)")
    ap.add_argument("--kernel", help="kernel (default: DIST/vmlinuz)")
    ap.add_argument("--initrd", action="append", default=None,
                    help="initrd, repeatable, in boot order (default: DIST/intel-ucode.img if present, DIST/initramfs)")
    ap.add_argument("--append", default=None, help="kernel command line (direct boot)")
    ap.add_argument("--graphical", action="store_true", help="open a VGA window (serial stays on this terminal)")
    ap.add_argument("--memory", default="2G", help="guest RAM, e.g. 1G, 4G (default 2G)")
    ap.add_argument("--smp", type=int, default=2, help="guest CPUs (default 2)")
    ap.add_argument("--netboot", action="store_true",
                    help="boot through the NIC's PXE ROM -> iPXE -> boot.ipxe -> kernel/initrd over HTTP from here")
    ap.add_argument("--boot-ipxe", help="netboot: script to boot (default: a cattle-only script for this server)")
    ap.add_argument("--http-port", type=int, default=0, help="netboot: HTTP port on 127.0.0.1 (default: any)")
    ap.add_argument("--mac", default=DEFAULT_MAC, help=f"guest NIC MAC, any notation (default {DEFAULT_MAC})")
    ap.add_argument("--nic", default="virtio-net-pci", choices=NIC_MODELS)
    ap.add_argument("--accel", default="auto", choices=["auto", "kvm", "tcg"])
    ap.add_argument("--dry-run", action="store_true", help="print the qemu command line and exit")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``start_qemu.sh``: the same argument builder as the boot test role."""
    args = _cli_parser().parse_args(argv)
    dist = Path(args.dist)
    kernel = Path(args.kernel) if args.kernel else dist / "vmlinuz"
    if args.initrd:
        initrds = [Path(i) for i in args.initrd]
    else:
        initrds = [p for p in (dist / "intel-ucode.img", dist / "initramfs") if p.name == "initramfs" or p.exists()]
    try:
        for path in (kernel, *initrds):
            if not path.is_file():
                raise ConfigError(f"{path} not found: build first (make build) or pass --dist/--kernel/--initrd")
        accel = pick_accel(args.accel)
        with tempfile.TemporaryDirectory(prefix="start-qemu-") as tmpdir:
            tmp = Path(tmpdir)
            if args.netboot:
                serve = tmp / "serve"
                server = BootServer(serve, port=args.http_port)
                script = tmp / "boot.ipxe"
                if args.boot_ipxe:
                    shutil.copyfile(args.boot_ipxe, script)
                else:
                    names = [p.name for p in initrds]
                    script.write_text(render_ipxe(ScriptSpec(
                        boot_server_url=server.guest_url, kernel=kernel.name, initramfs=names[-1],
                        microcode=names[0] if len(names) > 1 else "", kernel_args=args.append or DEFAULT_APPEND,
                        retry_delay=1, failsafe_timeout=30)))
                overrides = {p.name: p for p in (kernel, *initrds)}
                overrides["boot.ipxe"] = script
                stage_netboot(dist if dist.is_dir() else tmp, serve, overrides)
                spec = QemuSpec(netboot=True, tftp_dir=serve, memory=args.memory, smp=args.smp, mac=args.mac,
                                nic=args.nic, graphical=args.graphical, interactive=True, no_reboot=False)
                with server:
                    return _run_interactive(build_argv(spec, accel), args.dry_run)
            initrd = initrds[0] if len(initrds) == 1 else concat_initrds(initrds, tmp / "initrd")
            spec = QemuSpec(kernel=kernel, initrd=initrd, append=args.append or DEFAULT_APPEND, memory=args.memory,
                            smp=args.smp, mac=args.mac, nic=args.nic, graphical=args.graphical, interactive=True,
                            no_reboot=False)
            return _run_interactive(build_argv(spec, accel), args.dry_run)
    except NetbootError as exc:
        print(f"start_qemu.sh: {exc}", file=sys.stderr)
        return 2


def _run_interactive(argv: list[str], dry_run: bool) -> int:
    print("+ " + shlex.join(argv), file=sys.stderr, flush=True)
    if dry_run:
        return 0
    proc = subprocess.Popen(argv)

    def forward(signum: int, _frame: object) -> None:  # do not leave qemu behind when we are terminated
        proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
