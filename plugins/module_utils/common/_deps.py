# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Third-party Python libraries the collection's module_utils need, guarded the way Ansible guards them.

A module_utils file imports one at top level in ``try: import zstandard`` / ``except ImportError:
_deps.missing("zstandard")``, or, importing it only inside the function that uses it (heavy or rarely needed),
declares it at top level with ``_deps.lazy("paramiko")``. Either way the file stays importable without it
(ansible-doc, ansible-test's import sanity test, a host that lacks it), and ``fail_if_missing(module)``, called
right after ``AnsibleModule(...)`` by :func:`stage`, which is every module's ``main()`` (README "Writing a module"),
fails the task with Ansible's ``missing_required_lib`` message naming what to pip install, before any work is done.
Which libraries a module needs follows from what it imports; nothing else lists them. :func:`stage` then runs the
module's work, turning the project's errors into the task's failure, and exits the module with its result.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import traceback
from collections.abc import Iterator
from typing import Any, NoReturn, Protocol

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._checkmode import stage_result
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import IMAGE_UMASK
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner

# Import name -> the distribution to pip install (versions pinned in the collection's requirements.txt).
REQUIREMENTS: dict[str, str] = {
    "cryptography": "cryptography",
    "cyclonedx": "cyclonedx-python-lib[json-validation]",
    "jinja2": "Jinja2",
    "librouteros": "librouteros",
    "paramiko": "paramiko",
    "yaml": "PyYAML",
    "zstandard": "zstandard",
}

_MISSING: dict[str, str] = {}  # import name -> traceback (or reason) of the failed import


def missing(name: str) -> None:
    """Record that importing ``name`` failed; call it from the ``except ImportError`` of a guarded import."""
    _MISSING[name] = traceback.format_exc()


def lazy(name: str) -> None:
    """Declare a library imported later inside functions; recorded as missing now if it cannot be found."""
    if name not in _MISSING and importlib.util.find_spec(name) is None:
        _MISSING[name] = f"ModuleNotFoundError: No module named {name!r}\n"


def missing_libraries() -> list[tuple[str, str]]:
    """(pip requirement, traceback) of every library the imported module_utils need but could not import."""
    return [(REQUIREMENTS.get(name, name), _MISSING[name]) for name in sorted(_MISSING)]


class FailingModule(Protocol):
    """What this file needs of an ``AnsibleModule`` (it imports Ansible only to fail)."""

    def fail_json(self, msg: str, **kwargs: Any) -> NoReturn: ...


def fail_if_missing(module: FailingModule) -> None:
    """Fail the module, naming the first missing library to pip install (with its traceback), if any is missing."""
    missing = missing_libraries()
    if missing:
        from ansible.module_utils.basic import missing_required_lib  # imported only by a module that fails here

        library, trace = missing[0]
        module.fail_json(msg=missing_required_lib(library), exception=trace)


@contextlib.contextmanager
def stage(argument_spec: dict[str, Any], runner: Runner | None = None, *, diff: bool = False, image: bool = False,
          **options: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A module's ``main()``: ``with stage(ARGUMENT_SPEC, supports_check_mode=True) as (module, result):``.

    Makes the ``AnsibleModule`` (``options`` are its other arguments) and runs :func:`fail_if_missing` at once. The
    block fills ``result``, the dict the module returns; leaving it exits the module, and a ``NetbootError`` raised in
    it fails the task with its message and the result so far (anything else is a bug and surfaces as one). Either
    way ``result`` goes out as :func:`stage_result` shapes it (warnings handed to Ansible; the diff kept in diff mode
    if ``diff``: the module returns one) with ``commands``, ``runner``'s log unless the block set its own.
    ``image``: the work writes into an image tree, so files are made with ``IMAGE_UMASK``.
    """
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(argument_spec=argument_spec, **options)
    fail_if_missing(module)
    if image:
        os.umask(IMAGE_UMASK)
    result: dict[str, Any] = {}

    def returned() -> dict[str, Any]:
        shaped = stage_result(result, diff=diff and module._diff, warn=module.warn)
        return {"commands": runner.log if runner else [], **shaped}

    try:
        yield module, result
    except NetbootError as exc:
        module.fail_json(msg=str(exc), **returned())
    module.exit_json(**returned())
