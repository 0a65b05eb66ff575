# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""A small threaded HTTP server for netboot artefacts (boot tests, ``start_qemu.sh --netboot``).

Binds 127.0.0.1 only (a qemu user-network guest reaches it as ``http://10.0.2.2:PORT``). Serves the files of one
directory (symlinks followed, no directory listings, no ``..``), streams them in chunks and records every request.
"""

from __future__ import annotations

import http.server
import shutil
import threading
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError

GUEST_HOST = "10.0.2.2"  # the host's 127.0.0.1 seen from a qemu user-network guest


class BootServer:
    """``with BootServer(root) as srv: ... srv.guest_url ... srv.requests``"""

    def __init__(self, root: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ConfigError(f"boot server host {host!r}: only loopback addresses are served")
        self.root = Path(root)
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _send(self, head_only: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                parts = [p for p in path.split("/") if p]
                status, target = server.resolve(parts)
                with server._lock:
                    server.requests.append((self.command, path, status))
                body = f"{status} {path}\n".encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if target is None else "application/octet-stream")
                self.send_header("Content-Length", str(len(body) if target is None else target.stat().st_size))
                self.end_headers()
                if head_only:
                    return
                if target is None:
                    self.wfile.write(body)
                    return
                with open(target, "rb") as fh:
                    shutil.copyfileobj(fh, self.wfile, 1 << 20)

            def do_GET(self) -> None:
                self._send(False)

            def do_HEAD(self) -> None:
                self._send(True)

        try:
            self._httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve HTTP on {host}:{port}: {exc.strerror}; pick another port (boot_test_http_port)"
            ) from exc
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    def resolve(self, parts: list[str]) -> tuple[int, Path | None]:
        """(HTTP status, file) for a request path split on ``/``: 200 and the file, or 404 and None."""
        if parts and not any(p in (".", "..") or "\\" in p for p in parts) and self.root.joinpath(*parts).is_file():
            return 200, self.root.joinpath(*parts)
        return 404, None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def guest_url(self) -> str:
        return f"http://{GUEST_HOST}:{self.port}"

    def start(self) -> BootServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="netboot-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> BootServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
