# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Render ``boot.ipxe``: per-node dispatch on the booting NIC's MAC, retried downloads, fallback servers, failsafe.

Pure code (no Ansible imports): validate the inventory's node list, normalise MACs, build the template context and
render it with jinja2 ``StrictUndefined``. The module (``ipxe_script``) only reads/writes files.

The generated script relies only on iPXE commands present in old builds too (Debian's ``ipxe-qemu`` ROM is
iPXE 1.0.0+git-2019): ``isset``/``iseq``/``goto``/``menu``/``choose``/``sleep``/``imgfree``; retries are unrolled by
the template because ``inc`` is missing from such builds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _deps, _shipped
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import atomic_write_bytes, sha256_file
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records._record import Kind

try:
    import jinja2
except ImportError:
    _deps.missing("jinja2")

DEFAULT_KERNEL_ARGS = "console=tty0 console=ttyS0,115200"
URL_SCHEMES = ("http", "https", "tftp")
FAILED_MARKER = "netboot: BOOT FAILED"
# boot.ipxe's lines about the sha256 check (docsite "Integrity at boot"); tests and verify match these.
MISMATCH_MARKER = "failed its sha256 check"  # netboot: <file> from <base> failed its sha256 check: got <x> expected <y>
UNCHECKED_MARKER = "netboot: this iPXE has no sha256sum command: booting unchecked"
_SHA256 = re.compile(r"[0-9a-f]{64}")
BOOT_RECORD = Kind("boot", 1, "ipxe")  # ipxe_script's record of boot.ipxe (``boot_record``, ``read_record``)

_HEX12 = re.compile(r"[0-9a-f]{12}")
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
_ROLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_ARTEFACT = re.compile(r"[A-Za-z0-9._+-][A-Za-z0-9._+/-]*")
# iPXE has no quoting (src/core/exec.c split_command): a line is split at isspace() into words, a word "||", "&&"
# or ";" ends the command (the next word starts a new one), a word starting with "#" comments out the rest, "${...}"
# expands a setting, and src/image/script.c joins a line ending in "\\" with the next. So every value rendered into
# boot.ipxe is refused when it has any of: settings expansion, comment, quote, backslash, a command separator
# character, or anything outside printable ASCII (all iPXE whitespace but the plain space, NUL, DEL, non-ASCII).
_UNSAFE_ARG = re.compile(r"[$\\\"'#{}|&;\x00-\x1f\x7f-\U0010ffff]")
# An inventory host name (rendered in a comment and in messages): a word without anything iPXE would interpret.
_HOST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@+-]{0,252}")


def normalise_mac(value: object, *, host: str = "?") -> str:
    """Return ``aa:bb:cc:dd:ee:ff`` for any common notation (colons, hyphens, dots, Cisco ``aabb.ccdd.eeff``, bare).

    Raises ``ConfigError`` naming ``host`` if ``value`` is not a 48-bit unicast-or-multicast MAC.
    """
    if not isinstance(value, str):
        raise ConfigError(f"host {host}: mac must be a string like aa:bb:cc:dd:ee:ff, got {value!r}")
    text = value.strip().lower()
    groups = re.split(r"[:\-.]", text)
    if len(groups) == 6 and all(1 <= len(g) <= 2 for g in groups):
        hexstr = "".join(g.zfill(2) for g in groups)
    elif len(groups) == 3 and all(len(g) == 4 for g in groups):
        hexstr = "".join(groups)
    elif len(groups) == 1:
        hexstr = text
    else:
        hexstr = ""
    if not _HEX12.fullmatch(hexstr):
        raise ConfigError(
            f"host {host}: malformed mac {value!r}; use six hex bytes, e.g. aa:bb:cc:dd:ee:ff, AA-BB-CC-DD-EE-FF, "
            "aabb.ccdd.eeff or aabbccddeeff"
        )
    return ":".join(hexstr[i : i + 2] for i in range(0, 12, 2))


def validate_url(url: object, *, what: str = "boot_server_url") -> str:
    """Check one boot server URL (http/https/tftp with a host); return it without a trailing slash."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{what}: each boot server URL must be a non-empty string, got {url!r}")
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in URL_SCHEMES:
        raise ConfigError(
            f"{what}: unsupported URL scheme in {text!r}; iPXE fetches the images over "
            f"{', '.join(s + '://' for s in URL_SCHEMES)} only"
        )
    if not parts.hostname:
        raise ConfigError(f"{what}: URL {text!r} has no host")
    if parts.query or parts.fragment or _UNSAFE_ARG.search(text) or " " in text:
        raise ConfigError(f"{what}: URL {text!r} must be a plain base URL (no query, fragment, spaces or quotes)")
    return text.rstrip("/")


def validate_urls(value: object) -> list[str]:
    """``boot_server_url`` may be one URL or a list of fallbacks tried in order."""
    items: list[object] = [value] if isinstance(value, str) else list(value) if isinstance(value, list | tuple) else []
    if not items:
        raise ConfigError(f"boot_server_url must be a URL or a non-empty list of URLs, got {value!r}")
    urls = [validate_url(u, what=f"boot_server_url[{i}]") for i, u in enumerate(items)]
    dup = {u for u in urls if urls.count(u) > 1}
    if dup:
        raise ConfigError(f"boot_server_url lists {sorted(dup)[0]!r} more than once")
    return urls


def _args_text(value: object, *, what: str) -> str:
    """Kernel arguments (a string or a list of words) as one line iPXE passes on as it is."""
    if value is None:
        return ""
    words = list(value) if isinstance(value, list | tuple) else [value]
    if not all(isinstance(v, str) for v in words):
        raise ConfigError(f"{what}: kernel_args must be a string or a list of strings, got {value!r}")
    text = " ".join(" ".join(map(str, words)).split())
    bad = _UNSAFE_ARG.search(text)
    if bad:
        raise ConfigError(
            f"{what}: kernel arguments {text!r} contain {bad.group()!r}, which iPXE would interpret (settings "
            f"expansion, comment, command separator ||, && or ;, quote, backslash or a control character); "
            f"remove it from the kernel_args"
        )
    return text


def _artefact(value: object, *, what: str) -> str:
    if not isinstance(value, str) or not _ARTEFACT.fullmatch(value) or ".." in value.split("/"):
        raise ConfigError(f"{what}: {value!r} is not a plain artefact file name relative to the boot server URL")
    return value


@dataclass(frozen=True)
class Node:
    """One known machine (a host of inventory group ``nodes``)."""

    name: str  # inventory name, used in messages
    mac: str  # normalised aa:bb:cc:dd:ee:ff
    hostname: str
    role: str
    kernel_args: str  # the node's own, after the common ones (not the module option of that name)
    initrd: str  # the node's own, loaded after the image's

    @property
    def mac_hexraw(self) -> str:
        return self.mac.replace(":", "")


CATTLE_PREFIX = "node-"  # cattle hostnames: boot.ipxe, cattle_hostname() and the image's netboot-node service


def cattle_hostname(mac: str) -> str:
    """Hostname an unknown MAC gets (the template computes the same with ``{{ cattle_prefix }}${netX/mac:hexraw}``)."""
    return CATTLE_PREFIX + normalise_mac(mac).replace(":", "")


def parse_nodes(raw: Iterable[Mapping[str, object]], *, default_role: str) -> list[Node]:
    """Validate the inventory's node dicts (``name``, ``mac``, ``hostname``, ``role``, ``kernel_args``, ``initrd``).

    Errors name the inventory host: malformed or duplicate MAC, bad or duplicate hostname, bad role.
    """
    nodes: list[Node] = []
    by_mac: dict[str, str] = {}
    by_host: dict[str, str] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise ConfigError(f"nodes[{i}] must be a mapping with name, mac, hostname, role; got {item!r}")
        name = str(item.get("name") or item.get("hostname") or f"nodes[{i}]")
        if not _HOST_NAME.fullmatch(name):
            raise ConfigError(
                f"inventory host {name!r} of the nodes group: its name is written into boot.ipxe and may only use "
                f"letters, digits and '_.:@+-' (no spaces, newlines, backslashes, '$', '#', quotes or ||, &&, ;); "
                f"rename the inventory host"
            )
        if item.get("mac") in (None, ""):
            raise ConfigError(f"host {name}: no mac set; give every host of group 'nodes' a mac host variable")
        mac = normalise_mac(item.get("mac"), host=name)
        if int(mac[:2], 16) & 1:
            raise ConfigError(f"host {name}: mac {mac} is a multicast address; a NIC's MAC has the low bit clear")
        if mac in by_mac:
            raise ConfigError(f"host {name}: mac {mac} is already used by host {by_mac[mac]}")
        hostname = str(item.get("hostname") or name)
        if not _HOSTNAME.fullmatch(hostname):
            raise ConfigError(
                f"host {name}: hostname {hostname!r} is not a valid host name (letters, digits, '-', dots between labels)"
            )
        if hostname.lower() in by_host:
            raise ConfigError(f"host {name}: hostname {hostname!r} is already used by host {by_host[hostname.lower()]}")
        role = str(item.get("role") or default_role)
        if not _ROLE.fullmatch(role):
            raise ConfigError(f"host {name}: role {role!r} must be a word (letters, digits, '_', '.', '-')")
        args = _args_text(item.get("kernel_args"), what=f"host {name}")
        initrd = item.get("initrd") or ""
        if initrd:
            initrd = _artefact(initrd, what=f"host {name}: initrd")
        by_mac[mac] = name
        by_host[hostname.lower()] = name
        nodes.append(Node(name=name, mac=mac, hostname=hostname, role=role, kernel_args=args, initrd=str(initrd)))
    return nodes


@dataclass
class ScriptSpec:
    """Everything ``boot.ipxe`` depends on."""

    boot_server_url: object
    nodes: Sequence[Mapping[str, object]] = ()
    kernel: str = "vmlinuz"
    initramfs: str = "initramfs"
    microcode: str = ""
    kernel_args: object = DEFAULT_KERNEL_ARGS
    extra_kernel_args: object = ""
    default_role: str = "worker"
    retries: int = 3
    retry_delay: int = 2
    failsafe_timeout: int = 60
    extra: Mapping[str, object] = field(default_factory=dict)
    # artefact name (as fetched, relative to the boot server URL) -> sha256 the script checks before ``boot``;
    # None renders a script without checks (a caller that does not have the files)
    digests: Mapping[str, str] | None = None
    # Secure Boot (docsite "Secure Boot"): the signed unified kernel image boot.ipxe boots instead of kernel +
    # initrds; its command line (kernel_args, the node's hostname and role) is fixed inside it, so the script
    # passes none and per-node kernel_args or initrds are refused
    uki: str = ""


UKI_KIND = "UKI (signed kernel, initramfs and command line)"


def uki_image_name() -> str:
    """The name boot.ipxe gives the UKI it fetches: ``netboot-<generation>.efi``. iPXE hands the firmware this name as
    the image's file path, systemd-stub records it in the EFI variable ``LoaderImageIdentifier``, and the image reads
    its generation back from there (the UKI's command line cannot carry ``netboot.generation=``)."""
    return "netboot-${netboot_generation}.efi"


def build_context(spec: ScriptSpec) -> dict[str, object]:
    """Validate ``spec`` and return the template context (plain data)."""
    if not _ROLE.fullmatch(spec.default_role or ""):
        raise ConfigError(f"ipxe_default_role {spec.default_role!r} must be a word (letters, digits, '_', '.', '-')")
    if not isinstance(spec.retries, int) or not 1 <= spec.retries <= 20:
        raise ConfigError(f"ipxe_retries must be an integer from 1 to 20, got {spec.retries!r}")
    if not isinstance(spec.retry_delay, int) or not 0 <= spec.retry_delay <= 300:
        raise ConfigError(f"retry delay must be 0..300 seconds, got {spec.retry_delay!r}")
    if not isinstance(spec.failsafe_timeout, int) or not 1 <= spec.failsafe_timeout <= 86400:
        raise ConfigError(f"failsafe timeout must be 1..86400 seconds, got {spec.failsafe_timeout!r}")
    urls = validate_urls(spec.boot_server_url)
    nodes = parse_nodes(spec.nodes, default_role=spec.default_role)
    initrds: list[str] = []
    if spec.uki:  # one signed image; its command line is inside it
        kernel = _artefact(spec.uki, what="UKI")
        _refuse_per_node_boot_files(nodes)
        artefacts = {kernel: UKI_KIND}
        args: tuple[str, ...] = ()
        names = _uki_names(kernel)
    else:
        if spec.microcode:
            initrds.append(_artefact(spec.microcode, what="microcode"))
        initrds.append(_artefact(spec.initramfs, what="initramfs"))
        args = (_args_text(spec.kernel_args, what="ipxe_kernel_args"),
                _args_text(spec.extra_kernel_args, what="extra kernel args"))
        kernel = _artefact(spec.kernel, what="kernel")
        artefacts = referenced_artefacts(kernel, spec.microcode and initrds[0], initrds[-1], nodes)
        names = image_name
    digests = check_digests(spec.digests, artefacts) if spec.digests is not None else None
    return {
        "urls": urls,
        "nodes": nodes,
        "kernel": kernel,
        "uki": kernel if spec.uki else "",
        "artefacts": artefacts,
        # sha256 per fetched file, and the name iPXE gives its image (the URL's last path segment; the UKI's carries
        # the generation)
        "digests": digests,
        "image_name": names,
        "initrds": initrds,
        # initrd=NAME per initrd: a UEFI kernel stub finds iPXE's images by name when iPXE lacks LoadFile2;
        # the BIOS path ignores it (no comma: not an initrdmem= address).
        "initrd_args": " ".join(f"initrd={name.rsplit('/', 1)[-1]}" for name in initrds),
        "kernel_args": " ".join(a for a in args if a),
        "default_role": spec.default_role,
        "cattle_prefix": CATTLE_PREFIX,
        "retries": spec.retries,
        "retry_delay": spec.retry_delay,
        "failsafe_timeout": spec.failsafe_timeout,
        "failed_marker": FAILED_MARKER,
        "mismatch_marker": MISMATCH_MARKER,
        "unchecked_marker": UNCHECKED_MARKER,
        "extra": dict(spec.extra),
    }


def _uki_names(uki: str) -> Callable[[str], str]:
    """iPXE's image names in a Secure Boot script: the UKI's carries the generation (``uki_image_name``)."""
    def name(artefact: str) -> str:
        return uki_image_name() if artefact == uki else image_name(artefact)
    return name


def _refuse_per_node_boot_files(nodes: Sequence[Node]) -> None:
    """Secure Boot: the firmware runs only the signed UKI, so a node's own initrd or kernel_args cannot reach it."""
    for node in nodes:
        if node.initrd:
            raise ConfigError(f"host {node.name}: initrd {node.initrd} cannot be booted with netboot_secure_boot: the "
                              "firmware only runs the signed UKI, which holds the one initramfs; put the files in "
                              "the image (overlay/) or turn Secure Boot off")
        if node.kernel_args:
            raise ConfigError(f"host {node.name}: kernel_args {node.kernel_args!r} cannot reach the kernel with "
                              "netboot_secure_boot: the UKI's command line is fixed and signed; put them in "
                              "ipxe_kernel_args (every node) or turn Secure Boot off")


def referenced_artefacts(kernel: str, microcode: str, initramfs: str, nodes: Sequence[Node]) -> dict[str, str]:
    """Every file the script fetches -> what names it (``kernel``, ``microcode``, ``initramfs``, ``initrd of host X``).

    The dist stage checks that each is in the dist directory, so a script never names a file nodes cannot fetch.
    """
    out = {kernel: "kernel"}
    if microcode:
        out.setdefault(microcode, "microcode")
    out.setdefault(initramfs, "initramfs")
    for node in nodes:
        if node.initrd:
            out.setdefault(node.initrd, f"initrd of host {node.name}")
    return out


def image_name(artefact: str) -> str:
    """The name iPXE gives an image fetched from ``${base}/<artefact>``: the URL's last path segment."""
    return artefact.rsplit("/", 1)[-1]


def check_digests(digests: Mapping[str, str], artefacts: Mapping[str, str]) -> dict[str, str]:
    """Every fetched artefact's sha256 (lower-case hex), refusing a missing or malformed one by name."""
    out: dict[str, str] = {}
    for name, what in sorted(artefacts.items()):
        value = str(digests.get(name) or "").lower()
        if not _SHA256.fullmatch(value):
            raise ConfigError(f"no sha256 for {name} ({what}), which boot.ipxe fetches: build it first "
                              f"(got {digests.get(name)!r})")
        out[name] = value
    # iPXE names an image by the URL's last segment and sha256sum finds it by that name: the images one node loads
    # together (kernel, microcode, initramfs and its own initrd) need different names
    common: dict[str, str] = {}
    for name in sorted(artefacts, key=lambda n: artefacts[n].startswith("initrd of host")):
        other = common.get(image_name(name))
        if other is not None:
            raise ConfigError(f"boot.ipxe fetches {other} ({artefacts[other]}) and {name} ({artefacts[name]}), which "
                              f"iPXE would both name {image_name(name)}; give them different file names")
        if not artefacts[name].startswith("initrd of host"):
            common[image_name(name)] = name
    return out


def artefact_digests(artefacts: Mapping[str, str], artefact_dir: str | os.PathLike[str], *,
                     kernel: tuple[str, str | os.PathLike[str]] | None = None,
                     hints: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """sha256 of each fetched artefact as found in ``artefact_dir`` (``kernel``: its name and the file it is
    published from, the image's /boot), and one message per file that is not there (``hints``: what to do, by the
    first word of what names the file - kernel, microcode, initramfs, initrd)."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for name, what in sorted(artefacts.items()):
        path = Path(kernel[1]) if kernel is not None and name == kernel[0] else Path(artefact_dir, name)
        digest = sha256_file(path)
        if digest is None:
            hint = (hints or {}).get(what.split()[0], "build it first (playbooks/build.yml)")
            missing.append(f"{path} ({what}) does not exist, so boot.ipxe cannot carry its sha256: {hint}")
        else:
            found[name] = digest
    return found, missing


def default_template() -> Path:
    """The ipxe role's ``boot.ipxe.j2`` of the installed collection; an error naming ``template`` when not found."""
    path = _shipped.shipped(_shipped.IPXE_TEMPLATE)
    if path is None:
        raise ConfigError(f"no template given and {_shipped.how_to_pass('template', _shipped.IPXE_TEMPLATE, 'ipxe')}")
    return path


def _template(template: str | os.PathLike[str] | None) -> tuple[Path, str]:
    path = Path(template) if template else default_template()
    try:
        return path, path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read iPXE template {path}: {exc.strerror}") from exc


def record_path(script: str | os.PathLike[str]) -> Path:
    """The boot record beside the script ``script`` (``boot.ipxe.json``): published to dist/ with it."""
    return Path(script).with_name(f"{Path(script).name}.json")


def boot_record(spec: ScriptSpec, template: str | os.PathLike[str] | None = None) -> bytes:
    """The record of the script ``spec`` renders: the files it fetches (name -> what names it) and what renders it
    again (``spec``, with the sha256 it checks, and the template's text)."""
    body = {**vars(spec), "nodes": [dict(n) for n in spec.nodes], "extra": dict(spec.extra)}
    return BOOT_RECORD.dump({"artefacts": build_context(spec)["artefacts"], "spec": body,
                             "template": _template(template)[1]})


def read_record(path: str | os.PathLike[str], raw: bytes | None = None) -> dict[str, Any]:
    """The boot record at ``path`` (``record_path``; ``raw``: its bytes read elsewhere), checked: the one reader of
    it (dist, deploy, verify)."""
    record = BOOT_RECORD.load(path) if raw is None else BOOT_RECORD.parse(raw, os.fspath(path))
    if not (isinstance(record.get("artefacts"), dict) and isinstance(record.get("template"), str)
            and isinstance(record.get("spec"), dict) and set(record["spec"]) == set(ScriptSpec.__dataclass_fields__)):
        raise ConfigError(f"{os.fspath(path)} is not a boot record (artefacts, spec, template): "
                          f"{BOOT_RECORD.fix}")
    return record


def render(source: ScriptSpec | Mapping[str, Any], template: str | os.PathLike[str] | None = None, *,
           base: Callable[[str], str] = str) -> str:
    """boot.ipxe's text from a spec and ``template`` (a path; default: the installed collection's ``boot.ipxe.j2``),
    or from a boot record (``read_record``) alone; ``base`` gives each boot server URL's ``set base`` value."""
    path, text = _template(template) if isinstance(source, ScriptSpec) else (Path("(boot record)"), source["template"])
    spec = source if isinstance(source, ScriptSpec) else ScriptSpec(**source["spec"])
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
        autoescape=False,
    )
    try:
        text = env.from_string(text).render(**build_context(spec), base=base)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"iPXE template {path}: {exc}") from exc
    if not text.startswith("#!ipxe"):
        raise ConfigError(f"iPXE template {path} must render a script starting with '#!ipxe'")
    return text


@dataclass(frozen=True)
class WritePlan:
    dest: Path
    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def plan_write(dest: str | os.PathLike[str], content: str) -> WritePlan:
    path = Path(dest)
    try:
        before: str | None = path.read_text()
    except FileNotFoundError:
        before = None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    return WritePlan(path, before, content)


def apply_write(plan: WritePlan, mode: int = 0o644) -> None:
    """Write to a temporary name in the same directory, then rename (a failure keeps the old script)."""
    if plan.changed:
        atomic_write_bytes(plan.dest, plan.after.encode(), mode)
