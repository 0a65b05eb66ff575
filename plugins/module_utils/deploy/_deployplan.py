# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The deploy's plan (pure): the router's generations and rules as read, and what a deploy changes (``_deploy``)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploydist import (
    DISPATCH_DIR,
    GEN_RE,
    GENERATION_SCRIPT,
    OWNER,
    STABLE_REQUEST,
    Artefact,
    DeployError,
    Dist,
    dispatch_path,
    dispatch_script,
    normal_mac,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._dhcp import (
    DhcpOptions,
    DhcpPlan,
    DhcpState,
    plan_dhcp,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routeros import (
    RowChange,
    anchored,
    diff_rows,
    enabled,
    needs_rollover,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._verifyrules import name_matches

SPACE_RESERVE = 4 << 20  # keep some free space for RouterOS itself
TFTP_MENU = "/ip/tftp"
CHAINLOAD_DIR = "ipxe"
STAGED = "staged"  # the flag of a staged generation's rule comments


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


def chainloaded(row: Mapping[str, str], rb_dir: str) -> str | None:
    """The binary an owned chainload rule of ``rb_dir`` serves (``chainload_comment`` read back); None for others."""
    m = re.fullmatch(rf"{re.escape(OWNER)} dir={re.escape(rb_dir)} chainload=(\S+)", row.get("comment", ""))
    return m.group(1) if m else None


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
    rule_changes: list[RowChange] = field(default_factory=list)
    remove_generations: list[str] = field(default_factory=list)
    remove_ids: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    needed: int = 0
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
    gens = generations(state, opts.rb_dir)
    plan = _plan_generations(state, opts, dist, gens)
    target_files = _plan_target_files(plan, opts, dist, gens)
    chainload_rules = _plan_chainload_files(plan, state, opts, chainload)
    _check_space(plan, state, opts, gens)
    _plan_kept(plan, state, opts, gens, protect)
    stable_real = _plan_dispatcher(plan, state, opts)
    _plan_rules(plan, state, opts, gens, target_files=target_files, stable_real=stable_real)
    if opts.dhcp is not None:
        _plan_dhcp(plan, state, opts.rb_dir, opts.dhcp, dhcp_state=dhcp_state, chainload_rules=chainload_rules)
    _warn_shadowing_rules(plan, state, opts.rb_dir)
    return plan


def _complete(gens: Mapping[str, Generation]) -> dict[str, Generation]:
    """The generations with rules: uploaded and verified whole."""
    return {g: v for g, v in gens.items() if v.has_rules}


def _choose_target(state: RouterState, opts: Options, dist: Dist | None, gens: Mapping[str, Generation],
                   live: str | None) -> str:
    """The generation this deploy uploads or makes live (or, for a dispatch, the live one)."""
    rb, complete = opts.rb_dir, _complete(gens)
    if opts.dispatch is not None:
        if live is None:
            raise DeployError(f"{state.host}: nothing is live under {rb}: deploy a generation first")
        if opts.dispatch[0] == live or opts.dispatch[0] not in complete:
            raise DeployError(f"{state.host}: generation {opts.dispatch[0]} is "
                              f"{'live' if opts.dispatch[0] == live else 'not kept'} under {rb}; a roll needs a staged "
                              f"generation (deploy_rb4011.yml with rb4011_stage: true); kept: "
                              f"{', '.join(sorted(complete)) or 'none'}")
        return live
    if opts.generation:
        if opts.generation not in complete:
            raise DeployError(f"{state.host}: rb4011_generation {opts.generation} is not kept on the router; kept: "
                              f"{', '.join(sorted(complete)) or 'none'}")
        return opts.generation
    if opts.rollback:
        if live is None:
            raise DeployError(f"{state.host}: nothing is live under {rb}, so there is nothing to roll back from")
        previous = sorted((v for g, v in complete.items() if g != live), key=lambda v: v.seq)
        if not previous:
            raise DeployError(f"{state.host}: no previous generation is kept under {rb} (live: {live})")
        return previous[-1].id
    if dist is None:
        raise ConfigError("netboot_dist_dir is needed to deploy a new generation")
    if opts.stage and live is None:
        raise DeployError(f"{state.host}: nothing is live under {rb}, so there is nothing to stage beside: deploy "
                          "without rb4011_stage first")
    return dist.generation


def _plan_generations(state: RouterState, opts: Options, dist: Dist | None, gens: Mapping[str, Generation]) -> Plan:
    """The empty plan: its target, the live generation after it, the staged ones and the target's seq."""
    live = stable_target(state, opts.rb_dir).live
    target = _choose_target(state, opts, dist, gens, live)
    staging = opts.stage and target != live
    live_after = live if (staging or opts.dispatch is not None) else target
    staged = sorted(g for g, v in _complete(gens).items() if v.staged and g not in opts.unstage and g != live_after)
    if staging and target not in staged:
        staged = sorted([*staged, target])
    max_seq = max((v.seq for v in gens.values()), default=0)
    seq = 0 if staging else gens[target].seq if target == live and target in gens else max_seq + 1
    plan = Plan(target, live, seq, live_after=live_after, staged=staged)
    if opts.stage and not staging:
        plan.warnings.append(f"{state.host}: generation {target} is already live: nothing to stage")
    return plan


def _plan_target_files(plan: Plan, opts: Options, dist: Dist | None, gens: Mapping[str, Generation]) -> dict[str, int]:
    """The target's files (name -> size); from dist, those to upload or read back are added to ``plan``."""
    target = plan.target
    if dist is None or target != dist.generation:
        target_files = {n: f.size for n, f in gens[target].files.items()}
        plan.total = sum(target_files.values())
        return target_files
    have = gens[target].files if target in gens else {}
    trusted = target in _complete(gens)  # rules are only added after the whole generation verified
    for a in dist.artefacts:
        f = have.get(a.name)
        if f is not None and f.size == a.size:
            if not trusted and opts.verify != "size":
                plan.verify.append(a)
        else:
            plan.uploads.append(a)
            plan.needed += a.size - (f.size if f else 0)
    plan.total = dist.total
    return {a.name: a.size for a in dist.artefacts}


def _plan_chainload_files(plan: Plan, state: RouterState, opts: Options,
                          chainload: Sequence[Artefact]) -> dict[str, dict[str, str]]:
    """With rb4011_manage_dhcp: the chainload binaries to send or read back, and their desired rules."""
    rb = opts.rb_dir
    chainload_rules: dict[str, dict[str, str]] = {}
    if opts.dhcp is None:
        return chainload_rules
    router_files = {f.name: f for f in state.files}
    for a in chainload:
        where = f"{rb}/{CHAINLOAD_DIR}/{a.sha256[:12]}"
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
    return chainload_rules


def _check_space(plan: Plan, state: RouterState, opts: Options, gens: Mapping[str, Generation]) -> None:
    if plan.needed + SPACE_RESERVE > state.free:
        staged = f" (staged, kept until live or dropped: {', '.join(plan.staged)})" if plan.staged else ""
        raise DeployError(
            f"{state.host}: not enough space for generation {plan.target}: it needs {plan.needed} bytes "
            f"({plan.needed / 1e6:.1f} MB) plus a {SPACE_RESERVE >> 20} MiB reserve, free-hdd-space is {state.free} "
            f"bytes ({state.free / 1e6:.1f} MB) of {state.total}, with {len(_complete(gens))} generation(s) kept "
            f"under {opts.rb_dir}{staged}. Nothing was changed. Remove files on the router, lower "
            "rb4011_keep_generations or drop a staged generation (rb4011_unstage), then rerun."
        )


def _plan_kept(plan: Plan, state: RouterState, opts: Options, gens: Mapping[str, Generation],
               protect: Iterable[str]) -> None:
    """Which generations stay: the target, the live one, every staged one, and the `keep` most recently live others
    (the live one is the most recent); a dispatch also keeps the generation it sends MACs to. The rest go."""
    live_after, staged = plan.live_after, plan.staged
    others = sorted((v for g, v in _complete(gens).items() if g not in (plan.target, live_after) and g not in staged),
                    key=lambda v: v.seq, reverse=True)
    plan.kept = list(dict.fromkeys([plan.target, *([live_after] if live_after else []), *staged,
                                    *([opts.dispatch[0]] if opts.dispatch else [])]))
    plan.kept += [v.id for v in others[: opts.keep]]
    protected = set(protect)
    plan.remove_generations = [g for g in gens if g not in plan.kept and g not in protected]
    if plan.remove_generations:
        doomed = tuple(f"{opts.rb_dir}/{g}" for g in plan.remove_generations)
        plan.remove_ids = [f.id for f in state.files if f.name.startswith(tuple(d + "/" for d in doomed))]
        plan.remove_ids += [f.id for f in state.files if f.name in doomed]


def _plan_dispatcher(plan: Plan, state: RouterState, opts: Options) -> str:
    """What the stable rule serves: the live generation's script, or while a roll points MACs at a staged one, a
    dispatcher (sent unless on the router); other dispatchers go."""
    rb, live_after = opts.rb_dir, plan.live_after
    stable_real = f"{rb}/{live_after}/{GENERATION_SCRIPT}"
    if opts.dispatch is not None and opts.dispatch[1] and live_after:
        text = dispatch_script(live_after, opts.dispatch[0], opts.dispatch[1])
        stable_real = dispatch_path(rb, live_after, opts.dispatch[0], text)
        sent = {f.name: f.size for f in state.files}.get(stable_real)
        if sent != len(text.encode()):
            plan.dispatch_upload = (stable_real, text.encode())
    plan.remove_ids += [f.id for f in state.files if f.name.startswith(f"{rb}/{DISPATCH_DIR}/")
                        and f.name != stable_real and f.type != "directory"]
    return stable_real


def _owned(row: Mapping[str, str], rb: str) -> str | None:
    """The key of an owned generation rule (``<gen>/<file>``) or of the stable rule; None for other rules."""
    parsed = parse_comment(row.get("comment", ""), rb)
    if parsed is None:
        return None
    return STABLE_REQUEST if not parsed[0] else f"{parsed[0]}/{parsed[1]}"


def _plan_rules(plan: Plan, state: RouterState, opts: Options, gens: Mapping[str, Generation], *,
                target_files: Mapping[str, int], stable_real: str) -> None:
    """The kept generations' TFTP rules and the stable one, in the order: new rules, the one switch, removals."""
    rb, target, live_after = opts.rb_dir, plan.target, plan.live_after
    desired: dict[str, dict[str, str]] = {}
    sizes: dict[str, Mapping[str, int]] = {}  # kept generation -> its files' sizes
    for g in plan.kept:
        files = sizes[g] = target_files if g == target else {n: f.size for n, f in gens[g].files.items()}
        s = plan.seq if g == target else 0 if g in plan.staged else gens[g].seq
        for name, size in sorted(files.items()):
            if name == STABLE_REQUEST:
                continue  # dist's own script names unqualified paths; nodes get generation.ipxe instead
            desired[f"{g}/{name}"] = desired_rule(opts, f"{g}/{name}", f"{rb}/{g}/{name}", size,
                                                  rule_comment(rb, g, name, s, g in plan.staged))
    script_size = (len(plan.dispatch_upload[1]) if plan.dispatch_upload is not None
                   else sizes.get(live_after or "", {}).get(GENERATION_SCRIPT, 0))
    stable = {STABLE_REQUEST: desired_rule(opts, STABLE_REQUEST, stable_real, script_size, rule_comment(rb))}

    owned = functools.partial(_owned, rb=rb)
    gen_rows = [r for r in state.tftp if owned(r) not in (None, STABLE_REQUEST)]
    stable_rows = [r for r in state.tftp if owned(r) == STABLE_REQUEST]
    gen_changes = diff_rows(TFTP_MENU, gen_rows, desired, owned)
    stable_changes = diff_rows(TFTP_MENU, stable_rows, stable, owned)
    plan.rule_changes = ([c for c in gen_changes if c.action != "remove"] + stable_changes
                         + [c for c in gen_changes if c.action == "remove"])
    plan.rules_before = sorted(rule_line(r) for r in state.tftp if owned(r) is not None)
    plan.rules_after = sorted(rule_line(v) for v in [*desired.values(), *stable.values()])


def _plan_dhcp(plan: Plan, state: RouterState, rb: str, dhcp: DhcpOptions, *, dhcp_state: DhcpState | None,
               chainload_rules: Mapping[str, dict[str, str]]) -> None:
    """With rb4011_manage_dhcp: the chainload rules, the stale binaries to remove and the DHCP rows."""
    if dhcp_state is None:
        raise DeployError("internal: rb4011_manage_dhcp needs the router's DHCP menus")
    rows = [r for r in state.tftp if chainloaded(r, rb) is not None]
    plan.chainload_changes = diff_rows(TFTP_MENU, rows, chainload_rules, lambda r: chainloaded(r, rb))
    plan.rules_before += sorted(rule_line(r) for r in rows)
    plan.rules_after += sorted(rule_line(v) for v in chainload_rules.values())
    chainload_dirs = {v["real-filename"].rsplit("/", 1)[0] for v in chainload_rules.values()}
    stale = [f for f in state.files if f.name.startswith(f"{rb}/{CHAINLOAD_DIR}/")
             and not any(f.name == d or f.name.startswith(d + "/") for d in chainload_dirs)]
    plan.remove_ids += [f.id for f in stale]
    plan.dhcp = plan_dhcp(dhcp_state, dhcp, tag=f"{OWNER} dir={rb}", script=STABLE_REQUEST, host=state.host)


def _warn_shadowing_rules(plan: Plan, state: RouterState, rb: str) -> None:
    """A warning for each enabled rule not the collection's that also matches boot.ipxe."""
    for rule in state.tftp:
        if _owned(rule, rb) is None and enabled(rule) and name_matches(rule, STABLE_REQUEST):
            plan.warnings.append(f"/ip/tftp rule {rule.get('.id')} ({rule.get('req-filename', '.*')!r}) is not "
                                 f"the collection's and also matches {STABLE_REQUEST}; if it comes first it wins")
