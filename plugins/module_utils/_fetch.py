"""Downloads that never leave a partial or unverified file behind.

A download goes to ``<dest>.part-<pid>`` in the destination directory, is checked by the caller's ``verify``
function, and only then renamed over ``dest``. Mirrors are tried in order; the error names every URL tried and why
it failed. A full disk is reported as such.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import shutil
import urllib.error
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ansible.module_utils.urls import ConnectionError as UrlConnectionError
from ansible.module_utils.urls import open_url

from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import (
    FetchError,
    NetbootError,
    SignatureError,
)

T = TypeVar("T")
USER_AGENT = "homelab.alpine_netboot (+apk-compatible fetch)"
# The download options of every module that fetches, merged into its ARGUMENT_SPEC (documented once, in the
# homelab.alpine_netboot.netboot.fetch doc fragment).
FETCH_OPTIONS: dict[str, dict[str, Any]] = {
    "offline": {"type": "bool", "default": False},
    "timeout": {"type": "int", "default": 60},
}


@dataclass
class Fetcher:
    timeout: float = 30.0
    offline: bool = False
    log: list[str] = field(default_factory=list)  # URLs fetched, for the module result

    def fetch(self, urls: Sequence[str], dest: Path, verify: Callable[[Path], T], what: str) -> T:
        """Fetch the first URL that works and verifies into ``dest`` (atomically). Returns ``verify``'s result."""
        if self.offline:
            raise FetchError(f"{what} is not in the cache and netboot_offline is true; run once online to fill it")
        dest.parent.mkdir(parents=True, exist_ok=True)
        failures: list[str] = []
        rejected = False
        statuses: list[int | None] = []
        for url in urls:
            part = dest.with_name(f"{dest.name}.part-{os.getpid()}")
            try:
                self._download(url, part)
                result = verify(part)
                os.replace(part, dest)
                self.log.append(url)
                return result
            except SignatureError as exc:
                rejected = True
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

    def _download(self, url: str, part: Path) -> None:
        # Ansible's open_url: certificate validation, proxies and redirects as every Ansible module does them
        with open_url(url, http_agent=USER_AGENT, timeout=self.timeout) as resp, part.open("wb") as out:
            expected = resp.headers.get("Content-Length")
            shutil.copyfileobj(resp, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
            if expected is not None and out.tell() != int(expected):
                raise OSError(f"connection closed after {out.tell()} of {expected} bytes")


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
