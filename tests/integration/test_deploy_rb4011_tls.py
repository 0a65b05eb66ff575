"""API-SSL against the RouterOS peer: librouteros over Python ssl, certificates made at test time (cryptography).

Verified connects (CA + optional hostname check), a wrong CA, a plain client on the TLS port and a TLS client on the
plain port, anonymous DH when explicitly allowed, and the playbook deploying over API-SSL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routeros import (
    ApiOptions,
    RouterOSError,
    connect,
)
from tests.fixtures.routeros.deploy import HOST, deploy, result
from tests.fixtures.routeros.dist import make_dist
from tests.fixtures.routeros.peer import Peer, PeerConfig
from tests.fixtures.routeros.tls import Pki, anon_dh_context, make_pki, server_context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def peer(tmp_path: Path, pki: Pki) -> Iterator[Peer]:
    with Peer(tmp_path / "peer", PeerConfig(tls=server_context(pki))) as p:
        yield p


def opts(peer: Peer, **kw: object) -> ApiOptions:
    values: dict[str, object] = {"port": peer.api_ssl_port, "tls": True, "timeout": 5.0, **kw}
    return ApiOptions("127.0.0.1", peer.config.user, peer.config.password, **values)  # type: ignore[arg-type]


def identity(o: ApiOptions) -> str:
    ros = connect(o)
    try:
        return ros.print("/system/identity")[0]["name"]
    finally:
        ros.close()


def test_verified_connect_with_the_ca_and_hostname(peer: Peer, pki: Pki) -> None:
    assert identity(opts(peer, ca_path=str(pki.ca), validate_cert_hostname=True)) == peer.config.identity
    assert any(s[0] == "/system/identity/print" for s in peer.sentences)


def test_wrong_ca_fails_naming_host_and_ca(peer: Peer, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other", ca_name="someone else's CA")
    with pytest.raises(RouterOSError) as e:
        identity(opts(peer, ca_path=str(other.ca)))
    msg = str(e.value)
    assert f"127.0.0.1:{peer.api_ssl_port}" in msg and str(other.ca) in msg, msg
    assert "certificate was refused" in msg and "rb4011_ca_path" in msg, msg
    assert not any(s[0] == "/login" for s in peer.sentences)  # the password never left


def test_hostname_check_against_the_certificate_name(tmp_path: Path) -> None:
    named = make_pki(tmp_path / "named", names=("rb4011.lab.example",))
    with Peer(tmp_path / "peer", PeerConfig(tls=server_context(named))) as peer:
        with pytest.raises(RouterOSError, match=r"address mismatch.*not valid for .127\.0\.0\.1.*CA .*named/ca\.pem, hostname 127\.0\.0\.1"):
            identity(opts(peer, ca_path=str(named.ca), validate_cert_hostname=True))
        # the CA still authenticates the router when the name is not checked (community.routeros' default)
        assert identity(opts(peer, ca_path=str(named.ca))) == peer.config.identity


def test_plain_client_on_the_tls_port_and_tls_client_on_the_plain_port(peer: Peer, pki: Pki) -> None:
    plain = ApiOptions("127.0.0.1", peer.config.user, peer.config.password, port=peer.api_ssl_port, timeout=5.0)
    with pytest.raises(RouterOSError, match=rf"127\.0\.0\.1:{peer.api_ssl_port}.*set rb4011_use_tls: true"):
        identity(plain)
    with pytest.raises(RouterOSError, match=rf"API.* at 127\.0\.0\.1:{peer.api_port}.*api-ssl port"):
        identity(opts(peer, port=peer.api_port, ca_path=str(pki.ca), timeout=2.0))


def test_anonymous_dh_only_when_allowed(tmp_path: Path) -> None:
    # RouterOS' api-ssl without a certificate: ADH suites over TLS 1.2 (OpenSSL 3 still has them at SECLEVEL 0)
    with Peer(tmp_path / "peer", PeerConfig(tls=anon_dh_context(tmp_path / "dh"))) as peer:
        assert identity(opts(peer, force_no_cert=True)) == peer.config.identity
        with pytest.raises(RouterOSError, match=r"TLS handshake failed.*system CA store"):
            identity(opts(peer))  # a verifying client does not fall back to anonymous DH


def test_playbook_deploys_over_api_ssl(peer: Peer, pki: Pki, tmp_path: Path) -> None:
    dist = make_dist(tmp_path / "dist", f"tftp://10.0.2.2:{peer.tftp_port}")
    res = deploy(tmp_path / "w", peer, dist, rb4011_use_tls=True, rb4011_api_port=peer.api_ssl_port,
                 rb4011_ca_path=str(pki.ca), rb4011_validate_cert_hostname=True)
    assert res.rc == 0, res.stdout
    assert result(res)["generation"] and peer.store.sha256(f"netboot/{result(res)['generation']}/vmlinuz")
    wrong = make_pki(tmp_path / "wrong")
    bad = deploy(tmp_path / "w", peer, dist, rb4011_use_tls=True, rb4011_api_port=peer.api_ssl_port,
                 rb4011_ca_path=str(wrong.ca))
    msg = " ".join(bad.failure_messages())
    assert bad.rc != 0 and str(wrong.ca) in msg and peer.config.password not in bad.stdout, msg
    assert bad.changed(HOST) == 0
