# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Files the collection ships outside ``plugins/`` (the kernel role's profiles, the ipxe role's template) and how
code finds them when it is not told where they are.

The files in ``roles/`` are the only copy. The roles pass their paths to the modules. Without a path, the
collection's own install is looked up through its Python package: that works when the package is a real directory
(this checkout, an ``ansible-galaxy collection install`` used directly from Python). A module that Ansible runs gets
``plugins/module_utils`` alone, zipped into its AnsiballZ payload, so there is nothing to find: the caller gets an
error naming the option to set instead of a silent fallback to some other copy.
"""

from __future__ import annotations

import importlib
from pathlib import Path

# ansible_collections.<namespace>.<name>: this file is <that>.plugins.module_utils.common._shipped
COLLECTION_PACKAGE = __name__.rsplit(".plugins.", 1)[0]
COLLECTION_MARKERS = ("galaxy.yml", "MANIFEST.json")  # a checkout / an installed collection

KERNEL_PROFILES = "roles/kernel/files/profiles"
KERNEL_HARDWARE = "roles/kernel/files/hardware"
IPXE_TEMPLATE = "roles/ipxe/templates/boot.ipxe.j2"


def collection_root() -> Path | None:
    """The installed collection's directory, or None when the package is not a directory on disk (AnsiballZ)."""
    try:
        package = importlib.import_module(COLLECTION_PACKAGE)
    except ImportError:
        return None
    for entry in list(getattr(package, "__path__", None) or []):
        path = Path(entry)
        if path.is_dir() and any((path / marker).is_file() for marker in COLLECTION_MARKERS):
            return path.resolve()
    return None


def shipped(rel: str) -> Path | None:
    """``rel`` (e.g. ``KERNEL_PROFILES``) inside the installed collection, or None when it cannot be found."""
    root = collection_root()
    if root is None or not (root / rel).exists():
        return None
    return root / rel


def how_to_pass(option: str, rel: str, role: str) -> str:
    """The fix to give when a shipped file is needed but ``shipped`` found nothing."""
    return (f"the collection's {rel} is not reachable from here (a module run by Ansible carries only "
            f"plugins/module_utils): set {option} to that path of the installed collection, as the "
            f"homelab.alpine_netboot.{role} role does")
