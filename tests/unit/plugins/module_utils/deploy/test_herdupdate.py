"""_herdupdate: which staged generation a roll takes (the router side itself runs in tests/integration)."""

from __future__ import annotations

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deployplan import RouterState, rule_comment
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._herd import HerdError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._herdupdate import pick_staged

LIVE, B, C = "g-00000000000a", "g-00000000000b", "g-00000000000c"


def router(staged: tuple[str, ...], live: str | None = LIVE) -> RouterState:
    rules = [{"comment": rule_comment("netboot", LIVE, "vmlinuz", 1)}]
    rules += [{"comment": rule_comment("netboot", g, "vmlinuz", 0, staged=True)} for g in staged]
    if live:
        rules.append({"comment": rule_comment("netboot"), "real-filename": f"netboot/{live}/generation.ipxe"})
    return RouterState("r1", "7.16", "rb", 0, 0, (), tuple(rules))


def test_the_one_staged_generation_or_the_wanted_one_is_rolled() -> None:
    assert pick_staged(router((B,)), "netboot", None) == (LIVE, B)
    assert pick_staged(router(()), "netboot", None) == (LIVE, None)  # nothing staged: a health check
    assert pick_staged(router((B, C)), "netboot", C) == (LIVE, C)
    assert pick_staged(router((B,)), "netboot", LIVE) == (LIVE, None)  # live already


def test_an_unclear_or_unknown_generation_is_refused() -> None:
    with pytest.raises(HerdError, match="several generations are staged"):
        pick_staged(router((B, C)), "netboot", None)
    with pytest.raises(HerdError, match=f"herd_generation {C} is not kept"):
        pick_staged(router((B,)), "netboot", C)
    with pytest.raises(HerdError, match="nothing is live"):
        pick_staged(router((B,), live=None), "netboot", None)
