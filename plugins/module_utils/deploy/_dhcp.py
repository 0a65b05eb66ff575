# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""DHCP chainloading on RouterOS (``rb4011_manage_dhcp``): the plan, pure; reading the menus.

The rows (options, option sets, matchers, the user's network row) and why they cannot loop are README's "DHCP
chainloading" and "Why this cannot loop". In short: the network's ``boot-file-name`` stays EMPTY (iPXE's
``dhcppkt_fetch`` prefers the BOOTP ``file`` field to option 67), the default firmware kind gets its binary from the
network's own ``dhcp-option``, the other kind from option 93 matchers, and the option 77 (``iPXE``) matcher is both
the first and the last of the collection's matchers, whichever end RouterOS prefers (re-created when out of order).
Only the network row is the user's: its ``next-server``, ``boot-file-name`` and one name in ``dhcp-option`` change.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import sha256_file
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploydist import Artefact
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routeros import (
    MATCHER_FEATURE,
    MATCHING_TYPE_FEATURE,
    RouterOS,
    RowChange,
    diff_rows,
    network_of,
    same_value,
)

DEBIAN_IPXE_DIR = Path("/usr/lib/ipxe")
# request name of each iPXE binary (Debian's ipxe package ships them all under /usr/lib/ipxe) -> its path variable
BINARY_VARS: dict[str, str] = {"undionly.kpxe": "rb4011_ipxe_bios", "snponly.efi": "rb4011_ipxe_snp",
                               "ipxe.efi": "rb4011_ipxe_efi"}
BIOS_BINARY = "undionly.kpxe"
UEFI_BINARIES = ("snponly.efi", "ipxe.efi")  # the first is the default: the board's own NIC driver (UEFI SNP)
FIRMWARES = ("uefi", "bios")  # the first is the default firmware kind of the network
# option 93 (client architecture, RFC 4578) values of each firmware kind, as matcher values
ARCHES: dict[str, tuple[str, ...]] = {"bios": ("0x0000",), "uefi": ("0x0007", "0x0009")}
PREFIX = "homelab-netboot"
NAME = f"{PREFIX}-ipxe"  # the option, option set and first matcher that give iPXE clients the script
LAST_NAME = f"{PREFIX}-ipxe-last"  # the same matcher again after the option 93 ones
BOOTFILE_OPTION = 67
USER_CLASS_OPTION = 77
ARCH_OPTION = 93
MATCHING_TYPES = ("exact", "substring")

NETWORK_MENU = "/ip/dhcp-server/network"
OPTION_MENU = "/ip/dhcp-server/option"
SETS_MENU = "/ip/dhcp-server/option/sets"
MATCHER_MENU = "/ip/dhcp-server/matcher"
MENUS = (OPTION_MENU, SETS_MENU, MATCHER_MENU)  # add in this order, remove in reverse
TAGS = {OPTION_MENU: "option", SETS_MENU: "option-set", MATCHER_MENU: "matcher"}  # comment: "<tag> dhcp=<this>"


class DhcpError(NetbootError):
    """The DHCP configuration cannot be managed as asked; nothing was changed."""


def firmware_name(kind: str) -> str:
    """The option and option set that give firmware of ``kind`` its iPXE binary."""
    return f"{PREFIX}-{kind}"


@dataclass(frozen=True)
class DhcpOptions:
    network: str  # address of the /ip/dhcp-server/network row, e.g. 192.168.88.0/24
    next_server: str = ""  # "" = the network's gateway (the router's address on that network)
    firmware: str = FIRMWARES[0]  # the network's default firmware kind; the other one is chosen by option 93
    matcher_value: str = "iPXE"
    matching_type: str = ""  # "" = RouterOS' default (exact); set only on 7.16+
    server: str = "all"
    ipxe_bios: Path = DEBIAN_IPXE_DIR / BIOS_BINARY
    ipxe_efi: Path = DEBIAN_IPXE_DIR / "ipxe.efi"
    uefi_binary: str = UEFI_BINARIES[0]
    ipxe_snp: Path = DEBIAN_IPXE_DIR / "snponly.efi"

    def __post_init__(self) -> None:
        if network_of(self.network) is None:
            raise ConfigError(f"rb4011_dhcp_network {self.network!r}: give the address of the /ip dhcp-server network "
                              "to manage, e.g. 192.168.88.0/24")
        if self.next_server:
            try:
                ipaddress.ip_address(self.next_server)
            except ValueError:
                raise ConfigError(f"rb4011_dhcp_next_server {self.next_server!r}: give the router's IPv4 address on "
                                  f"{self.network} (or leave it empty to use the network's gateway)") from None
        if self.firmware not in FIRMWARES:
            raise ConfigError(f"rb4011_dhcp_firmware {self.firmware!r}: use one of {', '.join(FIRMWARES)}")
        if self.uefi_binary not in UEFI_BINARIES:
            raise ConfigError(f"rb4011_dhcp_uefi_binary {self.uefi_binary!r}: use one of {', '.join(UEFI_BINARIES)}")
        if not self.matcher_value or any(c in self.matcher_value for c in "\"\n\r"):
            raise ConfigError(f"rb4011_dhcp_matcher_value {self.matcher_value!r}: give the option 77 value iPXE "
                              "sends (default iPXE), without quotes or newlines")
        if self.matching_type and self.matching_type not in MATCHING_TYPES:
            raise ConfigError(f"rb4011_dhcp_matching_type {self.matching_type!r}: use {' or '.join(MATCHING_TYPES)}, "
                              "or leave it empty")

    def boot_files(self) -> dict[str, str]:
        """Firmware kind -> the request name of the iPXE binary it gets."""
        return {"uefi": self.uefi_binary, "bios": BIOS_BINARY}

    def binaries(self) -> list[Artefact]:
        """The local iPXE binaries under their request names, checked to exist and hashed (all are served,
        whichever the DHCP rows name)."""
        out = []
        paths = {BIOS_BINARY: Path(self.ipxe_bios), "snponly.efi": Path(self.ipxe_snp), "ipxe.efi": Path(self.ipxe_efi)}
        for name, path in paths.items():
            digest = sha256_file(path) if path.is_file() else None
            if digest is None:
                raise ConfigError(f"{path} ({name}, for DHCP chainloading) is missing: the deploy role unpacks it "
                                  "from the pinned Debian ipxe package (netboot_deb_pins.ipxe); called alone, "
                                  f"apt-get install ipxe, or give its path in {BINARY_VARS[name]}")
            out.append(Artefact(name, path.stat().st_size, digest, path))
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
    boot_files: dict[str, str] = field(default_factory=dict)  # firmware kind -> binary its firmware gets


def row_line(menu: str, values: Mapping[str, str], keys: Iterable[str]) -> str:
    words = " ".join(f"{k}={values[k]}" for k in keys if values.get(k, "") != "")
    return f"{menu} {words}"


KEYS = {
    OPTION_MENU: ("name", "code", "value", "comment"),
    SETS_MENU: ("name", "options", "comment"),
    MATCHER_MENU: ("name", "server", "code", "value", "matching-type", "option-set", "disabled", "comment"),
}
NETWORK_KEYS = ("address", "gateway", "next-server", "boot-file-name", "dhcp-option")


def desired_rows(opts: DhcpOptions, script: str) -> dict[str, dict[str, dict[str, str]]]:
    """Menu -> row name -> values (without comment), matchers in table order."""
    other = next(k for k in FIRMWARES if k != opts.firmware)
    files = opts.boot_files()
    served = {NAME: script, **{firmware_name(kind): files[kind] for kind in FIRMWARES}}  # option name -> file
    options = {n: {"name": n, "code": str(BOOTFILE_OPTION), "value": f"s'{file}'"} for n, file in served.items()}
    sets = {name: {"name": name, "options": name} for name in options}
    mtype = {"matching-type": opts.matching_type} if opts.matching_type else {}

    def matcher(name: str, code: int, value: str, oset: str) -> dict[str, str]:
        return {"name": name, "server": opts.server, "code": str(code), "value": value, **mtype, "option-set": oset,
                "disabled": "no"}

    matchers = {NAME: matcher(NAME, USER_CLASS_OPTION, opts.matcher_value, NAME)}
    for arch in ARCHES[other]:
        name = f"{firmware_name(other)}-{arch[2:]}"
        matchers[name] = matcher(name, ARCH_OPTION, arch, firmware_name(other))
    matchers[LAST_NAME] = matcher(LAST_NAME, USER_CLASS_OPTION, opts.matcher_value, NAME)
    return {OPTION_MENU: options, SETS_MENU: sets, MATCHER_MENU: matchers}


def plan_dhcp(state: DhcpState, opts: DhcpOptions, *, tag: str, script: str, host: str) -> DhcpPlan:
    """The writes that make ``state`` chainload: owned option/set/matcher rows, the network's properties.

    ``tag`` starts each owned row's comment (``<tag> dhcp=<menu>``); rows without it are the user's and are never
    changed; a user row holding one of the collection's names is refused (RouterOS names are unique).
    """
    plan = DhcpPlan()
    net = ipaddress.ip_network(opts.network, strict=False)
    rows = [r for r in state.networks if network_of(r.get("address", "")) == net]
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
    plan.next_server, plan.boot_files = next_server, opts.boot_files()

    desired = desired_rows(opts, script)
    comments = {m: f"{tag} dhcp={TAGS[m]}" for m in MENUS}
    per_menu: dict[str, tuple[list[RowChange], list[RowChange]]] = {}
    for menu in MENUS:
        actual = state.menus.get(menu, ())
        owned = _owner(comments[menu])
        for row in actual:
            if row.get("name") in desired[menu] and owned(row) is None:
                raise DhcpError(f"{host}: {menu} {row.get('name')!r} exists but is not the collection's (its comment "
                                f"does not start with {comments[menu]!r}); rename or remove it, then rerun. Nothing "
                                "was changed.")
        want = {n: {**v, "comment": f"{comments[menu]} {n}"} for n, v in desired[menu].items()}
        # the kept owned matchers must be a prefix of the wanted order (new ones are added at the end of the table)
        kept = [owned(r) for r in actual if owned(r) in want]
        if menu == MATCHER_MENU and kept != list(want)[: len(kept)]:
            # the option 77 matcher must stay first and last: re-create the owned matchers in order
            changes = diff_rows(menu, actual, {}, owned) + diff_rows(menu, (), want, owned)
        else:
            changes = diff_rows(menu, actual, want, owned)
        per_menu[menu] = ([c for c in changes if c.action != "remove"], [c for c in changes if c.action == "remove"])
        plan.before += sorted(row_line(menu, r, KEYS[menu]) for r in state.menus.get(menu, ()) if owned(r))
        plan.after += [row_line(menu, v, KEYS[menu]) for v in want.values()]
    # options and sets first (what matchers and the network name), the matchers (stale ones removed before
    # their names are added again), the network, then the stale sets and options
    plan.changes += per_menu[OPTION_MENU][0] + per_menu[SETS_MENU][0]
    plan.changes += per_menu[MATCHER_MENU][1] + per_menu[MATCHER_MENU][0]

    user_opts = [o for o in network.get("dhcp-option", "").split(",") if o and not o.startswith(f"{PREFIX}-")]
    wanted = {"next-server": next_server, "boot-file-name": "",
              "dhcp-option": ",".join([*user_opts, firmware_name(opts.firmware)])}
    delta = {k: v for k, v in wanted.items() if not same_value(network.get(k, ""), v)}
    if delta:
        plan.changes.append(RowChange(NETWORK_MENU, "set", opts.network, delta, network[".id"], dict(network),
                                      find="address"))
    plan.changes += list(reversed(per_menu[SETS_MENU][1])) + list(reversed(per_menu[OPTION_MENU][1]))
    plan.before.append(row_line(NETWORK_MENU, network, NETWORK_KEYS))
    plan.after.append(row_line(NETWORK_MENU, {**network, **wanted}, NETWORK_KEYS))
    return plan


def _owner(comment: str) -> Callable[[Mapping[str, str]], str | None]:
    """Owned rows: comment ``<tag> dhcp=<menu>`` (the first version, one row per menu) or ``... <name>``."""
    def key(row: Mapping[str, str]) -> str | None:
        return str(row.get("name", "")) if (row.get("comment", "") + " ").startswith(comment + " ") else None
    return key
