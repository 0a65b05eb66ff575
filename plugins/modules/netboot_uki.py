#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Ansible module: a signed unified kernel image (thin module; logic in module_utils/boot/_uki.py and _secureboot.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: netboot_uki
short_description: Build a unified kernel image (stub, kernel, initrds, command line) signed with the db key
description:
  - Adds the sections C(.osrel) (O(osrel)), C(.cmdline) (O(kernel_args)), C(.linux) (O(kernel)) and C(.initrd)
    (O(initrds) concatenated in order, e.g. the microcode cpio first) to systemd-boot's EFI stub O(stub)
    (PE32+ x86-64, unsigned), in pure Python, with the PE checksum recomputed; the same inputs give the same bytes.
  - Signs the image with C(sbsign) (O(key), O(cert)) under a temporary name beside O(dest), checks it with
    C(sbverify --cert) and renames it over O(dest).
  - O(dest) is left alone (C(changed=false)) when it already is this image signed by O(cert)'s key.
  - With Secure Boot on, the stub ignores a command line given by the boot loader; the signed O(kernel_args) is the one.
version_added: "0.2.0"
author: homelab.alpine_netboot maintainers (@homelab)
options:
  stub:
    description: systemd-boot's C(linuxx64.efi.stub) (Debian's C(systemd-boot-efi) package).
    type: path
    required: true
  kernel:
    description: The x86 Linux kernel (bzImage). One of O(kernel) and O(rootfs) is required.
    type: path
  initrds:
    description: Initrd files, concatenated in this order into C(.initrd).
    type: list
    elements: path
    default: []
  kernel_args:
    aliases: [cmdline]
    description: The kernel command line (fixed and signed).
    type: str
    default: console=tty0 console=ttyS0,115200
  osrel:
    description: The C(.osrel) text (os-release format); default the image's C(etc/os-release) with O(rootfs),
      else a minimal one.
    type: str
    default: ""
  dest:
    description: The signed UKI.
    type: path
    required: true
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.db_key
  - homelab.alpine_netboot.netboot.kernel_identity
  - homelab.alpine_netboot.netboot.attributes
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Builds the image in memory and reports whether O(dest) would change; writes nothing. When an input
      is not made yet (an earlier stage only planned in check mode) it reports C(changed) and says so.
  diff_mode:
    support: none
requirements:
  - Jinja2 (Python library)
  - cryptography (Python library)
  - zstandard (Python library)
  - sbsigntool (C(sbsign), C(sbverify)) on the host the module runs on
"""

EXAMPLES = r"""
- name: Build and sign the UKI
  homelab.alpine_netboot.netboot_uki:
    stub: /var/tmp/netboot/build/systemd-boot-efi/linuxx64.efi.stub
    kernel: /var/tmp/netboot/dist/vmlinuz
    initrds:
      - /var/tmp/netboot/dist/intel-ucode.img
      - /var/tmp/netboot/dist/initramfs
    kernel_args: console=tty0 console=ttyS0,115200
    osrel: |
      NAME="Alpine netboot"
      ID=alpine-netboot
      VERSION_ID="1"
    dest: /var/tmp/netboot/dist/netboot.efi
    key: "{{ lookup('file', secureboot_dir ~ '/db.key') }}"
    cert: "{{ secureboot_dir }}/db.crt"
"""

RETURN = r"""
dest:
  description: The signed UKI.
  returned: always
  type: str
size:
  description: Bytes of the signed UKI at O(dest) (in check mode, when it would change, of the unsigned image).
  returned: success
  type: int
sha256:
  description: SHA-256 of the signed UKI at O(dest) (in check mode, when it would change, of the unsigned image).
  returned: success
  type: str
sections:
  description: Added section name -> its size in bytes (C(.osrel), C(.cmdline), C(.linux), C(.initrd)).
  returned: success
  type: dict
stub_bytes:
  description: Bytes of the image that come from the stub (headers and its own sections).
  returned: success
  type: int
commands:
  description: The sbsign and sbverify commands run.
  returned: always
  type: list
  elements: str
"""

from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _uki
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._ipxe import DEFAULT_KERNEL_ARGS
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._checkmode import exit_if_missing
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import resolve_in_root
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._options import (
    DB_KEY,
    KERNEL_IDENTITY,
    renamed,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records._manifest import find_kernel

ARGUMENT_SPEC = {
    "stub": {"type": "path", "required": True},
    "kernel": {"type": "path"},
    **KERNEL_IDENTITY,
    "initrds": {"type": "list", "elements": "path", "default": []},
    "kernel_args": renamed("cmdline", type="str", default=DEFAULT_KERNEL_ARGS),
    "osrel": {"type": "str", "default": ""},
    "dest": {"type": "path", "required": True},
    **DB_KEY,
}


def main() -> None:
    runner = Runner()
    with stage(ARGUMENT_SPEC, runner, supports_check_mode=True, required_one_of=[("kernel", "rootfs")],
               mutually_exclusive=[("kernel", "rootfs")]) as (module, result):
        p = module.params
        result["dest"] = p["dest"]
        would = f"build and sign the UKI {p['dest']}"
        if p["rootfs"]:
            exit_if_missing(module, p["rootfs"], would, "image", dest=p["dest"])
            p["kernel"] = str(find_kernel(p["rootfs"], p["rootfs_kernel"] or None))
            if not p["osrel"]:
                release = resolve_in_root(Path(p["rootfs"]), "etc/os-release")
                p["osrel"] = release.read_text() if release.is_file() else ""
        p["osrel"] = p["osrel"] or _uki.uki_osrel("unknown")
        inputs = [(p["stub"], "systemd-boot-efi"), (p["kernel"], "kernel"), (p["cert"], "Secure Boot keys"),
                  *((i, "initramfs") for i in p["initrds"])]
        for path, producer in inputs:
            exit_if_missing(module, path, would, producer, dest=p["dest"])
        out = _uki.build_signed_uki(
            Path(p["stub"]), Path(p["kernel"]), [Path(i) for i in p["initrds"]],
            cmdline=p["kernel_args"], osrel=p["osrel"], dest=Path(p["dest"]), key_pem=p["key"], cert=Path(p["cert"]),
            runner=runner, check_mode=module.check_mode,
        )
        result.update(changed=out.changed, size=out.size, sha256=out.sha256, sections=out.uki.sections,
                      stub_bytes=out.uki.stub_bytes)


if __name__ == "__main__":
    main()
