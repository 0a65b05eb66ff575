# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""What a rootfs is built from and pinned to: the options (``RootfsSpec``, checked before anything runs), the
resolved packages (``Locked``), the lockfile document that pins them, and the one reader of the rootfs manifest.

The rootfs manifest has no ``format`` field: it ships in the image (and the initramfs), whose bytes must not change;
``builder`` (part of ``inputs_sha256``) versions it."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fetch import MAX_UNSIZED_BYTES
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import (
    load_json_object,
    read_json_object,
)

LOCK_FORMAT = 1
_RELEASE = re.compile(r"^(?:v?(\d+\.\d+)|(edge))$")
_PKG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+:-]*(?:[<>=~]{1,2}[A-Za-z0-9_.+-]+)?$")
DEFAULT_MIRROR = "https://dl-cdn.alpinelinux.org/alpine"
ROOTFS_MANIFEST = "etc/alpine-netboot/manifest.json"  # in the image: what alpine_rootfs built it from


def read_rootfs_manifest(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The rootfs manifest (``<root>/ROOTFS_MANIFEST``, or a path given), or None when there is none. Unreadable or
    damaged (not a JSON object) is an error naming the file: nothing can be trusted about that tree."""
    fix = f"delete {path} and run the rootfs stage again (playbooks/build.yml --tags rootfs) to rebuild the tree"
    return load_json_object(path, "the rootfs manifest", fix)


@dataclass(frozen=True)
class RootfsSpec:
    release: str
    arch: str
    mirrors: tuple[str, ...]
    repositories: tuple[str, ...]
    packages: tuple[str, ...]
    root: Path
    cache_dir: Path
    overlay_dir: Path | None = None
    extra_keys_dirs: tuple[Path, ...] = ()
    offline: bool = False
    lockfile: Path | None = None
    update_lock: bool = False
    apk_binary: str | None = None
    services: tuple[tuple[str, str], ...] = ()  # (runlevel, service) pairs enabled in OpenRC
    # alpine_max_package_bytes: a package whose signed size is above it is refused before its download starts
    max_package_bytes: int = MAX_UNSIZED_BYTES

    @property
    def release_dir(self) -> str:
        m = _RELEASE.match(self.release.strip())
        if not m:
            raise ConfigError(
                f"alpine_release {self.release!r} is not an Alpine release: use a version like '3.23' or 'edge'"
            )
        return f"v{m.group(1)}" if m.group(1) else "edge"

    def validate(self) -> None:
        _unused = self.release_dir  # raises ConfigError naming a bad alpine_release
        if not self.mirrors:
            raise ConfigError("alpine_mirror is empty: give at least one mirror URL")
        for m in self.mirrors:
            if not re.match(r"^(https?|file)://", m):
                raise ConfigError(f"alpine_mirror {m!r} must be an http://, https:// or file:// URL")
        if not self.repositories:
            raise ConfigError("alpine_repositories is empty: use at least [main]")
        for r in self.repositories:
            if not re.fullmatch(r"[a-z0-9_-]+", r):
                raise ConfigError(f"alpine_repositories entry {r!r} is not a repository name (main, community, ...)")
        if self.max_package_bytes < 1:
            raise ConfigError(f"alpine_max_package_bytes {self.max_package_bytes}: give a size in bytes above 0")
        if not self.packages:
            raise ConfigError("alpine_packages is empty: list the packages the image needs")
        bad = [p for p in self.packages if not _PKG.match(p)]
        if bad:
            raise ConfigError(f"alpine_packages has invalid entries: {', '.join(bad)}")
        if not self.root.is_absolute() or not self.cache_dir.is_absolute():
            raise ConfigError("root and cache_dir must be absolute paths")
        if self.root.resolve() in (Path("/"), self.cache_dir.resolve()):
            raise ConfigError(f"refusing to build a rootfs at {self.root}")

    def repo_dir(self, repo: str) -> Path:
        return self.cache_dir / "alpine" / self.release_dir / repo / self.arch

    def repo_urls(self, repo: str, filename: str) -> list[str]:
        return [f"{m.rstrip('/')}/{self.release_dir}/{repo}/{self.arch}/{filename}" for m in self.mirrors]


@dataclass(frozen=True)
class Locked:
    name: str
    version: str
    checksum: str
    repository: str
    size: int
    build_time: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def lock_document(spec: RootfsSpec, pkgs: list[Locked]) -> dict[str, Any]:
    return {
        "format": LOCK_FORMAT,
        "release": spec.release_dir,
        "arch": spec.arch,
        "repositories": list(spec.repositories),
        "requested": sorted(set(spec.packages)),
        "packages": [p.as_dict() for p in pkgs],
    }


def lock_differs(path: Path, doc: dict[str, Any]) -> bool:
    return read_json_object(path) != doc


def package_lines(pkgs: list[dict[str, Any]] | list[Locked]) -> list[str]:
    return sorted(f"{d['name']}-{d['version']}" for d in (p.as_dict() if isinstance(p, Locked) else p for p in pkgs))
