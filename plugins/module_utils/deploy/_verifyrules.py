# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""What the router check reads without the network: which /ip/tftp rule serves a request and why a read failed, and
what a generation's script fetches and whether it is the deploy's rewrite (``_verify``)."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._ipxe import read_record
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy import _routeros, _tftp
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploydist import (
    RECORD,
    generation_script,
)

# options before the URL: a flag, or --name/-n with its value (the Secure Boot script names the UKI by generation)
FETCH_RE = re.compile(r"^\s*(?P<cmd>kernel|initrd|imgfetch|module|chain)\s+(?:(?:--name|-n)\s+\S+\s+|--\S+\s+)*"
                      r"\$\{base\}/(?P<name>[^\s$]+)", re.M)
NODE_INITRD_RE = re.compile(r"^\s*set\s+node_initrd\s+(?P<name>\S+)\s*$", re.M)


# -- rules ----------------------------------------------------------------------------------------------------------

def in_addresses(client: str, ip_addresses: str) -> bool:
    """Whether ``client`` may use a rule whose ``ip-addresses`` is this RouterOS list (empty: anyone)."""
    nets = [_routeros.network_of(n.strip()) for n in ip_addresses.split(",") if n.strip()]
    if not nets:
        return True
    addr = ipaddress.ip_address(client)
    return any(net is not None and addr in net for net in nets)


def name_matches(rule: Mapping[str, str], request: str) -> bool:
    try:
        return re.search(rule.get("req-filename", ".*") or ".*", request) is not None
    except re.error:
        return False


def pick_rule(rules: Sequence[Mapping[str, str]], request: str, client: str) -> Mapping[str, str] | None:
    """The rule RouterOS serves ``request`` to ``client`` by: the first enabled one whose regex and addresses match."""
    return next((r for r in rules if _routeros.enabled(r) and name_matches(r, request)
                 and in_addresses(client, r.get("ip-addresses", ""))), None)


def diagnose(rules: Sequence[Mapping[str, str]], request: str, client: str, error: _tftp.TftpError | None,
             size: int | None = None) -> str:
    """Why ``request`` failed (or would fail) for ``client``: the rules first, then what the TFTP exchange showed."""
    by_name = [r for r in rules if _routeros.enabled(r) and name_matches(r, request)]
    if not by_name:
        return f"no rule: no enabled /ip/tftp rule's req-filename matches {request}"
    rule = pick_rule(rules, request, client)
    if rule is None:
        allowed = sorted({r.get("ip-addresses", "") for r in by_name})
        return (f"outside ip-addresses: the controller's address {client} is outside the ip-addresses "
                f"({'; '.join(allowed)}) of the rule for {request}, so the router refuses it. Add {client} (or its "
                "network) to rb4011_tftp_allow_addresses and deploy again, or run the verify from an address inside "
                "(this says nothing about the nodes)")
    if rule.get("allow") in ("false", "no"):
        return f"refused: the first rule matching {request} ({rule.get('req-filename')}) has allow=no"
    real = rule.get("real-filename") or request
    rollover = rule.get("allow-rollover") in ("true", "yes")
    if isinstance(error, _tftp.TftpRefused) and error.code == 1:
        return f"file not found: the rule for {request} names {real}, which the router does not have"
    if error is not None and error.blocks >= 65535 and not rollover:
        return (f"too big without rollover: {request} stopped at block {error.blocks} (the 16-bit counter's end); "
                f"its rule has allow-rollover=no: deploy again (the deploy sets it from the size) or set "
                "allow-rollover=yes on the rule")
    if isinstance(error, _tftp.TftpTimeout):
        if not error.answered:
            return (f"timeout: the router did not answer a TFTP read of {request} from {client} (its rule allows "
                    "that address): a firewall (/ip firewall filter, input chain, or one on the way) may drop UDP "
                    "69 or the replies to the client's port; accept udp dst-port=69 from the boot network")
        return (f"timeout: {request} stopped after {error.blocks} blocks: a firewall may drop the replies (they come "
                "from a new router port, not 69), or the link loses packets")
    if error is not None:
        return f"refused: {error}"
    if size is not None and _routeros.needs_rollover(size, _tftp.IPXE_BLKSIZE) and not rollover:
        return f"too big without rollover: {request} is {size} bytes, more than 65,535 blocks of 1432 bytes"
    return ""


# -- what the generation's script fetches ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ScriptFiles:
    kernel: tuple[str, ...]  # names in the generation directory, as the script orders them
    initrds: tuple[str, ...]  # microcode, initramfs (every node)
    node_initrds: tuple[str, ...]  # per-node (one of them, at most, per node)


def script_files(text: str) -> ScriptFiles:
    fetched = [(m.group("cmd") in ("kernel", "chain"), m.group("name")) for m in FETCH_RE.finditer(text)]
    kernel = dict.fromkeys(name for is_kernel, name in fetched if is_kernel)
    initrds = dict.fromkeys(name for is_kernel, name in fetched if not is_kernel)
    nodes = dict.fromkeys(m.group("name") for m in NODE_INITRD_RE.finditer(text))
    return ScriptFiles(tuple(kernel), tuple(initrds), tuple(nodes))


def check_generation_script(data: bytes, gen: str, record: bytes) -> str:
    """"" when ``data`` is exactly what the deploy renders for ``gen`` from its boot record (``record``: the bytes
    of ``gen``'s boot.ipxe.json)."""
    try:
        want = generation_script(read_record(f"{gen}/{RECORD}", record), gen).encode()
    except NetbootError as e:
        return f"wrong bytes: {e}"
    if want != data:
        return (f"wrong bytes: boot.ipxe has sha256 {hashlib.sha256(data).hexdigest()}, the deploy's render of "
                f"generation {gen}'s boot record {hashlib.sha256(want).hexdigest()}")
    return ""
