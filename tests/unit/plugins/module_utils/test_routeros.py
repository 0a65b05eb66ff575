"""_routeros: version gates, TFTP block arithmetic, anchored regexes, owned-row diffing."""

from __future__ import annotations

import re

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils._routeros import (
    ApiOptions,
    RouterOSError,
    anchored,
    blocks,
    diff_rows,
    needs_rollover,
    parse_version,
    require_version,
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
    assert [(c.action, dict(c.values)) for c in changes][0] == ("set", {"real-filename": "new"})


def test_api_options_never_show_the_password() -> None:
    opts = ApiOptions("r1", "u", "hunter2-secret")
    assert "hunter2" not in repr(opts) and opts.effective_port == 8728
    assert ApiOptions("r1", "u", "p", tls=True).effective_port == 8729
