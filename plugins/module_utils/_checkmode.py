"""Check mode across stages: what a stage says when the tree an earlier stage would make is not there yet.

``ansible-playbook playbooks/build.yml --check`` does not run any stage for real, so on a fresh directory the
image, kernel, initramfs and dist stages find no input. They must not fail: they report that they would run, say
why they cannot say more, and write nothing.
"""

from __future__ import annotations

import os


def missing_input(path: str | os.PathLike[str], would: str, producer: str) -> str | None:
    """``None`` when ``path`` exists; otherwise the message a stage in check mode reports instead of a plan."""
    if os.path.exists(path):
        return None
    return (f"would {would}; cannot say more: {os.fspath(path)} does not exist yet "
            f"(check mode did not run the {producer} stage that makes it)")
