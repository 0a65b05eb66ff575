"""The router lock's pure parts (module_utils/deploy/_routerlock.py): the router's clock and the lock record."""

from __future__ import annotations

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routerlock import (
    Record,
    lock_name,
    parse_clock,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routeros import RouterOSError


def test_both_clock_formats_read_the_same_time() -> None:
    new = parse_clock("2026-12-07", "12:34:56")
    assert parse_clock("dec/07/2026", "12:34:56") == new  # RouterOS before 7.10
    assert parse_clock("2026-12-08", "00:00:01") - new == 11 * 3600 + 25 * 60 + 5
    with pytest.raises(RouterOSError, match=r"cannot read the router's date '07\.12\.2026'"):
        parse_clock("07.12.2026", "12:00:00")


def test_a_record_round_trips_and_an_unreadable_one_names_itself() -> None:
    r = Record("laptop", 4242, 1000, 1010, "g-0123456789ab", "flash/netboot", "t0k", "*5")
    assert Record.parse({".id": "*5", "source": r.source()}) == r
    assert r.describe(1040) == ("laptop (pid 4242, writing generation g-0123456789ab, since 1970-01-01 00:16:40 "
                                "router time, last refreshed 30s ago)")
    odd = Record.parse({".id": "*6", "source": ":log info x"})
    assert odd.controller == "an unreadable lock entry" and odd.refreshed == 0 and odd.id == "*6"
    assert lock_name("/flash/netboot/") == "homelab.alpine_netboot.lock.flash/netboot"
