#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Ansible module: sign EFI binaries with the Secure Boot db key (thin module; logic in
module_utils/boot/_secureboot.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: efi_sign
short_description: Sign EFI binaries (iPXE, a UKI) with sbsign and check them with sbverify
description:
  - Signs each O(files) C(src) into its C(dest) with C(sbsign), O(key) and O(cert). The key is written to a 0600
    file in a private 0700 temporary directory, removed afterwards whatever happens.
  - The signed file is written under a temporary name, checked with C(sbverify --cert) and renamed over C(dest).
  - A C(dest) that already is C(src) signed by O(cert)'s key (same image bytes without the signature, and
    C(sbverify) accepts it) is left alone - C(sbsign) output carries a signing time, so it is not compared byte
    for byte.
version_added: "0.2.0"
author: homelab.alpine_netboot maintainers (@homelab)
options:
  files:
    description: The binaries, each a dict with C(src) (unsigned EFI binary) and C(dest) (signed copy).
    type: list
    elements: dict
    required: true
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.db_key
  - homelab.alpine_netboot.netboot.attributes
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports which files would be signed (C(sbverify) runs on the existing ones); writes nothing. When a
      source or the certificate is not made yet (check mode did not run its stage) it reports C(changed).
  diff_mode:
    support: none
requirements:
  - cryptography (Python library)
  - sbsigntool (C(sbsign), C(sbverify)) on the host the module runs on
"""

EXAMPLES = r"""
- name: Sign iPXE with the db key
  homelab.alpine_netboot.efi_sign:
    files:
      - src: /var/tmp/netboot/build/ipxe/snponly.efi
        dest: /var/tmp/netboot/dist/snponly.efi
    key: "{{ lookup('file', secureboot_dir ~ '/db.key') }}"
    cert: "{{ secureboot_dir }}/db.crt"
"""

RETURN = r"""
signed:
  description: One entry per file - C(src), C(dest) and C(changed).
  returned: always
  type: list
  elements: dict
commands:
  description: The sbsign and sbverify commands run.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _secureboot
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._checkmode import exit_if_missing
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._options import DB_KEY
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner

ARGUMENT_SPEC = {
    "files": {"type": "list", "elements": "dict", "required": True},
    **DB_KEY,
}


def main() -> None:
    runner = Runner()
    with stage(ARGUMENT_SPEC, runner, supports_check_mode=True) as (module, result):
        p = module.params
        exit_if_missing(module, p["cert"], "sign the EFI binaries", "Secure Boot keys", signed=[])
        for item in p["files"]:
            if isinstance(item, dict) and item.get("src"):
                exit_if_missing(module, str(item["src"]), "sign the EFI binaries", "build", signed=[])
        signed = result["signed"] = []
        for i, item in enumerate(p["files"]):
            if not isinstance(item, dict) or not item.get("src") or not item.get("dest"):
                raise ConfigError(f"files[{i}] must be a dict with src and dest (got {item!r})")
            changed = _secureboot.sign_efi(str(item["src"]), str(item["dest"]), p["key"], p["cert"], runner,
                                           check_mode=module.check_mode)
            signed.append({"src": str(item["src"]), "dest": str(item["dest"]), "changed": changed})
        result["changed"] = any(s["changed"] for s in signed)


if __name__ == "__main__":
    main()
