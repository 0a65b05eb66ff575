# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Node roles: one image, the role chosen at boot decides which services run and which modules load.

``node_roles`` (docsite "Node roles"): role name -> ``services``, ``modules``, ``zfs_pools``, ``nomad_server``. The
build writes each role to ``/etc/netboot/roles/<role>`` (shell assignments the ``netboot-node`` OpenRC service reads
at boot) and fails when a role names a service whose init script is not in the image, naming the package.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _apkdb

ROLE_DIR = "etc/netboot/roles"
NODE_CONF = "etc/netboot/node.conf"
INIT_SCRIPT = "etc/init.d/netboot-node"
ROLE_NAME = re.compile(r"[A-Za-z0-9._-]+")  # what /init accepts in netboot.role=
SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")
MODULE_NAME = re.compile(r"[A-Za-z0-9_-]+")
POOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
ROLE_KEYS = ("services", "modules", "zfs_pools", "nomad_server")
# Init scripts of the N100 package set and the Alpine package that ships each (a hint when the file lists of the
# installed database and the package cache do not name one).
KNOWN_SERVICE_PACKAGES = {
    "sshd": "openssh-server-openrc",
    "chronyd": "chrony-openrc",
    "podman": "podman-openrc",
    "nomad": "nomad-openrc",
    **dict.fromkeys(("zfs-import", "zfs-mount", "zfs-zed", "zfs-share"), "zfs-openrc"),
    "crond": "busybox-openrc",
    "dhcpcd": "dhcpcd-openrc",
    "cgroups": "openrc",
    "docker": "docker-openrc",
}


@dataclass(frozen=True)
class Role:
    name: str
    services: tuple[str, ...]
    modules: tuple[str, ...] = ()
    zfs_pools: tuple[str, ...] = ()
    nomad_server: bool = False


def _names(role: str, key: str, value: object, pattern: re.Pattern[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError(f"node_roles.{role}.{key}: give a list of names, not {value!r}")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not pattern.fullmatch(item):
            raise ConfigError(f"node_roles.{role}.{key}: {item!r} is not a valid name")
        if item not in out:
            out.append(item)
    return tuple(out)


def parse_roles(raw: Mapping[str, object]) -> list[Role]:
    """Validate ``node_roles``; errors name the role and the key at fault."""
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError("node_roles: give at least one role ({ROLE: {services: [...], modules: [...], ...}})")
    roles = []
    for name, body in sorted(raw.items()):
        if not isinstance(name, str) or not ROLE_NAME.fullmatch(name):
            raise ConfigError(f"node_roles: role name {name!r}: use letters, digits, '.', '_' and '-' only")
        if not isinstance(body, Mapping):
            raise ConfigError(f"node_roles.{name}: give a dict with services (and optionally {', '.join(ROLE_KEYS[1:])})")
        unknown = sorted(set(body) - set(ROLE_KEYS))
        if unknown:
            raise ConfigError(f"node_roles.{name}: unknown key(s) {', '.join(map(str, unknown))} "
                              f"(known: {', '.join(ROLE_KEYS)})")
        if "services" not in body:
            raise ConfigError(f"node_roles.{name}: 'services' is required (a list, may be empty)")
        server = body.get("nomad_server", False)
        if not isinstance(server, bool):
            raise ConfigError(f"node_roles.{name}.nomad_server: give true or false, not {server!r}")
        roles.append(Role(
            name=name,
            services=_names(name, "services", body["services"], SERVICE_NAME),
            modules=tuple(m.replace("-", "_") for m in _names(name, "modules", body.get("modules"), MODULE_NAME)),
            zfs_pools=_names(name, "zfs_pools", body.get("zfs_pools"), POOL_NAME),
            nomad_server=server,
        ))
    return roles


def role_file(role: Role) -> str:
    """``/etc/netboot/roles/<role>``: shell assignments the boot service sources (every value is a plain word list)."""
    return (
        f"# node role {role.name} (node_roles in the inventory; written by homelab.alpine_netboot)\n"
        f'services="{" ".join(role.services)}"\n'
        f'modules="{" ".join(role.modules)}"\n'
        f'zfs_pools="{" ".join(role.zfs_pools)}"\n'
        f'nomad_server="{"yes" if role.nomad_server else "no"}"\n'
    )


def parse_role_file(text: str) -> dict[str, list[str]]:
    """Read a role file back (the audit reports what each role enables)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = re.fullmatch(r'([a-z_]+)="([^"]*)"', line.strip())
        if m:
            out[m.group(1)] = m.group(2).split()
    return out


def node_conf(default_role: str, cattle_prefix: str) -> str:
    if not ROLE_NAME.fullmatch(default_role):
        raise ConfigError(f"ipxe_default_role {default_role!r}: use letters, digits, '.', '_' and '-' only")
    return (
        "# read by /etc/init.d/netboot-node (written by homelab.alpine_netboot)\n"
        f'default_role="{default_role}"\n'
        f'cattle_prefix="{cattle_prefix}"\n'
    )


def keep_modules(roles: Iterable[Role]) -> list[str]:
    """Every module some role loads (the kernel stage keeps them)."""
    return sorted({m for r in roles for m in r.modules})


def role_modules(raw: Mapping[str, object]) -> dict[str, tuple[str, ...]]:
    """Role -> the modules it loads, from ``node_roles`` as given (none: no roles)."""
    return {r.name: r.modules for r in parse_roles(raw)} if raw else {}


def hostid(mac: str) -> bytes:
    """``/etc/hostid`` of a node: 4 bytes of sha256 of its lower-case ``aa:bb:..`` MAC (the boot service computes
    the same with busybox ``sha256sum``): stable across boots, different between machines."""
    return bytes.fromhex(hashlib.sha256(mac.lower().encode()).hexdigest()[:8])


# ---------------------------------------------------------------------------------------------- missing services
def installed_providers(root: Path) -> dict[str, str]:
    """init script name -> package, from the image's installed database (``lib/apk/db/installed``)."""
    if not (root / _apkdb.INSTALLED_DB).is_file():
        return {}
    out: dict[str, str] = {}
    for pkg in _apkdb.read_installed(root):
        for rel in pkg.files:
            directory, _unused, name = rel.rpartition("/")
            if directory == "etc/init.d":
                out.setdefault(name, pkg.name)
    return out


def cached_providers(cache_dir: Path | None, wanted: set[str]) -> dict[str, str]:
    """init script name -> package, from the file lists of the ``.apk`` files in the package cache."""
    out: dict[str, str] = {}
    if cache_dir is None or not cache_dir.is_dir() or not wanted:
        return out
    for apk in sorted(cache_dir.rglob("*.apk")):
        try:
            with tarfile.open(apk, "r:gz") as tf:
                names = tf.getnames()
                hits = [n.rpartition("/")[2] for n in names if n.startswith("etc/init.d/")]
                if not set(hits) & wanted:
                    continue
                info = tf.extractfile(".PKGINFO")
                text = info.read().decode(errors="replace") if info else ""
        except (tarfile.TarError, OSError, EOFError, KeyError):
            continue
        pkgname = _apkdb.parse_pkginfo(text).get("pkgname")
        for h in hits:
            if h in wanted and pkgname:
                out.setdefault(h, pkgname[0])
    return out


def check_services(root: Path, roles: Iterable[Role], cache_dir: Path | None = None) -> None:
    """Fail naming role, service and the package that would ship the init script, for every missing one."""
    missing = [(r.name, s) for r in roles for s in r.services if not (root / "etc/init.d" / s).is_file()]
    if not missing:
        return
    wanted = {s for _unused, s in missing}
    providers = {**KNOWN_SERVICE_PACKAGES, **cached_providers(cache_dir, wanted), **installed_providers(root)}
    lines = []
    for role, svc in missing:
        pkg = providers.get(svc)
        hint = f"package {pkg} ships it: add it to alpine_packages" if pkg else \
            f"no known package ships it (Alpine names most init scripts' packages <name>-openrc, e.g. {svc}-openrc)"
        lines.append(f"role {role}: service {svc} has no /etc/init.d/{svc} in the image; {hint}")
    raise ConfigError("node_roles: " + "; ".join(lines))
