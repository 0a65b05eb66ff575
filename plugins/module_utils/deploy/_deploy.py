# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Deploy ``dist/`` to a RouterOS boot server as one generation: dist/ is read by ``_deploydist``, the plan (pure)
is ``_deployplan``'s, the apply is here.

The layout on the router, the owned TFTP rules, the order of a deploy and the DHCP rows are README's "What the deploy
changes on the router" and "DHCP chainloading". What the code relies on: a generation ``g-<12 hex>`` is named by the
sha256 of dist's ``SHA256SUMS``; its ``generation.ipxe`` is dist's ``boot.ipxe`` rendered from its boot record with
every ``set base tftp://...`` pointing into it; switching is one ``set`` of the stable ``^boot\\.ipxe$`` rule's ``real-filename``; the order
of generations lives in the rules' comments (``seq``, raised each time one becomes live), so the router's
configuration is the only state. On a router with a ``flash`` disk ``rb4011_dir`` is ``flash/<rb4011_dir>`` (the
rest is a RAM disk). The iPXE binaries go to ``<dir>/ipxe/<12 hex of their sha256>/`` (``_dhcp.py``).

Staged generations and the herd roll (docsite "Updating the herd"): a staged generation's rules carry ``staged`` in
their comment (seq 0) and the stable rule stays on the live one; it is always kept. While a roll points some MACs at
it, the stable rule serves a dispatcher, ``<dir>/dispatch/<live>.<staged>.<12 hex>.ipxe``, that chains those MACs to
the staged generation's ``generation.ipxe`` and every other client to the live one's: the generation scripts and
their digests stay as they are. Every generation script sets ``netboot_generation``, which boot.ipxe passes to the
kernel as ``netboot.generation=``, so a node can tell which generation it booted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import atomic_write_bytes
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._lock import playbook_process
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploydist import (
    DISPATCH_DIR,
    Artefact,
    DeployError,
    Dist,
    read_dist,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deployplan import (
    TFTP_MENU,
    Options,
    Plan,
    RouterFile,
    RouterState,
    make_plan,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._dhcp import read_dhcp
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routerlock import (
    RouterLock,
    live_generations,
    lock_name,
    read_lock,
    router_time,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routeros import (
    API_ARGUMENT_SPEC,
    BASE_FEATURE,
    ApiOptions,
    RouterOS,
    RouterOSError,
    api_options,
    connect,
    require_version,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._sftp import Progress, Sftp, SshOptions

FLASH = "flash"  # the persistent disk's name in /file on routers that have a RAM disk besides it


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
    # dist/ is read once into a snapshot (hardlinks or copies, checked against its SHA256SUMS) and uploaded from
    # there, so a build swapping dist/ meanwhile cannot put its bytes under this generation's id
    dist = read_dist(dist_dir, staging) if dist_dir is not None and not (opts.rollback or opts.generation) else None
    chainload = opts.dhcp.binaries() if opts.dhcp is not None else []
    features = [BASE_FEATURE] + (opts.dhcp.features() if opts.dhcp else [])
    generation = dist.generation if dist else (opts.generation or "")
    with locked_router(target, opts, features, check=check, generation=generation, progress=progress) as (
            ros, stored, lock, warnings):
        return run(ros, target, stored, staging, dist=dist, chainload=chainload, features=features, check=check,
                   progress=progress, lock=lock, warnings=warnings)


@contextlib.contextmanager
def locked_router(target: Target, opts: Options, features: Sequence[str], *, check: bool, generation: str,
                  progress: Progress) -> Iterator[tuple[RouterOS, Options, RouterLock | None, list[str]]]:
    """The connected router, ``opts`` with its storage directory, and unless ``check`` the lock of that directory
    (taken for ``generation``, released at the end), with warnings (in check mode: a deploy holding the lock)."""
    host = target.api.host
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
            lock = RouterLock.take(ros, opts.rb_dir, generation=generation, stale=opts.lock_stale,
                                   timeout=opts.lock_timeout, pid=playbook_process(os.getpid()))
            warnings += lock.warnings
            progress.tick = lock.refresh  # uploads and read-backs keep the lock fresh
        yield ros, opts, lock, warnings
    finally:
        progress.tick = lambda: None
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
    """Plan and (unless ``check``) apply on a connected router whose lock the caller holds (``lock``, which
    ``progress.tick`` refreshes; None in check mode). ``opts.rb_dir`` is already the storage directory. Returns the
    module result."""
    state = read_state(ros, target.api.host, features)  # as it is now that no other deploy writes
    protect = live_generations(ros, opts.rb_dir, opts.lock_stale, exclude_token=lock.record.token if lock else "")
    dhcp_state = read_dhcp(ros) if opts.dhcp is not None else None
    plan = make_plan(state, opts, dist, chainload=chainload, dhcp_state=dhcp_state, protect=protect)
    plan.warnings[:0] = warnings
    if lock is not None and lock.record.generation != plan.target:
        lock.refresh(generation=plan.target, force=True)
    result = plan_result(state, opts, plan)
    if not check:
        _apply(ros, target, opts, plan, staging=staging, result=result, progress=progress)
    return result


def plan_result(state: RouterState, opts: Options, plan: Plan) -> dict[str, Any]:
    """The module result of a plan, before anything is sent (``uploads`` and ``bytes_sent`` are filled in by
    the apply)."""
    return {
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
        "dhcp_changes": [c.command() for c in (plan.dhcp.changes if plan.dhcp else [])],
        "dhcp": ({"network": opts.dhcp.network, "next_server": plan.dhcp.next_server,
                  "firmware": opts.dhcp.firmware,
                  "boot_files": plan.dhcp.boot_files, "matcher_value": opts.dhcp.matcher_value}
                 if opts.dhcp and plan.dhcp else None),
        "warnings": plan.warnings,
        "rules_before": plan.rules_before + (plan.dhcp.before if plan.dhcp else []),
        "rules_after": plan.rules_after + (plan.dhcp.after if plan.dhcp else []),
        "uploads": [], "bytes_sent": 0, "changed": plan.changes,
    }


def _apply(ros: RouterOS, target: Target, opts: Options, plan: Plan, *, staging: Path, result: dict[str, Any],
           progress: Progress) -> None:
    """Send and verify, then the generation's rules and the one switch, the chainload rules, DHCP (which names what
    they serve), and prune; ``result`` records what was sent."""
    host = target.api.host
    if plan.dispatch_upload is not None:
        sent = _send_dispatcher(ros, target, opts.rb_dir, staging, plan.dispatch_upload, progress=progress)
        result["uploads"].append(sent)
        result["changed"] = True
    if plan.uploads or plan.verify or plan.chainload_uploads or plan.chainload_verify:
        progress.line(f"{host}: generation {plan.target}: {len(plan.uploads)} file(s) to send, "
                      f"{plan.needed} bytes; {len(plan.verify)} to verify")
        _send_files(ros, target, opts, plan, result=result, progress=progress)
        result["changed"] = True
    for change in [*plan.rule_changes, *plan.chainload_changes, *(plan.dhcp.changes if plan.dhcp else [])]:
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


def _send_dispatcher(ros: RouterOS, target: Target, rb: str, staging: Path, upload: tuple[str, bytes], *,
                     progress: Progress) -> dict[str, Any]:
    where, data = upload
    local = staging / DISPATCH_DIR / where.rsplit("/", 1)[1]
    atomic_write_bytes(local, data)
    with Sftp.open(target.ssh) as sftp:
        sftp.makedirs(f"/{rb}/{DISPATCH_DIR}")
        return _upload(ros, sftp, Artefact(local.name, len(data), hashlib.sha256(data).hexdigest(), local),
                       f"{rb}/{DISPATCH_DIR}", verify="sha256", progress=progress)


def _send_files(ros: RouterOS, target: Target, opts: Options, plan: Plan, *, result: dict[str, Any],
                progress: Progress) -> None:
    """The generation's files and the chainload binaries: those on the router read back first (resent if they
    differ), the others sent."""
    with Sftp.open(target.ssh) as sftp:
        work: list[tuple[str, list[Artefact], list[Artefact]]] = []
        if plan.uploads or plan.verify:
            work.append((f"{opts.rb_dir}/{plan.target}", list(plan.uploads), list(plan.verify)))
        work += [(where, [a], []) for where, a in plan.chainload_uploads]
        work += [(where, [], [a]) for where, a in plan.chainload_verify]
        for where, uploads, verify in work:
            sftp.makedirs("/" + where)
            for a in verify:
                progress.tick()
                t0 = time.monotonic()
                ok = sftp.sha256(f"/{where}/{a.name}") == a.sha256
                progress.line(f"{a.name}: already on the router, sha256 {'matches' if ok else 'DIFFERS'} "
                              f"({time.monotonic() - t0:.1f}s)")
                if not ok:
                    uploads.append(a)
            for a in uploads:
                result["uploads"].append(_upload(ros, sftp, a, where, verify=opts.verify, progress=progress))
                result["bytes_sent"] += a.size


def _upload(ros: RouterOS, sftp: Sftp, a: Artefact, gen_dir: str, *, verify: str, progress: Progress) -> dict[str, Any]:
    host, remote = ros.host, f"/{gen_dir}/{a.name}"
    cb, elapsed = progress.callback(a.name)
    sftp.upload(a.local, remote, cb)
    seconds = elapsed()
    name = remote.lstrip("/")
    sizes = {r.get("name"): r.get("size") for r in ros.print("/file", ("name", "size"))}
    if str(sizes.get(name)) != str(a.size):
        raise DeployError(f"{host}: {name} is {sizes.get(name)} bytes on the router after the upload, expected "
                          f"{a.size}; the live generation is unchanged, rerun to resume")
    if verify == "sha256":
        progress.tick()  # the read-back of a big file is long too: keep the router lock fresh
        got = sftp.sha256(remote)
        if got != a.sha256:
            raise DeployError(f"{host}: {name} reads back with sha256 {got}, expected {a.sha256}; the live "
                              "generation is unchanged, rerun to resend it")
    mbps = a.size / 1e6 / max(seconds, 1e-6)
    progress.line(f"{a.name}: sent {a.size} bytes in {seconds:.2f}s ({mbps:.2f} MB/s), verified by {verify}")
    return {"name": a.name, "bytes": a.size, "bytes_sent": a.size, "seconds": round(seconds, 3),
            "MBps": round(mbps, 2), "verified": verify}
