#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Boot built artefacts in qemu and check them (thin module; logic in module_utils/boot/_vm.py, _minram.py, _qemu.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: qemu_boot_test
short_description: Boot the netboot artefacts in qemu (direct or PXE -> iPXE -> boot.ipxe) and check the guest
description:
  - Starts qemu-system-x86_64 with KVM when it works, else C(-accel tcg -cpu max). In C(direct) mode the kernel
    and initrds are given with C(-kernel/-initrd/-append); in C(netboot) mode the NIC's PXE ROM (Debian
    ipxe-qemu) gets DHCP and C(boot.ipxe) from qemu's user network (TFTP root = a staging copy of O(dist_dir)),
    and with O(http_port) the same files are also served over HTTP on 127.0.0.1 (C(http://10.0.2.2:PORT) in the
    guest).
  - A TEST-ONLY cpio is appended to a temporary copy of the initramfs (never to O(dist_dir)); it adds an OpenRC
    C(local.d) script that prints the output of O(checks) and then O(marker) on the serial console.
  - >-
    Passes when O(marker) appears; fails fast on a kernel panic or the C(netboot: BOOT FAILED) line of
    boot.ipxe, with the console tail. Reports qemu start -> marker and kernel -> marker times.
  - Computes the minimum RAM the image needs (kernel init size + compressed + unpacked initrds + decoder window,
    and the initramfs tmpfs cap) and fails when it exceeds O(ram_limit).
  - Never changes anything (C(changed=false)). In check mode only the RAM computation runs.
version_added: "0.1.0"
author: homelab.alpine_netboot maintainers (@homelab)
options:
  mode:
    description:
      - How the guest gets its kernel.
      - Default C(netboot) when O(dist_dir) is given, else C(direct).
    type: str
    choices: [direct, netboot]
  kernel:
    description: The kernel (bzImage).
    type: path
    required: true
  initrds:
    description: The image's initrds in boot order (e.g. intel-ucode.img, initramfs).
    type: list
    elements: path
    required: true
  extra_initrds:
    description: More test-only initrds appended after O(initrds) (before the hook).
    type: list
    elements: path
    default: []
  dist_dir:
    description: Netboot mode - directory with the artefacts (default the kernel's directory).
    type: path
  boot_ipxe:
    description: Netboot mode - the script served as boot.ipxe (default O(dist_dir)/boot.ipxe).
    type: path
  bootfile:
    description: Netboot mode - DHCP boot file (default C(boot.ipxe) over TFTP; may be an http:// URL).
    type: str
  http_port:
    description: Netboot mode - also serve the artefacts over HTTP on 127.0.0.1 at this port (0 = any).
    type: int
  initramfs_name:
    description: Netboot mode - artefact name the hook is appended to (default the last of O(initrds)).
    type: str
  kernel_args:
    aliases: [append]
    description:
      - Direct mode kernel command line.
      - With O(nodes), C(netboot.hostname=) and C(netboot.role=) (and the node's kernel_args) of the node with O(mac)
        are added, or the cattle hostname and O(default_role) for an unknown MAC, exactly as boot.ipxe would.
    type: str
    default: console=tty0 console=ttyS0,115200
  memory:
    description: Guest RAM, e.g. C(1G).
    type: str
    default: 1G
  smp:
    description: Guest CPUs.
    type: int
    default: 1
  mac:
    description: MAC of the guest NIC (any common notation).
    type: str
    default: "52:54:00:12:34:56"
  timeout:
    description: Seconds to wait for O(marker).
    type: int
    default: 300
  marker:
    description: Ready marker printed on the serial console.
    type: str
    default: NETBOOT-BOOT-TEST-READY
  checks:
    description: Shell commands the hook runs in the guest; their output and exit status are returned.
    type: list
    elements: str
    default: [cat /etc/hostname, cat /proc/mounts]
  hook:
    description: Append the test hook (without it, O(marker) must come from the image itself).
    type: bool
    default: true
  accel:
    description: C(auto) tries KVM then TCG.
    type: str
    choices: [auto, kvm, tcg]
    default: auto
  console_log:
    description: Write the raw serial console here.
    type: path
  ram_limit:
    description: Fail when the computed minimum RAM exceeds this (e.g. the smallest node's RAM).
    type: str
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.attributes
  - homelab.alpine_netboot.netboot.nodes
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: partial
    details: Only the minimum RAM computation (and O(ram_limit)) runs; nothing is booted.
  diff_mode:
    support: none
requirements:
  - Jinja2 (Python library)
  - zstandard (Python library)
"""

EXAMPLES = r"""
- name: Netboot dist/ through boot.ipxe over HTTP
  homelab.alpine_netboot.qemu_boot_test:
    mode: netboot
    kernel: dist/vmlinuz
    initrds: [dist/initramfs]
    http_port: 8088
    mac: "52:54:00:12:34:56"
    checks: [cat /etc/hostname, cat /proc/mounts]
"""

RETURN = r"""
mode:
  description: How the guest got its kernel - O(mode), or its default (C(netboot) with O(dist_dir), else C(direct)).
  returned: always
  type: str
booted:
  description: Whether the marker appeared.
  returned: always
  type: bool
reason:
  description: Why the boot ended (marker seen, kernel panic ..., timeout ...).
  returned: always
  type: str
seconds_to_marker:
  description: Seconds from qemu start to the marker.
  returned: when booted
  type: float
kernel_to_marker:
  description: Seconds from the first kernel line to the marker.
  returned: when booted
  type: float
checks:
  description: Each check's command, rc and output.
  returned: always
  type: list
  elements: dict
console_tail:
  description: Last lines of the serial console.
  returned: always
  type: str
minimum_ram:
  description: RAM the image needs (minimum_mib and its parts).
  returned: always
  type: dict
accel:
  description: kvm or tcg.
  returned: always
  type: str
commands:
  description: Commands run (the qemu command line).
  returned: always
  type: list
  elements: str
"""

from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._ipxe import DEFAULT_KERNEL_ARGS
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._minram import check_ram_limit, minimum_ram
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._qemu import DEFAULT_MAC
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._testhook import DEFAULT_MARKER
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._vm import BootTest, boot_test, node_cmdline
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._options import NODES, renamed
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner

ARGUMENT_SPEC = {
    "mode": {"type": "str", "choices": ["direct", "netboot"]},
    "kernel": {"type": "path", "required": True},
    "initrds": {"type": "list", "elements": "path", "required": True},
    "extra_initrds": {"type": "list", "elements": "path", "default": []},
    "dist_dir": {"type": "path"},
    "boot_ipxe": {"type": "path"},
    "bootfile": {"type": "str"},
    "http_port": {"type": "int"},
    "initramfs_name": {"type": "str"},
    "kernel_args": renamed("append", type="str", default=DEFAULT_KERNEL_ARGS),
    **NODES,
    "memory": {"type": "str", "default": "1G"},
    "smp": {"type": "int", "default": 1},
    "mac": {"type": "str", "default": DEFAULT_MAC},
    "timeout": {"type": "int", "default": 300},
    "marker": {"type": "str", "default": DEFAULT_MARKER},
    "checks": {"type": "list", "elements": "str", "default": ["cat /etc/hostname", "cat /proc/mounts"]},
    "hook": {"type": "bool", "default": True},
    "accel": {"type": "str", "choices": ["auto", "kvm", "tcg"], "default": "auto"},
    "console_log": {"type": "path"},
    "ram_limit": {"type": "str"},
}


def main() -> None:
    runner = Runner()
    with stage(ARGUMENT_SPEC, runner, supports_check_mode=True) as (module, result):
        p = module.params
        mode = p["mode"] or ("netboot" if p["dist_dir"] else "direct")
        result.update(changed=False, mode=mode)
        append = p["kernel_args"]
        if mode == "direct" and p["nodes"] is not None:
            append = node_cmdline(append, p["mac"], p["nodes"], p["default_role"])
        initrds = [Path(i) for i in p["initrds"]]
        result["minimum_ram"] = ram = minimum_ram(Path(p["kernel"]), initrds, append if mode == "direct" else "")
        check_ram_limit(ram, p["ram_limit"])
        if module.check_mode:
            result.update(booted=False, reason="check mode: not booted", checks=[], console_tail="", accel="")
            return
        boot = boot_test(BootTest(
            kernel=Path(p["kernel"]), initrds=initrds, mode=mode, append=append,
            extra_initrds=[Path(i) for i in p["extra_initrds"]],
            **{k: Path(p[k]) if p[k] else None for k in ("dist_dir", "boot_ipxe", "console_log")},
            **{k: p[k] for k in ("bootfile", "http_port", "initramfs_name", "memory", "smp", "mac", "timeout",
                                 "marker", "checks", "hook", "accel")},
        ), runner=runner)
        result.update(booted=boot.ok, **{k: v for k, v in boot.as_dict().items() if k not in ("ok", "argv")})
        if not boot.ok:
            raise NetbootError(f"boot test failed after {boot.seconds:.1f} s: {boot.reason}\n{boot.tail()}")


if __name__ == "__main__":
    main()
