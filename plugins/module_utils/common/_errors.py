# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The project's error family.

Every failure a user can cause or fix raises a ``NetbootError`` (or a child) whose message names the file, package,
option or host at fault and says how to fix it. Modules turn these into ``fail_json(msg=...)``; anything else is a
bug and is left to surface as one.
"""

from __future__ import annotations


class NetbootError(Exception):
    """A failure with a message meant for the user."""

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class CommandError(NetbootError):
    """An external command failed."""

    def __init__(self, message: str, argv: list[str], rc: int, stdout: str, stderr: str) -> None:
        super().__init__(message, argv=argv, rc=rc, stdout=stdout, stderr=stderr)
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr


class SignatureError(NetbootError):
    """A signature, checksum or key did not verify."""


class FetchError(NetbootError):
    """A download failed on every mirror."""


class ConfigError(NetbootError):
    """An option or inventory variable is invalid."""


class PathEscapeError(NetbootError):
    """A path would read or write outside the root it belongs to."""


class UnpackError(NetbootError):
    """A package holds a member the project refuses to unpack (a device node, a link out of its root, ...)."""
