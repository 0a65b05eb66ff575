# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The herd roll: a staged generation goes out node by node, each checked healthy, with rollback (update_herd.yml).

Importable without Ansible. docsite "Updating the herd" is the user's view. The pieces:

- ``plan_batches``: canaries first, then the inventory's order, ``max_unavailable`` nodes at a time (pure).
- ``PROBE``: one POSIX shell command a node runs over SSH (no Python on the node) printing ``key=value`` lines:
  boot id, the generation it booted (``netboot.generation=``, which its generation script passed, else
  ``/run/netboot/generation``: a Secure Boot node reads it from its UKI's name), its role, the file system of ``/``, whether
  OpenRC is still starting services, and each of the role's services' ``rc-service status``. ``parse_probe`` reads
  it and ``judge`` says what is wrong, and whether waiting can still help.
- ``Herd``: the roll itself on a connected router whose lock it holds (``_herdupdate``): the router side goes through
  ``_deploy.run`` (a dispatch to the staged generation for the MACs rolled so far, then live for all), the node side
  through ``ssh`` (``_run``, the one place that runs commands), the power-cycle command through ``/bin/sh``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import (
    CommandError,
    ConfigError,
    NetbootError,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import atomic_write_bytes, dump_json
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploydist import MAC_RE, normal_mac
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routeros import enabled

ROOT_FS = "tmpfs"  # what / is on a node running from RAM
REBOOT = "setsid sh -c 'sleep 1; reboot' >/dev/null 2>&1 </dev/null &"  # returns at once; the node reboots 1 s later
PROBE = r"""echo "boot_id=$(cat /proc/sys/kernel/random/boot_id)"
g=; for o in $(cat /proc/cmdline); do case "$o" in netboot.generation=*) g=${o#*=};; esac; done
[ -n "$g" ] || g=$(cat /run/netboot/generation 2>/dev/null); [ -z "$g" ] || echo "generation=$g"
role=$(cat /etc/netboot/role 2>/dev/null); echo "role=$role"
echo "root_fs=$(awk '$2 == "/" {t = $3} END {print t}' /proc/mounts)"
if pidof openrc >/dev/null 2>&1; then echo booting=yes; else echo booting=no; fi
services=
[ -r "/etc/netboot/roles/$role" ] && . "/etc/netboot/roles/$role"
for s in $services; do rc-service "$s" status >/dev/null 2>&1; echo "service=$s $?"; done
echo probe=done"""


class HerdError(NetbootError):
    """The roll stopped; the message names the node, the generation and the first check that failed."""


# -- the plan (pure) ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Node:
    name: str
    mac: str  # aa:bb:cc:dd:ee:ff
    address: str = ""  # ansible_host; "" = from the router's DHCP lease of ``mac``


def parse_nodes(raw: Sequence[Mapping[str, Any]]) -> list[Node]:
    """The ``nodes`` group as the playbook passes it: ``{name, mac, address}``; errors name the host."""
    out: list[Node] = []
    seen: dict[str, str] = {}
    for item in raw:
        name = str(item.get("name") or "")
        if not name:
            raise ConfigError(f"herd node {dict(item)!r}: no name")
        if not item.get("mac"):
            raise ConfigError(f"inventory host {name}: no mac (the herd finds and dispatches a node by its MAC)")
        try:
            mac = normal_mac(str(item["mac"]))
        except ConfigError as e:
            raise ConfigError(f"inventory host {name}: mac {e}") from None
        if mac in seen:
            raise ConfigError(f"inventory hosts {seen[mac]} and {name} have the same mac {mac}")
        seen[mac] = name
        out.append(Node(name, mac, str(item.get("address") or "")))
    if not out:
        raise ConfigError("the group nodes is empty: nothing to roll (each host needs a mac)")
    return out


def plan_batches(nodes: Sequence[Node], canary: Sequence[str], max_unavailable: int) -> list[list[Node]]:
    """Canaries first (in their given order), then the rest in inventory order; ``max_unavailable`` per batch."""
    if max_unavailable < 1:
        raise ConfigError(f"herd_max_unavailable {max_unavailable}: give 1 or more nodes per batch")
    names = {n.name for n in nodes}
    unknown = [c for c in canary if c not in names]
    if unknown:
        raise ConfigError(f"herd_canary names {', '.join(unknown)}, not in the group nodes")
    first = [next(n for n in nodes if n.name == c) for c in dict.fromkeys(canary)]
    rest = [n for n in nodes if n.name not in set(canary)]
    return [group[i:i + max_unavailable] for group in (first, rest) for i in range(0, len(group), max_unavailable)]


@dataclass(frozen=True)
class Probe:
    boot_id: str
    generation: str
    role: str
    root_fs: str
    booting: bool
    services: Mapping[str, int]


def parse_probe(text: str) -> Probe | None:
    """``PROBE``'s output; None when it did not run to its end."""
    values: dict[str, str] = {}
    services: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep:
            continue
        if key == "service":
            name, _unused, rc = value.rpartition(" ")
            services[name] = int(rc) if rc.isdigit() else 255
        else:
            values[key] = value
    if values.get("probe") != "done" or not values.get("boot_id"):
        return None
    return Probe(values["boot_id"], values.get("generation", ""), values.get("role", ""), values.get("root_fs", ""),
                 values.get("booting") == "yes", services)


def judge(p: Probe, generation: str) -> tuple[str, bool]:
    """(the first failed check or "", whether waiting may still fix it) for a node that should run ``generation``."""
    if p.generation != generation:
        shown = p.generation or "none (no netboot.generation= on its kernel command line, no /run/netboot/generation)"
        return f"wrong generation: booted {shown}, expected {generation}", False
    if p.booting:
        return "still starting its services", True
    if p.root_fs != ROOT_FS:
        return f"/ is {p.root_fs or 'unknown'}, not {ROOT_FS} (not running from RAM)", False
    for name, rc in p.services.items():
        if rc != 0:
            return f"service {name} not started (rc-service {name} status: rc {rc}) in role {p.role}", False
    return "", False


# -- talking to nodes ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SshOptions:
    user: str = "root"
    port: int = 22
    key_file: str = ""
    known_hosts: str = ""  # "": host keys are not checked (they are made at each boot); the report says so
    extra_args: tuple[str, ...] = ()
    connect_timeout: int = 5


@dataclass
class Nodes:
    """SSH to the nodes and the power-cycle command; every command is recorded in ``runner.log``."""

    ssh: SshOptions
    power_cycle: str = ""
    runner: Runner = field(default_factory=Runner)

    def argv(self, address: str, command: str) -> list[str]:
        o = self.ssh
        keys = (["-o", f"UserKnownHostsFile={o.known_hosts}", "-o", "StrictHostKeyChecking=yes"] if o.known_hosts
                else ["-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "LogLevel=ERROR"])
        return ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={o.connect_timeout}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2", "-p", str(o.port),
                *(["-i", o.key_file, "-o", "IdentitiesOnly=yes"] if o.key_file else []), *keys, *o.extra_args,
                f"{o.user}@{address}", command]

    def run(self, address: str, command: str, timeout: float = 60) -> tuple[int, str]:
        """(rc, output); rc 255 = SSH itself failed (unreachable, refused, host key), -1 = timed out."""
        try:
            proc = self.runner.run(self.argv(address, command), check=False, timeout=timeout, what="ssh")
        except CommandError as e:
            return -1, e.stderr
        return proc.returncode, (proc.stdout + proc.stderr)

    def probe(self, address: str) -> tuple[Probe | None, str]:
        rc, out = self.run(address, PROBE, timeout=30)
        p = parse_probe(out) if rc == 0 else None
        last = out.strip().splitlines()[-1] if out.strip() else f"ssh rc {rc}"
        return p, "" if p else (last if rc != 0 else f"the probe did not run to its end: {last}")

    def cycle(self, node: Node, address: str) -> tuple[bool, str]:
        """Run the power-cycle command for ``node`` (env HERD_NODE, HERD_MAC, HERD_ADDRESS): (it exited 0, what
        happened); (False, "") when none is set."""
        if not self.power_cycle:
            return False, ""
        env = {"HERD_NODE": node.name, "HERD_MAC": node.mac, "HERD_ADDRESS": address}
        try:
            proc = self.runner.run(["/bin/sh", "-c", self.power_cycle], env=env, check=False, timeout=120,
                                   what="herd_power_cycle_command")
        except CommandError as e:
            return False, f"herd_power_cycle_command timed out: {e}"
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        return proc.returncode == 0, f"herd_power_cycle_command rc {proc.returncode}" + (
            f": {tail[0]}" if proc.returncode and tail[0] else "")


# -- the report ------------------------------------------------------------------------------------------------------

@dataclass
class NodeReport:
    name: str
    mac: str
    address: str = ""
    before: str = ""  # generation before the roll
    after: str = ""  # generation after
    state: str = "pending"  # pending | skipped (already on it) | updated | failed | rolled back | not recovered
    down_at: float | None = None  # epoch seconds: reboot sent
    up_at: float | None = None  # epoch seconds: healthy again
    seconds_down: float | None = None
    checks: list[str] = field(default_factory=list)
    failure: str = ""


def lease_addresses(rows: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """MAC -> address of the router's DHCP leases (the active address first; a disabled lease is skipped)."""
    out: dict[str, str] = {}
    for r in rows:
        mac = (r.get("active-mac-address") or r.get("mac-address") or "").lower()
        addr = r.get("active-address") or r.get("address") or ""
        if enabled(r) and MAC_RE.match(mac) and addr and (r.get("status") == "bound" or mac not in out):
            out[mac] = addr
    return out


# -- the roll --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RollOptions:
    max_unavailable: int = 1
    canary: tuple[str, ...] = ()
    boot_timeout: float = 900
    poll: float = 5
    pre_reboot: tuple[str, ...] = ()
    post_boot: tuple[str, ...] = ()
    health: tuple[str, ...] = ()


@dataclass
class Herd:
    """One roll of ``staged`` over ``nodes`` while ``live`` is live. The router is reached through three callables
    (so this file needs no router code): ``leases()`` -> the lease rows, ``dispatch(macs)`` -> the stable boot.ipxe
    sends ``macs`` to ``staged`` (none: to nobody), ``tick()`` keeps the router lock fresh."""

    nodes: list[Node]
    live: str
    staged: str
    opts: RollOptions
    talk: Nodes
    leases: Callable[[], Sequence[Mapping[str, str]]]
    dispatch: Callable[[Sequence[str]], object]  # what it returns is not used
    tick: Callable[[], None]
    log: Callable[[str], None]
    reports: dict[str, NodeReport] = field(default_factory=dict)
    on_staged: list[str] = field(default_factory=list)  # MACs the dispatcher sends to ``staged``
    _addresses: dict[str, str] = field(default_factory=dict)

    def address(self, node: Node, fresh: bool = False) -> str:
        if node.address:
            return node.address
        if fresh or not self._addresses:
            self._addresses = lease_addresses(self.leases())
        return self._addresses.get(node.mac, "")

    # -- pre-flight -----------------------------------------------------------------------------------------------
    def preflight(self) -> list[str]:
        """Probe every node; returns the problems (empty: all healthy on ``live`` or, from an earlier run, on
        ``staged``). Fills the reports' ``before`` and the MACs already on ``staged``."""
        problems: list[str] = []
        for node in self.nodes:
            rep = self.reports[node.name] = NodeReport(node.name, node.mac)
            addr = rep.address = self.address(node)
            if not addr:
                problems.append(f"{node.name} ({node.mac}): no DHCP lease on the router and no ansible_host")
                continue
            probe, why = self.talk.probe(addr)
            if probe is None:
                problems.append(f"{node.name} ({addr}): no SSH: {why}")
                continue
            rep.before = probe.generation
            want = self.staged if probe.generation == self.staged else self.live
            failed, _unused = judge(probe, want)
            if failed:
                problems.append(f"{node.name} ({addr}): {failed}" + (
                    f" (live is {self.live}, staged {self.staged})" if failed.startswith("wrong") else ""))
                continue
            unhealthy = self._unhealthy(addr)
            if unhealthy:
                problems.append(f"{node.name} ({addr}): {unhealthy}")
            elif probe.generation == self.staged:
                rep.state, rep.after = "skipped", self.staged
                rep.checks.append(f"already on {self.staged}: skipped")
                self.on_staged.append(node.mac)
        return problems

    def _unhealthy(self, addr: str) -> str:
        """The first health command that fails on ``addr`` (its rc and output); "" when all pass."""
        for cmd in self.opts.health:
            rc, out = self.talk.run(addr, cmd)
            if rc != 0:
                return f"health command {cmd!r} rc {rc}: {out.strip()[-200:]}"
        return ""

    # -- one node back --------------------------------------------------------------------------------------------
    def wait_healthy(self, node: Node, old_boot: str, generation: str, deadline: float) -> str:
        """"" once ``node`` booted anew (boot id not ``old_boot``) on ``generation``, every service of its role
        started, ``/`` a tmpfs and the health commands pass; else the first failed check (at ``deadline`` or as soon
        as waiting cannot help)."""
        rep = self.reports[node.name]
        last = "no SSH: no answer since the reboot (the node did not boot, or booted without SSH)"
        while True:
            self.tick()
            addr = self.address(node, fresh=True) or rep.address
            probe, why = self.talk.probe(addr) if addr else (None, "no DHCP lease")
            if probe is None:
                last = f"no SSH: no answer since the reboot (the node did not boot, or booted without SSH): {why}"
            elif probe.boot_id == old_boot:
                last = "no boot: it is still running the boot from before the reboot"
            else:
                rep.address = addr
                failed, wait = judge(probe, generation)
                if failed and not wait:
                    return failed
                last = failed or self._unhealthy(addr)
                if not last:
                    rep.checks.append(f"booted {generation} (boot id {probe.boot_id[:8]}), / on {probe.root_fs}, "
                                      f"services started: {', '.join(probe.services) or 'none'}"
                                      + (f", {len(self.opts.health)} health command(s) passed" if self.opts.health
                                         else ""))
                    return ""
            if time.monotonic() >= deadline:
                return last
            time.sleep(self.opts.poll)

    def _boot_id(self, addr: str) -> str:
        probe, _unused = self.talk.probe(addr) if addr else (None, "")
        return probe.boot_id if probe else ""

    def _reboot(self, node: Node, addr: str) -> str:
        """Reboot over SSH, else by the power-cycle command; returns how, or "" when neither worked."""
        rc, _out = self.talk.run(addr, REBOOT, timeout=30) if addr else (255, "")
        if rc == 0:
            return "rebooted over SSH"
        ok, done = self.talk.cycle(node, addr)
        if ok:
            return f"no SSH; power-cycled ({done})"
        self.reports[node.name].checks.append(f"no SSH to reboot it{'; ' + done if done else ''}")
        return ""

    # -- the roll -------------------------------------------------------------------------------------------------
    def roll(self, batches: Sequence[Sequence[Node]]) -> None:
        """Reboot batch after batch into ``staged``; on the first failure roll the failed nodes back and raise."""
        for batch in batches:
            todo = [n for n in batch if self.reports[n.name].state == "pending"]
            if not todo:
                continue
            self.log(f"batch {', '.join(n.name for n in todo)}: to {self.staged}")
            boots: dict[str, str] = {}
            for node in todo:
                rep = self.reports[node.name]
                for cmd in self.opts.pre_reboot:
                    rc, out = self.talk.run(rep.address, cmd, timeout=600)
                    rep.checks.append(f"pre-reboot {cmd!r}: rc {rc}")
                    if rc != 0:
                        rep.state, rep.failure = "failed", f"pre-reboot command {cmd!r} rc {rc}: {out.strip()[-200:]}"
                        raise HerdError(f"{node.name}: {rep.failure}; nothing was rebooted in this batch and "
                                        f"{self.staged} is not live. Fix it and rerun.")
                boots[node.name] = self._boot_id(rep.address)
            self.on_staged += [n.mac for n in todo]
            self.dispatch(self.on_staged)
            for node in todo:
                rep = self.reports[node.name]
                rep.down_at = time.time()
                how = self._reboot(node, rep.address)
                rep.checks.append(how or "could not reboot: SSH failed and no herd_power_cycle_command worked")
            failed: list[Node] = []
            for node in todo:
                rep = self.reports[node.name]
                deadline = time.monotonic() + self.opts.boot_timeout - (time.time() - (rep.down_at or time.time()))
                problem = self.wait_healthy(node, boots[node.name], self.staged, deadline)
                if problem:
                    rep.state, rep.failure = "failed", problem
                    failed.append(node)
                    continue
                self._back(node, "updated", self.staged)
                self.log(f"{node.name}: {rep.before} -> {self.staged}, {rep.seconds_down}s down")
            if failed:
                self._roll_back(failed)

    def _back(self, node: Node, state: str, generation: str) -> None:
        """``node`` is healthy on ``generation``: its post-boot commands run, its report says when and ``state``."""
        rep = self.reports[node.name]
        for cmd in self.opts.post_boot:
            rc, out = self.talk.run(rep.address, cmd, timeout=600)
            rep.checks.append(f"post-boot {cmd!r}: rc {rc}")
            if rc != 0:
                rep.checks.append(f"post-boot command {cmd!r} failed: {out.strip()[-200:]}")
        rep.state, rep.after, rep.up_at = state, generation, time.time()
        rep.seconds_down = round(rep.up_at - (rep.down_at or rep.up_at), 1)

    def _roll_back(self, failed: list[Node]) -> None:
        macs = {n.mac for n in failed}
        self.on_staged = [m for m in self.on_staged if m not in macs]
        self.dispatch(self.on_staged)
        notes: list[str] = []
        waiting: list[tuple[Node, str]] = []
        for node in failed:
            rep = self.reports[node.name]
            self.log(f"{node.name}: {rep.failure}; back to {self.live}")
            addr = self.address(node, fresh=True) or rep.address
            old = self._boot_id(addr)
            how = self._reboot(node, addr)
            if not how:
                rep.state = "not recovered"
                hand = ("set herd_power_cycle_command (a smart plug, AMT, Wake-on-LAN) to do it for you"
                        if not self.talk.power_cycle else "herd_power_cycle_command did not work")
                note = f"power-cycle {node.name} ({node.mac}) by hand: it boots {self.live} ({hand})"
                rep.checks.append(note)
                notes.append(note)
                continue
            rep.checks.append(f"rollback: {how}")
            rep.down_at = rep.down_at or time.time()
            waiting.append((node, old))
        for node, old in waiting:
            rep = self.reports[node.name]
            problem = self.wait_healthy(node, old, self.live, time.monotonic() + self.opts.boot_timeout)
            if problem:
                rep.state = "not recovered"
                rep.checks.append(f"rollback to {self.live} not healthy: {problem}")
                notes.append(f"{node.name} did not come back healthy on {self.live}: {problem}")
            else:
                self._back(node, "rolled back", self.live)
        first = self.reports[failed[0].name]
        more = f" (and {', '.join(n.name for n in failed[1:])})" if len(failed) > 1 else ""
        raise HerdError(
            f"{first.name}{more} not healthy on {self.staged} within herd_boot_timeout "
            f"({self.opts.boot_timeout:g}s): {first.failure}. The roll stopped: no further node was rebooted and "
            f"{self.staged} did not go live; {', '.join(n.name for n in failed)} "
            f"{'was' if len(failed) == 1 else 'were'} pointed back at {self.live}"
            + (f". {'; '.join(notes)}" if notes else " and came back healthy on it")
            + ". Fix the generation and stage it again (or rerun: nodes already on it are skipped)."
        )

    def report(self, result: dict[str, Any], path: Path | None) -> None:
        """The per-node reports into ``result["nodes"]``, and ``result`` written to ``path`` (None: not written)."""
        result["nodes"] = [dict(r.__dict__) for r in self.reports.values()]
        if path is not None:
            atomic_write_bytes(path, dump_json(result))
