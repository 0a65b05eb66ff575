# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""dist/ as a deploy reads it (its SHA256SUMS, the snapshot the upload sends) and the scripts the router serves.

A generation ``g-<12 hex>`` is named by the sha256 of dist's ``SHA256SUMS``; its ``generation.ipxe`` is dist's
``boot.ipxe`` rendered again from its boot record with every tftp:// server's ``set base`` pointing into it and
``netboot_generation`` set; a dispatcher
chains some MACs to a staged generation's script and every other client to the live one's (``_deploy``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _ipxe
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import atomic_write_bytes, sha256_file

OWNER = "homelab.alpine_netboot"
STABLE_REQUEST = "boot.ipxe"
GENERATION_SCRIPT = "generation.ipxe"
SUMS = "SHA256SUMS"
GEN_RE = re.compile(r"^g-[0-9a-f]{12}$")
RECORD = _ipxe.record_path(STABLE_REQUEST).name  # boot.ipxe's boot record, published beside it
DISPATCH_DIR = "dispatch"
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
GENERATION_VAR = "netboot_generation"  # set by generation.ipxe; boot.ipxe passes it as netboot.generation=


class DeployError(NetbootError):
    """The deploy was refused or failed; the message says what is unchanged and how to fix it."""


@dataclass(frozen=True)
class Artefact:
    name: str
    size: int
    sha256: str
    local: Path


@dataclass(frozen=True)
class Dist:
    path: Path
    generation: str
    artefacts: tuple[Artefact, ...]

    @property
    def total(self) -> int:
        return sum(a.size for a in self.artefacts)


def parse_sums(text: str, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = re.match(r"^([0-9a-f]{64}) [ *](.+)$", line)
        if not m or "/" in m.group(2) or m.group(2).startswith("."):
            raise DeployError(f"{where} line {n}: not a 'sha256  name' line for a file in dist/: {line!r}")
        out[m.group(2)] = m.group(1)
    return out


def generation_id(sums: bytes) -> str:
    return "g-" + hashlib.sha256(sums).hexdigest()[:12]


def generation_script(record: Mapping[str, Any], generation: str) -> str:
    """dist's boot.ipxe rendered again from its boot ``record`` with each tftp:// server's ``set base`` pointing
    into ``generation``."""
    body = _ipxe.render(record, base=lambda url: f"{url}/{generation}" if url.startswith("tftp://") else url)
    if body == _ipxe.render(record):
        raise DeployError("boot.ipxe names no tftp:// boot server (its 'set base {{ base(url) }}' lines): the RB4011 "
                          "serves the artefacts over TFTP, so build with boot_server_url: tftp://<router address> (a "
                          "list may add HTTP fallbacks)")
    first, _unused, rest = body.partition("\n")
    return (f"{first}\n# {OWNER} generation {generation}: artefact URLs point into the generation directory.\n"
            f"set {GENERATION_VAR} {generation}\n{rest}")


def normal_mac(mac: str) -> str:
    """``52-54-00-AA-BB-01`` / ``52:54:00:aa:bb:01`` -> ``52:54:00:aa:bb:01``; ConfigError otherwise."""
    out = str(mac).strip().lower().replace("-", ":")
    if not MAC_RE.match(out):
        raise ConfigError(f"{mac!r} is not a MAC address (give it as 52:54:00:aa:bb:01)")
    return out


def dispatch_script(live: str, staged: str, macs: Iterable[str]) -> str:
    """The stable boot.ipxe while a roll runs: ``macs`` chain ``staged``'s generation.ipxe, every other client the
    live one's (relative URLs: the same server and protocol as this script)."""
    wanted = sorted({normal_mac(m) for m in macs})
    lines = ["#!ipxe",
             f"# {OWNER} dispatch: {len(wanted)} MAC(s) boot the staged generation {staged}, every other client "
             f"the live {live} (update_herd.yml).",
             "goto mac_${netX/mac:hexraw} || goto live"]
    for mac in wanted:
        lines += ["", f":mac_{mac.replace(':', '')}", f"chain --autofree {staged}/{GENERATION_SCRIPT} || goto live"]
    lines += ["", ":live", f"chain --autofree {live}/{GENERATION_SCRIPT}", ""]
    return "\n".join(lines)


def dispatch_path(rb_dir: str, live: str, staged: str, script: str) -> str:
    return f"{rb_dir}/{DISPATCH_DIR}/{live}.{staged}.{hashlib.sha256(script.encode()).hexdigest()[:12]}.ipxe"


def dispatch_macs(script: str) -> list[str]:
    """The MACs a dispatcher sends to the staged generation (``dispatch_script`` read back)."""
    return [":".join(m[i:i + 2] for i in range(0, 12, 2)) for m in re.findall(r"^:mac_([0-9a-f]{12})$", script, re.M)]


SNAPSHOT_DIR = "dist-snapshot"
SNAPSHOT_TRIES = 3


class DistChanged(DeployError):
    """dist/ changed while it was being read (a build published a new one)."""


def read_dist(dist_dir: Path, staging: Path) -> Dist:
    """Snapshot dist/ into ``staging/dist-snapshot/<generation>`` and check it against its SHA256SUMS.

    dist/ is opened once as a directory and every file is taken from that directory (hardlinked, else copied): a
    build swapping dist/ meanwhile (``swap_dir``) leaves the old directory's files to this snapshot, so the upload
    sends one generation's bytes. A file gone or different mid-read (the build removed the old tree) means dist/
    changed: it is read again from the start, up to three times."""
    for _attempt in range(SNAPSHOT_TRIES - 1):
        with contextlib.suppress(DistChanged):
            return _snapshot(dist_dir, staging)
    return _snapshot(dist_dir, staging)


def _snapshot(dist_dir: Path, staging: Path) -> Dist:
    sums_path = dist_dir / SUMS
    missing = f"{sums_path} is missing: build first (ansible-playbook homelab.alpine_netboot.build)"
    try:
        dfd = os.open(dist_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise DeployError(missing) from None
    root = staging / SNAPSHOT_DIR
    tmp = root / f".new-{os.getpid()}"
    try:
        try:
            with open(os.open(SUMS, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd), "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            raise DeployError(missing) from None
        sums = parse_sums(raw.decode("utf-8", "replace"), str(sums_path))
        for name in (STABLE_REQUEST, RECORD):
            if name not in sums:
                raise DeployError(f"{sums_path} does not list {name}: rebuild dist/ (playbooks/build.yml --tags "
                                  "ipxe,dist)")
        gen = generation_id(raw)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, digest in sorted(sums.items()):
            with contextlib.suppress(FileNotFoundError):
                _take(dfd, name, tmp / name)
            got = sha256_file(tmp / name)  # None: gone from dist/
            if got != digest:
                if sums_path.is_file() and sums_path.read_bytes() != raw:
                    raise DistChanged(f"{dist_dir} changed while the deploy read it")
                if got is None:
                    raise DeployError(f"{dist_dir / name} is listed in SHA256SUMS but missing: rebuild dist/")
                raise DeployError(f"{dist_dir / name} does not match SHA256SUMS (sha256 {got}, listed {digest}): "
                                  "rebuild dist/")
        (tmp / SUMS).write_bytes(raw)
        snap = root / gen
        shutil.rmtree(snap, ignore_errors=True)
        os.rename(tmp, snap)
        for other in root.iterdir():  # one snapshot is kept: the last deploy's
            if other.name != gen and not other.name.startswith(".new-"):
                shutil.rmtree(other, ignore_errors=True)
    finally:
        os.close(dfd)
        shutil.rmtree(tmp, ignore_errors=True)
    arts = [Artefact(name, (snap / name).stat().st_size, digest, snap / name) for name, digest in sorted(sums.items())]
    arts.append(Artefact(SUMS, len(raw), hashlib.sha256(raw).hexdigest(), snap / SUMS))
    script = generation_script(_ipxe.read_record(snap / RECORD), gen).encode()
    staged = staging / gen / GENERATION_SCRIPT
    atomic_write_bytes(staged, script)
    arts.append(Artefact(GENERATION_SCRIPT, len(script), hashlib.sha256(script).hexdigest(), staged))
    return Dist(dist_dir, gen, tuple(arts))


def _take(dfd: int, name: str, dest: Path) -> None:
    """``name`` of the directory ``dfd`` at ``dest``: a hardlink (same file system), else a copy."""
    try:
        os.link(name, dest, src_dir_fd=dfd, follow_symlinks=False)
        return
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
    with open(os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd), "rb") as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
