# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""What every N100 node gets, written into the image tree: the role files and the boot service that applies them,
key-only SSH, a locked root password, a serial getty, podman/firecracker/nomad settings and a MOTD.

Pure planning (``plan_node``: path -> new content) is separate from writing (``apply_node``), so check mode and diff
see exactly what a run would change, and a rerun with unchanged input changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import (
    atomic_write_bytes,
    resolve_in_root,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _noderoles

SSH_KEY_TYPES = (
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
)
NOMAD_DATA_DIR = "/var/lib/nomad"  # on the tmpfs root
NOMAD_SERVER_SNIPPET = "etc/netboot/nomad-server.hcl"  # copied into /etc/nomad.d by the boot service for servers
SUBID_LINE = "root:100000:65536\n"


# ------------------------------------------------------------------------------------------------------- SSH
def authorized_keys(keys: Sequence[str]) -> str:
    """``authorized_keys`` text; refuses anything that is not one public key per entry (a private key by mistake)."""
    lines = []
    for i, key in enumerate(keys):
        if not isinstance(key, str):
            raise ConfigError(f"node_ssh_authorized_keys[{i}]: give the public key as a string")
        text = key.strip()
        if "PRIVATE KEY" in text:
            raise ConfigError(f"node_ssh_authorized_keys[{i}] is a PRIVATE key: give the .pub file's line instead")
        if "\n" in text:
            raise ConfigError(f"node_ssh_authorized_keys[{i}]: one key per list item (it spans several lines)")
        m = re.search(r"(?:^|\s)(" + "|".join(map(re.escape, SSH_KEY_TYPES)) + r")\s+([A-Za-z0-9+/=]+)(?:\s|$)", text)
        if not m:
            raise ConfigError(f"node_ssh_authorized_keys[{i}]: {text[:40]!r}... is not an OpenSSH public key line "
                              f"(expected e.g. 'ssh-ed25519 AAAA... user@host')")
        try:
            blob = base64.b64decode(m.group(2), validate=True)
        except binascii.Error as exc:
            raise ConfigError(f"node_ssh_authorized_keys[{i}]: the key data is not base64 ({exc})") from exc
        if not blob[4:4 + len(m.group(1))] == m.group(1).encode():
            raise ConfigError(f"node_ssh_authorized_keys[{i}]: the key data does not match its type {m.group(1)}")
        lines.append(text)
    return "".join(f"{ln}\n" for ln in lines)


def sshd_config() -> str:
    return (
        "# Written by homelab.alpine_netboot (node role): key-only logins. Host keys are made at boot when absent\n"
        "# (ssh-keygen -A); give a node stable ones through its per-node initrd.\n"
        "Port 22\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "HostKey /etc/ssh/ssh_host_ecdsa_key\n"
        "HostKey /etc/ssh/ssh_host_rsa_key\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "AuthorizedKeysFile .ssh/authorized_keys\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitEmptyPasswords no\n"
        "X11Forwarding no\n"
        "Subsystem sftp internal-sftp\n"
    )


# ----------------------------------------------------------------------------------------------------- nomad
def _server_join(servers: Sequence[str]) -> str:
    """The ``server_join`` block that ends a client or server stanza, ``retry_join`` listing ``servers``."""
    return f"  server_join {{\n    retry_join = [{', '.join(json.dumps(s) for s in servers)}]\n  }}\n}}\n"


def _check_servers(servers: Sequence[str]) -> list[str]:
    for s in servers:
        if not isinstance(s, str) or not re.fullmatch(r"[A-Za-z0-9.:\[\]_-]+", s):
            raise ConfigError(f"node_nomad_servers: {s!r} is not a host, address or host:port")
    return list(servers)


def nomad_client_hcl(servers: Sequence[str]) -> str:
    servers = _check_servers(servers)
    return (
        "# Written by homelab.alpine_netboot: every node runs the nomad client (data on the tmpfs root).\n"
        f'data_dir  = "{NOMAD_DATA_DIR}"\n'
        'bind_addr = "0.0.0.0"\n\n'
        "client {\n"
        "  enabled = true\n"
    ) + _server_join(servers)


def nomad_server_hcl(servers: Sequence[str]) -> str:
    servers = _check_servers(servers)
    return (
        "# Written by homelab.alpine_netboot: added to /etc/nomad.d at boot on roles with nomad_server: true.\n"
        "server {\n"
        "  enabled          = true\n"
        f"  bootstrap_expect = {max(1, len(servers))}\n"
    ) + _server_join(servers)


# ---------------------------------------------------------------------------------------------------- podman
def containers_storage_conf() -> str:
    return (
        "# Written by homelab.alpine_netboot: container storage lives on the tmpfs root (overlay driver).\n"
        "[storage]\n"
        'driver = "overlay"\n'
        'runroot = "/run/containers/storage"\n'
        'graphroot = "/var/lib/containers/storage"\n'
    )


# ----------------------------------------------------------------------------------------------- line edits
def set_rc_conf(text: str, key: str, value: str) -> str:
    """Set ``key="value"`` in rc.conf: replace the first (possibly commented) assignment, else append."""
    line = f'{key}="{value}"'
    pat = re.compile(rf"^#?\s*{re.escape(key)}=.*$", re.M)
    if re.search(rf"^{re.escape(line)}$", text, re.M):
        return text
    if pat.search(text):
        return pat.sub(line, text, count=1)
    return text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"


def serial_getty(text: str, tty: str, baud: int) -> str:
    line = f"{tty}::respawn:/sbin/getty -L {baud} {tty} vt100"
    if re.search(rf"^{re.escape(tty)}::", text, re.M):
        return re.sub(rf"^{re.escape(tty)}::.*$", line, text, count=1, flags=re.M)
    commented = re.compile(rf"^#\s*{re.escape(tty)}::.*$", re.M)
    if commented.search(text):
        return commented.sub(line, text, count=1)
    return text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"


def edit_fields(text: str, edit: Callable[[list[str]], list[str]]) -> str:
    """A colon-separated table (``/etc/passwd``, ``/etc/shadow``) with each line's fields replaced by ``edit``'s."""
    return "".join(":".join(edit(ln.split(":"))) + "\n" for ln in text.splitlines())


def root_shell(passwd: str, shell: str) -> str:
    return edit_fields(passwd, lambda f: [*f[:6], shell] if len(f) == 7 and f[0] == "root" else f)


def lock_empty_root(shadow: str) -> str:
    """An empty root password field means 'log in without a password': lock it (a hash a user put there is left
    for the audit to refuse)."""
    return edit_fields(shadow, lambda f: [f[0], "*", *f[2:]] if len(f) >= 2 and f[0] == "root" and f[1] == "" else f)


def kvm_group_only(mdev: str) -> str:
    return re.sub(r"^(kvm\s+)root:kvm\s+0666\s*$", r"\1root:kvm 0660", mdev, flags=re.M)


# ------------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class NodeSpec:
    roles: tuple[_noderoles.Role, ...]
    default_role: str
    cattle_prefix: str
    boot_script: str  # content of /etc/init.d/netboot-node
    authorized_keys: tuple[str, ...] = ()
    nomad_servers: tuple[str, ...] = ()
    serial_tty: str = "ttyS0"
    serial_baud: int = 115200
    init_scripts: Mapping[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)  # name -> (body, binaries)
    # Secure Boot: the inventory's nodes baked into the image as (mac, hostname, role), how a node booted from a signed
    # UKI (whose command line names no node) finds its identity; None: no table (boot.ipxe names the node)
    node_table: tuple[tuple[str, str, str], ...] | None = None


NODE_TABLE = "etc/netboot/nodes"  # read by the netboot-node service (roles/node/files/netboot-node)


def node_table(rows: Sequence[tuple[str, str, str]]) -> str:
    """``/etc/netboot/nodes``: one ``mac hostname role`` line per known node, sorted by MAC."""
    head = ("# Written by homelab.alpine_netboot (node_config) from the inventory's nodes: mac hostname role.\n"
            "# netboot-node names the machine by the first wired NIC listed here; an unlisted machine is cattle.\n")
    return head + "".join(f"{mac} {host} {role}\n" for mac, host, role in sorted(rows))


@dataclass
class Change:
    path: str  # relative to the root
    before: bytes | None
    after: bytes | None  # None = remove
    mode: int = 0o644
    link: str | None = None  # a symlink to create instead of a file


@dataclass
class NodePlan:
    root: Path
    changes: list[Change]
    build_id: str

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def diff(self) -> list[dict[str, str]]:
        return [{"before_header": c.path, "after_header": c.path, "before": (c.before or b"").decode(errors="replace"),
                 "after": (c.after or b"").decode(errors="replace") if c.link is None else f"-> {c.link}\n"}
                for c in self.changes]

    def paths(self) -> list[str]:
        return [c.path for c in self.changes]


def _read(root: Path, rel: str) -> bytes | None:
    p = resolve_in_root(root, rel)
    try:
        return p.read_bytes() if p.is_file() else None
    except OSError:
        return None


def build_id(root: Path, spec_text: str) -> str:
    """12 hex digits naming this image: the rootfs manifest (package set) and the node settings."""
    h = hashlib.sha256(_read(root, "etc/alpine-netboot/manifest.json") or b"")
    h.update(b"\0" + spec_text.encode())
    return h.hexdigest()[:12]


def _wanted_files(root: Path, spec: NodeSpec) -> dict[str, tuple[bytes, int]]:
    """Path in the image -> (bytes, mode) of every file the node configuration writes, but the motd."""
    want: dict[str, tuple[bytes, int]] = {}

    def put(rel: str, text: str, mode: int = 0o644) -> None:
        want[rel] = (text.encode(), mode)

    for role in spec.roles:
        put(f"{_noderoles.ROLE_DIR}/{role.name}", _noderoles.role_file(role))
    put(_noderoles.NODE_CONF, _noderoles.node_conf(spec.default_role, spec.cattle_prefix))
    put(_noderoles.INIT_SCRIPT, spec.boot_script, 0o755)
    for name, (body, binaries) in sorted(spec.init_scripts.items()):
        if (root / "etc/init.d" / name).is_file() and f"etc/init.d/{name}" not in want:
            continue
        found = next((b for b in binaries if resolve_in_root(root, b).is_file()), None)
        if found is not None:
            put(f"etc/init.d/{name}", body, 0o755)
            var = f"{name.upper()}_BINARY"  # the script runs ${NOMAD_BINARY:-/usr/bin/nomad}: say where it is
            if "${" + var in body:
                put(f"etc/conf.d/{name}", f"# Written by homelab.alpine_netboot: where netboot_binaries put {name}.\n"
                                          f"{var}=/{found.lstrip('/')}\n")
    if spec.node_table is not None:
        put(NODE_TABLE, node_table(spec.node_table))
    put("etc/ssh/sshd_config", sshd_config())
    keys = authorized_keys(spec.authorized_keys)
    if keys:
        put("root/.ssh/authorized_keys", keys, 0o600)
    put("etc/nomad.d/client.hcl", nomad_client_hcl(spec.nomad_servers))
    put(NOMAD_SERVER_SNIPPET, nomad_server_hcl(spec.nomad_servers))
    put("etc/containers/storage.conf", containers_storage_conf())
    put("etc/subuid", SUBID_LINE)
    put("etc/subgid", SUBID_LINE)
    for rel, edit in (
        ("etc/rc.conf", lambda t: set_rc_conf(t, "rc_cgroup_mode", "unified")),
        ("etc/inittab", lambda t: serial_getty(t, spec.serial_tty, spec.serial_baud)),
        ("etc/shadow", lock_empty_root),
        ("etc/mdev.conf", kvm_group_only),
    ):
        cur = _read(root, rel)
        if cur is not None:
            mode = stat.S_IMODE(resolve_in_root(root, rel).stat().st_mode)
            put(rel, edit(cur.decode()), mode)
    passwd = _read(root, "etc/passwd")
    if passwd is not None and resolve_in_root(root, "bin/bash").exists():
        put("etc/passwd", root_shell(passwd.decode(), "/bin/bash"))
    return want


def plan_node(root: Path, spec: NodeSpec) -> NodePlan:
    want = _wanted_files(root, spec)
    settings = json.dumps({k: [v[0].decode(), v[1]] for k, v in sorted(want.items())}, sort_keys=True)
    bid = build_id(root, settings)
    want["etc/motd"] = (f"homelab.alpine_netboot image, build {bid}\nRuns from RAM: changes are lost at reboot.\n"
                        .encode(), 0o644)

    changes: list[Change] = []
    for rel, (data, mode) in sorted(want.items()):
        p = resolve_in_root(root, rel, follow_last=False)
        cur = _read(root, rel) if not p.is_symlink() else None
        cur_mode = stat.S_IMODE(p.lstat().st_mode) if p.exists() and not p.is_symlink() else None
        if cur != data or cur_mode != mode:
            changes.append(Change(rel, cur, data, mode))
    role_dir = root / _noderoles.ROLE_DIR
    if role_dir.is_dir():
        keep = {r.name for r in spec.roles}
        for stale in sorted(role_dir.iterdir()):
            if stale.name not in keep:
                changes.append(Change(f"{_noderoles.ROLE_DIR}/{stale.name}", _read(root, str(stale.relative_to(root))),
                                      None))
    if spec.node_table is None and _read(root, NODE_TABLE) is not None:  # Secure Boot turned off: names from boot.ipxe
        changes.append(Change(NODE_TABLE, _read(root, NODE_TABLE), None))
    link = root / "etc/runlevels/boot/netboot-node"
    if not link.is_symlink() or os.readlink(link) != "/etc/init.d/netboot-node":
        changes.append(Change("etc/runlevels/boot/netboot-node", None, None, link="/etc/init.d/netboot-node"))
    ssh_dir = root / "root/.ssh"
    if "root/.ssh/authorized_keys" in want and (not ssh_dir.is_dir() or stat.S_IMODE(ssh_dir.stat().st_mode) != 0o700):
        changes.insert(0, Change("root/.ssh/", None, None, 0o700))
    return NodePlan(root, changes, bid)


def apply_node(plan: NodePlan) -> None:
    root = plan.root
    for c in plan.changes:
        if c.path.endswith("/"):
            d = resolve_in_root(root, c.path.rstrip("/"))
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(c.mode)
            continue
        target = resolve_in_root(root, c.path, follow_last=False)
        if c.link is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            target.symlink_to(c.link)
        elif c.after is None:
            target.unlink(missing_ok=True)
        else:
            if target.is_symlink():
                target.unlink()
            atomic_write_bytes(target, c.after, c.mode)  # makes the parent directories


# ------------------------------------------------------------------------------- OpenRC's dependency cache
RC_DEPEND = "usr/libexec/rc/bin/rc-depend"
RC_CACHE = "var/cache/rc"  # RC_CACHEDIR: OpenRC's init.sh copies it into /run/openrc before the first runlevel
RC_CACHE_FILES = ("deptree", "depconfig")


def refresh_deptree(root: Path, runner: Runner) -> list[str]:
    """OpenRC's dependency cache for the image's init scripts, made at build time (``rc-depend -u`` chrooted into
    ``root``) into ``/var/cache/rc``, so a node does not source every init script at each boot to compute it (under
    qemu's TCG that is 45 s of a 100 s boot; on an N100 well under a second). ``/init`` marks it fresh unless a
    per-node initrd brought a newer init script or setting (then OpenRC computes it as usual). Returns the files
    changed; none when the image has no OpenRC or this is not root (chroot)."""
    if not resolve_in_root(root, RC_DEPEND).is_file() or os.geteuid() != 0:
        return []
    run = resolve_in_root(root, "run/openrc")
    made_run = not run.exists()
    null = resolve_in_root(root, "dev/null", follow_last=False)
    made_null = not null.exists() and not null.is_symlink()
    # the scratch entries leave /run and /dev as they were, mtimes included (a rerun changes nothing in the tree)
    times = {d: (d.stat().st_atime_ns, d.stat().st_mtime_ns) for d in (run.parent, null.parent) if d.is_dir()}
    try:
        run.mkdir(parents=True, exist_ok=True)
        if made_null:  # a script's >/dev/null must not create a file in the image
            os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        # a clean environment: no container=... of a containerised controller; no /proc in the chroot either, so
        # OpenRC's rc_sys is the image's own (rc.conf), as on a node booting on bare metal
        runner.run(["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "chroot", str(root), "/" + RC_DEPEND, "-u"],
                   what="rc-depend -u (OpenRC's dependency cache)")
        changed = []
        for name in RC_CACHE_FILES:
            data = (run / name).read_bytes() if (run / name).is_file() else None
            rel = f"{RC_CACHE}/{name}"
            if data is not None and _read(root, rel) != data:
                atomic_write_bytes(resolve_in_root(root, rel), data, 0o644)
                changed.append(rel)
        return changed
    finally:
        if made_null:
            null.unlink(missing_ok=True)
        if made_run:
            shutil.rmtree(run, ignore_errors=True)
        else:
            for name in RC_CACHE_FILES:
                (run / name).unlink(missing_ok=True)
        for d, (atime, mtime) in times.items():
            os.utime(d, ns=(atime, mtime))
