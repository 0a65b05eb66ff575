# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Option groups several modules share, declared once: each module merges the argspec dicts it takes into its
``argument_spec``, and its DOCUMENTATION extends the same-named fragment of ``doc_fragments/netboot.py``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Spec = dict[str, dict[str, Any]]


def renamed(old: str, **option: Any) -> dict[str, Any]:
    """An option still accepted under its former name ``old``, with a deprecation warning, until 1.0.0."""
    deprecated = {"name": old, "version": "1.0.0", "collection_name": "homelab.alpine_netboot"}
    return {**option, "aliases": [old], "deprecated_aliases": [deprecated]}


IMAGE_TREE: Spec = {"root": {"type": "path", "required": True}}

KERNEL_IDENTITY: Spec = {"rootfs": {"type": "path"}, "rootfs_kernel": {"type": "str"}}
# the dist stage's modules, whose rootfs_kernel was called kernel
DIST_KERNEL: Spec = {"rootfs": {"type": "path", "required": True}, "rootfs_kernel": renamed("kernel", type="str")}

COMPRESSION: Spec = {"compression": {"type": "str", "choices": ["zstd", "gzip", "xz", "none"], "default": "zstd"},
                     "level": {"type": "int"}, "window_log": {"type": "int"}, "threads": {"type": "int", "default": 0}}

DB_KEY: Spec = {"key": {"type": "str", "required": True, "no_log": True}, "cert": {"type": "path", "required": True}}
NODES: Spec = {"nodes": {"type": "list", "elements": "dict"}, "default_role": {"type": "str", "default": "worker"}}
NODE_ROLES: Spec = {"node_roles": {"type": "dict", "default": {"worker": {"services": []}}}}

GENERATIONS: Spec = {"dir": {"type": "str", "default": "netboot"}, "keep": {"type": "int", "default": 1},
                     "lock_timeout": {"type": "float", "default": 0}, "lock_stale": {"type": "int", "default": 1800},
                     "staging_dir": {"type": "path", "required": True}, "progress_log": {"type": "path"}}

# node_config's and prune_kernel's settings, which the image stage key (_stage.py) also reads
NODE: Spec = {
    "roles": {"type": "dict", "required": True}, "default_role": {"type": "str", "required": True},
    "boot_script": {"type": "path", "required": True},
    "authorized_keys": {"type": "list", "elements": "str", "default": [], "no_log": False},
    "nomad_servers": {"type": "list", "elements": "str", "default": []}, "init_scripts": {"type": "dict", "default": {}},
    "serial_tty": {"type": "str", "default": "ttyS0"},
}
PRUNE: Spec = {
    "kernel_version": {"type": "str"}, "keep_modules": {"type": "list", "elements": "str", "default": []},
    "profiles": {"type": "list", "elements": "str", "default": ["original", "headless", "n100"]},
    "hardware_profiles": {"type": "list", "elements": "str", "default": ["n100-i226", "n100-rtl8111"]},
    "hardware_mode": {"type": "str", "choices": ["select", "audit"], "default": "audit"},
    **{k: {"type": "str", "choices": ["keep", "decompress"], "default": "decompress"}
       for k in ("module_compression", "firmware_compression")},
    "firmware_audit": {"type": "str", "choices": ["error", "warn"], "default": "error"},
    "strip": {"type": "bool", "default": True},
    **{k: {"type": "list", "elements": "path", "default": []} for k in ("profile_dirs", "hardware_dirs")},
}


def with_defaults(spec: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with every option of ``spec`` it lacks (or gives as None) set to the spec's default."""
    return {**{k: o.get("default") for k, o in spec.items()}, **{k: v for k, v in params.items() if v is not None}}
