# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Action plugin of homelab.alpine_netboot.netboot_lock: the build lock, held for the ansible-playbook process.

The logic is module_utils/common/_lock.py; this runs on the controller (in the worker forked from ansible-playbook), finds
the playbook process and leaves a keeper holding the lock until that process exits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._lock import (
    Holder,
    LockHeld,
    is_held,
    keep,
    lock_file,
    playbook_name,
    playbook_process,
    read_holder,
)


class ActionModule(ActionBase):  # type: ignore[misc]  # ansible has no type information
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("paths", "timeout"))

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        args = self._task.args
        raw = args.get("paths") or []
        if isinstance(raw, str):
            raw = [raw]
        paths = [Path(os.path.abspath(os.path.expanduser(str(p)))) for p in raw]
        if not paths:
            return {**result, "failed": True, "msg": "netboot_lock: give the paths to lock (paths)"}
        try:
            timeout = float(args.get("timeout") or 0)
        except (TypeError, ValueError):
            return {**result, "failed": True, "msg": f"netboot_lock_timeout {args.get('timeout')!r}: give seconds"}
        pid = playbook_process(os.getpid())
        result["lock_files"] = [str(lock_file(p)) for p in paths]
        result["commands"] = []
        if self._task.check_mode:  # check mode only reads: who holds it, if anyone
            held = {str(p): read_holder(p) for p in paths if is_held(p)}
            result["held_by"] = {p: (h.describe() if h else "unknown") for p, h in held.items()}
            result["changed"] = False
            if held:
                result.setdefault("warnings", []).extend(
                    f"{p} is locked by {h.describe() if h else 'another run'}: a build is running, so what this "
                    "check reads may change under it" for p, h in held.items()
                )
            return result
        holder = Holder.for_process(pid, playbook_name(pid), paths)
        try:
            recorded, warnings = keep(paths, holder, timeout=timeout)
        except LockHeld as e:
            return {**result, "failed": True, "msg": str(e)}
        except OSError as e:
            return {**result, "failed": True, "msg": f"cannot take the build lock: {e}"}
        if warnings:
            result.setdefault("warnings", []).extend(warnings)
        result.update(changed=False, holder=recorded.__dict__ | {"paths": list(recorded.paths)})
        return result
