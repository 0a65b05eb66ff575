# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""SFTP to the RB4011 (paramiko): host key pinned (known_hosts or a ``SHA256:`` fingerprint), never auto-accepted;
uploads with a progress callback; sha256 read back from the router.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _deps
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routeros import API_TIMEOUT

_deps.lazy("paramiko")  # imported where used

CHUNK = 1 << 20


class SftpError(NetbootError):
    """SFTP to the router failed."""


class HostKeyError(SftpError):
    """The router's SSH host key is not the pinned one."""


def key_fingerprint(key_bytes: bytes) -> str:
    """OpenSSH's ``SHA256:`` fingerprint of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key_bytes).digest()).decode().rstrip("=")


@dataclass(frozen=True)
class SshOptions:
    host: str
    user: str
    password: str
    port: int = 22
    known_hosts: str | None = None
    fingerprint: str | None = None
    timeout: float = API_TIMEOUT  # the same timeout option as the API's

    def __repr__(self) -> str:  # never show the password
        return f"SshOptions(host={self.host!r}, user={self.user!r}, port={self.port})"


def expected_fingerprints(opts: SshOptions) -> list[str]:
    """The fingerprints the router may present: from ``fingerprint`` and/or the ``known_hosts`` file."""
    import paramiko

    out: list[str] = []
    if opts.fingerprint:
        fp = opts.fingerprint.strip()
        if not fp.startswith("SHA256:"):
            raise ConfigError(f"rb4011_host_key_fingerprint {fp!r}: give OpenSSH's SHA256:... form "
                              "(ssh-keyscan HOST | ssh-keygen -lf -)")
        out.append(fp)
    if opts.known_hosts:
        path = Path(opts.known_hosts).expanduser()
        if not path.is_file():
            raise ConfigError(f"rb4011_known_hosts {path}: no such file")
        hk = paramiko.HostKeys(str(path))
        name = opts.host if opts.port == 22 else f"[{opts.host}]:{opts.port}"
        out += [key_fingerprint(key.asbytes()) for key in (hk.lookup(name) or {}).values()]
        if not out:
            raise HostKeyError(f"{path} has no host key for {name}; add the router's key "
                               f"(ssh-keyscan -p {opts.port} {opts.host} >> {path}) after checking it on the console")
    if not out:
        raise ConfigError("set rb4011_known_hosts or rb4011_host_key_fingerprint: the router's SSH host key is "
                          "never accepted without being pinned")
    return out


class Sftp:
    """An open SFTP session (``with Sftp.open(opts) as s:``)."""

    def __init__(self, transport: Any, client: Any, opts: SshOptions) -> None:
        self.transport = transport
        self.client = client
        self.opts = opts

    @classmethod
    def open(cls, opts: SshOptions) -> Sftp:
        import paramiko

        wanted = expected_fingerprints(opts)
        where = f"{opts.host}:{opts.port}"
        try:
            sock = socket.create_connection((opts.host, opts.port), timeout=opts.timeout)
        except OSError as e:
            raise SftpError(f"cannot reach SSH on {where}: {e}; enable /ip/service ssh") from None
        transport = paramiko.Transport(sock)
        transport.window_size = 2**27  # wide window: throughput over a LAN is bounded by the router, not acks
        try:
            transport.start_client(timeout=opts.timeout)
            key = transport.get_remote_server_key()
            got = key_fingerprint(key.asbytes())
            if got not in wanted:
                raise HostKeyError(
                    f"SSH host key of {where} is {key.get_name()} {got}, expected {' or '.join(wanted)}: refusing "
                    "to send anything. If the router was reinstalled, check the key on its console "
                    "(/ip/ssh print) and update rb4011_host_key_fingerprint / rb4011_known_hosts."
                )
            try:
                transport.auth_password(opts.user, opts.password)
            except paramiko.AuthenticationException:
                raise SftpError(f"SSH on {where} refused user {opts.user!r}: check rb4011_password and that the "
                                "user's group has the ssh and ftp policies") from None
            client = paramiko.SFTPClient.from_transport(transport)
        except (paramiko.SSHException, EOFError, OSError) as e:
            transport.close()
            raise SftpError(f"SSH to {where} failed: {e}") from None
        except NetbootError:
            transport.close()
            raise
        return cls(transport, client, opts)

    def __enter__(self) -> Sftp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.transport.close()

    def _guard(self, what: str, fn: Callable[[], Any]) -> Any:
        import paramiko

        try:
            return fn()
        except (OSError, EOFError, paramiko.SSHException) as e:
            raise SftpError(f"SFTP {what} on {self.opts.host}:{self.opts.port} failed: {e or type(e).__name__}") \
                from None

    def makedirs(self, remote: str) -> None:
        path = ""
        for part in [p for p in remote.split("/") if p]:
            path += "/" + part
            try:
                st = self.client.stat(path)
            except FileNotFoundError:
                self._guard(f"mkdir {path}", functools.partial(self.client.mkdir, path))
                continue
            except (OSError, EOFError) as e:
                raise SftpError(f"SFTP stat {path}: {e}") from None
            if not stat.S_ISDIR(st.st_mode or 0):
                raise SftpError(f"{path} on the router is a file, not a directory; remove it or change rb4011_dir")

    def upload(self, local: Path, remote: str, progress: Callable[[int, int], None]) -> int:
        """Send ``local`` to ``remote``; returns bytes sent. ``progress(sent, total)`` is called per chunk."""
        size = os.path.getsize(local)

        def put() -> int:
            # pipelined writes drop the router's failed-write replies (a full disk): the stored size tells
            with open(local, "rb") as fh:
                self.client.putfo(fh, remote, file_size=size, callback=progress, confirm=False)
            stored = self.client.stat(remote).st_size
            if stored != size:
                raise OSError(f"the router stored {stored} of {size} bytes (is its disk full? see /system/resource)")
            return size

        self._guard(f"upload of {local.name} to {remote}", put)
        return size

    def sha256(self, remote: str) -> str:
        """Read ``remote`` back and hash it (RouterOS has no hash command)."""

        def read() -> str:
            h = hashlib.sha256()
            with self.client.open(remote, "rb") as fh:
                fh.prefetch()
                while chunk := fh.read(CHUNK):
                    h.update(chunk)
            return h.hexdigest()

        return str(self._guard(f"read-back of {remote}", read))


class Progress:
    """Per-file progress lines (bytes, MB/s, ETA) appended to a log the user can ``tail -f``."""

    def __init__(self, log: Path | None, every: float = 1.0) -> None:
        self.log = log
        self.every = every
        self.tick: Callable[[], None] = lambda: None  # called on every chunk (the router lock's refresh)
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)

    def line(self, text: str) -> None:
        if self.log is None:
            return
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(time.strftime("%H:%M:%S ") + text + "\n")

    def callback(self, name: str) -> tuple[Callable[[int, int], None], Callable[[], float]]:
        start = time.monotonic()
        last = [start]

        def cb(sent: int, total: int) -> None:
            self.tick()
            now = time.monotonic()
            if now - last[0] < self.every and sent < total:
                return
            last[0] = now
            rate = sent / max(now - start, 1e-6)
            eta = (total - sent) / rate if rate > 0 else 0.0
            self.line(f"{name}: {sent / 1e6:.1f}/{total / 1e6:.1f} MB {100 * sent / max(total, 1):.0f}% "
                      f"{rate / 1e6:.2f} MB/s ETA {eta:.0f}s")

        return cb, lambda: time.monotonic() - start
