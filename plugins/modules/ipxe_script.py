#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Render boot.ipxe for the netboot image (thin module; logic in module_utils/boot/_ipxe.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ipxe_script
short_description: Render the iPXE boot script (boot.ipxe) for the inventory's nodes
description:
  - Renders C(boot.ipxe) from a jinja2 template (StrictUndefined; the role's C(templates/boot.ipxe.j2) by default,
    overridable with O(template)).
  - The script dispatches on the MAC of the NIC that booted (iPXE C(netX)). Known MACs get their node's hostname,
    role and kernel arguments; an unknown MAC boots the default image as new cattle with hostname
    C(node-<mac without separators>) and O(default_role).
  - >-
    C(dhcp) is retried, every download is tried O(retries) times and then the next O(boot_server_url); when all
    fail it prints C(netboot: BOOT FAILED: <reason>) and shows a failsafe menu (retry, iPXE shell, reboot) that
    retries by itself after O(failsafe_timeout) seconds.
  - The kernel gets O(kernel_args) O(extra_kernel_args) C(netboot.hostname=) C(netboot.role=) and the node's
    own kernel arguments.
  - >-
    With O(artefact_dir), the script checks the sha256 of every image it fetched against the files of this build
    (C(sha256sum --set), iPXE 2.0) before C(boot); on a mismatch it prints
    C(netboot: <file> from <server> failed its sha256 check: got <x> expected <y>), fetches that server's images once
    more, then tries the next server, then the failsafe menu - it never boots bytes that failed a check. An iPXE
    without the command prints C(netboot: this iPXE has no sha256sum command: booting unchecked) and boots.
    The digests are also recorded beside O(dest) in its boot record (C(boot.ipxe.json)), where
    M(homelab.alpine_netboot.netboot_dist) checks them against the files it publishes.
  - Written to a temporary name and renamed; identical output reports C(changed=false).
version_added: "0.1.0"
author: homelab.alpine_netboot maintainers (@homelab)
options:
  dest:
    description: Path of the script to write (normally C({{ netboot_dist_dir }}/boot.ipxe)).
    type: path
    required: true
  template:
    description:
      - The jinja2 template. It gets C(urls), C(nodes) (name, mac,
        mac_hexraw, hostname, role, kernel_args, initrd), C(kernel), C(initrds), C(kernel_args), C(default_role),
        C(retries), C(retry_delay), C(failsafe_timeout), C(failed_marker), C(digests) (fetched file -> sha256, or
        none), C(image_name), C(mismatch_marker), C(unchecked_marker) and C(extra).
      - The C(ipxe) role passes its C(templates/boot.ipxe.j2). A module run by Ansible carries only
        C(plugins/module_utils), not the collection's C(roles/), so without this option it fails naming it; called
        directly from an installed collection it uses that collection's C(roles/ipxe/templates/boot.ipxe.j2).
    type: path
  boot_server_url:
    description: Base URL of the artefacts (http://, https:// or tftp://), or a list of them tried in order.
    type: raw
    required: true
  kernel:
    description: Kernel file name relative to each boot server URL.
    type: str
    default: vmlinuz
  initramfs:
    description: Initramfs file name relative to each boot server URL.
    type: str
    default: initramfs
  microcode:
    description: Optional early-microcode initrd file name, loaded before O(initramfs).
    type: str
    default: ""
  kernel_args:
    description: Kernel command line for every node (serial and tty console by default).
    type: raw
    default: console=tty0 console=ttyS0,115200
  extra_kernel_args:
    description: More kernel arguments for every node (string or list).
    type: raw
    default: ""
  retries:
    description: Attempts per download (and for DHCP) before moving to the next boot server.
    type: int
    default: 3
  retry_delay:
    description: Seconds between attempts.
    type: int
    default: 2
  failsafe_timeout:
    description: Seconds the failsafe menu waits before retrying the whole boot by itself.
    type: int
    default: 60
  variables:
    description: Extra data passed to a custom template as C(extra).
    type: dict
    default: {}
  artefact_dir:
    description:
      - The directory holding the files the script fetches as this build made them (C(netboot_artefact_dir)); their
        sha256 are written into the script, which checks them before booting. Every fetched file must be there
        (the kernel in O(rootfs)'s C(/boot) when O(rootfs) is given); a missing one fails naming it (in check mode
        a warning).
      - Not given - the script has no checks.
    type: path
  rootfs:
    description: The image tree whose C(/boot) holds the kernel the dist stage publishes (its sha256 goes into the
      script); default O(artefact_dir)C(/)O(kernel).
  uki:
    description:
      - Secure Boot (docsite "Secure Boot") - the signed unified kernel image to boot instead of O(kernel) and the
        initrds, by its name relative to the boot server URL (C(netboot.efi)). The script then passes no command
        line (the UKI's is fixed and signed), names the image C(netboot-<generation>.efi) so the node can read its
        generation back, and refuses a node with C(kernel_args) or an C(initrd).
      - Empty (the default) - kernel, initrds and command line as usual.
    type: str
    default: ""
    version_added: 0.2.0
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.kernel_identity
  - homelab.alpine_netboot.netboot.attributes
  - homelab.alpine_netboot.netboot.nodes
  - ansible.builtin.action_common_attributes
requirements:
  - Jinja2 (Python library)
  - zstandard (Python library)
"""

EXAMPLES = r"""
- name: Render boot.ipxe
  homelab.alpine_netboot.ipxe_script:
    dest: "{{ netboot_dist_dir }}/boot.ipxe"
    boot_server_url: [tftp://192.168.88.1, http://192.168.88.10:8080]
    nodes:
      - {name: n100-a, mac: "AA-BB-CC-00-11-22", role: storage, kernel_args: zfs.zfs_arc_max=1073741824}
    default_role: worker
"""

RETURN = r"""
dest:
  description: The script path.
  returned: always
  type: str
nodes:
  description: The validated nodes (normalised MAC, hostname, role, kernel_args).
  returned: always
  type: list
  elements: dict
artefacts:
  description: Every file the script fetches (relative to the boot server URL) -> what names it (C(kernel),
    C(microcode), C(initramfs), C(initrd of host NAME)). Also in the boot record beside O(dest) (C(boot.ipxe.json), published), where
    M(homelab.alpine_netboot.netboot_dist) checks that it publishes each.
  returned: always
  type: dict
digests:
  description: Fetched file -> the sha256 the script checks before booting (empty without O(artefact_dir)).
  returned: always
  type: dict
urls:
  description: The boot server URLs in the order tried.
  returned: always
  type: list
  elements: str
commands:
  description: External commands run (none).
  returned: always
  type: list
  elements: str
"""

from dataclasses import asdict
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._ipxe import (
    DEFAULT_KERNEL_ARGS,
    ScriptSpec,
    apply_write,
    artefact_digests,
    boot_record,
    build_context,
    plan_write,
    record_path,
    render,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._checkmode import text_diff
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import write_if_changed
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._options import KERNEL_IDENTITY, NODES
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records._manifest import (
    BOOT_ARTEFACT_FIX,
    find_kernel,
)

KERNEL_FIX = "build the image first (playbooks/build.yml --tags kernel), or set rootfs/rootfs_kernel (ipxe_rootfs)"

ARGUMENT_SPEC = {
    "dest": {"type": "path", "required": True},
    "template": {"type": "path"},
    "boot_server_url": {"type": "raw", "required": True},
    "kernel": {"type": "str", "default": "vmlinuz"},
    "initramfs": {"type": "str", "default": "initramfs"},
    "microcode": {"type": "str", "default": ""},
    "kernel_args": {"type": "raw", "default": DEFAULT_KERNEL_ARGS},
    "extra_kernel_args": {"type": "raw", "default": ""},
    **NODES,
    "retries": {"type": "int", "default": 3},
    "retry_delay": {"type": "int", "default": 2},
    "failsafe_timeout": {"type": "int", "default": 60},
    "variables": {"type": "dict", "default": {}},
    "artefact_dir": {"type": "path"},
    **KERNEL_IDENTITY,
    "uki": {"type": "str", "default": ""},
}


def main() -> None:
    with stage(ARGUMENT_SPEC, supports_check_mode=True, diff=True) as (module, result):
        p = module.params
        spec = ScriptSpec(
            nodes=p["nodes"] or [], microcode=p["microcode"] or "", extra=p["variables"],
            **{k: p[k] for k in ("boot_server_url", "kernel", "initramfs", "kernel_args", "extra_kernel_args",
                                 "default_role", "retries", "retry_delay", "failsafe_timeout", "uki")},
        )
        context = build_context(spec)
        digests: dict[str, str] = {}
        if p["artefact_dir"]:
            kernel = None
            if p["rootfs"]:  # the kernel dist publishes; an image not built yet: reported as missing below
                boot = Path(p["rootfs"], "boot")
                kernel = (spec.kernel, find_kernel(p["rootfs"], p["rootfs_kernel"] or None) if boot.is_dir() else
                          boot / (p["rootfs_kernel"] or "vmlinuz"))
            digests, missing = artefact_digests(context["artefacts"], p["artefact_dir"], kernel=kernel,  # type: ignore[arg-type]
                                                hints={**BOOT_ARTEFACT_FIX, "kernel": KERNEL_FIX})
            if missing and not module.check_mode:
                raise ConfigError(" ".join(missing))
            for problem in missing:  # check mode: an earlier stage of the same run may write it
                module.warn(f"{problem} (check mode: fine if an earlier stage writes it)")
            # check mode only: a placeholder for what does not exist yet (nothing is written)
            spec.digests = {name: digests.get(name, "0" * 64) for name in context["artefacts"]}  # type: ignore[attr-defined]
        plan = plan_write(p["dest"], render(spec, p["template"]))
        if not module.check_mode:
            apply_write(plan)
        # after the script: a record never promises the dist stage more than the script on disk checks
        stale = write_if_changed(record_path(plan.dest), boot_record(spec, p["template"]),
                                 check_mode=module.check_mode)
        result.update(changed=plan.changed or stale, dest=str(plan.dest), urls=context["urls"],
                      nodes=[asdict(n) for n in context["nodes"]],  # type: ignore[attr-defined]
                      artefacts=context["artefacts"], digests=digests,
                      diff=text_diff(str(plan.dest), plan.before or "", plan.after))


if __name__ == "__main__":
    main()
