#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Ansible module: install pinned extra binaries (netboot_binaries) into the image tree."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: netboot_binaries
short_description: Install pinned extra binaries (by URL and sha256) into the image
description:
  - For each entry of O(binaries), downloads the entry's C(url) once into O(cache_dir)C(/binaries/) (verified against
    the entry's C(sha256) before it is renamed into the cache; a mismatch fails naming the file and both digests and
    caches nothing), unpacks it (C(.zip), C(.tar.gz), or a plain file), strips debug info when the entry's C(strip) is true,
    and installs it at the entry's C(dest) in O(root) (mode 0755).
  - Records every binary with its URL and sha256 in C(etc/netboot/binaries.json) of the image; the dist manifest
    lists them.
  - With O(offline), only the cache is used.
  - A binary linked against glibc (its ELF interpreter or C(DT_NEEDED) says so, or the entry says C(runtime=glibc))
    gets the glibc runtime - the libraries it needs (and glibc's split libraries) from the pinned Debian C(libc6)
    of O(glibc_pin), verified into O(cache_dir)C(/debs/), installed byte for byte under C(/opt/netboot-glibc/lib) -
    and its ELF interpreter and C(DT_RUNPATH) are pointed there with C(patchelf). musl programs, C(/lib) and
    C(/usr/lib) are untouched. A binary needing a newer glibc than the runtime's fails naming both versions.
version_added: "0.2.0"
author:
  - homelab.alpine_netboot maintainers (@homelab)
options:
  binaries:
    description: C(netboot_binaries) - a list of dicts with C(name), C(url), C(sha256), C(dest) (absolute path in
      the image), C(strip) (default true), optional C(member) (the file inside an archive; default C(name)), C(size)
      (bytes) and C(runtime) (C(auto) detects glibc from the ELF, C(glibc) declares it, C(none) installs the file as
      shipped).
    type: list
    elements: dict
    default: []
  cache_dir:
    description: The download cache (C(netboot_cache_dir)); archives go to its C(binaries/) subdirectory.
    type: path
    required: true
  glibc_pin:
    description: The Debian C(libc6) the glibc runtime comes from (C(netboot_deb_pins.libc6)) - C(name),
      C(version), C(arch), C(url), C(sha256), C(size). Needed only when a binary is glibc-linked.
    type: dict
  glibc_url:
    description: Another URL for O(glibc_pin) (C(netboot_deb_urls.libc6), a mirror); the pin's sha256 still decides.
    type: str
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.image_tree
  - homelab.alpine_netboot.netboot.attributes
  - homelab.alpine_netboot.netboot.fetch
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Downloads into the cache (verified) to know what would be installed; the image is not touched.
  diff_mode:
    support: none
requirements:
  - PyYAML (Python library)
  - zstandard (Python library)
"""

EXAMPLES = r"""
- name: Install nomad from HashiCorp's release
  homelab.alpine_netboot.netboot_binaries:
    root: build/image
    cache_dir: cache
    binaries:
      - name: nomad
        url: https://releases.hashicorp.com/nomad/1.9.7/nomad_1.9.7_linux_amd64.zip
        sha256: "<sha256 of the zip>"
        dest: /usr/bin/nomad
        strip: true
"""

RETURN = r"""
stage_input:
  description: Digest of what this stage loads (M(homelab.alpine_netboot.stage_tree) keys the image copy on it).
  returned: success
  type: str
binaries:
  description: One record per binary (name, url, sha256, dest, strip, installed_sha256, size, runtime).
  returned: always
  type: list
  elements: dict
glibc_runtime:
  description: The glibc runtime installed for glibc-linked binaries (package, version, url, sha256, purl, glibc
    version, every file with its sha256 and size), or null.
  returned: always
  type: dict
fetched:
  description: URLs downloaded by this run (empty when everything came from the cache).
  returned: always
  type: list
  elements: str
commands:
  description: External commands run (strip, patchelf).
  returned: always
  type: list
  elements: str
"""

from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _debpkg
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._checkmode import exit_if_missing
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fetch import FETCH_OPTIONS, Fetcher
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._options import IMAGE_TREE
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _binaries
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._stage import stage_inputs

ARGUMENT_SPEC = {
    **IMAGE_TREE,
    "binaries": {"type": "list", "elements": "dict", "default": []},
    "cache_dir": {"type": "path", "required": True},
    "glibc_pin": {"type": "dict"},
    "glibc_url": {"type": "str"},
    **FETCH_OPTIONS,
}


def main() -> None:
    runner = Runner()
    with stage(ARGUMENT_SPEC, runner, supports_check_mode=True, image=True) as (module, result):
        p = module.params
        exit_if_missing(module, p["root"], f"install the pinned binaries in {p['root']}", "image",
                        changed=bool(p["binaries"]))
        binaries = _binaries.parse_binaries(p["binaries"])
        root = Path(p["root"])
        pin = p["glibc_pin"]
        glibc_pin = (_debpkg.parse_pin({**pin, **({"url": p["glibc_url"]} if p["glibc_url"] else {})},
                                       where="netboot_deb_pins.libc6") if pin else None)
        if not root.is_dir():
            raise NetbootError(f"image tree {root} does not exist: run the image stage first")
        out = _binaries.install(root, binaries, Path(p["cache_dir"]), Fetcher(**{k: p[k] for k in FETCH_OPTIONS}),
                                runner, check_mode=module.check_mode, glibc_pin=glibc_pin)
        result.update(changed=out.changed, binaries=out.records, fetched=out.fetched, glibc_runtime=out.runtime,
                      stage_input=stage_inputs({"binaries": p})["binaries"])


if __name__ == "__main__":
    main()
