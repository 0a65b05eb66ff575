"""SFTP to the router against the RouterOS peer's real SFTP server (paramiko on 127.0.0.1, tests/fixtures/routeros):
the host key is pinned or nothing is sent, uploads land byte for byte and are read back, and every failure names the
host, the port and the file at fault."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._sftp import (
    CHUNK,
    HostKeyError,
    Progress,
    Sftp,
    SftpError,
    SshOptions,
    expected_fingerprints,
    key_fingerprint,
)
from tests.fixtures.routeros.peer import Peer, PeerConfig

HOST = "127.0.0.1"


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Peer]:
    with Peer(tmp_path / "peer", PeerConfig(capacity=8 * CHUNK)) as p:
        yield p


def opts(peer: Peer, **kw: object) -> SshOptions:
    base: dict[str, object] = {"host": HOST, "user": peer.config.user, "password": peer.config.password,
                               "port": peer.ssh_port, "fingerprint": peer.fingerprint, "timeout": 5.0}
    return SshOptions(**{**base, **kw})  # type: ignore[arg-type]


def local_file(tmp_path: Path, name: str, size: int) -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def test_upload_lands_byte_for_byte_and_is_read_back(peer: Peer, tmp_path: Path) -> None:
    src = local_file(tmp_path, "initramfs", 2 * CHUNK + 12345)
    calls: list[tuple[int, int]] = []
    with Sftp.open(opts(peer)) as s:
        s.makedirs("/netboot/dist")
        assert s.upload(src, "/netboot/dist/initramfs", lambda sent, total: calls.append((sent, total))) == \
            src.stat().st_size
        digest = s.sha256("/netboot/dist/initramfs")
    assert peer.store.path("netboot/dist/initramfs").read_bytes() == src.read_bytes()
    assert digest == hashlib.sha256(src.read_bytes()).hexdigest()
    assert calls[-1] == (src.stat().st_size, src.stat().st_size)
    assert [sent for sent, _total in calls] == sorted(sent for sent, _total in calls)


def test_a_second_upload_replaces_the_file_without_a_stale_tail(peer: Peer, tmp_path: Path) -> None:
    big, small = local_file(tmp_path, "big", CHUNK), local_file(tmp_path, "small", 100)
    with Sftp.open(opts(peer)) as s:
        s.upload(big, "/boot.ipxe", lambda *_: None)
        s.upload(small, "/boot.ipxe", lambda *_: None)
    assert peer.store.path("boot.ipxe").read_bytes() == small.read_bytes()


def test_makedirs_is_idempotent_and_refuses_a_file_in_the_way(peer: Peer, tmp_path: Path) -> None:
    with Sftp.open(opts(peer)) as s:
        s.makedirs("/a/b/c")
        s.makedirs("a/b/c/")  # again, without the leading slash: nothing to do
        s.upload(local_file(tmp_path, "f", 10), "/a/file", lambda *_: None)
        with pytest.raises(SftpError, match=r"^/a/file on the router is a file, not a directory; remove it or "
                                            r"change rb4011_dir$"):
            s.makedirs("/a/file/sub")
    assert peer.store.path("a/b/c").is_dir()


def test_a_path_that_leaves_the_store_is_refused_and_named(peer: Peer, tmp_path: Path) -> None:
    outside = peer.store.root.parent / "escaped"
    with Sftp.open(opts(peer)) as s:
        with pytest.raises(SftpError, match=rf"^SFTP upload of f to \.\./escaped on {HOST}:{peer.ssh_port} failed"):
            s.upload(local_file(tmp_path, "f", 10), "../escaped", lambda *_: None)
        with pytest.raises(SftpError, match=rf"^SFTP read-back of /missing on {HOST}:{peer.ssh_port} failed"):
            s.sha256("/missing")
    assert not outside.exists()


def test_a_full_disk_fails_the_upload_and_the_read_back_shows_the_short_file(peer: Peer, tmp_path: Path) -> None:
    """paramiko's pipelined writes drop the router's failed-write replies: the stored size is what tells."""
    src = local_file(tmp_path, "vmlinuz", 9 * CHUNK)
    with Sftp.open(opts(peer)) as s:
        with pytest.raises(SftpError) as info:
            s.upload(src, "/vmlinuz", lambda *_: None)
        got = s.sha256("/vmlinuz")
    assert (f"upload of vmlinuz to /vmlinuz on {HOST}:{peer.ssh_port} failed: the router stored {8 * CHUNK} of "
            f"{9 * CHUNK} bytes (is its disk full?") in str(info.value)
    assert peer.store.path("vmlinuz").stat().st_size == 8 * CHUNK
    assert got == hashlib.sha256(src.read_bytes()[: 8 * CHUNK]).hexdigest()


def test_a_dropped_connection_is_an_sftp_error_not_a_traceback(peer: Peer, tmp_path: Path) -> None:
    peer.faults.drop_after = CHUNK // 2
    with Sftp.open(opts(peer)) as s, pytest.raises(SftpError, match=rf"on {HOST}:{peer.ssh_port} failed"):
        s.upload(local_file(tmp_path, "initramfs", 2 * CHUNK), "/initramfs", lambda *_: None)
    assert peer.faults.drops == 1


def test_an_unpinned_host_key_is_refused_before_anything_is_sent(peer: Peer, tmp_path: Path) -> None:
    wrong = "SHA256:" + "A" * 43
    with pytest.raises(HostKeyError) as info:
        Sftp.open(opts(peer, fingerprint=wrong))
    msg = str(info.value)
    assert f"SSH host key of {HOST}:{peer.ssh_port} is ecdsa-sha2-nistp256 {peer.fingerprint}, expected {wrong}" in msg
    assert "refusing to send anything" in msg and "rb4011_host_key_fingerprint" in msg
    assert peer.uploads == [] and list(peer.store.root.iterdir()) == []


def test_known_hosts_pins_the_key_by_host_and_port(peer: Peer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(peer.known_hosts_line(HOST))
    assert expected_fingerprints(opts(peer, fingerprint=None, known_hosts=str(known))) == [peer.fingerprint]
    with Sftp.open(opts(peer, fingerprint=None, known_hosts=str(known))) as s:
        s.makedirs("/pinned")
    assert peer.store.path("pinned").is_dir()
    other = tmp_path / "other_hosts"
    other.write_text(peer.known_hosts_line("192.0.2.1"))
    with pytest.raises(HostKeyError, match=rf"{other} has no host key for \[{HOST}\]:{peer.ssh_port}; add the "
                                           rf"router's key \(ssh-keyscan -p {peer.ssh_port} {HOST} >> {other}\)"):
        Sftp.open(opts(peer, fingerprint=None, known_hosts=str(other)))


def test_the_fingerprint_is_openssh_s(peer: Peer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(peer.known_hosts_line(HOST))
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(known)], capture_output=True, text=True,
                         check=True).stdout
    assert out.split()[1] == peer.fingerprint == key_fingerprint(peer.sftp.key.asbytes())


@pytest.mark.parametrize(("kw", "pattern"), [
    ({"fingerprint": None}, "set rb4011_known_hosts or rb4011_host_key_fingerprint"),
    ({"fingerprint": "MD5:aa:bb"}, r"rb4011_host_key_fingerprint 'MD5:aa:bb': give OpenSSH's SHA256:\.\.\. form"),
    ({"fingerprint": None, "known_hosts": "/nonexistent/known_hosts"}, "rb4011_known_hosts /nonexistent/known_hosts: "
                                                                       "no such file"),
])
def test_a_missing_or_malformed_pin_is_a_config_error(peer: Peer, kw: dict[str, object], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        Sftp.open(opts(peer, **kw))


def test_a_wrong_password_names_the_user_and_the_fix(peer: Peer) -> None:
    with pytest.raises(SftpError, match=rf"^SSH on {HOST}:{peer.ssh_port} refused user 'deploy': "
                                        "check rb4011_password"):
        Sftp.open(opts(peer, password="wrong"))


def test_no_ssh_service_is_named_with_host_and_port(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        with pytest.raises(SftpError, match=rf"^cannot reach SSH on {HOST}:{port}: .*; enable /ip/service ssh$"):
            Sftp.open(SshOptions(HOST, "deploy", "pw", port=port, fingerprint="SHA256:x", timeout=2))


def test_the_password_never_shows_in_repr() -> None:
    text = repr(SshOptions(HOST, "deploy", "Tr0ub4dor&3", port=2222, fingerprint="SHA256:x"))
    assert text == "SshOptions(host='127.0.0.1', user='deploy', port=2222)"
    assert isinstance(SftpError("x"), NetbootError) and isinstance(HostKeyError("x"), SftpError)


def test_progress_log_lines_and_tick_per_chunk(tmp_path: Path) -> None:
    log = tmp_path / "logs/deploy.log"
    progress = Progress(log, every=3600)
    ticks: list[int] = []
    progress.tick = lambda: ticks.append(1)
    cb, elapsed = progress.callback("initramfs")
    cb(1_000_000, 4_000_000)  # within `every` of the start and not done: no line
    cb(4_000_000, 4_000_000)  # done: always a line
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and len(ticks) == 2 and elapsed() >= 0
    assert lines[0][8:].startswith(" initramfs: 4.0/4.0 MB 100% ") and " MB/s ETA 0s" in lines[0]
    Progress(None).line("nothing to write to")  # no log: silently nothing
