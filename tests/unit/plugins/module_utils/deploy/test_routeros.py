"""_routeros: version gates, TFTP block arithmetic, anchored regexes, owned-row diffing, TLS options."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routeros import (
    ApiOptions,
    RouterOSError,
    RowChange,
    anchored,
    blocks,
    diff_rows,
    needs_rollover,
    parse_version,
    require_version,
    ssl_context,
)


def test_parse_version() -> None:
    assert parse_version("7.16.2 (stable)") == (7, 16, 2)
    assert parse_version("7.18beta2 (testing)") == (7, 18)
    assert parse_version("6.49.10 (long-term)") < (7, 1)
    with pytest.raises(RouterOSError):
        parse_version("unknown")


def test_require_version_names_feature_and_version() -> None:
    require_version("7.12 (stable)", ["v7 API and /ip/tftp allow-rollover"], "r1")
    with pytest.raises(RouterOSError, match=r"6\.49\.10.*7\.1\+"):
        require_version("6.49.10 (long-term)", ["v7 API and /ip/tftp allow-rollover"], "r1")
    with pytest.raises(RouterOSError, match=r"matcher.*7\.4\+"):
        require_version("7.2 (stable)", ["/ip/dhcp-server/matcher (DHCP option 77 iPXE chainloading)"], "r1")


def test_rollover_thresholds() -> None:
    # 65,535 blocks: the last byte count that fits is 65,535 * blksize - 1 (a final short block is always sent)
    assert blocks(65535 * 1432 - 1, 1432) == 65535
    assert blocks(65535 * 1432, 1432) == 65536
    assert not needs_rollover(65535 * 512 - 1) and needs_rollover(65535 * 512)
    assert needs_rollover(93_800_000) and not needs_rollover(93_800_000, 1432)
    assert needs_rollover(93_900_000, 1432)


def test_anchored_escapes_and_anchors() -> None:
    pat = anchored("g-0a/boot.ipxe")
    assert re.search(pat, "g-0a/boot.ipxe")
    for other in ("g-0a/bootXipxe", "/g-0a/boot.ipxe", "g-0a/boot.ipxe.bak"):
        assert not re.search(pat, other), other


def test_diff_rows_owns_by_comment_and_sends_only_changes() -> None:
    def owned(row: dict[str, str]) -> str | None:
        c = row.get("comment", "")
        return c[len("own:"):] if c.startswith("own:") else None

    actual = [
        {".id": "*1", "req-filename": ".*", "real-filename": "x"},  # the user's: untouched
        {".id": "*2", "comment": "own:a", "req-filename": "^a$", "read-only": "true"},
        {".id": "*3", "comment": "own:b", "req-filename": "^b$"},
        {".id": "*4", "comment": "own:a", "req-filename": "^a$"},  # duplicate
    ]
    desired = {"a": {"comment": "own:a", "req-filename": "^a$", "read-only": "yes"},
               "c": {"comment": "own:c", "req-filename": "^c$"}}
    changes = diff_rows("/ip/tftp", actual, desired, owned)
    assert [(c.action, c.key, c.id) for c in changes] == [
        ("remove", "b", "*3"), ("remove", "a", "*4"), ("add", "c", ""),
    ]  # yes == true: row *2 needs no set
    desired["a"] = {**desired["a"], "real-filename": "new"}
    changes = diff_rows("/ip/tftp", actual[:2], desired, owned)
    assert (changes[0].action, dict(changes[0].values)) == ("set", {"real-filename": "new"})


def test_api_options_never_show_the_password() -> None:
    opts = ApiOptions("r1", "u", "hunter2-secret")
    assert "hunter2" not in repr(opts) and opts.effective_port == 8728
    assert ApiOptions("r1", "u", "p", tls=True).effective_port == 8729


def test_tls_options_are_checked_before_connecting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"rb4011_force_no_cert.*needs rb4011_use_tls"):
        ApiOptions("r1", "u", "p", force_no_cert=True)
    with pytest.raises(ConfigError, match="not both"):
        ApiOptions("r1", "u", "p", tls=True, force_no_cert=True, ca_path="/x.pem")
    with pytest.raises(ConfigError, match=r"rb4011_ca_path .*missing\.pem: no such file"):
        ApiOptions("r1", "u", "p", tls=True, ca_path=str(tmp_path / "missing.pem"))
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"bad\.pem: not a PEM CA certificate"):
        ssl_context(ApiOptions("r1", "u", "p", tls=True, ca_path=str(bad)))
    with pytest.raises(ConfigError, match="refused"):
        ssl_context(ApiOptions("r1", "u", "p", tls=True, validate_certs=False))
    anon = ssl_context(ApiOptions("r1", "u", "p", tls=True, force_no_cert=True))
    assert anon.verify_mode == ssl.CERT_NONE and anon.maximum_version == ssl.TLSVersion.TLSv1_2
    assert all("ADH" in c["name"] or c["protocol"] == "TLSv1.3" for c in anon.get_ciphers())
    verified = ssl_context(ApiOptions("r1", "u", "p", tls=True, validate_cert_hostname=True))
    assert verified.verify_mode == ssl.CERT_REQUIRED and verified.check_hostname


def test_row_change_command_names_the_row() -> None:
    add = RowChange("/ip/tftp", "add", "k", {"req-filename": "^a$"})
    assert add.command() == '/ip tftp add req-filename="^a$"'
    user_row = RowChange("/ip/dhcp-server/network", "set", "n", {"next-server": "10.0.0.1"}, "*1",
                         {"address": "10.0.0.0/24", "comment": "mine"}, find="address")
    assert user_row.command() == '/ip dhcp-server network set [find address="10.0.0.0/24"] next-server="10.0.0.1"'
