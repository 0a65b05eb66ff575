# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Building an Alpine rootfs from signed repositories through a local partial mirror (``cache/``).

Plan (pure, no writes outside a scratch dir) -> apply (build beside the old rootfs, then swap). The cache holds, per
repository, the upstream signed ``APKINDEX.tar.gz`` and every ``.apk`` the build needs, each verified before it is
renamed into place; installs always come from that local mirror, so an offline rebuild resolves and installs exactly
the same bytes. A JSON lockfile pins the resolved set.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import (
    CommandError,
    ConfigError,
    FetchError,
    NetbootError,
    SignatureError,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fetch import (
    MAX_INDEX_BYTES,
    Fetcher,
    clean_partials,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import (
    atomic_write_bytes,
    dump_json,
    load_json_object,
    replacing_dir,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apk import (
    Apk,
    ApkContext,
    apk_refusals,
    bootstrap_static,
    suspect_members,
    user_apk,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apkformat import (
    PKG_NAME,
    PKG_VERSION,
    Index,
    IndexEntry,
    Keyring,
    read_index,
    verify_package,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._overlay import copy_overlay, overlay_digest
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._rootfs_spec import (
    LOCK_FORMAT,
    ROOTFS_MANIFEST,
    Locked,
    RootfsSpec,
    lock_differs,
    lock_document,
    package_lines,
    read_rootfs_manifest,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._rootfs_tree import finish_tree, seed_tree

BUILDER_VERSION = "1"  # bump when the way a rootfs is assembled changes (forces a rebuild)


@dataclass
class Outcome:
    changed: bool
    packages: list[Locked]
    manifest: dict[str, Any]
    before: list[str]
    after: list[str]
    to_fetch: list[str] = field(default_factory=list)
    lock_changed: bool = False
    warnings: list[str] = field(default_factory=list)
    overlay_files: list[str] = field(default_factory=list)


class Builder:
    def __init__(self, spec: RootfsSpec, runner: Runner, fetcher: Fetcher, check_mode: bool = False) -> None:
        spec.validate()
        self.spec = spec
        self.runner = runner
        self.fetcher = fetcher
        self.check_mode = check_mode
        self.warnings: list[str] = []
        self.keyring = Keyring.for_arch(spec.arch, spec.extra_keys_dirs)
        self.indexes: dict[str, Index] = {}
        self.index_dirs: dict[str, Path] = {}  # repo -> dir apk reads <arch>/APKINDEX.tar.gz from
        self._apk: Apk | None = None
        self._scratch = Path(tempfile.mkdtemp(prefix="alpine-rootfs-"))

    def close(self) -> None:
        shutil.rmtree(self._scratch, ignore_errors=True)

    # ---------------------------------------------------------------------------------------------- indexes
    def load_indexes(self) -> None:
        for repo in self.spec.repositories:
            cached = self.spec.repo_dir(repo) / "APKINDEX.tar.gz"
            clean_partials(cached.parent)
            if not self.spec.offline:
                dest = self._scratch / "index" / repo / self.spec.arch / "APKINDEX.tar.gz" if self.check_mode else cached
                try:
                    self.indexes[repo] = self.fetcher.fetch(
                        self.spec.repo_urls(repo, "APKINDEX.tar.gz"),
                        dest,
                        lambda p: read_index(p, self.keyring),
                        f"the {repo} index of Alpine {self.spec.release} ({self.spec.arch})",
                        max_size=MAX_INDEX_BYTES,
                    )
                    self.index_dirs[repo] = dest.parent.parent
                    continue
                except FetchError as exc:
                    if exc.details.get("rejected") or not cached.is_file():
                        raise self._explain_fetch(exc, repo) from exc
                    self.warnings.append(f"{exc}\nusing the cached index {cached} instead")
            if not cached.is_file():
                raise FetchError(
                    f"no cached index for repository {repo!r} of Alpine {self.spec.release} ({cached}) and "
                    f"netboot_offline is true: run the build online once to fill {self.spec.cache_dir}"
                )
            self.indexes[repo] = read_index(cached, self.keyring)
            self.index_dirs[repo] = cached.parent.parent

    def _explain_fetch(self, exc: FetchError, repo: str) -> NetbootError:
        text = str(exc)
        statuses = exc.details.get("statuses")
        if isinstance(statuses, list) and statuses and all(s == 404 for s in statuses):
            return ConfigError(
                f"no {repo} repository for alpine_release {self.spec.release!r} / alpine_arch {self.spec.arch!r} on "
                f"any mirror (HTTP 404): check the release, arch and alpine_repositories.\n{text}"
            )
        return exc

    def find(self, name: str, version: str) -> tuple[str, IndexEntry] | None:
        for repo in self.spec.repositories:
            for e in self.indexes[repo].by_name().get(name, []):
                if e.version == version:
                    return repo, e
        return None

    # ----------------------------------------------------------------------------------------- resolution
    def read_lock(self) -> dict[str, Any] | None:
        lf = self.spec.lockfile
        if lf is None or not lf.is_file():
            return None
        data = load_json_object(lf, "lockfile", "fix it or delete it to re-resolve", error=ConfigError)
        if data is None or data.get("format") != LOCK_FORMAT or not isinstance(data.get("packages"), list):
            raise ConfigError(f"lockfile {lf} has an unknown format; delete it or set alpine_update_lock: true")
        return data

    def _locked(self, item: object) -> Locked:
        """One lockfile entry; its name, version and repository become paths under cache/, so they are checked."""
        lf = self.spec.lockfile
        try:
            pkg = Locked(**item) if isinstance(item, dict) else None
        except TypeError:
            pkg = None
        if (
            pkg is None
            or not PKG_NAME.fullmatch(str(pkg.name))
            or not PKG_VERSION.fullmatch(str(pkg.version))
            or pkg.repository not in self.spec.repositories
        ):
            raise ConfigError(
                f"lockfile {lf}: entry {item!r} is not a package of alpine_repositories (name, version, checksum, "
                f"repository, size); delete the lockfile or set alpine_update_lock: true"
            )
        return pkg

    def lock_matches(self, lock: dict[str, Any]) -> str | None:
        """None when the lock fits the request; else why it does not."""
        for k, v in lock_document(self.spec, []).items():
            if k not in ("format", "packages") and lock.get(k) != v:
                return f"{k} changed ({lock.get(k)!r} -> {v!r})"
        return None

    def resolve(self) -> list[Locked]:
        apk = self.apk()
        ctx = self._apk_context(self._scratch / "resolve")
        selected = apk.resolve(ctx, sorted(set(self.spec.packages)))
        out = []
        for name, version in selected:
            hit = self.find(name, version)
            if hit is None:
                raise NetbootError(f"apk selected {name}-{version} but no configured index lists it")
            repo, e = hit
            out.append(Locked(name, version, e.checksum, repo, e.size, e.build_time))
        return sorted(out, key=lambda p: p.name)

    def packages(self) -> tuple[list[Locked], bool]:
        """The package set to install, and whether the lockfile must be (re)written."""
        lock = self.read_lock()
        if lock is not None and not self.spec.update_lock:
            why = self.lock_matches(lock)
            if why is None:
                return [self._locked(p) for p in lock["packages"]], False
            self.warnings.append(f"lockfile {self.spec.lockfile}: {why}; re-resolving and rewriting it")
        return self.resolve(), self.spec.lockfile is not None

    # ---------------------------------------------------------------------------------------------- apk
    def _apk_context(self, root: Path) -> ApkContext:
        keys = self._scratch / "keys"
        if not keys.is_dir():
            self.keyring.write(keys)
        repos = self._scratch / "repositories"
        repos.write_text("".join(f"{self.index_dirs[r]}\n" for r in self.spec.repositories))
        return ApkContext(root.absolute(), keys.absolute(), repos.absolute(), self.spec.arch)

    def apk(self) -> Apk:
        if self._apk is None:
            self._apk = user_apk(self.runner, self.spec.apk_binary) if self.spec.apk_binary else self._bootstrap()
        return self._apk

    def _bootstrap(self) -> Apk:
        main = "main" if "main" in self.indexes else self.spec.repositories[0]
        entries = self.indexes[main].by_name().get("apk-tools-static", [])
        if not entries:
            raise NetbootError(
                f"the {main} index of Alpine {self.spec.release} has no apk-tools-static package to bootstrap apk "
                f"from; set alpine_apk_binary to an apk you trust"
            )
        entry = max(entries, key=lambda e: e.build_time)
        path = self.ensure_package(main, entry, scratch=self.check_mode)
        tools = (self._scratch / "apk-tools") if self.check_mode else self.spec.cache_dir / "apk-tools"
        return bootstrap_static(self.runner, self.keyring, entry, path, tools)

    # ------------------------------------------------------------------------------------------- packages
    def ensure_package(self, repo: str, entry: IndexEntry, *, scratch: bool = False) -> Path:
        """A verified copy of the package in the local mirror, fetching it when needed."""
        cached = self.spec.repo_dir(repo) / entry.filename
        if cached.is_file():
            try:
                verify_package(cached, self.keyring, entry)
                return cached
            except SignatureError as exc:
                cached.unlink()
                if self.spec.offline:
                    raise SignatureError(
                        f"cached {cached} failed verification and was removed from the cache: {exc}. "
                        f"Run online (netboot_offline: false) to fetch a good copy"
                    ) from exc
                self.warnings.append(f"cached {cached} failed verification ({exc}); removed it and fetching again")
        if entry.size > self.spec.max_package_bytes:
            raise NetbootError(
                f"package {entry.name}-{entry.version} ({repo}): the signed index gives it {entry.size} bytes "
                f"({entry.size / (1 << 30):.2f} GiB), above alpine_max_package_bytes {self.spec.max_package_bytes} "
                f"bytes ({self.spec.max_package_bytes / (1 << 30):.2f} GiB); nothing was downloaded. If the package "
                "is really that big, raise alpine_max_package_bytes"
            )
        dest = (self._scratch / "pkgs" / entry.filename) if scratch else cached
        self.fetcher.fetch(
            self.spec.repo_urls(repo, entry.filename),
            dest,
            lambda p: verify_package(p, self.keyring, entry),
            f"package {entry.name}-{entry.version} ({repo})",
            size=entry.size if entry.size > 0 else None,
            max_size=self.spec.max_package_bytes,
        )
        return dest

    def entry_for(self, pkg: Locked) -> IndexEntry | Path:
        """The index entry to fetch a locked package by, or the cached file when only the cache still has it."""
        hit = self.find(pkg.name, pkg.version)
        if hit is not None and hit[1].checksum == pkg.checksum:
            return hit[1]
        cached = self.spec.repo_dir(pkg.repository) / f"{pkg.name}-{pkg.version}.apk"
        if cached.is_file():
            stub = IndexEntry(pkg.name, pkg.version, self.spec.arch, pkg.checksum, pkg.size, 0, pkg.build_time)
            try:
                verify_package(cached, self.keyring, stub)
                return cached
            except SignatureError as exc:
                cached.unlink()
                raise SignatureError(
                    f"cached {cached} does not match the lockfile ({exc}); it was removed from the cache"
                ) from exc
        offered = sorted({e.version for r in self.spec.repositories for e in self.indexes[r].by_name().get(pkg.name, [])})
        if hit is not None:
            why = f"repository {pkg.repository} now has {pkg.version} with checksum {hit[1].checksum}, not the locked {pkg.checksum}"
        else:
            why = f"the repositories offer {', '.join(offered) or 'no version of it'}"
        raise NetbootError(
            f"package {pkg.name} is locked at {pkg.version} but {why}, and {cached} is not cached; "
            f"set alpine_update_lock: true to re-resolve (or restore the cache)"
        )

    # ---------------------------------------------------------------------------------------------- plan
    def plan(self) -> tuple[list[Locked], bool, dict[str, Any], list[str]]:
        self.load_indexes()
        pkgs, lock_dirty = self.packages()
        missing = []
        for p in pkgs:
            src = self.entry_for(p)
            if isinstance(src, IndexEntry) and not (self.spec.repo_dir(p.repository) / src.filename).is_file():
                missing.append(f"{p.name}-{p.version}")
        return pkgs, lock_dirty, self.manifest(pkgs), missing

    def manifest(self, pkgs: list[Locked]) -> dict[str, Any]:
        newest = max((p.build_time for p in pkgs), default=0)
        inputs = {
            "builder": BUILDER_VERSION,
            "release": self.spec.release_dir,
            "arch": self.spec.arch,
            "repositories": list(self.spec.repositories),
            "mirrors": list(self.spec.mirrors),  # the image's /etc/apk/repositories points at the first
            "requested": sorted(set(self.spec.packages)),
            "packages": [p.as_dict() for p in pkgs],
            "keys": self.keyring.fingerprints(),
            "overlay": overlay_digest(self.spec.overlay_dir) if self.spec.overlay_dir else "",
            "services": sorted(f"{lvl}/{svc}" for lvl, svc in self.spec.services),
        }
        digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
        return {
            **inputs,
            "source_date_epoch": newest,
            # build time of a reproducible build: the newest package's build time (SOURCE_DATE_EPOCH)
            "build_time": newest,
            "inputs_sha256": digest,
        }

    # --------------------------------------------------------------------------------------------- apply
    def apply(self, pkgs: list[Locked], manifest: dict[str, Any]) -> list[str]:
        require_root()
        targets: list[str] = []
        for p in pkgs:
            src = self.entry_for(p)
            if isinstance(src, IndexEntry):
                self.ensure_package(p.repository, src)
                targets.append(f"{p.name}={p.version}")
            else:
                targets.append(str(src))
        apk = self.apk()
        root = self.spec.root
        with replacing_dir(root) as new:
            try:
                seed_tree(new)
                try:
                    apk.install(self._apk_context(new), targets)
                except CommandError as exc:
                    raise self._refused(exc, pkgs) from exc
                finish_tree(new, self.spec, self.keyring, int(manifest["source_date_epoch"]), self.warnings)
                overlay = copy_overlay(self.spec.overlay_dir, new) if self.spec.overlay_dir else None
                atomic_write_bytes(new / ROOTFS_MANIFEST, dump_json(manifest, ensure_ascii=True))
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise NetbootError(
                        f"no space left on device while building {new}; free space on {root.parent} or set "
                        f"netboot_build_dir elsewhere (the previous rootfs is untouched)"
                    ) from exc
                raise
        return overlay.files if overlay else []

    def _refused(self, exc: CommandError, pkgs: list[Locked]) -> CommandError:
        """apk refused package(s) while unpacking: name each with the member at fault and evict it from the cache,
        so the next online run fetches it again (the rootfs being built is dropped, the old one is untouched)."""
        by_nv = {f"{p.name}-{p.version}": p for p in pkgs}
        refused = apk_refusals(exc.stdout + "\n" + exc.stderr, list(by_nv))
        if not refused:
            return exc
        lines = []
        for nv, why in sorted(refused.items()):
            p = by_nv[nv]
            cached = self.spec.repo_dir(p.repository) / f"{nv}.apk"
            member = ""
            if ": " not in why and cached.is_file():  # apk did not say which member: find it ourselves
                stub = IndexEntry(p.name, p.version, self.spec.arch, p.checksum, p.size, 0, p.build_time)
                try:
                    found = suspect_members(cached, self.keyring, stub)
                except NetbootError:
                    found = []
                member = f"; member {', '.join(found)}" if found else ""
            evicted = ""
            with contextlib.suppress(FileNotFoundError):
                cached.unlink()
                evicted = f"; {cached} was removed from the cache, the next online run fetches it again"
            lines.append(f"apk refused package {nv}: {why}{member}{evicted}")
        return CommandError(
            "\n".join(lines) + f"\n(the rootfs {self.spec.root} was left as it was)", exc.argv, exc.rc, exc.stdout,
            exc.stderr,
        )


def require_root() -> None:
    if os.geteuid() != 0:
        raise NetbootError(
            "alpine_rootfs must run as root: apk runs the packages' install scripts chrooted into the rootfs "
            "and sets file ownership. Run the playbook with sudo (or become: true on localhost)"
        )


def build(spec: RootfsSpec, runner: Runner, fetcher: Fetcher, check_mode: bool) -> Outcome:
    if not check_mode:
        require_root()
    builder = Builder(spec, runner, fetcher, check_mode)
    try:
        pkgs, lock_dirty, manifest, missing = builder.plan()
        current = read_rootfs_manifest(spec.root / ROOTFS_MANIFEST)
        before = package_lines(current.get("packages", [])) if current else []
        after = package_lines(pkgs)
        changed = current is None or current.get("inputs_sha256") != manifest["inputs_sha256"]
        lock_doc = lock_document(spec, pkgs)
        # the lock is rewritten only when the set was (re)resolved, never just because its text was edited
        lock_changed = spec.lockfile is not None and lock_dirty and lock_differs(spec.lockfile, lock_doc)
        overlay_files: list[str] = []
        if not check_mode:
            if changed:
                overlay_files = builder.apply(pkgs, manifest)
            if lock_changed and spec.lockfile is not None:
                atomic_write_bytes(spec.lockfile, dump_json(lock_doc, ensure_ascii=True))
        return Outcome(changed=changed or lock_changed, packages=pkgs, manifest=manifest, before=before, after=after,
                       to_fetch=missing, lock_changed=lock_changed, warnings=builder.warnings,
                       overlay_files=overlay_files)
    finally:
        builder.close()
