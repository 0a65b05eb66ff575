"""The loopback HTTP boot server: serves files, records requests, no escapes; the refusing test server
(tests/fixtures/bootserver.py) the boot tests use to prove iPXE's retries."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._bootserver import BootServer
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from tests.fixtures.bootserver import RefusingBootServer


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_serves_and_records(tmp_path: Path) -> None:
    (tmp_path / "vmlinuz").write_bytes(b"k" * 3_000_000)
    (tmp_path / "secret").mkdir()
    with BootServer(tmp_path) as srv:
        assert srv.guest_url == f"http://10.0.2.2:{srv.port}"
        assert get(f"{srv.url}/vmlinuz") == (200, b"k" * 3_000_000)
        assert get(f"{srv.url}/missing")[0] == 404
        assert get(f"{srv.url}/secret")[0] == 404  # no directory listings
        assert get(f"{srv.url}/../etc/passwd")[0] == 404
        assert get(f"{srv.url}/%2e%2e/etc/passwd")[0] == 404
        assert srv.requests[:2] == [("GET", "/vmlinuz", 200), ("GET", "/missing", 404)]
        port = srv.port
        with pytest.raises(ConfigError, match=f"cannot serve HTTP on 127.0.0.1:{port}"):
            BootServer(tmp_path, port=port)
    with pytest.raises(ConfigError, match="only loopback"):
        BootServer(tmp_path, host="0.0.0.0")


def test_the_refusing_test_server_refuses_then_serves(tmp_path: Path) -> None:
    (tmp_path / "vmlinuz").write_bytes(b"kernel")
    with RefusingBootServer(tmp_path, refuse={"vmlinuz": 2}) as srv:
        assert [get(f"{srv.url}/vmlinuz")[0] for _unused in range(3)] == [503, 503, 200]
        assert get(f"{srv.url}/vmlinuz") == (200, b"kernel")
        assert get(f"{srv.url}/../vmlinuz")[0] == 404
        assert srv.hits("vmlinuz") == [503, 503, 200, 200]
