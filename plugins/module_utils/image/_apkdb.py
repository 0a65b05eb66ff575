# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""apk's installed database (``lib/apk/db/installed``) with every field the ledger and the SBOM need.

One block per package, blank-line separated, ``X:value`` lines (apk-tools ``doc/apk-package.5``): ``P`` name,
``V`` version, ``A`` arch, ``C`` checksum (``Q1`` + base64 SHA-1 of the control segment), ``L`` license, ``o``
origin (source package), ``U`` URL, ``T`` description, ``I`` installed size, ``t`` build time, ``c`` aports commit;
``F`` starts a directory and each following ``R`` is a file in it.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError

INSTALLED_DB = "lib/apk/db/installed"


@dataclass(frozen=True)
class InstalledPackage:
    name: str
    version: str
    arch: str = ""
    checksum: str = ""
    license: str = ""
    origin: str = ""
    url: str = ""
    description: str = ""
    installed_size: int = 0
    build_time: int | None = None
    commit: str = ""
    files: tuple[str, ...] = field(default=(), repr=False)

    def checksum_sha1_hex(self) -> str | None:
        """The ``C:`` checksum as hex SHA-1 (``Q1`` + base64), or None for another form."""
        if not self.checksum.startswith("Q1"):
            return None
        try:
            raw = base64.b64decode(self.checksum[2:], validate=True)
        except (binascii.Error, ValueError):
            return None
        return raw.hex() if len(raw) == 20 else None


def blocks(text: str) -> Iterator[list[tuple[str, str]]]:
    """Each package block's ``X:value`` lines as (key, value), in order; other lines are skipped."""
    for block in text.split("\n\n"):
        lines = [(k, v) for k, sep, v in (line.partition(":") for line in block.splitlines()) if sep and len(k) == 1]
        if lines:
            yield lines


def parse_installed(text: str) -> list[InstalledPackage]:
    """Every package block of an installed database, sorted by name (the first of a repeated field counts)."""
    out: list[InstalledPackage] = []
    for lines in blocks(text):
        fields: dict[str, str] = {}
        files: list[str] = []
        directory = ""
        for key, value in lines:
            if key == "F":
                directory = value
            elif key == "R":
                files.append(f"{directory}/{value}" if directory else value)
            elif key not in fields:
                fields[key] = value
        if "P" not in fields:
            continue
        t = fields.get("t", "")
        size = fields.get("I", "")
        out.append(InstalledPackage(
            name=fields["P"], version=fields.get("V", ""), arch=fields.get("A", ""), checksum=fields.get("C", ""),
            license=fields.get("L", ""), origin=fields.get("o", ""), url=fields.get("U", ""),
            description=fields.get("T", ""), installed_size=int(size) if size.isdigit() else 0,
            build_time=int(t) if t.isdigit() else None, commit=fields.get("c", ""), files=tuple(files),
        ))
    return sorted(out, key=lambda p: p.name)


def read_installed(root: str | os.PathLike[str]) -> list[InstalledPackage]:
    """The packages installed in the tree ``root``; a missing database is an error naming the file."""
    path = Path(root, INSTALLED_DB)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError as exc:
        raise NetbootError(f"{path} does not exist: {root} is not an apk-built tree; build the rootfs stage first") from exc
    except OSError as exc:
        raise NetbootError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_installed(text)


# Kernel modules and firmware lose their compression suffix when prune_kernel decompresses them.
_SUFFIXES = (".gz", ".xz", ".zst")


def owner_map(packages: Iterable[InstalledPackage]) -> dict[str, str]:
    """Path (relative, no leading slash) -> owning package name."""
    owners: dict[str, str] = {}
    for pkg in packages:
        for rel in pkg.files:
            owners.setdefault(rel, pkg.name)
    return owners


def owner_of(owners: dict[str, str], rel: str) -> str | None:
    """The package owning ``rel``, also when prune_kernel removed a ``.gz``/``.xz``/``.zst`` suffix."""
    return next((owners[rel + suffix] for suffix in ("", *_SUFFIXES) if rel + suffix in owners), None)


def parse_pkginfo(text: str) -> dict[str, list[str]]:
    """A package's ``.PKGINFO``: key -> its values (``depend`` and others repeat)."""
    info: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        k, sep, v = line.partition(" = ")
        if sep:
            info.setdefault(k.strip(), []).append(v.strip())
    return info
