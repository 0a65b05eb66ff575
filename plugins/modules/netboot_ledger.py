#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Ansible module: the size ledger of the built image (ledger.json/.md/.svg) and the size budgets."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: netboot_ledger
short_description: Write the image size ledger (JSON, Markdown, SVG chart) and enforce the size budgets
description:
  - Decompresses the built initramfs O(image) and walks its cpio members. Every member goes to one group - an
    Alpine package (owners from the image's C(lib/apk/db/installed)), a kernel-module directory
    (C(kernel/drivers/net)), a firmware directory, the overlay, or the files of no package (C(/init), generated
    files).
  - Each group is compressed alone with the build's settings (the record make_initramfs wrote beside O(image), or
    O(compression), O(level), O(window_log), O(threads) when O(compression) is given); the estimates are those sizes
    scaled to the real compressed size. The raw sum must be within 10 % of the real size (recorded under C(estimate) in ledger.json).
  - Writes O(dest)/ledger.json (stable keys; C(total_compressed_bytes), C(packages) with C(name), C(version),
    C(unpacked_bytes), C(compressed_bytes_estimate), C(groups), C(delta) against the previous ledger.json, C(budgets)),
    O(dest)/ledger.md and O(dest)/ledger.svg (two sorted bar charts, a plain SVG document).
  - Fails when a budget is exceeded, naming the budget, the figure and the top contributors with their share. The
    ledger files describe the image (they are written first and do not depend on the budgets), so ledger.md shows
    what to prune.
  - A rerun with the same image, kernel and settings reuses ledger.json (no compression, C(changed=false)).
version_added: "0.2.0"
author: homelab.alpine_netboot maintainers (@homelab)
options:
  rootfs:
    required: true
  rootfs_kernel:
    aliases: [kernel]
  image:
    description: The compressed initramfs (C(dist/initramfs)).
    type: path
    required: true
  dest:
    description: Directory of ledger.json, ledger.md and ledger.svg (the dist directory).
    type: path
    required: true
  microcode:
    description: The early microcode initrd a node also downloads (C(dist/intel-ucode.img)); ignored when absent.
    type: path
  prune_report:
    description: C(prune-report.json) of M(homelab.alpine_netboot.prune_kernel); its removed bytes per rule are listed.
    type: path
  overlay_dir:
    description: The overlay directory; its files are counted as C(overlay).
    type: path
  compression:
    default: null
  threads:
    default: null
  kernel_args:
    aliases: [cmdline]
    description: Kernel command line of the nodes (C(initramfs_options=size=N%) and C(root=) change the minimum RAM).
    type: str
    default: console=tty0 console=ttyS0,115200
  budget_image_bytes:
    description: Largest allowed size of the artefacts a node downloads (kernel, initramfs, microcode); 0 = none.
    type: int
    default: 0
  budget_node_ram_bytes:
    description: Largest allowed RAM a node needs to boot the image (minimum_ram); 0 = none.
    type: int
    default: 0
  budget_server_bytes:
    description: Largest allowed storage on the boot server for O(server_generations) copies of the artefacts; 0 = none.
    type: int
    default: 0
  server_generations:
    description: Copies of the artefacts the boot server keeps (the live one plus the kept generations).
    type: int
    default: 2
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.kernel_identity
  - homelab.alpine_netboot.netboot.compression
  - homelab.alpine_netboot.netboot.attributes
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Measures and reports whether the files would change; writes nothing.
  diff_mode:
    support: full
    details: Shows the total compressed size before and after.
notes:
  - The estimate costs about one more compression of the image at the build's settings, run only when the image
    changed.
requirements:
  - Jinja2 (Python library)
  - PyYAML (Python library)
  - zstandard (Python library)
"""

EXAMPLES = r"""
- name: Write the size ledger and check the budgets
  homelab.alpine_netboot.netboot_ledger:
    image: /var/tmp/netboot/dist/initramfs
    rootfs: /var/tmp/netboot/build/image
    dest: /var/tmp/netboot/dist
    budget_image_bytes: 120000000
"""

RETURN = r"""
ledger:
  description: Totals, the estimate check, the node RAM figure and the delta against the previous ledger.
  returned: always
  type: dict
top:
  description: The largest groups (kind, name, unpacked and estimated compressed bytes).
  returned: always
  type: list
  elements: dict
budgets:
  description: One entry per budget (budget, limit, figure, ok, message when exceeded).
  returned: always
  type: list
  elements: dict
files:
  description: Paths of ledger.json, ledger.md and ledger.svg.
  returned: always
  type: dict
commands:
  description: External commands run (none).
  returned: always
  type: list
  elements: str
"""

from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _compress
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._ipxe import DEFAULT_KERNEL_ARGS
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._checkmode import exit_if_missing
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._options import (
    COMPRESSION,
    DIST_KERNEL,
    renamed,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records import _ledger, _ledger_render

BUDGETS = ("image_bytes", "node_ram_bytes", "server_bytes")  # option budget_<name>: field <name> of Budgets

ARGUMENT_SPEC = {
    **DIST_KERNEL,
    "image": {"type": "path", "required": True},
    "dest": {"type": "path", "required": True},
    "microcode": {"type": "path"},
    **{k: {o: v for o, v in spec.items() if o != "default"} for k, spec in COMPRESSION.items()},  # overrides
    "prune_report": {"type": "path"},
    "overlay_dir": {"type": "path"},
    "kernel_args": renamed("cmdline", type="str", default=DEFAULT_KERNEL_ARGS),
    **{f"budget_{k}": {"type": "int", "default": 0} for k in BUDGETS},
    "server_generations": {"type": "int", "default": _ledger_render.DEFAULT_SERVER_GENERATIONS},
}


def main() -> None:
    with stage(ARGUMENT_SPEC, supports_check_mode=True, diff=True) as (module, result):
        p = module.params
        exit_if_missing(module, p["image"], f"write the size ledger in {p['dest']}", "initramfs")
        req = _ledger.LedgerRequest(
            **{k: Path(p[k]) for k in ("image", "rootfs", "dest")},
            spec=_compress.make_spec(p["compression"], p["level"], p["window_log"], p["threads"])
            if p["compression"] else None,
            kernel=p["rootfs_kernel"] or None,
            **{k: Path(p[k]) if p[k] else None for k in ("microcode", "prune_report", "overlay_dir")},
            budgets=_ledger_render.Budgets(server_generations=p["server_generations"],
                                           **{k: p[f"budget_{k}"] for k in BUDGETS}),
            cmdline=p["kernel_args"],
        )
        result.update(_ledger.build_ledger(req, check_mode=module.check_mode))
        failures = result.pop("failures")
        if failures:
            raise NetbootError(" | ".join(failures))


if __name__ == "__main__":
    main()
