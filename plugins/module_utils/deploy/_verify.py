# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Verify a deployed boot server from the controller, as a node would see it: TFTP through the router's rules and DHCP
through its DHCP server. The router's state (files, rules, the live generation) is read with ``_deploy``'s readers.

What is compared: every file a node fetches is read once over TFTP with iPXE's block size and its sha256 compared with
what the deploy put there - the live generation's own ``SHA256SUMS`` on the router (itself checked against the
generation id, the first 12 hex of its sha256), ``boot.ipxe`` against the deploy's rewrite of the generation's
``boot.ipxe`` listed there, each iPXE binary against the 12 hex of its sha256 that names its directory. Never the
controller's dist/ (it may have been rebuilt since). docsite "Verifying the router".
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import ipaddress
import re
import socket
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy import _dhcpprobe, _tftp
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploy import read_state, storage_dir
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploydist import (
    GENERATION_SCRIPT,
    RECORD,
    STABLE_REQUEST,
    SUMS,
    dispatch_macs,
    dispatch_script,
    generation_id,
    parse_sums,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deployplan import (
    CHAINLOAD_DIR,
    RouterState,
    Stable,
    chainloaded,
    stable_target,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._dhcp import NETWORK_MENU
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routeros import (
    BASE_FEATURE,
    MIN_BLKSIZE,
    ApiOptions,
    connect,
    needs_rollover,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._verifyrules import (
    check_generation_script,
    diagnose,
    pick_rule,
    script_files,
)

IPXE_SUFFIXES = (".efi", ".kpxe", ".kkpxe", ".pxe", ".lkrn")
# iPXE's command table holds each command's name as a NUL-terminated string; sha256sum is in Debian's ipxe 2.0.0
# (trixie/sid) snponly.efi and ipxe.efi, not in bookworm's, nor readable in the compressed undionly.kpxe
DIGEST_COMMAND = b"\0sha256sum\0"
SCRIPT_LIMIT = 1 << 20
BINARY_LIMIT = 16 << 20


@dataclass(frozen=True)
class VerifyOptions:
    rb_dir: str = "netboot"
    tftp_address: str = ""  # "" = the API host
    tftp_port: int = _tftp.PORT
    pass_512: bool = False
    tftp_timeout: float = 2.0  # seconds to wait for each TFTP packet (not the API's timeout)
    tftp_retries: int = 5
    dhcp: bool = True
    dhcp_interface: str = ""  # "" = the interface holding the controller's address toward the router
    dhcp_timeout: float = 3.0
    probe_seed: str = ""  # MACs of the probes derive from it (default: the router's host)

    def __post_init__(self) -> None:
        if self.tftp_address:
            try:
                ipaddress.IPv4Address(self.tftp_address)
            except ValueError:
                raise ConfigError(f"rb4011_verify_tftp_address {self.tftp_address!r}: give the router's IPv4 address "
                                  "that nodes fetch from (the DHCP next-server)") from None
        if self.tftp_timeout <= 0 or self.tftp_retries < 0:
            raise ConfigError("rb4011_verify_timeout must be > 0 and rb4011_verify_retries >= 0")


def has_digest_command(data: bytes) -> bool:
    return DIGEST_COMMAND in data


# -- the controller's side ------------------------------------------------------------------------------------------

SIOCGIFADDR, SIOCGIFNETMASK = 0x8915, 0x891B


def interfaces() -> dict[str, ipaddress.IPv4Interface]:
    """Interface name -> its (primary) IPv4 address and prefix."""
    out: dict[str, ipaddress.IPv4Interface] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _idx, name in socket.if_nameindex():
            req = struct.pack("256s", name.encode()[:15])
            try:
                addr = socket.inet_ntoa(fcntl.ioctl(s.fileno(), SIOCGIFADDR, req)[20:24])
                mask = socket.inet_ntoa(fcntl.ioctl(s.fileno(), SIOCGIFNETMASK, req)[20:24])
            except OSError:
                continue
            out[name] = ipaddress.IPv4Interface(f"{addr}/{mask}")
    return out


def dhcp_interface(opts: VerifyOptions, router: str, controller: str,
                   ifaces: Mapping[str, ipaddress.IPv4Interface]) -> tuple[str, str]:
    """(interface, "") to probe on, or ("", why not)."""
    if opts.dhcp_interface:
        if opts.dhcp_interface not in ifaces:
            return "", (f"rb4011_verify_dhcp_interface {opts.dhcp_interface} has no IPv4 address on this controller "
                        f"(have: {', '.join(sorted(ifaces)) or 'none'})")
        return opts.dhcp_interface, ""
    holding = [n for n, i in ifaces.items() if str(i.ip) == controller]
    if not holding:
        return "", f"no interface holds the controller's address {controller} toward {router}"
    name = holding[0]
    if ipaddress.ip_address(router) not in ifaces[name].network:
        return "", (f"the controller is not on the boot network: {router} is routed (via {name}, "
                    f"{ifaces[name]}), and DHCP broadcasts do not cross routers; set rb4011_verify_dhcp_interface "
                    "to an interface on the boot network")
    return name, ""


# -- the report -------------------------------------------------------------------------------------------------------

@dataclass
class FileCheck:
    request: str
    role: str
    real_filename: str = ""
    size: int | None = None
    sha256: str = ""
    expected_sha256: str = ""
    expected_from: str = ""
    seconds: float = 0.0
    MBps: float = 0.0
    blocks: int = 0
    rolled_over: bool = False
    rollover_512_needed: bool = False
    rollover_allowed: bool = False
    problem: str = ""
    pass_512: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problem


@dataclass
class Report:
    host: str
    routeros_version: str = ""
    identity: str = ""
    storage_dir: str = ""  # rb4011_dir as found on the router (under flash/ when it has one); "dir" in as_dict
    generation: str | None = None
    tftp_address: str = ""
    controller_address: str = ""
    files: list[FileCheck] = field(default_factory=list)
    boot_files: list[str] = field(default_factory=list)
    boot_bytes: int = 0
    boot_seconds: float = 0.0
    dhcp: dict[str, Any] = field(default_factory=dict)
    clients: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["ok"] = self.ok
        out["dir"] = out.pop("storage_dir")
        for f, d in zip(self.files, out["files"], strict=True):
            d["ok"] = f.ok
        out["tftp_blksize"] = _tftp.IPXE_BLKSIZE
        return out


Fetcher = Callable[[str, int, int], _tftp.Fetched]  # (request, blksize, keep) -> Fetched
Prober = Callable[[str, _dhcpprobe.ClientKind], _dhcpprobe.Answer]  # (interface, kind)


def check_router(state: RouterState, opts: VerifyOptions, *, fetch: Fetcher, controller: str,
                 probe: Prober | None, dhcp_skip: str, interface: str,
                 networks: Sequence[Mapping[str, str]] = ()) -> Report:
    """The checks against a read router ``state``; ``fetch`` reads over TFTP, ``probe`` asks DHCP (None: skipped,
    ``dhcp_skip`` says why); ``networks``: the router's ``/ip/dhcp-server/network`` rows."""
    rb = storage_dir(state, opts.rb_dir)
    stable = stable_target(state, rb)
    live = stable.live
    rep = Report(state.host, state.version, state.identity, rb, live, tftp_address=opts.tftp_address or state.host,
                 controller_address=controller)
    chain_rules = {name: r for r in state.tftp if (name := chainloaded(r, rb))}
    # DHCP first: it names the iPXE binaries clients fetch
    followed = _check_dhcp(rep, probe, dhcp_skip, interface, set(chain_rules))
    _warn_boot_file_names(rep, networks, chain_rules)
    if live is None:
        rep.failures.append(f"no rule: nothing is live under {rb} (no /ip/tftp rule '{STABLE_REQUEST}' with the "
                            f"collection's comment naming a generation): deploy first")
        return rep
    reads = _Reads(rep, fetch, list(state.tftp), controller, {f.name: f.size for f in state.files}, opts.pass_512)
    binaries = _check_binaries(reads, chain_rules, followed)
    _boot_checked(rep)
    sums = _check_sums(reads, live)
    script_request = _check_dispatcher(reads, stable, live) if stable.dispatcher and stable.staged else STABLE_REQUEST
    script_chk, script = reads.one(script_request, "boot script", SCRIPT_LIMIT)
    if script_chk.ok and sums:
        rec_chk, record = reads.one(f"{live}/{RECORD}", "boot record", SCRIPT_LIMIT,
                                    sums.get(RECORD, "not listed"), expected_from=f"{live}/{SUMS}")
        problem = check_generation_script(script, live, record) if rec_chk.ok else f"no record: {rec_chk.problem}"
        script_chk.expected_from = f"the deploy's render of the boot record listed in {live}/{SUMS}"
        if not problem:
            script_chk.expected_sha256 = script_chk.sha256
        else:
            script_chk.problem = problem
            rep.failures.append(f"{script_request}: {problem}")
    if not sums or not script_chk.ok:
        return rep
    boot, node_checks = _check_boot_files(reads, live, script.decode(), sums)
    _sum_one_boot(rep, binaries, [script_chk, *boot], node_checks)
    for chain in rep.dhcp.get("chains", []):  # when DHCP was checked
        if (ns := chain["next_server"]) and ns not in (rep.tftp_address, "0.0.0.0"):
            rep.warnings.append(f"DHCP sends {chain['client']} to next-server {ns}, the TFTP checks read "
                                f"{rep.tftp_address} (set rb4011_verify_tftp_address: {ns})")
            break
    return rep


def _warn_boot_file_names(rep: Report, networks: Sequence[Mapping[str, str]],
                          chain_rules: Mapping[str, Mapping[str, str]]) -> None:
    """A warning for each DHCP network whose boot-file-name names an iPXE binary (a loop on some RouterOS)."""
    for net in networks:
        bfn = net.get("boot-file-name", "")
        if bfn and (bfn in chain_rules or bfn.lower().endswith(IPXE_SUFFIXES)):
            seen = ("these answers loop, see the failures" if any("loop" in f for f in rep.failures) else
                    "this router's answers did not loop" if rep.dhcp.get("status") == "checked" else
                    "DHCP was not asked")
            rep.warnings.append(
                f"/ip dhcp-server network {net.get('address', '?')} has boot-file-name={bfn}: iPXE reads the BOOTP "
                f"file field before option 67, so it fetches {bfn} again on a RouterOS that keeps the field beside "
                f"a matched option 67 ({seen}); unset it (rb4011_manage_dhcp does)")


@dataclass
class _Reads:
    """One router's TFTP reads: each is checked and added to ``rep`` (a failure also to its failures)."""

    rep: Report
    fetch: Fetcher
    rules: Sequence[Mapping[str, str]]
    controller: str
    sizes: Mapping[str, int]  # /file: name -> size
    pass_512: bool

    def one(self, request: str, role: str, keep: int = 0, expected: str = "", *,
            expected_from: str = "") -> tuple[FileCheck, bytes]:
        """``request`` read (its first ``keep`` bytes returned) and checked against ``expected`` (a sha256 or its
        prefix), the size /file lists and its rule's rollover."""
        rule = pick_rule(self.rules, request, self.controller) or {}
        chk = FileCheck(request, role, rule.get("real-filename", ""), expected_sha256=expected,
                        expected_from=expected_from, rollover_allowed=rule.get("allow-rollover") in ("true", "yes"))
        head = b""
        try:
            got = self.fetch(request, _tftp.IPXE_BLKSIZE, keep)
        except _tftp.TftpError as e:
            chk.problem = diagnose(self.rules, request, self.controller, e) or f"refused: {e}"
        else:
            head = got.head
            chk.size, chk.sha256, chk.seconds = got.size, got.sha256, round(got.seconds, 4)
            chk.MBps, chk.blocks, chk.rolled_over = round(got.mbps, 3), got.blocks, got.rolled_over
            chk.rollover_512_needed = needs_rollover(got.size, MIN_BLKSIZE)
            if expected and not got.sha256.startswith(expected):
                chk.problem = (f"wrong bytes: {request} (router file {chk.real_filename}) has sha256 {got.sha256}, "
                               f"expected {expected} ({expected_from})")
            on_router = self.sizes.get(chk.real_filename.lstrip("/"))
            if not chk.problem and on_router is not None and on_router != got.size:
                chk.problem = (f"wrong bytes: {request} read {got.size} bytes over TFTP, /file lists "
                               f"{chk.real_filename} with {on_router}")
            if not chk.problem and chk.rollover_512_needed and not chk.rollover_allowed:
                chk.problem = (f"too big without rollover: {request} is {got.size} bytes, more than 65,535 blocks "
                               f"for a 512-byte client, and its rule has allow-rollover=no; deploy again")
            if self.pass_512:
                chk.pass_512 = self.again_at_512(request, got.sha256)
                if chk.pass_512.get("problem") and not chk.problem:
                    chk.problem = f"512-byte pass: {chk.pass_512['problem']}"
        self.rep.files.append(chk)
        if chk.problem:
            self.rep.failures.append(f"{request}: {chk.problem}")
        return chk, head

    def again_at_512(self, request: str, want: str) -> dict[str, Any]:
        """``request`` read again with 512-byte blocks (an RFC 1350 client) and compared with ``want``."""
        try:
            got = self.fetch(request, MIN_BLKSIZE, 0)
        except _tftp.TftpError as e:
            return {"problem": diagnose(self.rules, request, self.controller, e) or str(e)}
        out: dict[str, Any] = {"seconds": round(got.seconds, 4), "MBps": round(got.mbps, 3), "blocks": got.blocks,
                               "rolled_over": got.rolled_over, "problem": ""}
        if got.sha256 != want:
            out["problem"] = f"wrong bytes: sha256 {got.sha256} at 512-byte blocks, {want} at 1432"
        return out


def _check_binaries(reads: _Reads, chain_rules: Mapping[str, Mapping[str, str]],
                    followed: Iterable[str]) -> dict[str, FileCheck]:
    """The iPXE binaries: the collection's, and any other a DHCP answer sends a client to."""
    binaries: dict[str, FileCheck] = {}
    others = {n for n in followed if n != STABLE_REQUEST and n.lower().endswith(IPXE_SUFFIXES)}
    for name in sorted(set(chain_rules) | others):
        m = re.search(rf"/{CHAINLOAD_DIR}/([0-9a-f]{{12}})/", "/" + chain_rules.get(name, {}).get("real-filename", ""))
        chk, data = reads.one(name, "ipxe binary", BINARY_LIMIT, m.group(1) if m else "",
                              expected_from="the 12 hex of its sha256 naming its directory" if m else
                              "not the collection's binary: no digest to compare")
        binaries[name] = chk
        if chk.ok:
            reads.rep.clients.setdefault("ipxe_binaries", {})[name] = {
                "sha256sum_command": has_digest_command(data), "bytes": chk.size}
    return binaries


def _check_sums(reads: _Reads, live: str) -> dict[str, str]:
    """The live generation's SHA256SUMS, checked against its id; empty if it cannot be trusted."""
    sums_chk, sums_raw = reads.one(f"{live}/{SUMS}", "SHA256SUMS", SCRIPT_LIMIT)
    if not sums_chk.ok:
        return {}
    if generation_id(sums_raw) != live:
        sums_chk.problem = (f"wrong bytes: {live}/{SUMS} hashes to {generation_id(sums_raw)}, not to the "
                            f"generation id {live}")
        reads.rep.failures.append(f"{sums_chk.request}: {sums_chk.problem}")
        return {}
    sums_chk.expected_sha256 = sums_chk.sha256
    sums_chk.expected_from = "the generation id"
    return parse_sums(sums_raw.decode("utf-8", "replace"), f"{live}/{SUMS}")


def _check_dispatcher(reads: _Reads, stable: Stable, live: str) -> str:
    """A roll (update_herd.yml) is under way: boot.ipxe is its dispatcher; every other client gets the live script,
    whose request is returned."""
    rep, staged = reads.rep, stable.staged or ""
    d_chk, data = reads.one(STABLE_REQUEST, "dispatcher", SCRIPT_LIMIT)
    if d_chk.ok:
        macs = dispatch_macs(data.decode("utf-8", "replace"))
        want = dispatch_script(live, staged, macs).encode()
        d_chk.expected_from = f"the dispatcher of {len(macs)} MAC(s) to {staged}, the rest to {live}"
        if data == want:
            d_chk.expected_sha256 = d_chk.sha256
            rep.warnings.append(f"a roll is under way: {len(macs)} MAC(s) boot the staged generation "
                                f"{staged} ({', '.join(macs)}), every other client {live}")
        else:
            d_chk.problem = (f"wrong bytes: {STABLE_REQUEST} is not the deploy's dispatcher (sha256 "
                             f"{d_chk.sha256}, expected {hashlib.sha256(want).hexdigest()})")
            rep.failures.append(f"{STABLE_REQUEST}: {d_chk.problem}")
    return f"{live}/{GENERATION_SCRIPT}"


def _check_boot_files(reads: _Reads, live: str, script: str,
                      sums: Mapping[str, str]) -> tuple[list[FileCheck], list[FileCheck]]:
    """The kernel and initrds the script fetches, and the per-node initrds, against the generation's SHA256SUMS."""
    files = script_files(script)
    boot: list[FileCheck] = []
    node_checks: list[FileCheck] = []
    for role, names in (("kernel", files.kernel), ("initrd", files.initrds), ("node initrd", files.node_initrds)):
        for name in names:
            request = f"{live}/{name}"
            if name not in sums:
                reads.rep.failures.append(f"{request}: boot.ipxe fetches {name}, which {live}/{SUMS} does not list")
                continue
            chk, _unused = reads.one(request, role, 0, sums[name], expected_from=f"{live}/{SUMS}")
            (node_checks if role == "node initrd" else boot).append(chk)
    return boot, node_checks


def _sum_one_boot(rep: Report, binaries: Mapping[str, FileCheck], boot: list[FileCheck],
                  node_checks: Sequence[FileCheck]) -> None:
    """One node's boot: one iPXE binary (the slowest of those the DHCP answers give firmware, else of all served),
    the script, kernel, initrds, and the largest per-node initrd."""
    fetched_bins = [c for c in binaries.values() if c.ok]
    firmware_gets = {name.lstrip("/") for name in _firmware_files(rep).values() if name}
    fetched_bins = [c for c in fetched_bins if c.request in firmware_gets] or fetched_bins
    if fetched_bins:
        boot.insert(0, max(fetched_bins, key=lambda c: c.seconds))
    if node_checks:
        boot.append(max(node_checks, key=lambda c: c.size or 0))
    rep.boot_files = [c.request for c in boot]
    rep.boot_bytes = sum(c.size or 0 for c in boot)
    rep.boot_seconds = round(sum(c.seconds for c in boot), 3)


def _check_dhcp(rep: Report, probe: Prober | None, skip: str, interface: str, chain_names: set[str]) -> set[str]:
    """Ask as each client kind, follow each chain; the files the chains fetch."""
    if probe is None:
        rep.dhcp = {"status": "skipped", "reason": skip}
        rep.warnings.append(f"DHCP check skipped: {skip}")
        return set()
    answers: dict[str, _dhcpprobe.Answer | None] = {}
    errors: dict[str, str] = {}
    for kind in _dhcpprobe.CLIENTS:
        try:
            answers[kind.name] = probe(interface, kind)
        except _dhcpprobe.ProbeError as e:
            answers[kind.name] = None
            errors[kind.name] = str(e)

    def is_ipxe(name: str) -> bool:
        return name in chain_names or name.lower().endswith(IPXE_SUFFIXES)

    chains = []
    files: set[str] = set()
    for kind in _dhcpprobe.CLIENTS:
        ch = _dhcpprobe.follow(kind, answers, script=STABLE_REQUEST, is_ipxe=is_ipxe)
        files |= {s.file.lstrip("/") for s in ch.steps if s.file}
        chains.append({"client": kind.name, "path": ch.path(), "ends": ch.ends, "loop": ch.loop,
                       "problem": ch.problem, "next_server": ch.steps[0].next_server if ch.steps else "",
                       "steps": [dataclasses.asdict(s) for s in ch.steps]})
        if ch.problem:
            rep.failures.append(f"DHCP {kind.name}: {ch.problem}")
    rep.dhcp = {"status": "checked", "interface": interface, "errors": errors,
                "answers": {k: (a.summary() if a else None) for k, a in answers.items()}, "chains": chains}
    return files


def _boot_checked(rep: Report) -> None:
    """Per client kind, whether the iPXE binary it gets can check digests itself (iPXE's sha256sum command)."""
    bins = rep.clients.get("ipxe_binaries", {})
    per: dict[str, Any] = {}
    for client, first in _firmware_files(rep).items():
        b = bins.get(first.lstrip("/"))
        per[client] = {"ipxe_binary": first, "boot_checked": bool(b and b["sha256sum_command"])}
    if per:
        rep.clients["boot_checked"] = per


def _firmware_files(rep: Report) -> dict[str, str]:
    """Firmware client kind (not iPXE) -> the file the DHCP answer sends it to ("" for none)."""
    return {c["client"]: c["steps"][0]["file"] if c["steps"] else "" for c in rep.dhcp.get("chains", [])
            if not c["client"].startswith("ipxe-")}


# -- the whole run -----------------------------------------------------------------------------------------------------

def verify(api: ApiOptions, opts: VerifyOptions) -> Report:
    """Read the router over the API, then check TFTP and DHCP from this controller. Writes nothing anywhere."""
    with contextlib.closing(connect(api)) as ros:
        state = read_state(ros, api.host, [BASE_FEATURE])
        networks = ros.print(NETWORK_MENU)
    tftp_host = opts.tftp_address or api.host
    try:
        controller = _tftp.source_address(tftp_host, opts.tftp_port)
    except OSError as e:
        raise ConfigError(f"no route from the controller to the router's TFTP address {tftp_host}: {e.strerror}; "
                          "set rb4011_verify_tftp_address") from None

    def fetch(request: str, blksize: int, keep: int) -> _tftp.Fetched:
        return _tftp.fetch(tftp_host, request, port=opts.tftp_port, blksize=blksize, timeout=opts.tftp_timeout,
                           retries=opts.tftp_retries, keep=keep)

    probe: Prober | None = None
    skip = (_dhcpprobe.can_probe() or "") if opts.dhcp else "rb4011_verify_dhcp is false"
    interface = ""
    if not skip:
        interface, skip = dhcp_interface(opts, tftp_host, controller, interfaces())
    if not skip:
        seed = opts.probe_seed or f"{api.host}:{socket.gethostname()}"

        def do_probe(iface: str, kind: _dhcpprobe.ClientKind) -> _dhcpprobe.Answer:
            return _dhcpprobe.probe(iface, kind, _dhcpprobe.probe_mac(seed, kind), timeout=opts.dhcp_timeout)

        probe = do_probe
    return check_router(state, opts, fetch=fetch, controller=controller, probe=probe, dhcp_skip=skip,
                        interface=interface, networks=networks)
