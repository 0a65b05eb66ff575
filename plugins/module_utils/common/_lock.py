# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The build lock: one ``flock`` per locked path (build dir, cache, dist/), held for a whole ``ansible-playbook`` run.

Importable without Ansible. Each path ``P`` is locked through ``P.parent/.P.name.netboot-lock`` (beside it, never
inside: dist/ is swapped as a whole directory). The lock file holds a JSON record of the holder - host, the
*playbook's* pid and process start time (``/proc/<pid>/stat`` field 22), the boot id, when it started, the
playbook - for messages. The flock is what decides: the kernel drops it when the keeper process dies, so a lock is
never stuck; a record left without a flock (its holder was killed together with the keeper, or the machine rebooted)
is taken over with a warning naming it. Modules and action plugins are short-lived children of ``ansible-playbook``,
so ``keep()`` forks a keeper that holds the flocks until the playbook process exits (any way), then clears the
records and exits. docsite "Concurrent runs".
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import select
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import parse_json_object

SUFFIX = ".netboot-lock"
POLL = 0.2


class LockHeld(NetbootError):
    """Another run holds the lock (the message names it and the path)."""


def lock_file(path: Path) -> Path:
    """Where the lock of ``path`` lives: beside it (``build`` -> ``.build.netboot-lock``)."""
    p = Path(os.path.abspath(path))
    return p.parent / f".{p.name}{SUFFIX}"


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22), None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[19]  # field 22 overall; fields[0] is field 3 (state)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    pid_start: str
    boot_id: str
    started: str  # UTC, ISO 8601
    playbook: str
    paths: tuple[str, ...] = ()
    keeper: int = 0  # the process holding the flocks

    @classmethod
    def for_process(cls, pid: int, playbook: str, paths: Iterable[Path]) -> Holder:
        return cls(socket.gethostname(), pid, process_start(pid) or "", boot_id(),
                   time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), playbook,
                   tuple(str(Path(os.path.abspath(p))) for p in paths))

    def describe(self) -> str:
        return f"{self.playbook or 'ansible-playbook'} (pid {self.pid} on {self.host}, started {self.started})"

    def gone(self) -> str | None:
        """Why this holder cannot be running any more, or None when it may be (another host: cannot tell)."""
        if self.host != socket.gethostname():
            return None
        if self.boot_id and self.boot_id != boot_id():
            return "the machine rebooted since"
        start = process_start(self.pid)
        if start is None:
            return f"pid {self.pid} is gone"
        if self.pid_start and start != self.pid_start:
            return f"pid {self.pid} is another process now"
        return None

    def same_process(self, other: Holder) -> bool:
        mine = (self.host, self.boot_id, self.pid, self.pid_start)
        return mine == (other.host, other.boot_id, other.pid, other.pid_start)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def read_holder(path: Path) -> Holder | None:
    """The holder recorded in ``path``'s lock file (None: no record). A damaged record reads as an unknown holder."""
    try:
        text = lock_file(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if not text.strip():
        return None
    data = parse_json_object(text) or {}  # not JSON, not an object or no "host": an unknown holder
    try:
        return Holder(str(data["host"]), int(data["pid"]), str(data.get("pid_start", "")),
                      str(data.get("boot_id", "")), str(data.get("started", "")), str(data.get("playbook", "")),
                      tuple(str(p) for p in data.get("paths", ())), int(data.get("keeper", 0)))
    except (ValueError, KeyError, TypeError):
        return Holder("?", 0, "", "", "?", f"an unreadable lock record ({text[:80]!r})")


def is_held(path: Path) -> bool:
    """True when some process holds ``path``'s flock. Reads only: ``/proc/locks`` (no lock is taken, not even for a
    moment, so a check run never makes a starting build fail), and never creates the lock file."""
    try:
        st = os.stat(lock_file(path))
    except FileNotFoundError:
        return False
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return _probe(path)
    for line in lines:
        fields = line.split()
        if "FLOCK" in fields and "->" not in fields and len(fields) >= 6 and fields[5] == want:
            return True
    return False


def _probe(path: Path) -> bool:
    """is_held without /proc/locks: try a shared flock and drop it at once."""
    try:
        fd = os.open(lock_file(path), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@dataclass
class Acquired:
    fds: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def release(self) -> None:
        for fd in self.fds:
            os.ftruncate(fd, 0)
            os.close(fd)
        self.fds.clear()


def _try(paths: Sequence[Path]) -> tuple[Acquired | None, Path | None]:
    got = Acquired()
    for p in paths:
        lf = lock_file(p)
        lf.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lf, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            for held in got.fds:
                os.close(held)  # closing drops the flock; the records were not touched yet
            return None, p
        got.fds.append(fd)
    return got, None


def acquire(paths: Sequence[Path], holder: Holder, *, timeout: float = 0.0) -> Acquired:
    """Take every path's flock (in a fixed order) and write ``holder`` into each lock file.

    Held by another run: wait up to ``timeout`` seconds (0: not at all), then ``LockHeld`` naming the holder and the
    path. A record found without a flock (its holder died with its keeper) is taken over; ``warnings`` say so."""
    ordered = sorted({Path(os.path.abspath(p)) for p in paths})
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        got, busy = _try(ordered)
        if got is not None:
            break
        if busy is None:
            raise NetbootError(f"internal: no lock of {', '.join(map(str, ordered))} was taken and none is busy")
        if time.monotonic() >= deadline:
            other = read_holder(busy)
            who = other.describe() if other else "another run (its record is not written yet)"
            waited = f" after waiting {timeout:g}s (netboot_lock_timeout)" if timeout > 0 else ""
            raise LockHeld(
                f"{busy} is locked by {who}{waited}: another build or deploy is using it. Wait for it to finish, or "
                f"set netboot_lock_timeout (seconds) to wait; the lock file is {lock_file(busy)} (README "
                "\"Concurrent runs\")"
            )
        time.sleep(POLL)
    for fd, p in zip(got.fds, ordered, strict=True):
        old = read_holder(p)
        if old is not None and not old.same_process(holder):
            why = old.gone() or "its lock was not held any more"
            got.warnings.append(f"took over the lock of {p} left by {old.describe()}: {why}")
        os.ftruncate(fd, 0)
        os.pwrite(fd, (holder.to_json() + "\n").encode(), 0)
    return got


def wait_for_exit(pid: int, pid_start: str) -> None:
    """Return when ``pid`` (the process that started at ``pid_start``) has exited."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as e:
        if e.errno == errno.ESRCH:
            return
        pidfd = -1
    if pidfd >= 0:
        try:
            if process_start(pid) == pid_start:  # not a recycled pid
                select.select([pidfd], [], [])
        finally:
            os.close(pidfd)
        return
    while process_start(pid) == pid_start:  # no pidfd (old kernel): poll
        time.sleep(POLL)


def keep(paths: Sequence[Path], holder: Holder, *, timeout: float = 0.0) -> tuple[Holder, list[str]]:
    """Take the lock for ``holder.pid`` (the playbook process) and hold it, in a forked keeper, until that process
    exits; then the keeper clears the records and exits. Returns the holder recorded and the takeover warnings."""
    mine = [read_holder(p) for p in paths]
    if paths and all(h is not None and h.same_process(holder) and is_held(p) for p, h in zip(paths, mine, strict=True)):
        return next(h for h in mine if h is not None), []  # this playbook holds it already (a second lock task)
    probe = acquire(paths, holder, timeout=timeout)  # raises LockHeld before anything is forked
    warnings = list(probe.warnings)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the keeper; covered by the integration tests through its effects
        try:
            os.close(read_end)
            keeper = os.fork()
            if keeper:
                os._exit(0)
            os.setsid()  # a Ctrl-C meant for the playbook's terminal does not drop the lock before it ends
            recorded = Holder(**{**asdict(holder), "keeper": os.getpid()})
            for fd in probe.fds:
                os.ftruncate(fd, 0)
                os.pwrite(fd, (recorded.to_json() + "\n").encode(), 0)
            keep_fds = set(probe.fds)
            devnull = os.open(os.devnull, os.O_RDWR)
            for std in (0, 1, 2):
                os.dup2(devnull, std)
            os.write(write_end, str(os.getpid()).encode())
            for name in os.listdir("/proc/self/fd"):
                fd = int(name)
                if fd > 2 and fd not in keep_fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            wait_for_exit(holder.pid, holder.pid_start)
            probe.release()
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    keeper_pid = os.read(read_end, 32).decode()
    os.close(read_end)
    for fd in probe.fds:
        os.close(fd)  # the keeper has its own copies, which hold the flocks
    if not keeper_pid:
        raise NetbootError("the build lock's keeper process did not start")
    return Holder(**{**asdict(holder), "keeper": int(keeper_pid)}), warnings


def playbook_process(pid: int) -> int:
    """The ``ansible-playbook`` process of ``pid`` (an action plugin runs in a worker forked from it, with the same
    command line): the topmost of ``pid`` and its ancestors whose command line runs ansible-playbook, else ``pid``'s
    parent."""
    found = 0
    cur = pid
    for _unused in range(16):
        if cur <= 1:
            break
        try:
            cmd = Path(f"/proc/{cur}/cmdline").read_bytes().split(b"\0")
        except OSError:
            break
        if any(b"ansible-playbook" in part for part in cmd[:3]):
            found = cur
        elif found:
            break
        cur = _ppid(cur)
    return found or _ppid(pid)


def playbook_name(pid: int) -> str:
    """The playbook file(s) on ``pid``'s command line, for messages."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return ""
    valued = ("-i", "--inventory", "--inventory-file", "-e", "--extra-vars", "--vault-password-file")
    books = [os.path.basename(a) for before, a in zip(["", *cmd], cmd, strict=False)
             if a.endswith((".yml", ".yaml")) and before not in valued and not a.startswith(("-", "@"))]
    return "ansible-playbook " + " ".join(books) if books else "ansible-playbook"


def _ppid(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(text.rsplit(")", 1)[1].split()[1])
