# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The one place that runs external commands.

Commands are argv lists (never shell strings). Every call is recorded so modules can report what ran; a failing
command raises ``CommandError`` carrying rc, stdout and stderr.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import CommandError, NetbootError


@dataclass
class Runner:
    """Runs commands and remembers them (for the module's ``commands`` result)."""

    log: list[str] = field(default_factory=list)

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        what: str | None = None,
        input_bytes: bytes | None = None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        args = [os.fspath(a) for a in argv]
        self.log.append(shlex.join(args))
        full_env = {"LC_ALL": "C", **os.environ, **(env or {})}
        try:
            proc = subprocess.run(
                args,
                cwd=cwd,
                env=full_env,
                input=input_bytes.decode() if input_bytes is not None else None,
                capture_output=True,
                text=True,
                errors="replace",
                check=False,
                timeout=timeout,
            )
        except FileNotFoundError as exc:
            raise NetbootError(f"cannot run {args[0]!r}: {exc.strerror}; install it or check the path") from exc
        except subprocess.TimeoutExpired as exc:
            raise CommandError(
                f"{what or args[0]} timed out after {timeout}s: {shlex.join(args)}", args, -1, "", str(exc)
            ) from exc
        if check and proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
            raise CommandError(
                f"{what or args[0]} failed (exit {proc.returncode}): {shlex.join(args)}\n" + "\n".join(tail),
                args,
                proc.returncode,
                proc.stdout,
                proc.stderr,
            )
        return proc
