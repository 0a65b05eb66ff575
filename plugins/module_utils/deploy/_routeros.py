# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""RouterOS API access for the deploy (librouteros): connect, version gates, menus, owned-row diffing, TFTP maths.

Importable without Ansible. Values read from RouterOS are normalised to strings (librouteros turns ``yes``/``true``
into ``True`` and digits into ``int``); booleans compare as ``true``/``false`` whichever spelling was used, like
community.routeros' ``api_modify`` compares desired and actual values as strings.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import re
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _deps
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError

_deps.lazy("librouteros")  # imported where used

# 16-bit TFTP block counter: a transfer of more than 65,535 blocks needs the server to roll the counter over.
TFTP_MAX_BLOCKS = 65535
# RFC 1350 clients use 512-byte blocks (iPXE asks for up to 1,432: TFTP_MAX_BLKSIZE, include/ipxe/tftp.h).
MIN_BLKSIZE = 512

# RouterOS features the deploy uses and the first version that has them.
BASE_FEATURE = "v7 API and /ip/tftp allow-rollover"
MATCHER_FEATURE = "/ip/dhcp-server/matcher (DHCP option 77 iPXE chainloading)"
MATCHING_TYPE_FEATURE = "/ip/dhcp-server/matcher matching-type (rb4011_dhcp_matching_type)"
FEATURES: dict[str, tuple[int, ...]] = {
    BASE_FEATURE: (7, 1),
    MATCHER_FEATURE: (7, 4),
    MATCHING_TYPE_FEATURE: (7, 16),
}


class RouterOSError(NetbootError):
    """RouterOS refused a command or could not be reached."""


class AuthError(RouterOSError):
    """Login refused (the password is never part of the message)."""


def parse_version(text: str) -> tuple[int, ...]:
    """``'7.16.2 (stable)'`` -> ``(7, 16, 2)``; ``'7.18beta2'`` -> ``(7, 18)``."""
    m = re.match(r"\s*(\d+(?:\.\d+)*)", str(text))
    if not m:
        raise RouterOSError(f"cannot read the RouterOS version {text!r} from /system/resource")
    return tuple(int(x) for x in m.group(1).split("."))


def require_version(version_text: str, features: Iterable[str], host: str) -> tuple[int, ...]:
    version = parse_version(version_text)
    missing = [f"{name} needs {'.'.join(map(str, FEATURES[name]))}+" for name in features if version < FEATURES[name]]
    if missing:
        raise RouterOSError(
            f"{host} runs RouterOS {version_text}; the deploy uses " + "; ".join(missing)
            + ". Upgrade RouterOS (System > Packages > Check for updates) and rerun."
        )
    return version


def blocks(size: int, blksize: int) -> int:
    """TFTP DATA packets for ``size`` bytes (the last one is short, possibly empty)."""
    return size // blksize + 1


def needs_rollover(size: int, blksize: int = MIN_BLKSIZE) -> bool:
    """True when a client using ``blksize`` would need more than 65,535 blocks (default: any RFC 1350 client)."""
    return blocks(size, blksize) > TFTP_MAX_BLOCKS


_REGEX_SPECIAL = set("\\.^$*+?()[]{}|")


def anchored(name: str) -> str:
    """A ``req-filename`` regex that matches exactly ``name`` (RouterOS treats req-filename as a regex)."""
    return "^" + "".join("\\" + c if c in _REGEX_SPECIAL else c for c in name) + "$"


def as_text(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return "" if value is None else str(value)


def network_of(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """A RouterOS address or network (``192.168.88.0/24``, ``10.0.0.5``) as a network; None when it is neither."""
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def enabled(row: Mapping[str, str]) -> bool:
    """Whether a row (a rule, a lease) is not disabled, whichever spelling RouterOS used."""
    return row.get("disabled") not in ("true", "yes")


def same_value(a: str, b: str) -> bool:
    bools = {"yes": "true", "true": "true", "no": "false", "false": "false"}
    return bools.get(a, a) == bools.get(b, b)


# -- owned rows --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RowChange:
    """One write to a menu: ``add`` (values), ``set`` (id + changed values) or ``remove`` (id)."""

    menu: str
    action: str
    key: str
    values: Mapping[str, str] = field(default_factory=dict)
    id: str = ""
    before: Mapping[str, str] = field(default_factory=dict)
    find: str = "comment"  # the property that identifies the row in command() (a user's row: e.g. address)

    def command(self) -> str:
        """The change as a RouterOS CLI line (shown in check mode)."""
        words = " ".join(f'{k}="{v}"' for k, v in self.values.items())
        menu = self.menu.replace("/", " ").strip()
        if self.action == "add":
            return f"/{menu} add {words}"
        where = f'[find {self.find}="{self.before.get(self.find, "")}"]'
        if self.action == "set":
            return f"/{menu} set {where} {words}"
        return f"/{menu} remove {where}"


def diff_rows(
    menu: str,
    actual: Iterable[Mapping[str, str]],
    desired: Mapping[str, Mapping[str, str]],
    owned: Callable[[Mapping[str, str]], str | None],
) -> list[RowChange]:
    """Changes that turn the owned rows of ``actual`` into ``desired`` (key -> values).

    ``owned(row)`` returns the row's key when the collection owns it (its tag in ``comment``), else None: rows the
    user made are never touched. A duplicate owned row (same key twice) is removed.
    """
    changes: list[RowChange] = []
    seen: set[str] = set()
    for row in actual:
        key = owned(row)
        if key is None:
            continue
        if key in seen or key not in desired:
            changes.append(RowChange(menu, "remove", key, id=row[".id"], before=dict(row)))
            continue
        seen.add(key)
        delta = {k: v for k, v in desired[key].items() if not same_value(row.get(k, ""), v)}
        if delta:
            changes.append(RowChange(menu, "set", key, delta, row[".id"], dict(row)))
    for key, values in desired.items():
        if key not in seen:
            changes.append(RowChange(menu, "add", key, dict(values)))
    return changes


# -- connection ----------------------------------------------------------------------------------------------------

API_TIMEOUT = 15  # seconds: the timeout option's default and ApiOptions'

# The connection options rb4011_deploy and rb4011_verify share (their roles pass one inventory's rb4011_* variables);
# ``api_options`` turns them into ApiOptions.
API_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    # aliases: community.routeros's names for the same options, so one module_defaults group can serve both
    "host": {"type": "str", "required": True, "aliases": ["hostname"]},
    "user": {"type": "str", "required": True, "aliases": ["username"]},
    "password": {"type": "str", "required": True, "no_log": True},
    "api_port": {"type": "int", "aliases": ["port"]},
    "use_tls": {"type": "bool", "default": False, "aliases": ["tls"]},
    "ca_path": {"type": "path"},
    "validate_cert_hostname": {"type": "bool", "default": False},
    "force_no_cert": {"type": "bool", "default": False},
    "timeout": {"type": "int", "default": API_TIMEOUT},
}


@dataclass(frozen=True)
class ApiOptions:
    host: str
    user: str
    password: str
    port: int | None = None
    tls: bool = False
    validate_certs: bool = True
    validate_cert_hostname: bool = False
    ca_path: str | None = None
    force_no_cert: bool = False
    timeout: float = API_TIMEOUT

    def __post_init__(self) -> None:
        if self.force_no_cert and not self.tls:
            raise ConfigError("rb4011_force_no_cert (anonymous-DH API-SSL) needs rb4011_use_tls: true")
        if self.force_no_cert and self.ca_path:
            raise ConfigError("give either rb4011_ca_path (verified API-SSL) or rb4011_force_no_cert (anonymous DH, "
                              "no certificate), not both")
        if self.tls and self.ca_path and not Path(self.ca_path).is_file():
            raise ConfigError(f"rb4011_ca_path {self.ca_path}: no such file; give the PEM file of the CA that signed "
                              "the router's api-ssl certificate")

    def __repr__(self) -> str:  # never show the password
        return f"ApiOptions(host={self.host!r}, user={self.user!r}, port={self.effective_port})"

    @property
    def effective_port(self) -> int:
        return self.port or (8729 if self.tls else 8728)

    @property
    def trust(self) -> str:
        """Where the certificate is checked against, for messages."""
        if self.force_no_cert:
            return "no certificate (anonymous DH, rb4011_force_no_cert)"
        where = f"CA {self.ca_path}" if self.ca_path else "the system CA store (no rb4011_ca_path)"
        return where + (f", hostname {self.host}" if self.validate_cert_hostname else ", hostname not checked")


def ssl_context(opts: ApiOptions) -> ssl.SSLContext:
    """The client context for API-SSL: verified against ``ca_path`` (or the system store), or anonymous DH."""
    if opts.force_no_cert:
        # Anonymous Diffie-Hellman: encrypted but unauthenticated; only when explicitly allowed. TLS 1.2 at most, so
        # only anonymous suites are offered (TLS 1.3 has none, and would silently accept an unverified certificate).
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.set_ciphers("ADH:@SECLEVEL=0")
        except ssl.SSLError as e:
            raise ConfigError(f"this Python's OpenSSL ({ssl.OPENSSL_VERSION}) offers no anonymous-DH cipher ({e}); "
                              "give the router a certificate and use rb4011_ca_path instead") from None
        return ctx
    if not opts.validate_certs:
        raise ConfigError(
            "rb4011_use_tls without certificate verification is refused; give rb4011_ca_path, or allow "
            "anonymous DH explicitly with rb4011_force_no_cert"
        )
    try:
        ctx = ssl.create_default_context(cafile=opts.ca_path or None)
    except ssl.SSLError as e:
        raise ConfigError(f"rb4011_ca_path {opts.ca_path}: not a PEM CA certificate ({e})") from None
    ctx.check_hostname = opts.validate_cert_hostname
    return ctx


class RouterOS:
    """A logged-in API session. Use ``connect(opts)``."""

    def __init__(self, api: Any, host: str) -> None:
        self.api = api
        self.host = host

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.api.close()

    def _call(self, path: str, verb: str, **kw: str) -> list[dict[str, str]]:
        from librouteros.exceptions import LibRouterosError

        parts = [p for p in path.split("/") if p]
        try:
            rows = list(self.api.path(*parts)(verb, **kw))
        except LibRouterosError as e:
            raise RouterOSError(f"{self.host}: {path}/{verb} failed: {e}") from e
        except OSError as e:
            raise RouterOSError(f"{self.host}: connection lost during {path}/{verb}: {e}") from e
        return [{str(k): as_text(v) for k, v in r.items()} for r in rows]

    def print(self, path: str, proplist: Iterable[str] = ()) -> list[dict[str, str]]:
        props = ",".join(proplist)
        return self._call(path, "print", **({".proplist": props} if props else {}))

    def add(self, path: str, values: Mapping[str, str]) -> str:
        rows = self._call(path, "add", **dict(values))
        return rows[0].get("ret", "") if rows else ""

    def set(self, path: str, row_id: str, values: Mapping[str, str]) -> None:
        self._call(path, "set", **{".id": row_id, **values})

    def remove(self, path: str, ids: Iterable[str]) -> None:
        joined = ",".join(ids)
        if joined:
            self._call(path, "remove", **{".id": joined})

    def apply(self, change: RowChange) -> None:
        if change.action == "add":
            self.add(change.menu, change.values)
        elif change.action == "set":
            self.set(change.menu, change.id, change.values)
        else:
            self.remove(change.menu, [change.id])


def connect(opts: ApiOptions) -> RouterOS:
    import librouteros
    from librouteros.exceptions import ConnectionClosed, LibRouterosError, TrapError

    where = f"{opts.host}:{opts.effective_port}"
    ctx = ssl_context(opts) if opts.tls else None
    hostname = opts.host if opts.validate_cert_hostname else None
    wrapper = functools.partial(ctx.wrap_socket, server_hostname=hostname) if ctx else None
    try:
        api = librouteros.connect(
            opts.host, opts.user, opts.password, port=opts.effective_port, timeout=opts.timeout, ssl_wrapper=wrapper,
        )
    except TrapError as e:
        raise AuthError(
            f"RouterOS API at {where} refused the login of user {opts.user!r}: {e.message}. Check rb4011_user and "
            "rb4011_password (vault), and that the user's group has the api policy."
        ) from None
    except (ConnectionClosed, ConnectionResetError) as e:
        hint = ("" if opts.tls else " If that port is API-SSL (/ip service api-ssl, 8729), set rb4011_use_tls: true "
                "with rb4011_ca_path.")
        raise RouterOSError(f"RouterOS API at {where} closed the connection before answering the login ({e}).{hint}"
                            ) from None
    except LibRouterosError as e:
        raise RouterOSError(f"RouterOS API at {where}: {e}") from None
    except ssl.SSLCertVerificationError as e:
        raise RouterOSError(
            f"RouterOS API-SSL at {where}: the router's certificate was refused ({e.verify_message}); checked "
            f"against {opts.trust}. Give rb4011_ca_path the CA that signed the api-ssl certificate (/certificate "
            "print on the router), or fix the certificate's name when rb4011_validate_cert_hostname is on."
        ) from None
    except ssl.SSLError as e:
        raise RouterOSError(
            f"RouterOS API-SSL at {where}: TLS handshake failed ({e.reason or e}); checked against {opts.trust}. "
            "Is that the api-ssl port, with a certificate set on /ip service api-ssl?"
        ) from None
    except TimeoutError as e:
        hint = (" Is that the api-ssl port? A plain API port does not answer a TLS handshake." if opts.tls else "")
        raise RouterOSError(f"RouterOS API at {where} did not answer within {opts.timeout:g}s ({e}).{hint}") from None
    except OSError as e:
        raise RouterOSError(
            f"cannot reach the RouterOS API at {where}: {e}. Is /ip/service api"
            f"{'-ssl' if opts.tls else ''} enabled on port {opts.effective_port} and reachable from here?"
        ) from None
    return RouterOS(api, opts.host)


def api_options(p: Mapping[str, Any]) -> ApiOptions:
    """ApiOptions from a module's parameters (API_ARGUMENT_SPEC)."""
    return ApiOptions(p["host"], p["user"], p["password"], p["api_port"], p["use_tls"], ca_path=p["ca_path"],
                      validate_cert_hostname=p["validate_cert_hostname"], force_no_cert=p["force_no_cert"],
                      timeout=p["timeout"])
