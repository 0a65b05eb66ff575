"""_dhcp: the chainloading plan (pure) on synthetic DHCP menus."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils._dhcp import (
    MATCHER_MENU,
    NAME,
    NETWORK_MENU,
    OPTION_MENU,
    SETS_MENU,
    DhcpError,
    DhcpOptions,
    DhcpState,
    plan_dhcp,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._routeros import RouterOSError, require_version

TAG = "homelab.alpine_netboot dir=netboot"
NET = {".id": "*1", "address": "192.168.88.0/24", "gateway": "192.168.88.1", "dns-server": "192.168.88.1"}


def state(network: dict[str, str] | None = None, **menus: list[dict[str, str]]) -> DhcpState:
    rows = {OPTION_MENU: menus.get("option", []), SETS_MENU: menus.get("sets", []),
            MATCHER_MENU: menus.get("matcher", [])}
    other = {".id": "*2", "address": "10.9.0.0/16", "gateway": "10.9.0.1"}
    return DhcpState((other, NET if network is None else network), {k: tuple(v) for k, v in rows.items()})


def applied(st: DhcpState, opts: DhcpOptions) -> DhcpState:
    """The state after the plan's writes (what RouterOS would hold), to check a replan is empty."""
    menus = {k: [dict(r) for r in v] for k, v in st.menus.items()}
    nets = [dict(r) for r in st.networks]
    for n, c in enumerate(plan_dhcp(st, opts, tag=TAG, script="boot.ipxe", host="r1").changes):
        rows = nets if c.menu == NETWORK_MENU else menus[c.menu]
        if c.action == "add":
            rows.append({".id": f"*N{n}", **c.values})
        elif c.action == "set":
            next(r for r in rows if r[".id"] == c.id).update(c.values)
        else:
            rows[:] = [r for r in rows if r[".id"] != c.id]
    return DhcpState(tuple(nets), {k: tuple(v) for k, v in menus.items()})


def test_plan_creates_option_set_matcher_and_sets_the_network() -> None:
    opts = DhcpOptions("192.168.88.0/24")
    plan = plan_dhcp(state(), opts, tag=TAG, script="boot.ipxe", host="r1")
    assert [(c.menu, c.action) for c in plan.changes] == [
        (OPTION_MENU, "add"), (SETS_MENU, "add"), (MATCHER_MENU, "add"), (NETWORK_MENU, "set"),
    ]
    option, sets, matcher, network = plan.changes
    assert dict(option.values) == {"name": NAME, "code": "67", "value": "s'boot.ipxe'", "comment": f"{TAG} dhcp=option"}
    assert dict(sets.values)["options"] == NAME
    assert {k: matcher.values[k] for k in ("code", "value", "option-set", "server")} == {
        "code": "77", "value": "iPXE", "option-set": NAME, "server": "all"}
    assert "matching-type" not in matcher.values  # not sent unless asked (7.16+ only)
    # next-server derived from the network's gateway, BIOS binary by default; only the network row named changes
    assert network.id == "*1" and dict(network.values) == {"next-server": "192.168.88.1",
                                                           "boot-file-name": "undionly.kpxe"}
    cmds = [c.command() for c in plan.changes]
    assert '/ip dhcp-server matcher add name="homelab-netboot-ipxe" server="all" code="77" value="iPXE"' in cmds[2]
    assert cmds[3] == ('/ip dhcp-server network set [find address="192.168.88.0/24"] next-server="192.168.88.1" '
                       'boot-file-name="undionly.kpxe"')
    assert "next-server=192.168.88.1 boot-file-name=undionly.kpxe" in plan.after[-1]
    assert "next-server" not in plan.before[-1]


def test_rerun_plans_nothing_and_user_rows_stay() -> None:
    user = {".id": "*9", "name": "voip", "code": "66", "value": "s'10.0.0.5'"}
    opts = DhcpOptions("192.168.88.0/24", matcher_value="s'iPXE'", firmware="uefi", next_server="192.168.88.2")
    st = state(option=[user])
    after = applied(st, opts)
    assert user in after.menus[OPTION_MENU]
    assert plan_dhcp(after, opts, tag=TAG, script="boot.ipxe", host="r1").changes == []
    net = next(r for r in after.networks if r[".id"] == "*1")
    assert net["boot-file-name"] == "ipxe.efi" and net["next-server"] == "192.168.88.2"
    # a changed matcher value is one set of that property on the owned row
    changes = plan_dhcp(after, DhcpOptions("192.168.88.0/24", firmware="uefi", next_server="192.168.88.2"),
                        tag=TAG, script="boot.ipxe", host="r1").changes
    assert [(c.menu, c.action, dict(c.values)) for c in changes] == [(MATCHER_MENU, "set", {"value": "iPXE"})]
    assert changes[0].command().startswith(f'/ip dhcp-server matcher set [find comment="{TAG} dhcp=matcher"]')


def test_duplicate_owned_rows_are_removed_after_the_adds() -> None:
    opts = DhcpOptions("192.168.88.0/24")
    after = applied(state(), opts)
    twin = {**after.menus[MATCHER_MENU][0], ".id": "*T"}
    st = DhcpState(after.networks, {**after.menus, MATCHER_MENU: (*after.menus[MATCHER_MENU], twin)})
    changes = plan_dhcp(st, opts, tag=TAG, script="boot.ipxe", host="r1").changes
    assert [(c.action, c.id) for c in changes] == [("remove", "*T")]


def test_refusals_name_the_cause() -> None:
    taken = {".id": "*5", "name": NAME, "code": "67", "value": "s'other'"}
    with pytest.raises(DhcpError, match=r"option 'homelab-netboot-ipxe' exists but is not the collection's"):
        plan_dhcp(state(option=[taken]), DhcpOptions("192.168.88.0/24"), tag=TAG, script="boot.ipxe", host="r1")
    with pytest.raises(DhcpError, match=r"no /ip dhcp-server network has address 192\.168\.77\.0/24.*10\.9\.0\.0/16"):
        plan_dhcp(state(), DhcpOptions("192.168.77.0/24"), tag=TAG, script="boot.ipxe", host="r1")
    no_gw = {".id": "*1", "address": "192.168.88.0/24"}
    with pytest.raises(DhcpError, match="rb4011_dhcp_next_server"):
        plan_dhcp(state(no_gw), DhcpOptions("192.168.88.0/24"), tag=TAG, script="boot.ipxe", host="r1")
    for bad, var in ((dict(network="lan"), "rb4011_dhcp_network"), (dict(firmware="arm"), "rb4011_dhcp_firmware"),
                     (dict(matcher_value=""), "rb4011_dhcp_matcher_value"),
                     (dict(matching_type="regex"), "rb4011_dhcp_matching_type"),
                     (dict(next_server="router"), "rb4011_dhcp_next_server")):
        with pytest.raises(ConfigError, match=var):
            DhcpOptions(**{"network": "192.168.88.0/24", **bad})  # type: ignore[arg-type]


def test_binaries_and_version_features(tmp_path: Path) -> None:
    missing = DhcpOptions("192.168.88.0/24", ipxe_bios=tmp_path / "nope.kpxe")
    with pytest.raises(ConfigError, match=r"nope\.kpxe.*apt-get install ipxe.*rb4011_ipxe_bios"):
        missing.binaries()
    with pytest.raises(RouterOSError, match=r"7\.3.*matcher.*7\.4\+"):
        require_version("7.3 (stable)", DhcpOptions("192.168.88.0/24").features(), "r1")
    require_version("7.15 (stable)", DhcpOptions("192.168.88.0/24").features(), "r1")
    with pytest.raises(RouterOSError, match=r"matching-type.*7\.16\+"):
        require_version("7.15 (stable)", DhcpOptions("192.168.88.0/24", matching_type="exact").features(), "r1")
