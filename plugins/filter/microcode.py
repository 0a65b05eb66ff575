# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""``microcode_initrd``: the microcode switch (``initramfs_microcode``) decided by the one Python function that
make_initramfs also uses (``_initramfs.microcode_switch``), for the roles' Jinja (roles/common/defaults/main.yml)."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _initramfs
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError

DOCUMENTATION = r"""
name: microcode_initrd
short_description: The microcode initrd boot.ipxe loads first ("" = none)
description:
  - O(artefact) when the microcode switch (C(initramfs_microcode)) is on and O(concat) is false, else C("").
  - true/yes/on/1 = on; false/no/off/0, C(""), none and C([]) = off; other strings and lists = microcode files (on).
options:
  _input:
    description: The value of C(initramfs_microcode).
    type: raw
    required: true
  artefact:
    description: The microcode artefact's file name (C(netboot_microcode_artefact)).
    type: str
    required: true
  concat:
    description: C(initramfs_microcode_concat) (the microcode is in the initramfs itself).
    type: bool
    default: false
"""

RETURN = r"""
_value:
  description: The file name, or C("").
  type: str
"""


def microcode_initrd(value: Any, artefact: str, concat: Any = False) -> str:
    try:
        return _initramfs.microcode_initrd(value, artefact, str(concat).lower() in ("true", "yes", "on", "1"))
    except NetbootError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"microcode_initrd": microcode_initrd}
