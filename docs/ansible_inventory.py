"""Write a Sphinx inventory of the few labels of Ansible's own documentation that the generated module and role
pages refer to, and point the docsite's conf.py at it alone, so that ``make docs`` resolves them to docs.ansible.com
without fetching anything. Usage: ansible_inventory.py DOCSITE (the directory ``antsibull-docs sphinx-init`` made).
A label missing here fails the strict Sphinx build, naming it: add it with its page and title."""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

BASE = "https://docs.ansible.com/projects/ansible/devel/"
LABELS = {  # label -> (page below BASE, title)
    "common_return_values": ("reference_appendices/common_return_values.html", "Return Values"),
    "action_plugins": ("plugins/action.html", "Action plugins"),
    "ansible_configuration_settings": ("reference_appendices/config.html", "Ansible Configuration Settings"),
}


def main(docsite: str) -> None:
    inventory = Path(docsite).resolve() / "ansible_devel.inv"
    body = "".join(f"{label} std:label -1 {page} {title}\n" for label, (page, title) in sorted(LABELS.items()))
    head = "# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n" \
           "# The remainder of this file is compressed using zlib.\n"
    inventory.write_bytes(head.encode() + zlib.compress(body.encode()))
    with (inventory.parent / "conf.py").open("a") as conf:  # replaces the mapping to the internet sphinx-init wrote
        conf.write(f"\nintersphinx_mapping = {{'ansible_devel': ({BASE!r}, {str(inventory)!r})}}\n")


if __name__ == "__main__":
    main(sys.argv[1])
