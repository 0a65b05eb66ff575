#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Ansible module: build a reproducible, compressed newc initramfs from an image tree."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: make_initramfs
short_description: Build a reproducible compressed initramfs (and early microcode cpio) from a rootfs tree
description:
  - Streams a newc cpio of O(root) into a compressor and a temp file next to O(dest), then renames it over O(dest);
    the image is never held in memory.
  - "Reproducible: paths sorted bytewise (parents first), inode numbers assigned in order, numeric owners
    normalised, mtimes set (or clamped, O(mtime)) to O(source_date_epoch), hardlinks kept (data stored once), device nodes from a spec,
    no host device numbers. The same tree gives the same bytes whatever the file mtimes, the order on disk, the umask or the time zone."
  - Before compressing it checks that the kernel config (C(boot/config-*) in the tree or O(kernel_config)) has
    C(CONFIG_RD_ZSTD), C(CONFIG_RD_GZIP) or C(CONFIG_RD_XZ) for the chosen method.
  - Records the image in C(.<dest name>.json) beside O(dest) (compression, parts, sha256, the digest of the plan -
    every path, mode, owner, clamped mtime, size, inode identity and the options); when the plan matches and O(dest)
    is untouched, nothing is compressed and C(changed=false). The later stages read this record.
  - Optionally writes the early microcode cpio (uncompressed, C(kernel/x86/microcode/GenuineIntel.bin) first) to
    O(microcode_dest) and/or in front of O(dest).
version_added: "0.1.0"
author: homelab.alpine_netboot maintainers (@homelab)
options:
  root:
    aliases: [src]
  dest:
    description: The initramfs file to write.
    type: path
    required: true
  microcode:
    description:
      - Early microcode. C(false) (default) - none. C(true) - from the tree's C(boot/intel-ucode.img) (Alpine
        C(intel-ucode)) or C(lib/firmware/intel-ucode/*). A list - microcode files, directories of them, or early cpio
        archives holding C(kernel/x86/microcode/GenuineIntel.bin) (concatenated in the given order).
    type: raw
    default: false
  microcode_dest:
    description: Where the uncompressed microcode cpio goes (default C(intel-ucode.img) next to O(dest)).
    type: path
  microcode_concat:
    description: Also put the microcode cpio in front of the compressed image in O(dest) (one file to load).
    type: bool
    default: false
  source_date_epoch:
    description:
      - The mtime of every entry (or the clamp, see O(mtime)). Default - the newest package C(build_time) of O(rootfs_manifest), else its
        C(source_date_epoch), else the newest build time (C(t:)) in the tree's C(lib/apk/db/installed).
    type: int
  kernel_config:
    description: Kernel config to check the compression against (default the tree's single C(boot/config-*)).
    type: path
  extra_files:
    description:
      - Entries added to (or replacing) the tree's, without touching the tree. Each has C(path) (inside the image),
        C(type) (file, dir, symlink, char, block, fifo; default file), C(mode) (octal string), C(uid), C(gid), and
        C(src) (a file) or C(content) (text) for files, C(target) for symlinks, C(major)/C(minor) for devices.
    type: list
    elements: dict
    default: []
  devices:
    description: Device nodes to add, same format as O(extra_files). Default C(/dev/console) (c 5:1) and C(/dev/null)
      (c 1:3), which the kernel needs before devtmpfs is mounted.
    type: list
    elements: dict
  exclude:
    description: Glob patterns of paths (relative to O(root)) left out, e.g. C(boot/vmlinuz-*); a directory match
      leaves out its whole subtree.
    type: list
    elements: str
    default: [boot/vmlinuz*, boot/System.map-*, boot/initramfs-*, boot/intel-ucode.img, boot/amd-ucode.img]
  owner:
    description:
      - C(auto) maps the tree owner's uid/gid (an unprivileged build) to 0 and keeps other ids; C(root) makes
        everything 0:0; C(keep) copies ids.
    type: str
    choices: [auto, keep, root]
    default: auto
  mtime:
    description:
      - C(epoch) gives every entry the mtime O(source_date_epoch), so the bytes do not depend on file mtimes at all.
        C(clamp) only lowers mtimes newer than it and keeps older ones (like C(tar --clamp-mtime)).
    type: str
    choices: [epoch, clamp]
    default: epoch
  stamp_file:
    description: Ignored (the record beside O(dest) replaces the stamp); deprecated, removed in 1.0.0.
    type: path
  progress_log:
    description: A log file receiving a progress line (bytes in/out) every 2 seconds while compressing (C(tail -f)).
    type: path
notes:
  - Check mode compares the plan with the stamp; it reports C(changed=true) when a rebuild would be needed (it does
    not compress to find out whether the bytes would differ).
  - Diff mode shows the sha256 and size before and after.
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.image_tree
  - homelab.alpine_netboot.netboot.compression
  - homelab.alpine_netboot.netboot.attributes
  - homelab.alpine_netboot.netboot.rootfs_manifest
  - ansible.builtin.action_common_attributes
requirements:
  - Jinja2 (Python library)
  - zstandard (Python library)
"""

EXAMPLES = r"""
- name: Build the initramfs with the shipped /init
  homelab.alpine_netboot.make_initramfs:
    root: /var/tmp/netboot/rootfs
    dest: /var/tmp/netboot/dist/initramfs
    compression: zstd
    level: 19
    window_log: 27
    microcode: true
    extra_files:
      - path: init
        src: "{{ role_path }}/files/init"
        mode: "0755"
    exclude: ["boot/vmlinuz-*", "boot/initramfs-*"]
    progress_log: /var/tmp/netboot/initramfs.log
"""

RETURN = r"""
sha256:
  description: sha256 of O(dest).
  returned: success
  type: str
size:
  description: Size of O(dest) in bytes.
  returned: success
  type: int
uncompressed_size:
  description: Size of the uncompressed cpio archive.
  returned: always
  type: int
entries:
  description: Number of archive entries.
  returned: always
  type: int
files:
  description: Number of regular files.
  returned: always
  type: int
compressed:
  description: Whether compression ran (false when the stamp showed nothing changed).
  returned: always
  type: bool
source_date_epoch:
  description: The SOURCE_DATE_EPOCH used, and C(source_date_epoch_source) where it came from.
  returned: always
  type: int
compression:
  description: The compression, zstd-CLI style (e.g. C(zstd -19 --long=27 -T0)).
  returned: always
  type: str
microcode:
  description: path, sha256 and size of the microcode cpio, or null.
  returned: always
  type: dict
progress:
  description: The progress lines of this build.
  returned: always
  type: list
  elements: str
commands:
  description: External commands run (none; kept for symmetry with the other modules).
  returned: always
  type: list
  elements: str
"""

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _compress, _cpio, _initramfs
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._checkmode import exit_if_missing
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._options import (
    COMPRESSION,
    IMAGE_TREE,
    renamed,
)

ARGUMENT_SPEC = {
    "root": renamed("src", **IMAGE_TREE["root"]),
    "dest": {"type": "path", "required": True},
    **COMPRESSION,
    "microcode": {"type": "raw", "default": False},
    "microcode_dest": {"type": "path"},
    "microcode_concat": {"type": "bool", "default": False},
    "source_date_epoch": {"type": "int"},
    "rootfs_manifest": {"type": "path"},
    "kernel_config": {"type": "path"},
    "extra_files": {"type": "list", "elements": "dict", "default": []},
    "devices": {"type": "list", "elements": "dict"},
    "exclude": {"type": "list", "elements": "str", "default": [
        "boot/vmlinuz*", "boot/System.map-*", "boot/initramfs-*", "boot/intel-ucode.img", "boot/amd-ucode.img"]},
    "owner": {"type": "str", "choices": ["auto", "keep", "root"], "default": "auto"},
    "mtime": {"type": "str", "choices": ["epoch", "clamp"], "default": "epoch"},
    "stamp_file": {"type": "path"},
    "progress_log": {"type": "path"},
}


def main() -> None:
    with stage(ARGUMENT_SPEC, supports_check_mode=True, diff=True) as (module, result):
        p = module.params
        if p["stamp_file"]:
            module.deprecate("stamp_file is ignored (see the record)", version="1.0.0",
                             collection_name="homelab.alpine_netboot")
        exit_if_missing(module, p["root"], f"pack {p['root']} into {p['dest']}", "image", dest=p["dest"])
        devices = list(_cpio.DEFAULT_DEVICES) if p["devices"] is None else p["devices"]
        req = _initramfs.InitramfsRequest(
            compression=_compress.make_spec(p["compression"], p["level"], p["window_log"], p["threads"]),
            microcode=_initramfs.microcode_switch(p["microcode"]),
            extras=[*devices, *p["extra_files"]],
            src=p["root"],
            **{k: p[k] for k in ("dest", "source_date_epoch", "rootfs_manifest", "kernel_config", "microcode_dest",
                                 "microcode_concat", "exclude", "owner", "mtime", "progress_log")},
        )
        result.update(_initramfs.build_initramfs(req, check_mode=module.check_mode))
        for line in result["progress"]:
            module.debug(line)


if __name__ == "__main__":
    main()
