"""DHCP chainloading on RouterOS (``rb4011_manage_dhcp``): the plan, pure; reading the menus.

What the collection sets (all rows but the network are its own, tagged in ``comment``; the network row is the
user's and only two of its properties change)::

    /ip/dhcp-server/network   [address=<rb4011_dhcp_network>]  next-server=<router>  boot-file-name=undionly.kpxe
    /ip/dhcp-server/option    name=homelab-netboot-ipxe  code=67  value=s'boot.ipxe'
    /ip/dhcp-server/option/sets  name=homelab-netboot-ipxe  options=homelab-netboot-ipxe
    /ip/dhcp-server/matcher   name=homelab-netboot-ipxe  code=77  value=iPXE  option-set=homelab-netboot-ipxe

Plain PXE firmware gets ``boot-file-name`` (an iPXE binary, served by the collection's TFTP rules); iPXE then asks
again, sending user class (option 77) ``iPXE``, the matcher gives it the option set whose option 67 names the stable
``boot.ipxe`` (iPXE takes option 67 before the BOOTP file field). One firmware kind per network: BIOS
(``undionly.kpxe``) by default, UEFI (``ipxe.efi``) with ``rb4011_dhcp_firmware: uefi``; both binaries are served,
so a host of the other kind can be pointed at its binary by a DHCP lease option of the user's own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import ConfigError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._routeros import (
    MATCHER_FEATURE,
    MATCHING_TYPE_FEATURE,
    RouterOS,
    RowChange,
    diff_rows,
    same_value,
)

# firmware kind -> request name of its iPXE binary; Debian's ipxe package ships both under /usr/lib/ipxe.
FIRMWARE_FILES: dict[str, str] = {"bios": "undionly.kpxe", "uefi": "ipxe.efi"}
DEBIAN_IPXE_DIR = Path("/usr/lib/ipxe")
NAME = "homelab-netboot-ipxe"  # the option, the option set and the matcher
BOOTFILE_OPTION = 67
USER_CLASS_OPTION = 77
MATCHING_TYPES = ("exact", "substring")

NETWORK_MENU = "/ip/dhcp-server/network"
OPTION_MENU = "/ip/dhcp-server/option"
SETS_MENU = "/ip/dhcp-server/option/sets"
MATCHER_MENU = "/ip/dhcp-server/matcher"
MENUS = (OPTION_MENU, SETS_MENU, MATCHER_MENU)  # add in this order, remove in reverse
TAGS = {OPTION_MENU: "option", SETS_MENU: "option-set", MATCHER_MENU: "matcher"}  # comment: "<tag> dhcp=<this>"


class DhcpError(NetbootError):
    """The DHCP configuration cannot be managed as asked; nothing was changed."""


@dataclass(frozen=True)
class DhcpOptions:
    network: str  # address of the /ip/dhcp-server/network row, e.g. 192.168.88.0/24
    next_server: str = ""  # "" = the network's gateway (the router's address on that network)
    firmware: str = "bios"
    matcher_value: str = "iPXE"
    matching_type: str = ""  # "" = RouterOS' default (exact); set only on 7.16+
    server: str = "all"
    ipxe_bios: Path = DEBIAN_IPXE_DIR / FIRMWARE_FILES["bios"]
    ipxe_efi: Path = DEBIAN_IPXE_DIR / FIRMWARE_FILES["uefi"]

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_network(self.network, strict=False)
        except ValueError:
            raise ConfigError(f"rb4011_dhcp_network {self.network!r}: give the address of the /ip dhcp-server network "
                              "to manage, e.g. 192.168.88.0/24") from None
        if self.next_server:
            try:
                ipaddress.ip_address(self.next_server)
            except ValueError:
                raise ConfigError(f"rb4011_dhcp_next_server {self.next_server!r}: give the router's IPv4 address on "
                                  f"{self.network} (or leave it empty to use the network's gateway)") from None
        if self.firmware not in FIRMWARE_FILES:
            raise ConfigError(f"rb4011_dhcp_firmware {self.firmware!r}: use one of {', '.join(FIRMWARE_FILES)}")
        if not self.matcher_value or any(c in self.matcher_value for c in "\"\n\r"):
            raise ConfigError(f"rb4011_dhcp_matcher_value {self.matcher_value!r}: give the option 77 value iPXE "
                              "sends (default iPXE), without quotes or newlines")
        if self.matching_type and self.matching_type not in MATCHING_TYPES:
            raise ConfigError(f"rb4011_dhcp_matching_type {self.matching_type!r}: use {' or '.join(MATCHING_TYPES)}, "
                              "or leave it empty")

    def binaries(self) -> dict[str, Path]:
        """Request name -> local iPXE binary, checked to exist."""
        out = {FIRMWARE_FILES["bios"]: Path(self.ipxe_bios), FIRMWARE_FILES["uefi"]: Path(self.ipxe_efi)}
        for name, path in out.items():
            if not path.is_file():
                var = "rb4011_ipxe_bios" if name == FIRMWARE_FILES["bios"] else "rb4011_ipxe_efi"
                raise ConfigError(f"{path} ({name}, for DHCP chainloading) is missing: install Debian's ipxe package "
                                  f"(apt-get install ipxe) or give its path in {var}")
        return out

    def features(self) -> list[str]:
        return [MATCHER_FEATURE] + ([MATCHING_TYPE_FEATURE] if self.matching_type else [])


@dataclass(frozen=True)
class DhcpState:
    networks: tuple[Mapping[str, str], ...]
    menus: Mapping[str, tuple[Mapping[str, str], ...]]  # option, option/sets, matcher rows


def read_dhcp(ros: RouterOS) -> DhcpState:
    return DhcpState(tuple(ros.print(NETWORK_MENU)), {m: tuple(ros.print(m)) for m in MENUS})


@dataclass
class DhcpPlan:
    changes: list[RowChange] = field(default_factory=list)  # in apply order
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    next_server: str = ""
    boot_file: str = ""


def row_line(menu: str, values: Mapping[str, str], keys: Iterable[str]) -> str:
    words = " ".join(f"{k}={values[k]}" for k in keys if values.get(k, "") != "")
    return f"{menu} {words}"


KEYS = {
    OPTION_MENU: ("name", "code", "value", "comment"),
    SETS_MENU: ("name", "options", "comment"),
    MATCHER_MENU: ("name", "server", "code", "value", "matching-type", "option-set", "disabled", "comment"),
}


def plan_dhcp(state: DhcpState, opts: DhcpOptions, *, tag: str, script: str, host: str) -> DhcpPlan:
    """The writes that make ``state`` chainload: owned option/set/matcher rows, the network's two properties.

    ``tag`` starts each owned row's comment (``<tag> dhcp=<menu>``); rows without it are the user's and are never
    changed; a user row holding the collection's name is refused (RouterOS names are unique).
    """
    plan = DhcpPlan()
    net = ipaddress.ip_network(opts.network, strict=False)
    rows = [r for r in state.networks if _same_network(r.get("address", ""), net)]
    if not rows:
        have = ", ".join(r.get("address", "?") for r in state.networks) or "none"
        raise DhcpError(f"{host}: no /ip dhcp-server network has address {opts.network} (rb4011_dhcp_network); "
                        f"the router has: {have}. Nothing was changed.")
    network = rows[0]
    next_server = opts.next_server or network.get("gateway", "")
    if not next_server or "," in next_server:
        raise DhcpError(f"{host}: the /ip dhcp-server network {opts.network} has gateway {next_server!r}, which is "
                        "not one address to use as next-server; set rb4011_dhcp_next_server to the router's address "
                        "on that network. Nothing was changed.")
    boot_file = FIRMWARE_FILES[opts.firmware]
    plan.next_server, plan.boot_file = next_server, boot_file

    comments = {m: f"{tag} dhcp={TAGS[m]}" for m in MENUS}
    desired: dict[str, dict[str, str]] = {
        OPTION_MENU: {"name": NAME, "code": str(BOOTFILE_OPTION), "value": f"s'{script}'"},
        SETS_MENU: {"name": NAME, "options": NAME},
        MATCHER_MENU: {"name": NAME, "server": opts.server, "code": str(USER_CLASS_OPTION),
                       "value": opts.matcher_value, **({"matching-type": opts.matching_type} if opts.matching_type
                                                       else {}),
                       "option-set": NAME, "disabled": "no"},
    }
    removals: list[RowChange] = []
    for menu in MENUS:
        want = {**desired[menu], "comment": comments[menu]}
        actual = state.menus.get(menu, ())
        for row in actual:
            if row.get("name") == NAME and row.get("comment") != comments[menu]:
                raise DhcpError(f"{host}: {menu} {NAME!r} exists but is not the collection's (its comment is not "
                                f"{comments[menu]!r}); rename or remove it, then rerun. Nothing was changed.")
        owned = _owner(comments[menu])
        changes = diff_rows(menu, actual, {"x": want}, owned)
        plan.changes += [c for c in changes if c.action != "remove"]
        removals += [c for c in changes if c.action == "remove"]
        plan.before += sorted(row_line(menu, r, KEYS[menu]) for r in actual if owned(r))
        plan.after.append(row_line(menu, want, KEYS[menu]))
    plan.changes += reversed(removals)

    wanted = {"next-server": next_server, "boot-file-name": boot_file}
    delta = {k: v for k, v in wanted.items() if not same_value(network.get(k, ""), v)}
    if delta:
        plan.changes.append(RowChange(NETWORK_MENU, "set", opts.network, delta, network[".id"], dict(network),
                                      find="address"))
    keys = ("address", "gateway", "next-server", "boot-file-name")
    plan.before.append(row_line(NETWORK_MENU, network, keys))
    plan.after.append(row_line(NETWORK_MENU, {**network, **wanted}, keys))
    return plan


def _owner(comment: str) -> Callable[[Mapping[str, str]], str | None]:
    return lambda row: "x" if row.get("comment") == comment else None


def _same_network(address: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_network(address, strict=False) == net
    except ValueError:
        return False
