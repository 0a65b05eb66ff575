#!/usr/bin/env python3
"""Drive the collection's playbooks from Python through ansible-runner (README "Driving it from Python").

::

    from netboot_runner import run_playbook

    result = run_playbook("build.yml", inventory="inventory/hosts.yml", on_line=print)
    if result.ok:
        for a in result.artefacts.values():
            print(a.path, a.size, a.sha256)
    else:
        print(result.failed_task, result.message)

``run_playbook`` starts ``ansible_runner.run_async`` and, while the play runs, hands ``on_line`` one line per
event (task started, ok/changed/failed/skipped) and the progress lines of the long steps as they are written:
packages landing in the cache (downloads), ``initramfs.log`` (compression) and ``deploy-*.log`` (uploads to the
RB4011). The artefacts (path, size, sha256) come from the results the play reported (the ``netboot_dist`` and
``rb4011_deploy`` module results in the runner's events), not from reading files behind the play's back. A failure
returns the failing task and its message.

Run as a script: ``python examples/netboot_runner.py [build.yml|deploy_rb4011.yml] [-i INVENTORY] [-e k=v ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner  # type: ignore[import-untyped]

COLLECTION = Path(__file__).resolve().parents[1]
DIST_ACTION = "homelab.alpine_netboot.netboot_dist"
DEPLOY_ACTION = "homelab.alpine_netboot.rb4011_deploy"
# progress logs the long steps write (glob patterns under netboot_build_dir)
PROGRESS_LOGS = ("initramfs.log", "deploy-*.log")


@dataclass(frozen=True)
class Artefact:
    name: str
    path: str
    size: int
    sha256: str


@dataclass
class RunResult:
    ok: bool
    rc: int
    status: str
    artefacts: dict[str, Artefact] = field(default_factory=dict)
    deployed: list[dict[str, Any]] = field(default_factory=list)  # rb4011_deploy results, one per router
    changed_tasks: list[str] = field(default_factory=list)
    failed_task: str | None = None
    message: str | None = None
    seconds: float = 0.0


def _event_line(event: Mapping[str, Any]) -> str | None:
    kind = event.get("event", "")
    data = event.get("event_data", {})
    task = data.get("task", "")
    host = data.get("host", "")
    if kind == "playbook_on_task_start":
        return f"TASK {task}"
    if kind == "runner_on_ok":
        return f"  {'changed' if data.get('res', {}).get('changed') else 'ok'}: {host}: {task}"
    if kind == "runner_on_skipped":
        return f"  skipped: {host}: {task}"
    if kind in ("runner_on_failed", "runner_on_unreachable"):
        return f"  FAILED: {host}: {task}: {data.get('res', {}).get('msg', '')}"
    if kind == "playbook_on_stats":
        return f"PLAY RECAP changed={data.get('changed', {})} failures={data.get('failures', {})}"
    return None


class _Tail:
    """New lines of the progress logs and new files in the cache since the run started."""

    def __init__(self, build_dir: Path | None, cache_dir: Path | None) -> None:
        self.build_dir = build_dir
        self.cache_dir = cache_dir
        self.offsets: dict[Path, int] = {}
        self.seen: set[Path] = set()
        for log in self._logs():  # only what this run writes
            self.offsets[log] = log.stat().st_size
        self.seen = set(self._cached())

    def _logs(self) -> list[Path]:
        if self.build_dir is None or not self.build_dir.is_dir():
            return []
        return sorted(p for pat in PROGRESS_LOGS for p in self.build_dir.glob(pat) if p.is_file())

    def _cached(self) -> list[Path]:
        if self.cache_dir is None or not self.cache_dir.is_dir():
            return []
        # a download in flight is "<name>.part-<pid>" (module_utils/common/_fetch.py) and is renamed when verified:
        # report only finished files
        return sorted(
            p
            for p in self.cache_dir.rglob("*")
            if p.is_file() and not p.name.startswith(".") and ".part-" not in p.name
        )

    def poll(self) -> list[str]:
        lines = []
        for p in self._cached():
            if p not in self.seen:
                assert self.cache_dir is not None
                try:
                    size = p.stat().st_size
                except FileNotFoundError:  # removed between the listing and now (a pruned cache entry)
                    continue
                self.seen.add(p)
                lines.append(f"  download: {p.relative_to(self.cache_dir)} ({size} bytes)")
        for log in self._logs():
            start = self.offsets.get(log, 0)
            try:
                with open(log, encoding="utf-8", errors="replace") as fh:
                    fh.seek(start)
                    chunk = fh.read()
            except OSError:
                continue
            complete, _unused, _rest = chunk.rpartition("\n")
            if complete:
                self.offsets[log] = start + len(complete.encode()) + 1
                lines += [f"  {log.stem}: {ln}" for ln in complete.splitlines() if ln.strip()]
        return lines


def _artefacts(res: Mapping[str, Any]) -> dict[str, Artefact]:
    dest = str(res.get("invocation", {}).get("module_args", {}).get("dest", ""))
    out = {}
    for name, info in sorted(dict(res.get("artefacts") or {}).items()):
        out[name] = Artefact(name, os.path.join(dest, name), int(info["size"]), str(info["sha256"]))
    for name in ("manifest.json", "SHA256SUMS"):
        if name not in out and res.get("sha256sums"):
            # written by the same task; their digests are in its result (SHA256SUMS lists manifest.json)
            for line in str(res["sha256sums"]).splitlines():
                digest, _unused, listed = line.partition("  ")
                if listed == name:
                    out[name] = Artefact(name, os.path.join(dest, name), -1, digest)
    return out


def run_playbook(
    playbook: str = "build.yml",
    *,
    inventory: str | os.PathLike[str] | None = None,
    extravars: Mapping[str, Any] | None = None,
    tags: str | None = None,
    check: bool = False,
    on_line: Callable[[str], None] = print,
    private_data_dir: str | os.PathLike[str] | None = None,
    envvars: Mapping[str, str] | None = None,
    poll_interval: float = 0.5,
) -> RunResult:
    """Run ``playbooks/<playbook>`` of this collection through ansible-runner; see the module docstring."""
    extravars = dict(extravars or {})
    private = Path(private_data_dir or tempfile.mkdtemp(prefix="netboot-runner-"))
    private.mkdir(parents=True, exist_ok=True)
    build_dir = Path(extravars["netboot_build_dir"]) if "netboot_build_dir" in extravars else None
    cache_dir = Path(extravars["netboot_cache_dir"]) if "netboot_cache_dir" in extravars else None
    tail = _Tail(build_dir, cache_dir)
    events: queue.Queue[dict[str, Any]] = queue.Queue()

    def handler(event: dict[str, Any]) -> bool:
        events.put(event)
        return True

    cmdline = [*(["--tags", tags] if tags else []), *(["--check"] if check else [])]
    env = {
        "ANSIBLE_CONFIG": str(COLLECTION / "ansible.cfg"),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        "ANSIBLE_NOCOLOR": "1",
        **(envvars or {}),
    }
    started = time.monotonic()
    thread, runner = ansible_runner.run_async(
        private_data_dir=str(private),
        project_dir=str(COLLECTION),
        playbook=str(COLLECTION / "playbooks" / playbook),
        inventory=str(inventory) if inventory else None,
        extravars=extravars,
        cmdline=" ".join(cmdline) or None,
        envvars=env,
        event_handler=handler,
        quiet=True,
    )
    result = RunResult(ok=False, rc=-1, status="running")

    def drain() -> None:
        while True:
            try:
                ev = events.get_nowait()
            except queue.Empty:
                return
            data = ev.get("event_data", {})
            res = data.get("res", {})
            if ev.get("event") == "runner_on_ok":
                if res.get("changed"):
                    result.changed_tasks.append(str(data.get("task")))
                action = data.get("task_action") or data.get("resolved_action")
                if action == DIST_ACTION and "artefacts" in res:
                    result.artefacts.update(_artefacts(res))
                elif action == DEPLOY_ACTION:
                    result.deployed.append({"host": data.get("host"), **res})
            elif ev.get("event") in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
                if result.failed_task is None:
                    result.failed_task = str(data.get("task"))
                    result.message = str(res.get("msg", "")) or json.dumps(res)[:2000]
            line = _event_line(ev)
            if line:
                on_line(line)

    while thread.is_alive():
        drain()
        for line in tail.poll():
            on_line(line)
        thread.join(poll_interval)
    drain()
    for line in tail.poll():
        on_line(line)
    result.rc = int(runner.rc if runner.rc is not None else -1)
    result.status = str(runner.status)
    result.ok = result.rc == 0 and result.failed_task is None
    if not result.ok and result.failed_task is None:
        result.message = f"ansible-playbook ended with {result.status} (rc {result.rc})"
    result.seconds = time.monotonic() - started
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run a playbook of homelab.alpine_netboot through ansible-runner.")
    ap.add_argument("playbook", nargs="?", default="build.yml")
    ap.add_argument("-i", "--inventory", default=str(COLLECTION / "inventory" / "hosts.yml"))
    ap.add_argument("-e", "--extra-var", action="append", default=[], metavar="KEY=VALUE or @file.json")
    ap.add_argument("--tags")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    extravars: dict[str, Any] = {}
    for item in args.extra_var:
        if item.startswith("@"):
            extravars.update(json.loads(Path(item[1:]).read_text()))
        else:
            key, _unused, value = item.partition("=")
            extravars[key] = value
    result = run_playbook(args.playbook, inventory=args.inventory, extravars=extravars, tags=args.tags,
                          check=args.check)
    if not result.ok:
        print(f"FAILED at task {result.failed_task!r}: {result.message}", file=sys.stderr)
        return 1
    for a in result.artefacts.values():
        print(f"{a.sha256}  {a.size:>12}  {a.path}")
    print(f"ok in {result.seconds:.1f}s; changed tasks: {len(result.changed_tasks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
