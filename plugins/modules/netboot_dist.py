#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Ansible module: finish dist/ - kernel copy, manifest.json, SHA256SUMS."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: netboot_dist
short_description: Publish the dist directory (artefacts, vmlinuz, manifest.json, SHA256SUMS) by one swap
description:
  - Publishes O(dest) - every file of the artefact directory O(src) (what the stages wrote under the build
    directory), the kernel from the rootfs C(/boot) as O(kernel_name), manifest.json and SHA256SUMS - by building
    it in C(<dest>.new-<pid>) beside O(dest) and swapping it in with one rename. O(dest) stays as it was when
    anything fails before the swap; the only writer of O(dest) is this module.
  - manifest.json holds the rootfs manifest (release, arch, packages with version, checksum, repository and build
    time, source_date_epoch), the kernel, the given O(inputs) and O(reports), and the size and sha256 of every
    artefact; SHA256SUMS is in C(sha256sum -c) format, the manifest included.
  - The content has no timestamps; when O(dest) already holds exactly what would be published, nothing is
    written and the module reports C(changed=false).
version_added: "0.1.0"
author: homelab.alpine_netboot maintainers (@homelab)
options:
  rootfs:
    required: true
  rootfs_kernel:
    aliases: [kernel]
  src:
    description: The artefact directory the stages wrote (initramfs, boot.ipxe, audit.json, ledger, SBOM, node
      initrds in subdirectories); hidden files are not published.
    type: path
    required: true
  dest:
    description: The dist directory.
    type: path
    required: true
  kernel_name:
    description: File name of the kernel in O(dest).
    type: str
    default: vmlinuz
  inputs:
    description: Free-form build inputs recorded in the manifest (inventory knobs, rule sets, URLs).
    type: dict
    default: {}
  reports:
    description: Name -> JSON file (e.g. the prune report) embedded under C(inputs.reports); a missing file is
      recorded as null with a warning.
    type: dict
    default: {}
  artefacts:
    description: File names in O(src) to list in the manifest; default every visible regular file of O(src).
    type: list
    elements: str
  boot_script:
    description:
      - The boot script's name in O(src) (the dist role gives C(boot.ipxe)); it must be there, and every file it
        fetches (as recorded by M(homelab.alpine_netboot.ipxe_script) beside it) must be published; otherwise the
        module fails naming the file and the setting or tag to run, and publishes nothing.
    type: str
notes:
  - Check mode computes the manifest and reports whether anything would change (writes nothing); diff mode shows
    SHA256SUMS.
  - Without a rootfs manifest (O(rootfs_manifest)) the package list is read from C(lib/apk/db/installed).
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.kernel_identity
  - homelab.alpine_netboot.netboot.attributes
  - homelab.alpine_netboot.netboot.rootfs_manifest
  - ansible.builtin.action_common_attributes
requirements:
  - Jinja2 (Python library)
  - zstandard (Python library)
"""

EXAMPLES = r"""
- name: Publish dist/
  homelab.alpine_netboot.netboot_dist:
    rootfs: /var/tmp/netboot/image
    src: /var/tmp/netboot/artefacts
    dest: /var/tmp/netboot/dist
    inputs:
      initramfs_compression: zstd
    reports:
      prune: /var/tmp/netboot/prune-report.json
"""

RETURN = r"""
artefacts:
  description: name -> size and sha256 of each listed artefact.
  returned: always
  type: dict
manifest:
  description: The manifest.json document.
  returned: always
  type: dict
sha256sums:
  description: The SHA256SUMS text.
  returned: always
  type: str
kernel:
  description: The kernel file copied.
  returned: always
  type: str
commands:
  description: External commands run (none).
  returned: always
  type: list
  elements: str
"""

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._checkmode import exit_if_missing
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._options import DIST_KERNEL
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records import _manifest

ARGUMENT_SPEC = {
    **DIST_KERNEL,
    "dest": {"type": "path", "required": True},
    "kernel_name": {"type": "str", "default": "vmlinuz"},
    "rootfs_manifest": {"type": "path"},
    "inputs": {"type": "dict", "default": {}},
    "reports": {"type": "dict", "default": {}},
    "artefacts": {"type": "list", "elements": "str"},
    "boot_script": {"type": "str"},
    "src": {"type": "path", "required": True},
}


def main() -> None:
    with stage(ARGUMENT_SPEC, supports_check_mode=True, diff=True) as (module, result):
        p = module.params
        exit_if_missing(module, p["rootfs"], f"publish {p['src']} and the kernel of {p['rootfs']} as {p['dest']}",
                        "image", dest=p["dest"])
        result.update(_manifest.build_dist(
            kernel=p["rootfs_kernel"] or None,
            reports={str(k): str(v) for k, v in p["reports"].items()},
            check_mode=module.check_mode,
            **{k: p[k] for k in ("rootfs", "src", "dest", "kernel_name", "rootfs_manifest", "inputs", "artefacts",
                                 "boot_script")},
        ))


if __name__ == "__main__":
    main()
