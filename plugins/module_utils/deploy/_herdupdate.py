# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The herd roll on the router (update_herd.yml): the router read and locked, the staged generation picked, the
roll (``_herd.Herd``) run with ``_deploy.run`` as its router side, then the staged generation made live for all."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploy import (
    Target,
    locked_router,
    read_state,
    run,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deployplan import (
    Options,
    RouterState,
    generations,
    stable_target,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._herd import (
    Herd,
    HerdError,
    Node,
    Nodes,
    RollOptions,
    lease_addresses,
    plan_batches,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routerlock import RouterLock
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routeros import BASE_FEATURE, RouterOS
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._sftp import Progress

LEASE_MENU = "/ip/dhcp-server/lease"


def pick_staged(state: RouterState, rb: str, wanted: str | None) -> tuple[str, str | None]:
    """(live, staged generation to roll): ``wanted``, else the one staged generation; None: nothing to roll (none
    staged, or ``wanted`` is live already)."""
    stable = stable_target(state, rb)
    if stable.live is None:
        raise HerdError(f"{state.host}: nothing is live under {rb}: deploy a generation first")
    gens = generations(state, rb)
    staged = sorted(g for g, v in gens.items() if v.staged and v.has_rules)
    if wanted:
        if wanted == stable.live:
            return stable.live, None
        if wanted not in gens or not gens[wanted].has_rules:
            raise HerdError(f"{state.host}: herd_generation {wanted} is not kept under {rb}; staged: "
                            f"{', '.join(staged) or 'none'}")
        return stable.live, wanted
    if stable.staged:  # an earlier roll stopped with some MACs on it: that one
        return stable.live, stable.staged
    if not staged:
        return stable.live, None
    if len(staged) > 1:
        raise HerdError(f"{state.host}: several generations are staged under {rb} ({', '.join(staged)}): set "
                        "herd_generation to the one to roll out")
    return stable.live, staged[0]


@dataclass(frozen=True)
class _Router:
    """The roll's router side: ``_deploy.run`` of kept generations on the locked router."""

    ros: RouterOS
    target: Target
    opts: Options
    staging: Path
    features: list[str]
    progress: Progress
    lock: RouterLock | None

    def run(self, **changes: Any) -> dict[str, Any]:
        return run(self.ros, self.target, dataclasses.replace(self.opts, **changes), self.staging, dist=None,
                   features=self.features, check=False, progress=self.progress, lock=self.lock)


def update_herd(target: Target, opts: Options, staging: Path, *, nodes: Sequence[Node],
                wanted: str | None, roll: RollOptions, talk: Nodes, check: bool, progress: Progress,
                report_path: Path | None) -> dict[str, Any]:
    """Pre-flight, plan, and (unless ``check``) the roll and the switch to live. Returns the module result; a
    failed roll raises ``HerdError`` after writing the report (``report_path``)."""
    host = target.api.host
    features = [BASE_FEATURE]
    batches = plan_batches(nodes, roll.canary, roll.max_unavailable)
    result: dict[str, Any] = {"changed": False, "warnings": []}
    try:
        with locked_router(target, opts, features, check=check, generation="", progress=progress) as (
                ros, stored, lock, warnings):
            result["warnings"] += warnings
            live, picked = pick_staged(read_state(ros, host, features), stored.rb_dir, wanted)
            staged = picked or live  # nothing staged: a health check of the herd on the live generation
            if lock is not None:
                lock.refresh(generation=staged, force=True)
            if not talk.ssh.known_hosts:
                result["warnings"].append("node SSH host keys are not checked (herd_ssh_known_hosts is empty; the "
                                          "image makes new ones at each boot unless a per-node initrd gives stable "
                                          "ones)")
            router = _Router(ros, target, stored, staging, features, progress, lock)
            return _roll(router, nodes, live, picked, batches=batches, roll=roll, talk=talk, check=check,
                         result=result, report_path=report_path)
    except HerdError as e:
        e.details["result"] = result  # the module fails with the per-node report
        raise


def _roll(router: _Router, nodes: Sequence[Node], live: str, picked: str | None, *, batches: list[list[Node]],
          roll: RollOptions, talk: Nodes, check: bool, result: dict[str, Any],
          report_path: Path | None) -> dict[str, Any]:
    """Pre-flight, the plan, and (unless ``check``) the roll batch by batch, then ``picked`` live for all; with
    nothing ``picked``, a health check of the herd on ``live``."""
    host, rb, staged, ros = router.target.api.host, router.opts.rb_dir, picked or live, router.ros
    herd = Herd(list(nodes), live, staged, roll, talk, leases=lambda: ros.print(LEASE_MENU),
                dispatch=lambda macs: router.run(dispatch=(staged, tuple(macs))),
                tick=router.progress.tick, log=router.progress.line)  # progress.tick: the lock's refresh
    router.progress.line(f"{host}: rolling {staged} over {len(nodes)} node(s), live {live}")
    problems = herd.preflight()
    result.update({"live_before": live, "live": live, "generation": staged, "dir": rb,
                   "batches": [[n.name for n in b] for b in batches]})
    leases = lease_addresses(ros.print(LEASE_MENU))
    result["unknown_macs"] = sorted(set(leases) - {n.mac for n in nodes})
    if problems:
        herd.report(result, report_path)
        raise HerdError(f"pre-flight: {len(problems)} node(s) not ready, nothing was rebooted and {staged} is not "
                        f"live: " + "; ".join(problems))
    if picked is None:
        for r in herd.reports.values():
            r.state, r.after = "skipped", live
        result["plan"] = [f"nothing staged under {rb}: every node is healthy on the live {live}"]
        router.progress.line(f"{host}: nothing staged; {len(nodes)} node(s) healthy on {live}")
        herd.report(result, report_path)
        return result
    pending = [n.name for n in nodes if herd.reports[n.name].state == "pending"]
    result["plan"] = [f"batch {i}: {', '.join(n.name for n in b if n.name in pending) or '(already on it)'}"
                      for i, b in enumerate(batches, 1)] + [f"then {staged} live for every client"]
    result["changed"] = True  # at least the switch to live
    if check:
        herd.report(result, None)
        return result
    try:
        herd.roll(batches)
    finally:
        herd.report(result, report_path)
    # every node is healthy on staged: live for all clients, unknown MACs included (result["changed"] is set)
    live_res = router.run(generation=staged)
    result.update({k: live_res[k] for k in ("live", "kept_generations", "removed_generations")})
    result["unknown_macs_on_old"] = [f"{m} ({leases[m]}): runs {live} until it reboots" for m in
                                     result["unknown_macs"]]
    router.progress.line(f"{host}: {staged} live for all nodes")
    herd.report(result, report_path)
    return result
