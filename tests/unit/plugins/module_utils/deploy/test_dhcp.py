"""_dhcp: the chainloading plan (pure) on synthetic DHCP menus."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._dhcp import (
    LAST_NAME,
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
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routeros import (
    RouterOSError,
    require_version,
)

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


def test_plan_creates_options_sets_matchers_and_sets_the_network() -> None:
    opts = DhcpOptions("192.168.88.0/24")
    plan = plan_dhcp(state(), opts, tag=TAG, script="boot.ipxe", host="r1")
    assert [(c.menu, c.action) for c in plan.changes] == [
        *[(OPTION_MENU, "add")] * 3, *[(SETS_MENU, "add")] * 3, *[(MATCHER_MENU, "add")] * 3, (NETWORK_MENU, "set"),
    ]
    options = {c.values["name"]: c.values["value"] for c in plan.changes if c.menu == OPTION_MENU}
    assert options == {NAME: "s'boot.ipxe'", "homelab-netboot-bios": "s'undionly.kpxe'",
                       "homelab-netboot-uefi": "s'snponly.efi'"}
    assert all(c.values["comment"] == f"{TAG} dhcp=option {c.values['name']}"
               for c in plan.changes if c.menu == OPTION_MENU)
    # the option 77 matcher is first and last; the network is UEFI by default, so BIOS is matched by option 93
    matchers = [(c.values["name"], c.values["code"], c.values["value"], c.values["option-set"])
                for c in plan.changes if c.menu == MATCHER_MENU]
    assert matchers == [(NAME, "77", "iPXE", NAME), ("homelab-netboot-bios-0000", "93", "0x0000", "homelab-netboot-bios"),
                        (LAST_NAME, "77", "iPXE", NAME)]
    assert all("matching-type" not in c.values for c in plan.changes)  # not sent unless asked (7.16+ only)
    # next-server from the gateway, boot-file-name EMPTY (iPXE reads the file field first), UEFI's option 67
    network = plan.changes[-1]
    assert network.id == "*1" and dict(network.values) == {"next-server": "192.168.88.1",
                                                           "dhcp-option": "homelab-netboot-uefi"}
    assert plan.changes[-1].command() == ('/ip dhcp-server network set [find address="192.168.88.0/24"] '
                                          'next-server="192.168.88.1" dhcp-option="homelab-netboot-uefi"')
    assert plan.after[-1].endswith("next-server=192.168.88.1 dhcp-option=homelab-netboot-uefi")
    assert "next-server" not in plan.before[-1]


def test_bios_network_matches_both_uefi_arches_and_ipxe_efi_is_opt_in() -> None:
    opts = DhcpOptions("192.168.88.0/24", firmware="bios", uefi_binary="ipxe.efi")
    plan = plan_dhcp(state(), opts, tag=TAG, script="boot.ipxe", host="r1")
    assert [(c.values["code"], c.values["value"]) for c in plan.changes if c.menu == MATCHER_MENU] == [
        ("77", "iPXE"), ("93", "0x0007"), ("93", "0x0009"), ("77", "iPXE")]
    assert {c.values["name"]: c.values["value"] for c in plan.changes if c.menu == OPTION_MENU}[
        "homelab-netboot-uefi"] == "s'ipxe.efi'"
    assert plan.changes[-1].values["dhcp-option"] == "homelab-netboot-bios"
    assert plan.boot_files == {"uefi": "ipxe.efi", "bios": "undionly.kpxe"}


def test_rerun_plans_nothing_and_user_rows_stay() -> None:
    user = {".id": "*9", "name": "voip", "code": "66", "value": "s'10.0.0.5'"}
    net = {**NET, "dhcp-option": "voip"}
    opts = DhcpOptions("192.168.88.0/24", matcher_value="s'iPXE'", next_server="192.168.88.2")
    st = state(net, option=[user])
    after = applied(st, opts)
    assert user in after.menus[OPTION_MENU]
    assert plan_dhcp(after, opts, tag=TAG, script="boot.ipxe", host="r1").changes == []
    net = next(r for r in after.networks if r[".id"] == "*1")
    assert net["dhcp-option"] == "voip,homelab-netboot-uefi" and net["next-server"] == "192.168.88.2"
    # a changed matcher value is one set of that property on each owned 77 matcher, in place
    changes = plan_dhcp(after, DhcpOptions("192.168.88.0/24", next_server="192.168.88.2"),
                        tag=TAG, script="boot.ipxe", host="r1").changes
    assert [(c.menu, c.action, dict(c.values)) for c in changes] == [(MATCHER_MENU, "set", {"value": "iPXE"})] * 2
    assert changes[0].command().startswith(f'/ip dhcp-server matcher set [find comment="{TAG} dhcp=matcher {NAME}"]')
    # switching the network to BIOS: the network names the BIOS option, the 93 matchers are swapped
    bios = plan_dhcp(after, DhcpOptions("192.168.88.0/24", matcher_value="s'iPXE'", next_server="192.168.88.2",
                                        firmware="bios"), tag=TAG, script="boot.ipxe", host="r1").changes
    assert plan_dhcp(applied(after, DhcpOptions("192.168.88.0/24", matcher_value="s'iPXE'", firmware="bios",
                                                next_server="192.168.88.2")),
                     DhcpOptions("192.168.88.0/24", matcher_value="s'iPXE'", firmware="bios",
                                 next_server="192.168.88.2"), tag=TAG, script="boot.ipxe", host="r1").changes == []
    assert (NETWORK_MENU, "set") in [(c.menu, c.action) for c in bios]


def test_old_single_matcher_config_is_migrated() -> None:
    """What the first version wrote: boot-file-name=undionly.kpxe and one option/set/matcher per menu."""
    old = {
        "option": [{".id": "*O", "name": NAME, "code": "67", "value": "s'boot.ipxe'", "comment": f"{TAG} dhcp=option"}],
        "sets": [{".id": "*S", "name": NAME, "options": NAME, "comment": f"{TAG} dhcp=option-set"}],
        "matcher": [{".id": "*M", "name": NAME, "server": "all", "code": "77", "value": "iPXE", "option-set": NAME,
                     "disabled": "false", "comment": f"{TAG} dhcp=matcher"}],
    }
    net = {**NET, "next-server": "192.168.88.1", "boot-file-name": "undionly.kpxe"}
    opts = DhcpOptions("192.168.88.0/24")
    st = state(net, **old)
    plan = plan_dhcp(st, opts, tag=TAG, script="boot.ipxe", host="r1")
    # the old rows are kept (ids) and only get their new comment; the network's boot-file-name is unset
    kept = [(c.action, c.id) for c in plan.changes if c.id in ("*O", "*S", "*M")]
    assert kept == [("set", "*O"), ("set", "*S"), ("set", "*M")]
    assert dict(plan.changes[-1].values) == {"boot-file-name": "", "dhcp-option": "homelab-netboot-uefi"}
    after = applied(st, opts)
    assert [r["name"] for r in after.menus[MATCHER_MENU]] == [NAME, "homelab-netboot-bios-0000", LAST_NAME]
    assert plan_dhcp(after, opts, tag=TAG, script="boot.ipxe", host="r1").changes == []


def test_matchers_out_of_order_are_recreated_in_order() -> None:
    opts = DhcpOptions("192.168.88.0/24")
    after = applied(state(), opts)
    first, bios, last = after.menus[MATCHER_MENU]
    st = DhcpState(after.networks, {**after.menus, MATCHER_MENU: (bios, first, last)})
    changes = plan_dhcp(st, opts, tag=TAG, script="boot.ipxe", host="r1").changes
    assert [c.action for c in changes] == ["remove"] * 3 + ["add"] * 3
    assert [r["name"] for r in applied(st, opts).menus[MATCHER_MENU]] == [NAME, "homelab-netboot-bios-0000", LAST_NAME]


def test_duplicate_owned_rows_are_removed() -> None:
    opts = DhcpOptions("192.168.88.0/24")
    after = applied(state(), opts)
    twin = {**after.menus[OPTION_MENU][0], ".id": "*T"}
    st = DhcpState(after.networks, {**after.menus, OPTION_MENU: (*after.menus[OPTION_MENU], twin)})
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
                     (dict(uefi_binary="x.efi"), "rb4011_dhcp_uefi_binary"),
                     (dict(matcher_value=""), "rb4011_dhcp_matcher_value"),
                     (dict(matching_type="regex"), "rb4011_dhcp_matching_type"),
                     (dict(next_server="router"), "rb4011_dhcp_next_server")):
        with pytest.raises(ConfigError, match=var):
            DhcpOptions(**{"network": "192.168.88.0/24", **bad})  # type: ignore[arg-type]


def test_chainload_binaries_are_read_and_a_missing_one_is_named(tmp_path: Path) -> None:
    bios, efi, snp = tmp_path / "undionly.kpxe", tmp_path / "ipxe.efi", tmp_path / "snponly.efi"
    for path, size in ((bios, 1000), (efi, 3000), (snp, 2000)):
        path.write_bytes(b"x" * size)
    dhcp = DhcpOptions("192.168.88.0/24", ipxe_bios=bios, ipxe_efi=efi, ipxe_snp=snp)
    assert {a.name: a.size for a in dhcp.binaries()} == {
        "undionly.kpxe": 1000, "ipxe.efi": 3000, "snponly.efi": 2000}
    efi.unlink()
    with pytest.raises(ConfigError, match=r"ipxe\.efi"):
        dhcp.binaries()


def test_binaries_and_version_features(tmp_path: Path) -> None:
    missing = DhcpOptions("192.168.88.0/24", ipxe_bios=tmp_path / "nope.kpxe")
    want = r"nope\.kpxe.*netboot_deb_pins\.ipxe.*apt-get install\s+ipxe.*rb4011_ipxe_bios"
    with pytest.raises(ConfigError, match=want):
        missing.binaries()
    with pytest.raises(RouterOSError, match=r"7\.3.*matcher.*7\.4\+"):
        require_version("7.3 (stable)", DhcpOptions("192.168.88.0/24").features(), "r1")
    require_version("7.15 (stable)", DhcpOptions("192.168.88.0/24").features(), "r1")
    with pytest.raises(RouterOSError, match=r"matching-type.*7\.16\+"):
        require_version("7.15 (stable)", DhcpOptions("192.168.88.0/24", matching_type="exact").features(), "r1")
