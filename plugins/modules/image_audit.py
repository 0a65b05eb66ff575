#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Ansible module: audit the image tree before it is published; write dist/audit.json."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: image_audit
short_description: Refuse an image with secrets, passwords, loose permissions or ELF files that cannot run
description:
  - Walks the image tree and fails, naming each file, on private keys (PEM or OpenSSH blocks) not listed in
    O(allow_private_keys); root or any user with a usable or empty password; world-writable files outside the tmp
    directories; C(authorized_keys) readable by others or in a directory others can enter; ELF executables and
    libraries whose interpreter or C(DT_NEEDED) libraries cannot be resolved inside the image (a glibc binary on
    musl Alpine); role modules missing from the pruned kernel tree.
  - Reports setuid/setgid files and the services each role enables. Writes the report to O(dest) only when the
    audit passes (the published C(dist/) never holds a failing report); a failing report goes to O(failed_dest).
  - The report is deterministic, so a rerun on an unchanged image reports C(changed=false).
version_added: "0.2.0"
author:
  - homelab.alpine_netboot maintainers (@homelab)
options:
  dest:
    description: Where the passing report goes (C(dist/audit.json), linked from C(manifest.json)).
    type: path
    required: true
  failed_dest:
    description: Where a failing report goes (the build directory); default O(dest) with C(.failed) appended.
    type: path
  allow_private_keys:
    description: Image paths (C(/etc/ssl/private/x.key)) allowed to hold a private key (C(image_audit_allow_private_keys)).
    type: list
    elements: str
    default: []
  node_roles:
    description: C(node_roles) (role -> C(services), C(modules), ...); each role's modules must be in the pruned image.
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.image_tree
  - homelab.alpine_netboot.netboot.node_roles
  - homelab.alpine_netboot.netboot.attributes
  - ansible.builtin.action_common_attributes
requirements:
  - zstandard (Python library)
"""

EXAMPLES = r"""
- name: Audit the image
  homelab.alpine_netboot.image_audit:
    root: build/image
    dest: dist/audit.json
    failed_dest: build/audit.failed.json
    allow_private_keys: []
"""

RETURN = r"""
report:
  description: The audit report (also written to O(dest) when it passes).
  returned: always
  type: dict
errors:
  description: One line per finding, the file then what is wrong with it.
  returned: always
  type: list
  elements: str
commands:
  description: External commands run (none).
  returned: always
  type: list
  elements: str
"""

from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._checkmode import exit_if_missing, text_diff
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import (
    atomic_write_bytes,
    read_or_none,
    write_if_changed,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._options import IMAGE_TREE, NODE_ROLES
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _audit, _noderoles

ARGUMENT_SPEC = {
    **IMAGE_TREE, **NODE_ROLES,
    "dest": {"type": "path", "required": True},
    "failed_dest": {"type": "path"},
    "allow_private_keys": {"type": "list", "elements": "str", "default": [], "no_log": False},  # paths, not keys
}


def main() -> None:
    with stage(ARGUMENT_SPEC, supports_check_mode=True, diff=True) as (module, result):
        p = module.params
        exit_if_missing(module, p["root"], f"audit {p['root']} and write {p['dest']}", "image")
        root = Path(p["root"])
        if not root.is_dir():
            raise NetbootError(f"image tree {root} does not exist: run the image and kernel stages first")
        role_modules = _noderoles.role_modules(p["node_roles"])
        report = _audit.audit(root, allow_private_keys=p["allow_private_keys"], role_modules=role_modules)
        doc = report.as_dict()
        data = _audit.AUDIT.dump(doc)
        result.update(report=doc, errors=[f"{e['path']}: {e['detail']}" for e in doc["errors"]])
        if not report.passed:
            failed = p["failed_dest"] or p["dest"] + ".failed"
            if not module.check_mode:
                atomic_write_bytes(failed, data)
            raise NetbootError(report.message() + f"\n(report: {failed})")
        before = (read_or_none(p["dest"]) or b"") if module._diff else b""  # read for the diff only
        result.update(changed=write_if_changed(p["dest"], data, check_mode=module.check_mode),
                      diff=text_diff(p["dest"], before.decode(), data.decode()))


if __name__ == "__main__":
    main()
