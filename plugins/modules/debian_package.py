#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Ansible module: files from one pinned Debian package (thin module; logic in module_utils/common/_debpkg.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: debian_package
short_description: Unpack files of one pinned Debian package (by URL and sha256) into a directory
description:
  - Downloads the C(.deb) named by O(pin) once into O(cache_dir)C(/debs/) - to a temporary name, bounded by the
    pin's C(size) and O(deadline), and renamed into the cache only when its sha256 is the pin's (a mismatch fails
    naming the URL and both digests, and caches nothing). With O(offline) only the cache is used; its error says how
    to fill it.
  - Reads the members O(files) names in pure Python (C(ar), then C(data.tar.xz), C(.zst), C(.gz)), following
    symlinks inside the package, refusing members that would land outside it, and writes each into O(dest)
    atomically, only when its bytes differ.
  - The collection's pins live in C(netboot_deb_pins) (C(roles/common/defaults/main.yml)); C(netboot_deb_urls)
    overrides a pin's URL (a mirror), and the sha256 still decides.
version_added: "0.2.0"
author: homelab.alpine_netboot maintainers (@homelab)
options:
  pin:
    description:
      - The package file - C(name), C(version), C(arch), C(url), C(sha256) and optionally C(size) (bytes; bounds
        the download) and C(sha1) (recorded only; the snapshot archive's URL is made of it).
    type: dict
    required: true
  url:
    description: Fetch from this URL instead of the pin's (a mirror); the pin's sha256 still has to match.
    type: str
  cache_dir:
    description: The download cache (C(netboot_cache_dir)); the package goes to its C(debs/) subdirectory.
    type: path
    required: true
  dest:
    description: Directory the files are written to (created when missing).
    type: path
    required: true
  files:
    description: File name in O(dest) -> path of the member in the package (e.g. C(usr/lib/ipxe/snponly.efi)).
    type: dict
    required: true
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.attributes
  - homelab.alpine_netboot.netboot.fetch
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Downloads the package into the cache (verified) to know what would change; O(dest) is not touched.
  diff_mode:
    support: full
    details: The sha256 and name of each file in O(dest), before and after.
requirements:
  - zstandard (Python library)
"""

EXAMPLES = r"""
- name: The pinned iPXE binaries
  homelab.alpine_netboot.debian_package:
    pin: "{{ netboot_deb_pins.ipxe }}"
    url: "{{ netboot_deb_urls.ipxe | default(omit) }}"
    cache_dir: "{{ netboot_cache_dir }}"
    dest: "{{ netboot_build_dir }}/ipxe"
    files:
      snponly.efi: usr/lib/ipxe/snponly.efi
      ipxe.efi: usr/lib/ipxe/ipxe.efi
      undionly.kpxe: usr/lib/ipxe/undionly.kpxe
"""

RETURN = r"""
deb:
  description: The verified package in the cache.
  returned: success
  type: str
downloaded:
  description: Whether the package was downloaded by this run (false when the cache had it).
  returned: success
  type: bool
package:
  description: The pin's name, version and arch, and the URL used.
  returned: always
  type: dict
files:
  description: File name -> C(member), C(sha256), C(size) and C(changed).
  returned: success
  type: dict
commands:
  description: External commands run (none).
  returned: always
  type: list
  elements: str
"""

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _debpkg
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fetch import FETCH_OPTIONS, Fetcher

ARGUMENT_SPEC = {
    "pin": {"type": "dict", "required": True},
    "url": {"type": "str"},
    "cache_dir": {"type": "path", "required": True},
    "dest": {"type": "path", "required": True},
    "files": {"type": "dict", "required": True},
    **FETCH_OPTIONS,
}


def main() -> None:
    with stage(ARGUMENT_SPEC, supports_check_mode=True, diff=True) as (module, result):
        p = module.params
        pin = _debpkg.parse_pin({**p["pin"], **({"url": p["url"]} if p["url"] else {})}, where="pin")
        result.update(_debpkg.install(
            pin, p["cache_dir"], p["dest"], {str(k): str(v) for k, v in p["files"].items()}, offline=p["offline"],
            fetcher=Fetcher(**{k: p[k] for k in FETCH_OPTIONS}), check_mode=module.check_mode,
        ), package={"name": pin.name, "version": pin.version, "arch": pin.arch, "url": pin.url})


if __name__ == "__main__":
    main()
