#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Ansible module: the Secure Boot key set (PK, KEK, db) and its enrollment files (thin module; logic in
module_utils/boot/_secureboot.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: secure_boot_keys
short_description: Make the Secure Boot PK, KEK and db keys and the files firmware enrolls
description:
  - Keeps the user's own Secure Boot key set in O(dir) (mode 0700) - C(PK), C(KEK) and C(db), each a C(<NAME>.key)
    (PEM RSA 2048 private key, mode 0600) and a C(<NAME>.crt) (PEM self-signed X.509, CN C(<name_prefix> <NAME>),
    20 years, random serial). Only missing pairs are made; an existing pair is checked (the key must match its
    certificate, a plaintext key file must not be readable by group or others).
  - A key file may be vault-encrypted (C(ansible-vault encrypt)); it is then never parsed, and its plaintext is
    given in O(private_keys) (the C(file) lookup decrypts it). A key given in O(private_keys) is never written to
    O(dir).
  - Writes the public enrollment files to O(dir)C(/enroll/) - C(<NAME>.cer) (DER), C(<NAME>.esl)
    (EFI_SIGNATURE_LIST, owner GUID from O(dir)C(/owner.guid), made once) and C(<NAME>.auth) (a time-based
    authenticated write of the variable, PK and KEK signed by PK, db by KEK), for firmware setup screens and
    tools such as C(efi-updatevar) or C(virt-fw-vars).
  - A rerun with the same keys writes nothing (an C(.auth) is kept while its signature list and signer are the same).
version_added: "0.2.0"
author: homelab.alpine_netboot maintainers (@homelab)
options:
  dir:
    description: Directory of the keys (made with mode 0700; keep it on the controller, out of dist/).
    type: path
    required: true
  name_prefix:
    description: Start of each certificate's common name (C(<name_prefix> PK), ...).
    type: str
    default: homelab netboot
  private_keys:
    description:
      - Private keys given by the caller, name (C(PK), C(KEK), C(db)) -> PEM text, e.g.
        C("{{ lookup('file', keys_dir ~ '/db.key') }}") for a vault-encrypted key file. Never logged.
      - A name left out is read from its key file in O(dir) (or made, with its certificate, when neither exists).
    type: dict
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.attributes
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports which pairs and files would be made; writes nothing.
  diff_mode:
    support: none
notes:
  - Private key material is never returned.
requirements:
  - cryptography (Python library)
"""

EXAMPLES = r"""
- name: Make (or check) the Secure Boot keys
  homelab.alpine_netboot.secure_boot_keys:
    dir: "{{ playbook_dir }}/../secureboot"

- name: Vault-encrypted private keys, decrypted by the file lookup
  homelab.alpine_netboot.secure_boot_keys:
    dir: /etc/netboot/secureboot
    private_keys:
      PK: "{{ lookup('file', '/etc/netboot/secureboot/PK.key') }}"
      KEK: "{{ lookup('file', '/etc/netboot/secureboot/KEK.key') }}"
      db: "{{ lookup('file', '/etc/netboot/secureboot/db.key') }}"
"""

RETURN = r"""
dir:
  description: The keys directory.
  returned: always
  type: str
created:
  description: Names (C(PK), C(KEK), C(db)) whose pair or certificate was made (or would be, in check mode).
  returned: always
  type: list
  elements: str
certs:
  description: Name -> path of its PEM certificate.
  returned: always
  type: dict
enroll_files:
  description: Paths of the enrollment files (C(.cer), C(.esl), C(.auth) of each name).
  returned: always
  type: list
  elements: str
fingerprints:
  description: Name -> SHA-256 (hex) of its DER certificate (absent for one to be made in check mode).
  returned: always
  type: dict
owner_guid:
  description: The SignatureOwner GUID of the signature lists (null in check mode before it is made).
  returned: always
  type: str
commands:
  description: External commands run (none).
  returned: always
  type: list
  elements: str
"""

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _secureboot
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage

ARGUMENT_SPEC = {
    "dir": {"type": "path", "required": True},
    "name_prefix": {"type": "str", "default": "homelab netboot"},
    "private_keys": {"type": "dict", "no_log": True},
}


def main() -> None:
    with stage(ARGUMENT_SPEC, supports_check_mode=True) as (module, result):
        p = module.params
        keyset = _secureboot.ensure_keys(p["dir"], p["name_prefix"], p["private_keys"] or None,
                                         check_mode=module.check_mode)
        result.update(changed=keyset.changed, **keyset.result())


if __name__ == "__main__":
    main()
