# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Check mode and diff mode across stages.

``ansible-playbook playbooks/build.yml --check`` does not run any stage for real, so on a fresh directory the
image, kernel, initramfs and dist stages find no input. They must not fail: they report that they would run, say
why they cannot say more, and write nothing (:func:`exit_if_missing`). A stage's result carries its warnings and
its diff; :func:`stage_result` hands the warnings to Ansible and keeps the diff only in diff mode (:func:`text_diff`
makes the usual one).

:func:`exit_if_missing` takes anything shaped like an ``AnsibleModule`` (:class:`StageModule`), so this file
imports nothing of Ansible's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NoReturn, Protocol


class StageModule(Protocol):
    """What :func:`exit_if_missing` uses of an ``AnsibleModule``."""

    check_mode: bool

    def exit_json(self, **kwargs: Any) -> NoReturn: ...


def missing_input(path: str | os.PathLike[str], would: str, producer: str) -> str | None:
    """``None`` when ``path`` exists; otherwise the message a stage in check mode reports instead of a plan."""
    if os.path.exists(path):
        return None
    return (f"would {would}; cannot say more: {os.fspath(path)} does not exist yet "
            f"(check mode did not run the {producer} stage that makes it)")


def exit_if_missing(module: StageModule, path: str | os.PathLike[str], would: str, producer: str, *,
                    changed: bool = True, **result: Any) -> None:
    """In check mode with ``path`` missing, exit the module: ``changed``, no commands, :func:`missing_input`'s message.

    ``result`` adds the keys the module always returns (e.g. ``dest``); outside check mode this does nothing.
    """
    msg = missing_input(path, would, producer) if module.check_mode else None
    if msg:
        module.exit_json(changed=changed, commands=[], msg=msg, **result)


def stage_result(result: dict[str, Any], *, diff: bool, warn: Callable[[str], None]) -> dict[str, Any]:
    """A stage's ``result`` as the module returns it: ``warnings`` handed to ``warn``, ``diff`` kept only if ``diff``.

    ``_deps.stage`` calls it on every module's result (and on a failed one's result so far).
    """
    for warning in result.pop("warnings", ()):
        warn(warning)
    changes = result.pop("diff", None)
    if diff and changes is not None:
        result["diff"] = changes
    return result


def text_diff(header: str, before: str, after: str, after_header: str | None = None) -> dict[str, str]:
    """Ansible's diff of a text (a file, a listing) before and after, both under ``header`` unless ``after_header``."""
    return {"before": before, "after": after, "before_header": header, "after_header": after_header or header}
