# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The one qemu argument builder (boot test role, ``qemu_boot_test`` module, ``start_qemu.sh``).

* ``build_argv(spec, accel)``: pure; direct mode (``-kernel/-initrd/-append``) or netboot mode (the NIC's PXE ROM,
  Debian ``ipxe-qemu``, gets DHCP + ``bootfile`` from qemu's user network and runs ``boot.ipxe``), serial console,
  ``-nographic`` (SeaBIOS and iPXE then print on the serial port too) or a graphical window.
* ``pick_accel()``: KVM when it really works (a probe VM must survive a moment), else ``-accel tcg -cpu max``
  (``tcg,thread=single`` with several vCPUs).
* ``concat_initrds()``/``stage_netboot()``: the inputs of a VM, one ``-initrd`` file and a TFTP/HTTP root.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._ipxe import (
    DEFAULT_KERNEL_ARGS,
    normalise_mac,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import (
    CommandError,
    ConfigError,
    NetbootError,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner

QEMU = "qemu-system-x86_64"
DEFAULT_MAC = "52:54:00:12:34:56"
NIC_MODELS = ("virtio-net-pci", "e1000", "e1000e", "rtl8139")


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
    append: str = DEFAULT_KERNEL_ARGS
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
        # Several vCPUs run on one host thread: multi-threaded TCG sometimes lets a vCPU run stale code while the
        # guest kernel patches its text (seen: "Oops: int3" in sched_clock_cpu at boot with -smp 2 on a busy host).
        argv = [spec.qemu, "-accel", "tcg,thread=single" if spec.smp > 1 else "tcg", "-cpu", "max"]
    else:
        raise ConfigError(f"accel {accel!r}: use kvm or tcg")
    if not isinstance(spec.smp, int) or not 1 <= spec.smp <= 64:
        raise ConfigError(f"smp {spec.smp!r}: use 1..64 CPUs")
    if spec.nic not in NIC_MODELS:
        raise ConfigError(f"nic {spec.nic!r}: use one of {', '.join(NIC_MODELS)} (they carry an iPXE PXE ROM)")
    argv += ["-machine", "pc", "-m", f"{parse_memory(spec.memory)}M", "-smp", str(spec.smp)]
    if not spec.graphical:  # -nographic makes SeaBIOS (and the iPXE ROM it runs) print on the serial port as well.
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
# Inputs of a VM


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
