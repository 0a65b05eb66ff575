#!/usr/bin/env python3
"""``./start_qemu.sh``: boot the built image (dist/vmlinuz + dist/initramfs) in qemu by hand, with the same qemu
argument builder as the boot test role (``plugins/module_utils/boot/_qemu.py``). Run through ``./start_qemu.sh``, which
picks the checkout's venv; ``--help`` lists the options."""

from __future__ import annotations

import argparse
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The checkout links .collections/ansible_collections/homelab/alpine_netboot to itself; an installed collection
# already sits in an ansible_collections/homelab/alpine_netboot directory.
for _root in (REPO / ".collections", REPO.parent.parent.parent):
    if (_root / "ansible_collections/homelab/alpine_netboot").is_dir():
        if str(_root) not in sys.path:
            sys.path.insert(0, str(_root))
        break

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._bootserver import BootServer  # noqa: E402
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._ipxe import (  # noqa: E402
    DEFAULT_KERNEL_ARGS,
    ScriptSpec,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._ipxe import (  # noqa: E402
    render as render_ipxe,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._qemu import (  # noqa: E402
    DEFAULT_MAC,
    NIC_MODELS,
    QemuSpec,
    build_argv,
    concat_initrds,
    pick_accel,
    stage_netboot,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import (  # noqa: E402
    ConfigError,
    NetbootError,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import sha256_file  # noqa: E402


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
                        microcode=names[0] if len(names) > 1 else "", kernel_args=args.append or DEFAULT_KERNEL_ARGS,
                        retry_delay=1, failsafe_timeout=30,
                        # the script checks what it fetched (an iPXE with sha256sum; qemu's ROM boots unchecked)
                        digests={p.name: sha256_file(p) or "" for p in (kernel, *initrds)})))
                overrides = {p.name: p for p in (kernel, *initrds)}
                overrides["boot.ipxe"] = script
                stage_netboot(dist if dist.is_dir() else tmp, serve, overrides)
                spec = QemuSpec(netboot=True, tftp_dir=serve, memory=args.memory, smp=args.smp, mac=args.mac,
                                nic=args.nic, graphical=args.graphical, interactive=True, no_reboot=False)
                with server:
                    return _run_interactive(build_argv(spec, accel), args.dry_run)
            initrd = initrds[0] if len(initrds) == 1 else concat_initrds(initrds, tmp / "initrd")
            spec = QemuSpec(kernel=kernel, initrd=initrd, append=args.append or DEFAULT_KERNEL_ARGS, memory=args.memory,
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
