# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Downloads that never leave a partial or unverified file behind.

A download goes to ``<dest>.part-<pid>`` in the destination directory, is checked by the caller's ``verify``
function, and only then renamed over ``dest``. Mirrors are tried in order; the error names every URL tried and why
it failed. A full disk is reported as such.

Every download is bounded: by the size its signed source gives (an index's ``S:``, a pinned ``size``) or by the
caller's cap (``MAX_INDEX_BYTES``, ``MAX_UNSIZED_BYTES``), by the free space of the destination (checked before a
byte is fetched), and by a total time (``deadline``) besides the per-read ``timeout``: a server that keeps streaming
or trickles one byte a minute is cut off with an error that says so (never "tampered").
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import shutil
import signal
import threading
import time
import urllib.error
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ansible.module_utils.urls import ConnectionError as UrlConnectionError
from ansible.module_utils.urls import open_url

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import (
    FetchError,
    NetbootError,
    SignatureError,
)

T = TypeVar("T")
USER_AGENT = "homelab.alpine_netboot (+apk-compatible fetch)"
# Size and time bounds of every download (one place; imported where a caller needs them).
MAX_INDEX_BYTES = 64 << 20  # an APKINDEX.tar.gz (Alpine 3.23 community: ~2.5 MiB)
MAX_UNSIZED_BYTES = 2 << 30  # a pinned file without a pinned size (netboot_binaries entries without size)
DEFAULT_DEADLINE = 1800  # s, total time for one download from one URL (alpine_fetch_deadline)
FREE_SPACE_RESERVE = 16 << 20  # bytes kept free on the cache's filesystem beyond the download itself
_CHUNK = 1 << 16
# The download options of every module that fetches, merged into its ARGUMENT_SPEC (documented once, in the
# homelab.alpine_netboot.netboot.fetch doc fragment).
FETCH_OPTIONS: dict[str, dict[str, Any]] = {
    "offline": {"type": "bool", "default": False},
    "timeout": {"type": "int", "default": 60},
    "deadline": {"type": "int", "default": DEFAULT_DEADLINE},
}


class _TooBig(Exception):
    """The server sent (or announced) more than the download's bound."""


class _TooSlow(Exception):
    """The download did not finish within its deadline."""


@contextlib.contextmanager
def _deadline(seconds: float, message: Callable[[], str]) -> Iterator[None]:
    """Raise ``_TooSlow(message())`` when the block runs longer than ``seconds``, even inside one blocking read (a
    server trickling its headers): SIGALRM in the main thread (where modules run); elsewhere the copy loop's own
    clock check is the bound."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(_signum: int, _frame: object) -> None:
        raise _TooSlow(message())

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_free_space(directory: Path, need: int, what: str) -> None:
    """Raise ``NetbootError`` naming ``what``, the size, the free bytes and ``directory`` when ``need`` does not fit."""
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need + FREE_SPACE_RESERVE > free:
        raise NetbootError(
            f"not enough space for {what}: it is {need} bytes but {directory} has {free} bytes free (keeping "
            f"{FREE_SPACE_RESERVE} in reserve); free space there or point netboot_cache_dir elsewhere. "
            f"Nothing was downloaded"
        )


@dataclass
class Fetcher:
    timeout: float = FETCH_OPTIONS["timeout"]["default"]  # per read, seconds
    offline: bool = FETCH_OPTIONS["offline"]["default"]
    log: list[str] = field(default_factory=list)  # URLs fetched, for the module result
    deadline: float = DEFAULT_DEADLINE  # total seconds per download from one URL

    def fetch(
        self, urls: Sequence[str], dest: Path, verify: Callable[[Path], T], what: str, *,
        size: int | None = None, max_size: int = MAX_UNSIZED_BYTES,
    ) -> T:
        """Fetch the first URL that works and verifies into ``dest`` (atomically). Returns ``verify``'s result.

        ``size``: the exact size a signed source gives (the download stops right after it); otherwise at most
        ``max_size`` bytes are read. Free space for it is checked before anything is fetched."""
        if self.offline:
            raise FetchError(f"{what} is not in the cache and netboot_offline is true; run once online to fill it")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if size is not None:
            check_free_space(dest.parent, size, what)
        failures: list[str] = []
        rejected = False
        statuses: list[int | None] = []
        for url in urls:
            part = dest.with_name(f"{dest.name}.part-{os.getpid()}")
            try:
                self._download(url, part, what, size, max_size)
                result = verify(part)
                os.replace(part, dest)
                self.log.append(url)
                return result
            except SignatureError as exc:
                rejected = True
                failures.append(f"{url}: {exc}")
            except (_TooBig, _TooSlow) as exc:
                statuses.append(None)
                failures.append(f"{url}: {exc}")
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
                failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
            except (urllib.error.URLError, UrlConnectionError, http.client.HTTPException, OSError, TimeoutError) as exc:
                if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                    raise NetbootError(
                        f"no space left on device while writing {part}; free space on {dest.parent} "
                        f"or point netboot_cache_dir elsewhere"
                    ) from exc
                statuses.append(None)
                failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
            finally:
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()
        if rejected:
            hint = "the download was rejected and nothing was added to the cache"
        else:
            hint = "check alpine_mirror and the network, or set netboot_offline: true with a filled cache"
        raise FetchError(
            f"could not fetch {what} ({hint}):\n  " + "\n  ".join(failures), statuses=statuses, rejected=rejected
        )

    def _download(self, url: str, part: Path, what: str, size: int | None, max_size: int) -> None:
        """Read at most the bound (``size`` or ``max_size``) + 1 bytes, within ``deadline`` seconds in total."""
        bound = size if size is not None else max_size
        how = f"its expected size of {size} bytes (signed index size or pinned size)" if size is not None else (
            f"the {max_size}-byte cap")
        start = time.monotonic()
        slow = f"downloading {what} took longer than the {self.deadline:g} s deadline (alpine_fetch_deadline)"
        # Ansible's open_url: certificate validation, proxies and redirects as every Ansible module does them
        got = 0
        with _deadline(self.deadline, lambda: f"{slow}; stopped after {got} bytes"), open_url(
            url, http_agent=USER_AGENT, timeout=min(self.timeout, self.deadline)
        ) as resp:
            expected = resp.headers.get("Content-Length")
            announced = int(expected) if expected is not None and expected.isdigit() else None
            if announced is not None and announced > bound:
                raise _TooBig(f"the server announces {announced} bytes for {what}, more than {how}; not downloaded")
            if size is None and announced is not None:
                check_free_space(part.parent, announced, what)
            with part.open("wb") as out:
                while True:
                    # read1: one receive at most, so a trickling server cannot hold a read past the deadline
                    want = min(_CHUNK, bound + 1 - got)
                    chunk = resp.read1(want) if hasattr(resp, "read1") else resp.read(want)
                    if not chunk:
                        break
                    got += len(chunk)
                    if got > bound:
                        raise _TooBig(
                            f"the server sent more than {how} for {what}; stopped after {got} bytes (a broken or "
                            f"hostile mirror, nothing was kept)"
                        )
                    out.write(chunk)
                    if time.monotonic() - start > self.deadline:
                        raise _TooSlow(f"{slow}; stopped after {got} bytes")
                out.flush()
                os.fsync(out.fileno())
            if announced is not None and got != announced:
                raise OSError(f"connection closed after {got} of {announced} bytes")


def clean_partials(directory: Path) -> list[Path]:
    """Remove ``*.part-*`` files left by a killed run (their process is gone)."""
    removed = []
    if directory.is_dir():
        for p in directory.glob("*.part-*"):
            pid = p.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                with contextlib.suppress(FileNotFoundError):  # another build cleaning the same cache got it first
                    p.unlink()
                removed.append(p)
    return removed
