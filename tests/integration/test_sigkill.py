"""SIGKILL at 20 points of ``build.yml`` (issue 12): the cache, ``dist/`` and the rootfs are never left half-written.

A reference build runs uninterrupted first. Then, in the same directories from scratch, ``ansible-playbook`` is
started in its own process group and the whole group is killed with SIGKILL at moments taken from the build's own
progress (Ansible's workers call setsid(), so the modules they run are in other process groups: the test freezes
the whole process tree with SIGSTOP and then SIGKILLs every process of it, as a crash or systemd's control-group
kill would) (a ``.part-*`` download in the cache, the rootfs task verifying the cached packages, apk installing into
``.rootfs.new-*``, the prune task, the initramfs being compressed into a temp file), five kills per round, the next
run resuming the last one's work. Four rounds: the first from an empty cache, the next ones after removing
``build/`` and a few cached packages, so every phase comes round again without 20 builds from scratch. After each
kill:

* every file in the cache verifies with the project's own code (``read_index``, ``verify_package``); only
  ``*.part-<pid>`` leftovers of the dead process may be incomplete, and the next run removes them;
* ``dist/`` holds the previous complete build or nothing new: every file there is listed in ``SHA256SUMS`` with its
  digest (never a new initramfs with an old ``SHA256SUMS``), or there is no ``SHA256SUMS`` and no artefact yet;
* ``build/rootfs`` is the complete previous one (its manifest is the reference one) or absent.

The run after the fifth kill of a round completes; its time is the recovery time. The final ``dist/`` is
byte-identical to the reference build's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apkformat import (
    Keyring,
    read_index,
    verify_package,
)
from tests.fixtures.apkrepo import alpine_mirror, serve
from tests.fixtures.e2e import NODES, fixture_extravars, free_port
from tests.fixtures.material import REPO
from tests.fixtures.playbook import VENV_BIN, write_inventory

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="building the rootfs needs root"),
]

ROOTFS_MANIFEST = "etc/alpine-netboot/manifest.json"
PHASES = ["download", "verification", "apk install", "pruning", "compression"]
ROUNDS = 4
RUN_TIMEOUT = 600


@dataclass
class Kill:
    round: int
    phase: str
    after: float  # seconds since that run started
    detail: str


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (whatever their session or process group)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def crash(proc: subprocess.Popen[bytes]) -> int:
    """Freeze the whole process tree, then SIGKILL every process of it and the process group; returns the count."""
    frozen: set[int] = set()
    while True:
        new = [p for p in process_tree(proc.pid) if p not in frozen]
        if not new:
            break
        for pid in new:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
            frozen.add(pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in frozen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    for pid in frozen:  # gone, not just signalled (reparented ones are reaped by init)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
    return len(frozen)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


class Build:
    def __init__(self, work: Path, extravars: dict[str, object]) -> None:
        self.work = work
        self.vars_file = work / "extravars.json"
        self.vars_file.write_text(json.dumps(extravars))
        self.inventory = write_inventory(work / "hosts.yml", NODES)
        self.cache = Path(str(extravars["netboot_cache_dir"]))
        self.build = Path(str(extravars["netboot_build_dir"]))
        self.dist = Path(str(extravars["netboot_dist_dir"]))
        self.runs = 0

    def start(self) -> tuple[subprocess.Popen[bytes], Path]:
        self.runs += 1
        log = self.work / f"run-{self.runs}.log"
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_FORCE_COLOR": "0", "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", ""),
               "PYTHONUNBUFFERED": "1"}
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(Path(VENV_BIN) / "ansible-playbook"), "-i", str(self.inventory), "-e", f"@{self.vars_file}",
                 str(REPO / "playbooks/build.yml")],
                stdout=out, stderr=subprocess.STDOUT, cwd=self.work, env=env, start_new_session=True,
            )
        return proc, log

    def run_to_end(self) -> float:
        t = time.monotonic()
        proc, log = self.start()
        rc = proc.wait(timeout=RUN_TIMEOUT)
        assert rc == 0, log.read_text()[-4000:]
        return time.monotonic() - t

    # --------------------------------------------------------------------------------------- phase probes
    def current_task(self, log: Path) -> str:
        tasks = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("TASK [")]
        return tasks[-1] if tasks else ""

    def phase(self, log: Path) -> tuple[str, str] | None:
        """The phase the running build is in, from its own progress (task line, temp files), with a detail."""
        task = self.current_task(log)
        # the modules' own tasks, not the argument validation before them (whose names repeat the role's)
        if "rootfs : Build the Alpine rootfs from" in task:
            parts = [p for p in self.cache.rglob("*.part-*") if Path(f"/proc/{p.name.rsplit('-', 1)[1]}").exists()]
            if parts:
                return "download", parts[0].name
            new = list(self.build.glob(".rootfs.new-*"))
            if new:
                return "apk install", new[0].name
            # neither downloading nor installing, before the new rootfs is swapped in: verifying the signed index and
            # the cached packages (verify_package), between downloads too
            cached = sum(1 for _unused in self.cache.rglob("*.apk"))
            if cached and not (self.build / "rootfs").exists():
                return "verification", f"rootfs task, {cached} packages cached, no download or install under way"
        if "kernel : Prune kernel modules," in task:
            return "pruning", task
        if "initramfs : Build the initramfs with" in task:
            # the temp is renamed when compression ends, maybe between the listing and its size: then it is over
            art = self.build / "artefacts"  # where the initramfs stage writes (the dist stage publishes it)
            for tmp in sorted(art.glob(".initramfs*")) if art.is_dir() else []:
                try:
                    size = tmp.stat().st_size
                except FileNotFoundError:
                    continue
                if size > 0:
                    return "compression", f"{tmp.name} at {size} bytes"
        return None

    def kill_in(self, rnd: int, phase: str, rng: random.Random) -> Kill | None:
        """Start a run and SIGKILL its process group at a random moment of ``phase``; None if the run ended first."""
        proc, log = self.start()
        started = time.monotonic()
        hits = 0
        skip = rng.randrange(0, 3)  # a random later sighting of the phase, not always the first
        while proc.poll() is None and time.monotonic() - started < RUN_TIMEOUT:
            seen = self.phase(log)
            if seen and seen[0] == phase:
                hits += 1
                if hits > skip:
                    after = time.monotonic() - started
                    n = crash(proc)
                    return Kill(rnd, phase, after, f"{seen[1]}; {n} processes killed")
            time.sleep(rng.uniform(0.005, 0.05))
        if proc.poll() is None:
            crash(proc)
        return None


# --------------------------------------------------------------------------------------------- checks


def check_cache(cache: Path, keyring: Keyring) -> list[str]:
    problems = []
    for index_path in cache.rglob("APKINDEX.tar.gz"):
        index = read_index(index_path, keyring)  # raises on a truncated or unsigned index
        entries = {e.filename: e for e in index.entries}
        for f in index_path.parent.iterdir():
            if f.name == "APKINDEX.tar.gz" or ".part-" in f.name:
                continue
            if f.suffix == ".apk":
                verify_package(f, keyring, entries.get(f.name))
            elif f.is_file():
                problems.append(f"unexpected file in the cache: {f}")
    for f in cache.rglob("*.apk"):
        if ".part-" not in f.name and not any(p.name == "APKINDEX.tar.gz" for p in f.parent.iterdir()):
            problems.append(f"{f} has no index beside it")
    return problems


def check_dist(dist: Path) -> list[str]:
    if not dist.is_dir():
        return []
    files = {p.name for p in dist.iterdir() if p.is_file() and not p.name.startswith(".")}
    sums = dist / "SHA256SUMS"
    if not sums.exists():
        return [f"{sorted(files)} in dist/ without SHA256SUMS"] if files & {"initramfs", "vmlinuz", "manifest.json"} \
            else []
    listed = {}
    for line in sums.read_text().splitlines():
        digest, _unused, name = line.partition("  ")
        listed[name.lstrip("*")] = digest
    problems = [f"{n}: not listed in SHA256SUMS" for n in sorted(files - set(listed) - {"SHA256SUMS"})
                if n in ("initramfs", "vmlinuz", "boot.ipxe", "manifest.json")]
    for name, digest in listed.items():
        p = dist / name
        if not p.is_file():
            problems.append(f"{name}: listed in SHA256SUMS but missing")
        elif hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            problems.append(f"{name}: does not match SHA256SUMS (new artefact, old sums)")
    return problems


def check_rootfs(build: Path, reference_manifest: bytes) -> list[str]:
    root = build / "rootfs"
    if not root.exists():
        return []
    manifest = root / ROOTFS_MANIFEST
    if not manifest.is_file() or manifest.read_bytes() != reference_manifest:
        return [f"{root} is neither absent nor the complete rootfs"]
    return []


def dist_digests(dist: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(dist.iterdir())
            if p.is_file() and not p.name.startswith(".")}


def test_sigkill_at_20_points_leaves_cache_dist_and_rootfs_whole(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("NETBOOT_KILL_SEED", "12")))
    mirror = alpine_mirror()
    port = free_port()
    work = tmp_path / "work"
    work.mkdir()
    extravars = fixture_extravars(work, mirror, port, 8080, initramfs_level=1)
    build = Build(work, extravars)
    keyring = Keyring.for_arch("x86_64", [mirror.keys_dir])
    report: list[str] = []
    with serve(mirror.path, port):
        t_ref = build.run_to_end()
        reference = dist_digests(build.dist)
        reference_manifest = (build.build / "rootfs" / ROOTFS_MANIFEST).read_bytes()
        shutil.rmtree(build.cache)
        shutil.rmtree(build.build)
        shutil.rmtree(build.dist)

        kills: list[Kill] = []
        recoveries: list[float] = []
        for rnd in range(1, ROUNDS + 1):
            if rnd > 1:  # make every phase come round again: rebuild the rootfs, fetch a few packages again
                shutil.rmtree(build.build)
                apks = sorted(build.cache.rglob("*.apk"), key=lambda f: f.stat().st_size)
                # the largest (the kernel: a download long enough to be caught) and a few random others
                for f in {apks[-1], *rng.sample(apks[:-1], k=min(len(apks) - 1, 5))}:
                    f.unlink()
            for phase in PHASES:
                kill = build.kill_in(rnd, phase, rng)
                for _unused in range(2):  # a short phase can slip between two looks: the run completed; go round again
                    if kill is not None:
                        break
                    shutil.rmtree(build.build)
                    kill = build.kill_in(rnd, phase, rng)
                assert kill is not None, f"round {rnd}: the build never reached {phase} (see {work}/run-*.log)"
                kills.append(kill)
                problems = (check_cache(build.cache, keyring) + check_dist(build.dist)
                            + check_rootfs(build.build, reference_manifest))
                assert not problems, (kill, problems)
            recoveries.append(build.run_to_end())
            assert not list(build.cache.rglob("*.part-*")), "the run after a kill leaves no partial download"
            assert dist_digests(build.dist) == reference, f"round {rnd}: dist/ differs from the uninterrupted build"

    for k in kills:
        report.append(f"round {k.round} kill in {k.phase:<12} after {k.after:5.1f}s  ({k.detail})")
    report.append(f"phases hit: {sorted({k.phase for k in kills})}; {len(kills)} kills")
    report.append(f"uninterrupted build {t_ref:.1f}s; recovery runs (after the 5th kill of each round): "
                  + ", ".join(f"{r:.1f}s" for r in recoveries))
    print("\n".join(report), file=sys.stderr)
    leftovers = [str(p.relative_to(work)) for d in (build.build, build.dist) for p in d.glob(".*")]
    assert not leftovers, f"temp files left by killed runs: {leftovers}"
    assert len(kills) == 20 and {k.phase for k in kills} == set(PHASES)
