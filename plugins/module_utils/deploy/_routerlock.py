# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The router lock: one ``/system/script`` entry per generation directory, which RouterOS refuses to add twice.

Importable without Ansible. A deploy (and anything else that writes a router's generations) adds
``/system/script name=homelab.alpine_netboot.lock.<dir>`` whose ``source`` is a JSON record of the holder
(controller, pid, the router-clock time it was taken and last refreshed, the generation being written, a random
token). RouterOS keeps script names unique, so of two controllers adding it at once one is refused: the lock works
across machines. Age is judged by the router's clock (``/system/clock``), never the controller's; a long upload
refreshes it; a lock older than ``stale`` seconds is taken over with a warning. docsite "Concurrent runs".
"""

from __future__ import annotations

import calendar
import dataclasses
import json
import os
import re
import secrets
import socket
import time
from dataclasses import dataclass, field

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import parse_json_object
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploydist import OWNER
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routeros import RouterOS, RouterOSError

MENU = "/system/script"
CLOCK = "/system/clock"
POLL = 1.0
_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                                       "dec"), 1)}


class RouterLockHeld(NetbootError):
    """Another deploy holds the router lock (the message names it)."""


def lock_name(rb_dir: str) -> str:
    return f"{OWNER}.lock.{rb_dir.strip('/')}"


def router_time(ros: RouterOS) -> int:
    """The router's clock as seconds (its local time read as UTC: only differences are used)."""
    rows = ros.print(CLOCK)
    if not rows:
        raise RouterOSError(f"{ros.host}: {CLOCK}/print returned nothing")
    return parse_clock(rows[0].get("date", ""), rows[0].get("time", ""), ros.host)


def parse_clock(date: str, clock: str, host: str = "router") -> int:
    """``2026-12-07`` (RouterOS 7.10+) or ``dec/07/2026`` (older) and ``12:34:56`` -> seconds."""
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)", date.strip())
    if m:
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    else:
        m = re.fullmatch(r"([a-z]{3})/(\d\d)/(\d{4})", date.strip().lower())
        if not m or m.group(1) not in _MONTHS:
            raise RouterOSError(f"{host}: cannot read the router's date {date!r} from {CLOCK}")
        y, mo, d = int(m.group(3)), _MONTHS[m.group(1)], int(m.group(2))
    t = re.fullmatch(r"(\d\d):(\d\d):(\d\d)", clock.strip())
    if not t:
        raise RouterOSError(f"{host}: cannot read the router's time {clock!r} from {CLOCK}")
    return calendar.timegm((y, mo, d, int(t.group(1)), int(t.group(2)), int(t.group(3)), 0, 0, 0))


def _stamp(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


@dataclass(frozen=True)
class Record:
    controller: str
    pid: int
    since: int  # router clock, seconds
    refreshed: int  # router clock, seconds
    generation: str
    dir: str
    token: str
    id: str = ""  # the script's .id on the router

    @classmethod
    def parse(cls, row: dict[str, str]) -> Record:
        data = parse_json_object(row.get("source", "")) or {}
        try:
            return cls(str(data["controller"]), int(data["pid"]), int(data["since"]), int(data["refreshed"]),
                       str(data.get("generation", "")), str(data.get("dir", "")), str(data.get("token", "")),
                       row.get(".id", ""))
        except (ValueError, KeyError, TypeError):
            # not ours to read (edited by hand?): an unknown holder that is as old as nothing says
            return cls("an unreadable lock entry", 0, 0, 0, "", "", "", row.get(".id", ""))

    def source(self) -> str:
        data = {k: v for k, v in dataclasses.asdict(self).items() if k != "id"}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def describe(self, now: int) -> str:
        gen = f"writing generation {self.generation}" if self.generation else "deploying"
        return (f"{self.controller} (pid {self.pid}, {gen}, since {_stamp(self.since)} router time, last refreshed "
                f"{max(now - self.refreshed, 0)}s ago)")


def read_lock(ros: RouterOS, rb_dir: str) -> Record | None:
    rows = [r for r in ros.print(MENU, (".id", "name", "source")) if r.get("name") == lock_name(rb_dir)]
    return Record.parse(rows[0]) if rows else None


@dataclass
class RouterLock:
    """A held router lock; ``refresh()`` keeps it fresh (rate-limited), ``release()`` removes it."""

    ros: RouterOS
    rb_dir: str
    stale: int
    record: Record
    warnings: list[str] = field(default_factory=list)
    every: float = 30.0
    _last: float = 0.0

    @classmethod
    def take(cls, ros: RouterOS, rb_dir: str, *, generation: str, stale: int, timeout: float = 0.0,
             pid: int | None = None, controller: str | None = None) -> RouterLock:
        """Add the lock entry; held by another deploy: wait up to ``timeout`` s, then ``RouterLockHeld``; older
        than ``stale`` s by the router's clock: taken over (``warnings`` says so)."""
        name = lock_name(rb_dir)
        deadline = time.monotonic() + max(timeout, 0.0)
        warnings: list[str] = []
        vanished = 0  # adds refused while no lock could be read back: the holder released it in between
        while True:
            now = router_time(ros)
            mine = Record(controller or socket.gethostname(), pid or os.getpid(), now, now, generation, rb_dir,
                          secrets.token_hex(8))
            try:
                # policy=read: the entry is never run, and a script may not hold policies its author lacks
                # [unverified: whether RouterOS refuses or trims a default policy the deploy user's group lacks]
                rid = ros.add(MENU, {"name": name, "source": mine.source(), "policy": "read",
                                     "comment": f"{OWNER} deploy lock of {rb_dir}: remove only if no deploy runs"})
                return cls(ros, rb_dir, stale, dataclasses.replace(mine, id=rid), warnings,
                           every=max(min(stale / 4, 30.0), 1.0), _last=time.monotonic())
            except RouterOSError as e:
                other = read_lock(ros, rb_dir)
                if other is None and vanished < 2:  # released between the add and the read: add again
                    vanished += 1
                    continue
                if other is None:  # refused again with no lock there: another reason (permissions?)
                    raise RouterOSError(f"{e}. The deploy keeps its lock in {MENU} ({name}): the user's group "
                                        "needs the write policy. Nothing was changed.") from e
            age = now - other.refreshed
            if age > stale:
                try:
                    ros.remove(MENU, [other.id])
                except RouterOSError:
                    pass  # another controller took it over first: the next add says who holds it now
                warnings.append(f"{ros.host}: took over the deploy lock {name} left by {other.describe(now)}: older "
                                f"than rb4011_lock_stale ({stale}s) by the router's clock")
                continue
            if time.monotonic() >= deadline:
                waited = f" after waiting {timeout:g}s (rb4011_lock_timeout)" if timeout > 0 else ""
                raise RouterLockHeld(
                    f"{ros.host}: another deploy holds the lock of {rb_dir}{waited}: {other.describe(now)}. Nothing "
                    f"was changed. Wait for it, or set rb4011_lock_timeout (seconds) to wait. If that deploy is dead, "
                    f"the lock is taken over once older than rb4011_lock_stale ({stale}s), or remove it by hand: "
                    f"/system script remove [find name=\"{name}\"]"
                )
            time.sleep(POLL)

    def _check(self) -> None:
        now = read_lock(self.ros, self.rb_dir)
        if now is None or now.token != self.record.token:
            who = now.describe(router_time(self.ros)) if now else "nobody (it was removed)"
            raise RouterLockHeld(f"{self.ros.host}: the deploy lock {lock_name(self.rb_dir)} is not ours any more: "
                                 f"held by {who}; stopping before writing more. Rerun when no other deploy runs.")

    def refresh(self, *, generation: str | None = None, force: bool = False) -> None:
        """Set ``refreshed`` to the router's time now (at most every ``every`` seconds unless ``force``)."""
        if not force and time.monotonic() - self._last < self.every:
            return
        self._check()
        new = dataclasses.replace(self.record, refreshed=router_time(self.ros),
                                  generation=self.record.generation if generation is None else generation)
        self.ros.set(MENU, self.record.id, {"source": new.source()})
        self.record = new
        self._last = time.monotonic()

    def release(self) -> None:
        """Remove the entry if it is still ours."""
        now = read_lock(self.ros, self.rb_dir)
        if now is not None and now.token == self.record.token:
            self.ros.remove(MENU, [now.id])


def live_generations(ros: RouterOS, rb_dir: str, stale: int, *, exclude_token: str = "") -> set[str]:
    """Generations named by a live lock of ``rb_dir`` other than ours: cleanup leaves them alone."""
    lock = read_lock(ros, rb_dir)
    if lock is None or lock.token == exclude_token or not lock.generation:
        return set()
    return {lock.generation} if router_time(ros) - lock.refreshed <= stale else set()
