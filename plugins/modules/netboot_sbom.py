#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Ansible module: the image's CycloneDX SBOM (sbom.cdx.json) from the apk database."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: netboot_sbom
short_description: Write the image's CycloneDX 1.6 SBOM from its apk database
description:
  - Reads C(lib/apk/db/installed) of the image tree O(rootfs) and writes O(dest)/sbom.cdx.json, a CycloneDX 1.6 JSON document made
    with cyclonedx-python-lib - every installed package (name, version, license, origin, apk checksum, URL, purl
    C(pkg:apk/alpine/NAME@VERSION?arch=ARCH&distro=alpine-X.Y)), the O(extra_binaries), and the kernel with the
    modules and firmware prune_kernel kept summarised as properties.
  - The document is validated against the CycloneDX JSON schema with the library's validator before it is written
    (temp name + rename).
  - Reproducible - the serial number is a UUID derived from the content, the timestamp is the image's
    SOURCE_DATE_EPOCH (the newest package build time) - so a rerun with unchanged input reports C(changed=false).
version_added: "0.2.0"
author: homelab.alpine_netboot maintainers (@homelab)
options:
  rootfs:
    required: true
  rootfs_kernel:
    aliases: [kernel]
  dest:
    description: The dist directory; the SBOM is written to O(dest)/sbom.cdx.json.
    type: path
    required: true
  release:
    description: Alpine release for the purls' C(distro) qualifier (C(3.23), C(edge)); default the rootfs manifest's,
      else C(etc/alpine-release).
    type: str
  prune_report:
    description: C(prune-report.json) of M(homelab.alpine_netboot.prune_kernel) (kept/removed module and firmware
      counts).
    type: path
  extra_binaries:
    description: Files of the image that come from no package, one dict each with C(name), C(path) (in the image),
      C(url), C(version) and C(sha256) (checked when given).
    type: list
    elements: dict
    default: []
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.kernel_identity
  - homelab.alpine_netboot.netboot.attributes
  - ansible.builtin.action_common_attributes
attributes:
  diff_mode:
    support: none
requirements:
  - Jinja2 (Python library)
  - PyYAML (Python library)
  - cyclonedx-python-lib[json-validation] (Python library)
  - zstandard (Python library)
"""

EXAMPLES = r"""
- name: Write the SBOM
  homelab.alpine_netboot.netboot_sbom:
    rootfs: /var/tmp/netboot/build/image
    dest: /var/tmp/netboot/dist
    prune_report: /var/tmp/netboot/build/prune-report.json
"""

RETURN = r"""
dest:
  description: The SBOM file written.
  returned: always
  type: str
sha256:
  description: sha256 of the SBOM file.
  returned: always
  type: str
serial_number:
  description: The document's serial number (C(urn:uuid:...), derived from the content).
  returned: always
  type: str
components:
  description: Number of components (packages, extra binaries, the kernel).
  returned: always
  type: int
commands:
  description: External commands run (none).
  returned: always
  type: list
  elements: str
"""

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._checkmode import exit_if_missing
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._options import DIST_KERNEL
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records import _sbom

ARGUMENT_SPEC = {
    **DIST_KERNEL,
    "dest": {"type": "path", "required": True},
    "release": {"type": "str"},
    "prune_report": {"type": "path"},
    "extra_binaries": {"type": "list", "elements": "dict", "default": []},
}


def main() -> None:
    with stage(ARGUMENT_SPEC, supports_check_mode=True) as (module, result):
        p = module.params
        exit_if_missing(module, p["rootfs"], f"write the SBOM in {p['dest']}", "image")
        extras = []
        for item in p["extra_binaries"]:
            if not item.get("name") or not item.get("path"):
                module.fail_json(msg=f"extra_binaries entry {item!r} needs a name and a path (in the image)",
                                 commands=[])
            extras.append(_sbom.ExtraBinary(name=str(item["name"]), path=str(item["path"]),
                                            **{k: str(item.get(k) or "") for k in ("url", "version", "sha256")}))
        result.update(_sbom.write_sbom(p["rootfs"], p["dest"], release=p["release"], kernel=p["rootfs_kernel"],
                                       report_path=p["prune_report"], extras=extras, check_mode=module.check_mode))


if __name__ == "__main__":
    main()
