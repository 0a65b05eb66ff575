"""Deploy ``dist/`` to a RouterOS boot server as one generation: plan (pure) and apply.

The layout on the router, the owned TFTP rules, the order of a deploy and the DHCP rows are README's "What the deploy
changes on the router" and "DHCP chainloading". What the code relies on: a generation ``g-<12 hex>`` is named by the
sha256 of dist's ``SHA256SUMS``; its ``generation.ipxe`` is dist's ``boot.ipxe`` with every ``set base tftp://...``
line pointing into it; switching is one ``set`` of the stable ``^boot\\.ipxe$`` rule's ``real-filename``; the order
of generations lives in the rules' comments (``seq``, raised each time one becomes live), so the router's
configuration is the only state. On a router with a ``flash`` disk ``rb4011_dir`` is ``flash/<rb4011_dir>`` (the
rest is a RAM disk). The iPXE binaries go to ``<dir>/ipxe/<12 hex of their sha256>/`` (``_dhcp.py``).

Staged generations and the herd roll (README "Updating the herd"): a staged generation's rules carry ``staged`` in
their comment (seq 0) and the stable rule stays on the live one; it is always kept. While a roll points some MACs at
it, the stable rule serves a dispatcher, ``<dir>/dispatch/<live>.<staged>.<12 hex>.ipxe``, that chains those MACs to
the staged generation's ``generation.ipxe`` and every other client to the live one's: the generation scripts and
their digests stay as they are. Every generation script sets ``netboot_generation``, which boot.ipxe passes to the
kernel as ``netboot.generation=``, so a node can tell which generation it booted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils._dhcp import (
    DhcpOptions,
    DhcpPlan,
    DhcpState,
    plan_dhcp,
    read_dhcp,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import ConfigError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._fs import atomic_write_bytes, sha256_file
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._lock import playbook_process
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._routerlock import (
    RouterLock,
    live_generations,
    lock_name,
    read_lock,
    router_time,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._routeros import (
    API_ARGUMENT_SPEC,
    FEATURES,
    ApiOptions,
    RouterOS,
    RouterOSError,
    RowChange,
    anchored,
    api_options,
    connect,
    diff_rows,
    needs_rollover,
    require_version,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._sftp import Progress, Sftp, SshOptions

OWNER = "homelab.alpine_netboot"
STABLE_REQUEST = "boot.ipxe"
GENERATION_SCRIPT = "generation.ipxe"
SUMS = "SHA256SUMS"
GEN_RE = re.compile(r"^g-[0-9a-f]{12}$")
BASE_RE = re.compile(r"^(?P<head>[ \t]*set[ \t]+base[ \t]+)(?P<url>tftp://\S+?)/?[ \t]*$", re.M)
SPACE_RESERVE = 4 << 20  # keep some free space for RouterOS itself
TFTP_MENU = "/ip/tftp"
FLASH = "flash"  # the persistent disk's name in /file on routers that have a RAM disk besides it
CHAINLOAD_DIR = "ipxe"
DISPATCH_DIR = "dispatch"
STAGED = "staged"  # the flag of a staged generation's rule comments
GENERATION_VAR = "netboot_generation"  # set by generation.ipxe; boot.ipxe passes it as netboot.generation=
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class DeployError(NetbootError):
    """The deploy was refused or failed; the message says what is unchanged and how to fix it."""


# -- dist ----------------------------------------------------------------------------------------------------------

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


def generation_script(text: str, generation: str) -> str:
    """dist's boot.ipxe with each ``set base tftp://...`` pointing into ``generation``."""
    if not BASE_RE.search(text):
        raise DeployError(
            "boot.ipxe names no tftp:// boot server (its 'set base' lines): the RB4011 serves the artefacts over "
            "TFTP, so build with boot_server_url: tftp://<router address> (a list may add HTTP fallbacks)"
        )
    body = BASE_RE.sub(lambda m: f"{m.group('head')}{m.group('url')}/{generation}", text)
    first, _unused, rest = body.partition("\n")
    note = (f"# {OWNER} generation {generation}: artefact URLs point into the generation directory.\n"
            f"set {GENERATION_VAR} {generation}")
    return f"{first}\n{note}\n{rest}" if first.startswith("#!") else f"{note}\n{body}"


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
    for attempt in range(1, SNAPSHOT_TRIES + 1):
        try:
            return _snapshot(dist_dir, staging)
        except DistChanged:
            if attempt == SNAPSHOT_TRIES:
                raise
    raise AssertionError("unreachable")


def _snapshot(dist_dir: Path, staging: Path) -> Dist:
    sums_path = dist_dir / SUMS
    try:
        dfd = os.open(dist_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise DeployError(f"{sums_path} is missing: build first (ansible-playbook homelab.alpine_netboot.build)"
                          ) from None
    root = staging / SNAPSHOT_DIR
    tmp = root / f".new-{os.getpid()}"
    try:
        try:
            with open(os.open(SUMS, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd), "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            raise DeployError(f"{sums_path} is missing: build first (ansible-playbook homelab.alpine_netboot.build)"
                              ) from None
        sums = parse_sums(raw.decode("utf-8", "replace"), str(sums_path))
        if STABLE_REQUEST not in sums:
            raise DeployError(f"{sums_path} does not list {STABLE_REQUEST}: rebuild dist/")
        gen = generation_id(raw)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, digest in sorted(sums.items()):
            try:
                _take(dfd, name, tmp / name)
            except FileNotFoundError:
                if not os.path.exists(dist_dir / SUMS) or (dist_dir / SUMS).read_bytes() == raw:
                    raise DeployError(f"{dist_dir / name} is listed in SHA256SUMS but missing: rebuild dist/"
                                      ) from None
                raise DistChanged(f"{dist_dir} changed while the deploy read it") from None
            got = sha256_file(tmp / name)
            if got != digest:
                if (dist_dir / SUMS).is_file() and (dist_dir / SUMS).read_bytes() != raw:
                    raise DistChanged(f"{dist_dir} changed while the deploy read it")
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
    script = generation_script((snap / STABLE_REQUEST).read_text(), gen).encode()
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


# -- router state ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RouterFile:
    id: str
    name: str
    type: str
    size: int


@dataclass(frozen=True)
class RouterState:
    host: str
    version: str
    identity: str
    free: int
    total: int
    files: tuple[RouterFile, ...]
    tftp: tuple[Mapping[str, str], ...]


@dataclass(frozen=True)
class Generation:
    id: str
    files: Mapping[str, RouterFile]  # name inside the generation directory -> file
    seq: int  # 0: no rules (incomplete upload) or staged
    has_rules: bool
    staged: bool = False  # uploaded with rb4011_stage: kept, not live


def chainload_comment(rb_dir: str, name: str) -> str:
    return f"{OWNER} dir={rb_dir} chainload={name}"


def rule_comment(rb_dir: str, gen: str | None = None, name: str | None = None, seq: int = 0,
                 staged: bool = False) -> str:
    if gen is None:
        return f"{OWNER} dir={rb_dir} {STABLE_REQUEST}"
    return f"{OWNER} dir={rb_dir} gen={gen} file={name} seq={seq}{' ' + STAGED if staged else ''}"


def parse_comment(comment: str, rb_dir: str) -> tuple[str, str, int, bool] | None:
    """``(generation or '', file or 'boot.ipxe', seq, staged)`` of an owned rule of ``rb_dir``, else None."""
    if comment == rule_comment(rb_dir):
        return ("", STABLE_REQUEST, 0, False)
    m = re.fullmatch(rf"{re.escape(OWNER)} dir={re.escape(rb_dir)} gen=(g-[0-9a-f]{{12}}) file=(\S+) seq=(\d+)"
                     rf"( {STAGED})?", comment)
    return (m.group(1), m.group(2), int(m.group(3)), bool(m.group(4))) if m else None


def generations(state: RouterState, rb_dir: str) -> dict[str, Generation]:
    files: dict[str, dict[str, RouterFile]] = {}
    prefix = rb_dir + "/"
    for f in state.files:
        if not f.name.startswith(prefix):
            continue
        parts = f.name[len(prefix):].split("/")
        if GEN_RE.match(parts[0]):
            files.setdefault(parts[0], {})
            if len(parts) == 2 and f.type != "directory":
                files[parts[0]][parts[1]] = f
    seqs: dict[str, int] = {}
    staged: set[str] = set()
    for rule in state.tftp:
        parsed = parse_comment(rule.get("comment", ""), rb_dir)
        if parsed and parsed[0]:
            seqs[parsed[0]] = max(seqs.get(parsed[0], 0), parsed[2])
            if parsed[3]:
                staged.add(parsed[0])
    ids = set(files) | set(seqs)
    return {g: Generation(g, files.get(g, {}), seqs.get(g, 0), g in seqs, g in staged) for g in sorted(ids)}


@dataclass(frozen=True)
class Stable:
    """What the stable boot.ipxe rule serves: the live generation, and while a roll runs the dispatcher."""

    live: str | None
    staged: str | None = None  # the generation the dispatcher sends some MACs to
    dispatcher: str | None = None  # its path on the router


def stable_target(state: RouterState, rb_dir: str) -> Stable:
    for rule in state.tftp:
        if rule.get("comment") == rule_comment(rb_dir):
            real = rule.get("real-filename", "").lstrip("/")
            m = re.fullmatch(rf"{re.escape(rb_dir)}/(g-[0-9a-f]{{12}})/{re.escape(GENERATION_SCRIPT)}", real)
            if m:
                return Stable(m.group(1))
            m = re.fullmatch(rf"{re.escape(rb_dir)}/{DISPATCH_DIR}/(g-[0-9a-f]{{12}})\.(g-[0-9a-f]{{12}})\."
                             rf"[0-9a-f]{{12}}\.ipxe", real)
            return Stable(m.group(1), m.group(2), real) if m else Stable(None)
    return Stable(None)


def live_generation(state: RouterState, rb_dir: str) -> str | None:
    return stable_target(state, rb_dir).live


# -- plan ------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Options:
    rb_dir: str = "netboot"
    keep: int = 1
    verify: str = "sha256"
    rollback: bool = False
    generation: str | None = None
    allow_addresses: tuple[str, ...] = ()
    dhcp: DhcpOptions | None = None  # rb4011_manage_dhcp
    lock_timeout: float = 0.0  # rb4011_lock_timeout: seconds to wait for another deploy's router lock
    lock_stale: int = 1800  # rb4011_lock_stale: a router lock not refreshed for longer is taken over
    stage: bool = False  # rb4011_stage: upload and keep the generation, do not make it live
    unstage: tuple[str, ...] = ()  # rb4011_unstage: staged generations to drop (kept no longer)
    # (staged generation, MACs): the stable boot.ipxe sends those MACs there (update_herd.yml); no MACs: none
    dispatch: tuple[str, tuple[str, ...]] | None = None

    def __post_init__(self) -> None:
        if not self.rb_dir or self.rb_dir.startswith("/") or ".." in self.rb_dir.split("/"):
            raise ConfigError(f"rb4011_dir {self.rb_dir!r}: give a relative directory such as netboot")
        if self.keep < 1:
            raise ConfigError(f"rb4011_keep_generations {self.keep}: keep at least 1 previous generation, so a "
                              "node booting during a switch still gets its kernel (and rollback is possible)")
        if self.verify not in ("sha256", "size"):
            raise ConfigError(f"rb4011_verify {self.verify!r}: use sha256 or size")
        if self.rollback and self.generation:
            raise ConfigError("set either rb4011_rollback or rb4011_generation, not both")
        if self.generation and not GEN_RE.match(self.generation):
            raise ConfigError(f"rb4011_generation {self.generation!r}: give an id like g-0123456789ab")
        if self.lock_stale < 60:
            raise ConfigError(f"rb4011_lock_stale {self.lock_stale}: give at least 60 seconds (a live deploy "
                              "refreshes its lock at most every 30 s)")
        if self.lock_timeout < 0:
            raise ConfigError(f"rb4011_lock_timeout {self.lock_timeout}: give 0 or more seconds")
        if self.stage and (self.rollback or self.generation):
            raise ConfigError("rb4011_stage uploads dist/ as a staged generation: not with rb4011_rollback or "
                              "rb4011_generation (which make a kept generation live)")
        for g in self.unstage:
            if not GEN_RE.match(g):
                raise ConfigError(f"rb4011_unstage {g!r}: give ids like g-0123456789ab")
        if self.dispatch is not None:
            if self.stage or self.rollback or self.generation:
                raise ConfigError("a dispatch changes only which generation some MACs boot: not with rb4011_stage, "
                                  "rb4011_rollback or rb4011_generation")
            if not GEN_RE.match(self.dispatch[0]):
                raise ConfigError(f"dispatch generation {self.dispatch[0]!r}: give an id like g-0123456789ab")
            macs = tuple(sorted({normal_mac(m) for m in self.dispatch[1]}))
            object.__setattr__(self, "dispatch", (self.dispatch[0], macs))


@dataclass
class Plan:
    target: str
    live_before: str | None
    seq: int
    uploads: list[Artefact] = field(default_factory=list)
    verify: list[Artefact] = field(default_factory=list)
    present: list[Artefact] = field(default_factory=list)
    rule_changes: list[RowChange] = field(default_factory=list)
    remove_generations: list[str] = field(default_factory=list)
    remove_ids: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    needed: int = 0
    free: int = 0
    total: int = 0
    rules_before: list[str] = field(default_factory=list)
    rules_after: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # DHCP chainloading: (router directory, binary) to send / to read back; their rules; DHCP rows
    chainload_uploads: list[tuple[str, Artefact]] = field(default_factory=list)
    chainload_verify: list[tuple[str, Artefact]] = field(default_factory=list)
    chainload_changes: list[RowChange] = field(default_factory=list)
    dhcp: DhcpPlan | None = None
    live_after: str | None = None  # the generation every other client boots after this plan
    staged: list[str] = field(default_factory=list)  # staged generations after this plan
    dispatch_upload: tuple[str, bytes] | None = None  # (router path, bytes) of a dispatcher to send

    @property
    def changes(self) -> bool:
        return bool(self.uploads or self.rule_changes or self.remove_ids or self.chainload_uploads
                    or self.chainload_changes or (self.dhcp and self.dhcp.changes) or self.dispatch_upload)


def staged_note(staged: Sequence[str]) -> str:
    return f" (staged, kept until live or dropped: {', '.join(staged)})" if staged else ""


def rule_line(values: Mapping[str, str]) -> str:
    flags = [k for k in ("read-only", "allow-rollover") if values.get(k) in ("yes", "true")]
    ips = values.get("ip-addresses") or "any"
    return (f"{values.get('req-filename', '')} -> {values.get('real-filename', '')} [{','.join(flags)}] "
            f"from {ips}  # {values.get('comment', '')}")


def desired_rule(opts: Options, req: str, real: str, size: int, comment: str) -> dict[str, str]:
    return {
        "req-filename": anchored(req),
        "real-filename": real,
        "allow": "yes",
        "read-only": "yes",
        "allow-rollover": "yes" if needs_rollover(size) else "no",
        "ip-addresses": ",".join(opts.allow_addresses),
        "disabled": "no",
        "comment": comment,
    }


def make_plan(state: RouterState, opts: Options, dist: Dist | None, *, chainload: Sequence[Artefact] = (),
              dhcp_state: DhcpState | None = None, protect: Iterable[str] = ()) -> Plan:
    """The plan; with ``opts.dhcp`` also the chainload binaries (``chainload``) and DHCP rows (``dhcp_state``).
    ``protect``: generations a live router lock is writing, never removed."""
    rb = opts.rb_dir
    gens = generations(state, rb)
    stable_now = stable_target(state, rb)
    live = stable_now.live
    complete = {g: v for g, v in gens.items() if v.has_rules}
    if opts.dispatch is not None:
        if live is None:
            raise DeployError(f"{state.host}: nothing is live under {rb}: deploy a generation first")
        if opts.dispatch[0] == live or opts.dispatch[0] not in complete:
            raise DeployError(f"{state.host}: generation {opts.dispatch[0]} is {'live' if opts.dispatch[0] == live else 'not kept'} "
                              f"under {rb}; a roll needs a staged generation (deploy_rb4011.yml with rb4011_stage: "
                              f"true); kept: {', '.join(sorted(complete)) or 'none'}")
        target = live
    elif opts.generation:
        if opts.generation not in complete:
            raise DeployError(f"{state.host}: rb4011_generation {opts.generation} is not kept on the router; kept: "
                              f"{', '.join(sorted(complete)) or 'none'}")
        target = opts.generation
    elif opts.rollback:
        if live is None:
            raise DeployError(f"{state.host}: nothing is live under {rb}, so there is nothing to roll back from")
        previous = sorted((v for g, v in complete.items() if g != live), key=lambda v: v.seq)
        if not previous:
            raise DeployError(f"{state.host}: no previous generation is kept under {rb} (live: {live})")
        target = previous[-1].id
    else:
        if dist is None:
            raise ConfigError("netboot_dist_dir is needed to deploy a new generation")
        target = dist.generation
        if opts.stage and live is None:
            raise DeployError(f"{state.host}: nothing is live under {rb}, so there is nothing to stage beside: deploy "
                              "without rb4011_stage first")
    staging = opts.stage and target != live
    live_after = live if (staging or opts.dispatch is not None) else target
    staged = sorted(g for g, v in complete.items() if v.staged and g not in opts.unstage and g != live_after)
    if staging and target not in staged:
        staged = sorted([*staged, target])
    max_seq = max((v.seq for v in gens.values()), default=0)
    seq = 0 if staging else gens[target].seq if target == live and target in gens else max_seq + 1
    plan = Plan(target, live, seq, free=state.free, live_after=live_after, staged=staged)
    if opts.stage and not staging:
        plan.warnings.append(f"{state.host}: generation {target} is already live: nothing to stage")

    # files of the target
    if dist is not None and target == dist.generation:
        have = gens[target].files if target in gens else {}
        trusted = target in complete  # rules are only added after the whole generation verified
        for a in dist.artefacts:
            f = have.get(a.name)
            if f is not None and f.size == a.size:
                (plan.present if trusted or opts.verify == "size" else plan.verify).append(a)
            else:
                plan.uploads.append(a)
                plan.needed += a.size - (f.size if f else 0)
        target_files = {a.name: a.size for a in dist.artefacts}
        plan.total = dist.total
    else:
        target_files = {n: f.size for n, f in gens[target].files.items()}
        plan.total = sum(target_files.values())
    chainload_rules: dict[str, dict[str, str]] = {}
    chainload_dirs: set[str] = set()
    if opts.dhcp is not None:
        router_files = {f.name: f for f in state.files}
        for a in chainload:
            where = f"{rb}/{CHAINLOAD_DIR}/{a.sha256[:12]}"
            chainload_dirs.add(where)
            chainload_rules[a.name] = desired_rule(opts, a.name, f"{where}/{a.name}", a.size, chainload_comment(rb, a.name))
            on_router = router_files.get(f"{where}/{a.name}")
            served = any(r.get("comment") == chainload_comment(rb, a.name)
                         and r.get("real-filename") == f"{where}/{a.name}" for r in state.tftp)
            if on_router is not None and on_router.size == a.size:
                if not served and opts.verify == "sha256":
                    plan.chainload_verify.append((where, a))
            else:
                plan.chainload_uploads.append((where, a))
                plan.needed += a.size - (on_router.size if on_router else 0)
    if plan.needed + SPACE_RESERVE > state.free:
        raise DeployError(
            f"{state.host}: not enough space for generation {target}: it needs {plan.needed} bytes "
            f"({plan.needed / 1e6:.1f} MB) plus a {SPACE_RESERVE >> 20} MiB reserve, free-hdd-space is {state.free} "
            f"bytes ({state.free / 1e6:.1f} MB) of {state.total}, with {len(complete)} generation(s) kept under "
            f"{rb}{staged_note(staged)}. Nothing was changed. Remove files on the router, lower "
            "rb4011_keep_generations or drop a staged generation (rb4011_unstage), then rerun."
        )

    # which generations stay: the target, the live one, every staged one, and the `keep` most recently live others
    # (the live one is the most recent); a dispatch also keeps the generation it sends MACs to
    others = sorted((v for g, v in complete.items() if g not in (target, live_after) and g not in staged),
                    key=lambda v: v.seq, reverse=True)
    kept = list(dict.fromkeys([target, *([live_after] if live_after else []), *staged,
                               *([opts.dispatch[0]] if opts.dispatch else [])]))
    kept += [v.id for v in others[: opts.keep]]
    plan.kept = kept
    protected = set(protect)
    plan.remove_generations = [g for g in gens if g not in kept and g not in protected]
    if plan.remove_generations:
        doomed = tuple(f"{rb}/{g}" for g in plan.remove_generations)
        plan.remove_ids = [f.id for f in state.files if f.name.startswith(tuple(d + "/" for d in doomed))]
        plan.remove_ids += [f.id for f in state.files if f.name in doomed]
    # the stable rule: the live generation's script, or while a roll points MACs at a staged one, a dispatcher
    stable_real = f"{rb}/{live_after}/{GENERATION_SCRIPT}"
    if opts.dispatch is not None and opts.dispatch[1] and live_after:
        text = dispatch_script(live_after, opts.dispatch[0], opts.dispatch[1])
        stable_real = dispatch_path(rb, live_after, opts.dispatch[0], text)
        sent = {f.name: f.size for f in state.files}.get(stable_real)
        if sent != len(text.encode()):
            plan.dispatch_upload = (stable_real, text.encode())
    plan.remove_ids += [f.id for f in state.files if f.name.startswith(f"{rb}/{DISPATCH_DIR}/")
                        and f.name != stable_real and f.type != "directory"]

    # TFTP rules
    desired: dict[str, dict[str, str]] = {}
    for g in kept:
        files = target_files if g == target else {n: f.size for n, f in gens[g].files.items()}
        s = seq if g == target else 0 if g in staged else gens[g].seq
        for name, size in sorted(files.items()):
            if name == STABLE_REQUEST:
                continue  # dist's own script names unqualified paths; nodes get generation.ipxe instead
            desired[f"{g}/{name}"] = desired_rule(opts, f"{g}/{name}", f"{rb}/{g}/{name}", size,
                                                  rule_comment(rb, g, name, s, g in staged))
    if plan.dispatch_upload is not None:
        script_size = len(plan.dispatch_upload[1])
    elif live_after == target:
        script_size = target_files.get(GENERATION_SCRIPT, 0)
    else:
        script_size = gens[live_after].files[GENERATION_SCRIPT].size if live_after in gens and \
            GENERATION_SCRIPT in gens[live_after].files else 0
    stable = {STABLE_REQUEST: desired_rule(opts, STABLE_REQUEST, stable_real, script_size, rule_comment(rb))}

    def owned(row: Mapping[str, str]) -> str | None:
        parsed = parse_comment(row.get("comment", ""), rb)
        if parsed is None:
            return None
        return STABLE_REQUEST if not parsed[0] else f"{parsed[0]}/{parsed[1]}"

    gen_rows = [r for r in state.tftp if owned(r) not in (None, STABLE_REQUEST)]
    stable_rows = [r for r in state.tftp if owned(r) == STABLE_REQUEST]
    gen_changes = diff_rows(TFTP_MENU, gen_rows, desired, owned)
    stable_changes = diff_rows(TFTP_MENU, stable_rows, stable, owned)
    # order: the new generation's rules, then the one switch, then the removals
    plan.rule_changes = ([c for c in gen_changes if c.action != "remove"] + stable_changes
                         + [c for c in gen_changes if c.action == "remove"])
    plan.rules_before = sorted(rule_line(r) for r in state.tftp if owned(r) is not None)
    plan.rules_after = sorted(rule_line(v) for v in [*desired.values(), *stable.values()])
    if opts.dhcp is not None:
        if dhcp_state is None:
            raise DeployError("internal: rb4011_manage_dhcp needs the router's DHCP menus")

        def chainloaded(row: Mapping[str, str]) -> str | None:
            m = re.fullmatch(rf"{re.escape(OWNER)} dir={re.escape(rb)} chainload=(\S+)", row.get("comment", ""))
            return m.group(1) if m else None

        rows = [r for r in state.tftp if chainloaded(r) is not None]
        plan.chainload_changes = diff_rows(TFTP_MENU, rows, chainload_rules, chainloaded)
        plan.rules_before += sorted(rule_line(r) for r in rows)
        plan.rules_after += sorted(rule_line(v) for v in chainload_rules.values())
        stale = [f for f in state.files if f.name.startswith(f"{rb}/{CHAINLOAD_DIR}/")
                 and not any(f.name == d or f.name.startswith(d + "/") for d in chainload_dirs)]
        plan.remove_ids += [f.id for f in stale]
        plan.dhcp = plan_dhcp(dhcp_state, opts.dhcp, tag=f"{OWNER} dir={rb}", script=STABLE_REQUEST, host=state.host)
    for rule in state.tftp:
        if owned(rule) is None and rule.get("disabled") != "true":
            try:
                shadow = re.search(rule.get("req-filename", ".*"), STABLE_REQUEST) is not None
            except re.error:
                shadow = False
            if shadow:
                plan.warnings.append(f"/ip/tftp rule {rule.get('.id')} ({rule.get('req-filename', '.*')!r}) is not "
                                     f"the collection's and also matches {STABLE_REQUEST}; if it comes first it wins")
    return plan


# -- apply ------------------------------------------------------------------------------------------------------------

def read_state(ros: RouterOS, host: str, features: Iterable[str]) -> RouterState:
    res = ros.print("/system/resource")
    if not res:
        raise DeployError(f"{host}: /system/resource/print returned nothing")
    version = res[0].get("version", "")
    require_version(version, features, host)
    ident = ros.print("/system/identity")
    files = tuple(
        RouterFile(r[".id"], r.get("name", ""), r.get("type", ""), int(r.get("size") or 0))
        for r in ros.print("/file", (".id", "name", "type", "size"))
    )
    return RouterState(
        host, version, ident[0].get("name", "") if ident else "", int(res[0].get("free-hdd-space") or 0),
        int(res[0].get("total-hdd-space") or 0), files, tuple(ros.print(TFTP_MENU)),
    )


def storage_dir(state: RouterState, rb_dir: str) -> str:
    """``rb_dir`` on the router: under ``flash/`` when /file shows a flash disk (the rest does not survive a reboot)."""
    has_flash = any(f.name == FLASH and f.type == "disk" for f in state.files)
    if has_flash and rb_dir != FLASH and not rb_dir.startswith(FLASH + "/"):
        return f"{FLASH}/{rb_dir}"
    return rb_dir


def chainload_artefacts(dhcp: DhcpOptions) -> list[Artefact]:
    out = []
    for name, path in dhcp.binaries().items():
        digest = sha256_file(path)
        if digest is None:
            raise ConfigError(f"{path} ({name}) cannot be read")
        out.append(Artefact(name, path.stat().st_size, digest, path))
    return out


@dataclass(frozen=True)
class Target:
    api: ApiOptions
    ssh: SshOptions


# the options of a module that reads the router over the API and writes files over SFTP (rb4011_deploy,
# herd_update; documented by the doc fragments netboot.routeros_api and netboot.routeros_sftp)
TARGET_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    **API_ARGUMENT_SPEC,
    "ssh_port": {"type": "int", "default": 22},
    "known_hosts": {"type": "path"},
    "host_key_fingerprint": {"type": "str", "no_log": False},  # public: it identifies the key, not a secret
}
TARGET_REQUIRED_ONE_OF = [("known_hosts", "host_key_fingerprint")]  # the router's host key is always pinned


def target_options(p: Mapping[str, Any]) -> Target:
    """The router's API and SFTP options from a module's parameters (TARGET_ARGUMENT_SPEC)."""
    return Target(api_options(p), SshOptions(p["host"], p["user"], p["password"], p["ssh_port"], p["known_hosts"],
                                             p["host_key_fingerprint"], timeout=p["timeout"]))


def deploy(
    target: Target,
    opts: Options,
    dist_dir: Path | None,
    staging: Path,
    *,
    check: bool,
    progress: Progress,
) -> dict[str, Any]:
    """Preflight, plan, and (unless ``check``) upload, verify, switch and prune. Returns the module result."""
    host = target.api.host
    # dist/ is read once into a snapshot (hardlinks or copies, checked against its SHA256SUMS) and uploaded from
    # there, so a build swapping dist/ meanwhile cannot put its bytes under this generation's id
    dist = read_dist(dist_dir, staging) if dist_dir is not None and not (opts.rollback or opts.generation) else None
    chainload = chainload_artefacts(opts.dhcp) if opts.dhcp is not None else []
    features = base_features() + (opts.dhcp.features() if opts.dhcp else [])
    ros = connect(target.api)
    lock: RouterLock | None = None
    try:
        opts = dataclasses.replace(opts, rb_dir=storage_dir(read_state(ros, host, features), opts.rb_dir))
        warnings: list[str] = []
        if check:
            held = read_lock(ros, opts.rb_dir)
            if held is not None:
                warnings.append(f"{host}: a deploy holds the lock of {opts.rb_dir}: "
                                f"{held.describe(router_time(ros))}; this check shows the router as it is now")
        else:
            lock = RouterLock.take(ros, opts.rb_dir, generation=dist.generation if dist else (opts.generation or ""),
                                   stale=opts.lock_stale, timeout=opts.lock_timeout, pid=_playbook_pid())
            warnings += lock.warnings
        return run(ros, target, opts, staging, dist=dist, chainload=chainload, features=features, check=check,
                   progress=progress, lock=lock, warnings=warnings)
    finally:
        progress.tick = None
        try:
            if lock is not None:
                lock.release()
        except RouterOSError as e:
            progress.line(f"{host}: could not remove the deploy lock {lock_name(opts.rb_dir)} ({e}); it is taken "
                          f"over once older than rb4011_lock_stale ({opts.lock_stale}s)")
        ros.close()


def run(ros: RouterOS, target: Target, opts: Options, staging: Path, *, dist: Dist | None,
        chainload: Sequence[Artefact] = (), features: Iterable[str] = (), check: bool, progress: Progress,
        lock: RouterLock | None, warnings: Sequence[str] = ()) -> dict[str, Any]:
    """Plan and (unless ``check``) apply on a connected router whose lock the caller holds (``lock``; None in check
    mode). ``opts.rb_dir`` is already the storage directory. Returns the module result."""
    host = target.api.host
    warnings = list(warnings)
    if lock is not None:
        progress.tick = lock.ticker()
    try:
        state = read_state(ros, host, features)  # as it is now that no other deploy writes
        protect = live_generations(ros, opts.rb_dir, opts.lock_stale,
                                   exclude_token=lock.record.token if lock else "")
        dhcp_state = read_dhcp(ros) if opts.dhcp is not None else None
        plan = make_plan(state, opts, dist, chainload=chainload, dhcp_state=dhcp_state, protect=protect)
        plan.warnings[:0] = warnings
        if lock is not None and lock.record.generation != plan.target:
            lock.refresh(generation=plan.target, force=True)
        dhcp_changes = plan.dhcp.changes if plan.dhcp else []
        result: dict[str, Any] = {
            "routeros_version": state.version, "identity": state.identity, "generation": plan.target,
            "dir": opts.rb_dir, "live": plan.live_after, "staged_generations": plan.staged,
            "dispatch": ({"generation": opts.dispatch[0], "macs": list(opts.dispatch[1])}
                         if opts.dispatch and opts.dispatch[1] else None),
            "live_before": plan.live_before, "kept_generations": plan.kept,
            "removed_generations": plan.remove_generations, "generation_bytes": plan.total,
            "free_hdd_space": state.free, "needed_bytes": plan.needed,
            "planned_uploads": ([a.name for a in plan.uploads] + [f"{d}/{a.name}" for d, a in plan.chainload_uploads]
                                + ([plan.dispatch_upload[0]] if plan.dispatch_upload else [])),
            "planned_verifications": [a.name for a in plan.verify],
            "rule_changes": [c.command() for c in [*plan.rule_changes, *plan.chainload_changes]],
            "dhcp_changes": [c.command() for c in dhcp_changes],
            "dhcp": ({"network": opts.dhcp.network, "next_server": plan.dhcp.next_server,
                      "firmware": opts.dhcp.firmware,
                      "boot_files": plan.dhcp.boot_files, "matcher_value": opts.dhcp.matcher_value}
                     if opts.dhcp and plan.dhcp else None),
            "warnings": plan.warnings,
            "rules_before": plan.rules_before + (plan.dhcp.before if plan.dhcp else []),
            "rules_after": plan.rules_after + (plan.dhcp.after if plan.dhcp else []),
            "uploads": [], "bytes_sent": 0, "changed": plan.changes,
        }
        if check:
            return result
        rb = opts.rb_dir
        gen_dir = f"{rb}/{plan.target}"
        if plan.dispatch_upload is not None:
            where, data = plan.dispatch_upload
            local = staging / DISPATCH_DIR / where.rsplit("/", 1)[1]
            atomic_write_bytes(local, data)
            with Sftp.open(target.ssh) as sftp:
                sftp.makedirs(f"/{rb}/{DISPATCH_DIR}")
                result["uploads"].append(_upload(ros, sftp, Artefact(local.name, len(data),
                                                                     hashlib.sha256(data).hexdigest(), local),
                                                 f"{rb}/{DISPATCH_DIR}", verify="sha256", progress=progress,
                                                 host=host))
            result["changed"] = True
        if plan.uploads or plan.verify or plan.chainload_uploads or plan.chainload_verify:
            progress.line(f"{host}: generation {plan.target}: {len(plan.uploads)} file(s) to send, "
                          f"{plan.needed} bytes; {len(plan.verify)} to verify")
            with Sftp.open(target.ssh) as sftp:
                work: list[tuple[str, list[Artefact], list[Artefact]]] = []
                if plan.uploads or plan.verify:
                    work.append((gen_dir, list(plan.uploads), list(plan.verify)))
                for where, a in plan.chainload_uploads:
                    work.append((where, [a], []))
                for where, a in plan.chainload_verify:
                    work.append((where, [], [a]))
                for where, uploads, verify in work:
                    sftp.makedirs("/" + where)
                    for a in verify:
                        if lock is not None:
                            lock.refresh()
                        t0 = time.monotonic()
                        ok = sftp.sha256(f"/{where}/{a.name}") == a.sha256
                        progress.line(f"{a.name}: already on the router, sha256 {'matches' if ok else 'DIFFERS'} "
                                      f"({time.monotonic() - t0:.1f}s)")
                        if not ok:
                            uploads.append(a)
                    for a in uploads:
                        result["uploads"].append(_upload(ros, sftp, a, where, verify=opts.verify,
                                                         progress=progress, host=host))
                        result["bytes_sent"] += a.size
            result["changed"] = True
        # the generation's rules and the one switch; the chainload rules; DHCP (which names what they serve); prune
        for change in [*plan.rule_changes, *plan.chainload_changes, *dhcp_changes]:
            ros.apply(change)
        if plan.remove_ids:
            ros.remove("/file", plan.remove_ids)
        if opts.dispatch is not None:
            progress.line(f"{host}: {len(opts.dispatch[1])} MAC(s) boot {opts.dispatch[0]}, every other client "
                          f"{plan.live_after}")
        elif plan.live_after != plan.target:
            progress.line(f"{host}: generation {plan.target} staged ({plan.total} bytes, {result['bytes_sent']} "
                          f"sent); live stays {plan.live_after}")
        else:
            progress.line(f"{host}: live generation {plan.target} ({plan.total} bytes, {result['bytes_sent']} sent)")
        return result
    finally:
        progress.tick = None


def base_features() -> list[str]:
    """The RouterOS features every deploy needs (7.1+)."""
    return [name for name in FEATURES if FEATURES[name] <= (7, 1)]


def _playbook_pid() -> int:
    """The ansible-playbook process running this module (its ancestor), for the lock record."""
    return playbook_process(os.getpid())


def _upload(ros: RouterOS, sftp: Sftp, a: Artefact, gen_dir: str, *, verify: str, progress: Progress,
            host: str) -> dict[str, Any]:
    remote = f"/{gen_dir}/{a.name}"
    cb, elapsed = progress.callback(a.name)
    sftp.upload(a.local, remote, cb)
    seconds = elapsed()
    name = remote.lstrip("/")
    sizes = {r.get("name"): r.get("size") for r in ros.print("/file", ("name", "size"))}
    if str(sizes.get(name)) != str(a.size):
        raise DeployError(f"{host}: {name} is {sizes.get(name)} bytes on the router after the upload, expected "
                          f"{a.size}; the live generation is unchanged, rerun to resume")
    if verify == "sha256":
        if progress.tick is not None:
            progress.tick()  # the read-back of a big file is long too: keep the router lock fresh
        got = sftp.sha256(remote)
        if got != a.sha256:
            raise DeployError(f"{host}: {name} reads back with sha256 {got}, expected {a.sha256}; the live "
                              "generation is unchanged, rerun to resend it")
    mbps = a.size / 1e6 / max(seconds, 1e-6)
    progress.line(f"{a.name}: sent {a.size} bytes in {seconds:.2f}s ({mbps:.2f} MB/s), verified by {verify}")
    return {"name": a.name, "bytes": a.size, "bytes_sent": a.size, "seconds": round(seconds, 3),
            "MBps": round(mbps, 2), "verified": verify}
