#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT

from __future__ import annotations

DOCUMENTATION = r"""
---
module: alpine_rootfs
short_description: Build a signed, cached, offline-reproducible Alpine Linux root filesystem
description:
  - Bootstraps a trusted C(apk.static) from the release's C(apk-tools-static) package (index signature, package
    signature, datahash, the binary's own detached signature and C(--version) all checked), or uses O(apk_binary).
  - Keeps a local partial mirror per repository under O(cache_dir) (the upstream signed C(APKINDEX.tar.gz) and every
    C(.apk) the build needs, each verified before it is renamed into place) and always installs from it, so a rebuild
    with O(offline=true) gives the same tree.
  - Pins the resolved package set in a JSON O(lockfile); with a lockfile the exact locked set is installed.
  - Copies O(overlay_dir) verbatim (modes kept, owned by root) after the packages, refusing paths that escape the root.
  - Writes a manifest to C(/etc/alpine-netboot/manifest.json) in the rootfs and returns it.
  - The rootfs is built beside the old one and swapped in only when complete; a failure leaves the previous rootfs.
version_added: "0.1.0"
author:
  - homelab.alpine_netboot maintainers (@homelab)
options:
  root:
    description: Directory of the rootfs to build (replaced atomically).
    type: path
    required: true
  release:
    description: Alpine release, e.g. C(3.23) or C(edge).
    type: str
    required: true
  arch:
    description: Alpine architecture.
    type: str
    default: x86_64
  mirrors:
    description: Mirror base URLs, tried in order (each holds C(<release>/<repo>/<arch>/)).
    type: list
    elements: str
    default: [https://dl-cdn.alpinelinux.org/alpine]
  repositories:
    description: Repositories to use, in priority order.
    type: list
    elements: str
    default: [main, community]
  packages:
    description: Packages to install (apk world entries, constraints like C(busybox>=1.37) allowed).
    type: list
    elements: str
    required: true
  extra_keys_dir:
    description:
      - Directories of extra trusted RSA public keys (C(*.pub), named as the signatures name them), for private
        mirrors and tests. The official Alpine keys are pinned in the collection.
    type: list
    elements: path
    default: []
  cache_dir:
    description: Local partial mirror and bootstrap cache.
    type: path
    required: true
  overlay_dir:
    description: Files copied verbatim into the rootfs after the packages.
    type: path
  lockfile:
    description: JSON lockfile pinning every resolved package. Omit to not lock.
    type: path
  update_lock:
    description: Re-resolve the package set and rewrite O(lockfile).
    type: bool
    default: false
  apk_binary:
    description: Path of an apk binary to use instead of bootstrapping C(apk.static).
    type: path
  services:
    description: OpenRC services to enable, as a mapping of runlevel to a list of service names.
    type: dict
    default: {}
  max_package_bytes:
    description:
      - A package whose size in the signed index is above this is refused before its download starts (the error
        names the package and both sizes). Default 2 GiB, the bound of a pinned binary without a pinned size.
    type: int
    default: 2147483648
notes:
  - Needs root (apk runs package scripts chrooted into the rootfs). The kernel's mkinitfs trigger is disabled in the
    rootfs (C(disable_trigger=yes)); the collection builds its own initramfs.
  - Supports check mode (reports what would be installed, writes nothing) and diff mode (package set before/after).
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.attributes
  - homelab.alpine_netboot.netboot.fetch
  - ansible.builtin.action_common_attributes
requirements:
  - cryptography (Python library)
"""

EXAMPLES = r"""
- name: Build the rootfs
  homelab.alpine_netboot.alpine_rootfs:
    root: /srv/netboot/build/rootfs
    release: "3.23"
    packages: [alpine-base, openssh, bash, git, podman, zfs, linux-lts]
    cache_dir: /srv/netboot/cache
    overlay_dir: /srv/netboot/overlay
    lockfile: /srv/netboot/inventory/alpine-lock.json
"""

RETURN = r"""
manifest:
  description: Release, arch, mirrors, key fingerprints, packages (name, version, checksum, repository, build_time),
    overlay digest and the reproducible build time (newest package build time).
  returned: always
  type: dict
packages:
  description: The installed (or, in check mode, to be installed) package set.
  returned: always
  type: list
  elements: dict
to_fetch:
  description: Packages not yet in the cache (fetched unless check mode).
  returned: always
  type: list
  elements: str
lock_changed:
  description: Whether the lockfile was (or would be) written.
  returned: always
  type: bool
commands:
  description: External commands run.
  returned: always
  type: list
  elements: str
fetched:
  description: URLs downloaded.
  returned: always
  type: list
  elements: str
"""

from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._checkmode import text_diff
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fetch import (
    FETCH_OPTIONS,
    MAX_UNSIZED_BYTES,
    Fetcher,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._rootfs import build
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._rootfs_spec import (
    DEFAULT_MIRROR,
    RootfsSpec,
)

ARGUMENT_SPEC = {
    "root": {"type": "path", "required": True},
    "release": {"type": "str", "required": True},
    "arch": {"type": "str", "default": "x86_64"},
    "mirrors": {"type": "list", "elements": "str", "default": [DEFAULT_MIRROR]},
    "repositories": {"type": "list", "elements": "str", "default": ["main", "community"]},
    "packages": {"type": "list", "elements": "str", "required": True},
    "extra_keys_dir": {"type": "list", "elements": "path", "default": [], "no_log": False},  # public keys
    "cache_dir": {"type": "path", "required": True},
    "overlay_dir": {"type": "path"},
    "lockfile": {"type": "path"},
    "update_lock": {"type": "bool", "default": False},
    "apk_binary": {"type": "path"},
    "services": {"type": "dict", "default": {}},
    "max_package_bytes": {"type": "int", "default": MAX_UNSIZED_BYTES},
    **FETCH_OPTIONS,
}


def main() -> None:
    runner = Runner()
    with stage(ARGUMENT_SPEC, runner, supports_check_mode=True, diff=True, image=True) as (module, result):
        p = module.params
        fetcher = Fetcher(**{k: p[k] for k in FETCH_OPTIONS})
        result["fetched"] = fetcher.log
        spec = RootfsSpec(
            release=str(p["release"]),
            **{k: tuple(p[k]) for k in ("mirrors", "repositories", "packages")},
            **{k: Path(p[k]).absolute() for k in ("root", "cache_dir")},
            **{k: Path(p[k]).absolute() if p[k] else None for k in ("overlay_dir", "lockfile")},
            extra_keys_dirs=tuple(Path(d).absolute() for d in p["extra_keys_dir"]),
            **{k: p[k] for k in ("arch", "offline", "update_lock", "apk_binary", "max_package_bytes")},
            services=tuple((str(lvl), str(svc)) for lvl, svcs in sorted(p["services"].items()) for svc in svcs or []),
        )
        out = build(spec, runner, fetcher, module.check_mode)
        result.update(
            changed=out.changed, manifest=out.manifest, packages=[x.as_dict() for x in out.packages],
            to_fetch=out.to_fetch, lock_changed=out.lock_changed, overlay_files=out.overlay_files,
            warnings=out.warnings, diff=text_diff(f"{spec.root} packages", "".join(f"{x}\n" for x in out.before),
                                                  "".join(f"{x}\n" for x in out.after)),
        )


if __name__ == "__main__":
    main()
