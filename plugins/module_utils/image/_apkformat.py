# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Reading and verifying Alpine v2 packages (``.apk``) and indexes (``APKINDEX.tar.gz``).

Formats (apk-tools ``doc/apk-v2.5``): a v2 ``.apk`` is three concatenated gzip members — a signature tar, a control
tar (``.PKGINFO`` and scripts) and a data tar. The signature (RSA PKCS#1 v1.5, SHA-1/256/512, key chosen by file
name) covers the *compressed* control member; ``.PKGINFO``'s ``datahash`` is the SHA-256 of the compressed data
member; the index's ``C:`` field is ``Q1`` + base64(SHA-1 of the compressed control member). An index is a signature
member followed by a gzip member holding ``DESCRIPTION`` and ``APKINDEX``; the signature covers that whole second part.

Everything here streams: a package is never held in memory, only its (small) signature and control members.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _deps
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, SignatureError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._alpine_keys import ARCH_KEYS, KEYS
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apkdb import parse_pkginfo

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
except ImportError:
    _deps.missing("cryptography")

CHUNK = 1 << 20
_DIGESTS = {"RSA": "SHA1", "RSA256": "SHA256", "RSA512": "SHA512"}  # apk signature kind -> its digest


def _digest(kind: str) -> hashes.HashAlgorithm:
    algorithm: type[hashes.HashAlgorithm] = getattr(hashes, _DIGESTS[kind])
    return algorithm()


# --------------------------------------------------------------------------------------------------------- keys
@dataclass(frozen=True)
class TrustedKey:
    name: str  # key file name, the one signatures refer to
    pem: bytes
    origin: str  # "pinned" or the file it was read from

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER public key, as ``sha256:<hex>``."""
        key = serialization.load_pem_public_key(self.pem)
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return "sha256:" + hashlib.sha256(der).hexdigest()


@dataclass
class Keyring:
    """The keys a build trusts: the Alpine keys pinned in the collection plus ``alpine_extra_keys_dir``."""

    keys: dict[str, TrustedKey] = field(default_factory=dict)

    @classmethod
    def for_arch(cls, arch: str, extra_dirs: Iterable[Path] = ()) -> Keyring:
        if arch not in ARCH_KEYS:
            raise ConfigError(
                f"alpine_arch {arch!r} is not an Alpine architecture; use one of: {', '.join(sorted(ARCH_KEYS))}"
            )
        ring = cls({n: TrustedKey(n, KEYS[n].encode(), "pinned") for n in ARCH_KEYS[arch]})
        for d in extra_dirs:
            ring.add_dir(d)
        return ring

    def add_dir(self, directory: Path) -> None:
        if not directory.is_dir():
            raise ConfigError(f"alpine_extra_keys_dir {str(directory)!r} is not a directory")
        found = [f for f in sorted(directory.iterdir()) if f.is_file() and f.name.endswith(".pub")]
        if not found:
            raise ConfigError(f"alpine_extra_keys_dir {str(directory)!r} holds no *.pub key files")
        for f in found:
            pem = f.read_bytes()
            try:
                key = serialization.load_pem_public_key(pem)
            except ValueError as exc:
                raise ConfigError(f"{f} is not a PEM public key ({exc}); remove it from alpine_extra_keys_dir") from exc
            if not isinstance(key, rsa.RSAPublicKey):
                raise ConfigError(f"{f} is not an RSA public key; apk signs with RSA")
            self.keys[f.name] = TrustedKey(f.name, pem, str(f))

    def write(self, directory: Path) -> None:
        """Write the keys as apk expects them (``<dir>/<key file name>``)."""
        directory.mkdir(parents=True, exist_ok=True)
        for key in self.keys.values():
            (directory / key.name).write_bytes(key.pem)

    def fingerprints(self) -> dict[str, str]:
        return {name: k.fingerprint for name, k in sorted(self.keys.items())}

    def verify(self, what: str, signatures: dict[str, bytes], signed: bytes | Iterable[bytes]) -> str:
        """Check that one of ``signatures`` (tar member name -> bytes) verifies ``signed``; returns the key name."""
        if not signatures:
            raise SignatureError(f"{what} carries no signature")
        unknown = []
        chunks = [signed] if isinstance(signed, bytes) else list(signed)
        for member, sig in signatures.items():
            kind, _unused, keyname = member.removeprefix(".SIGN.").partition(".")
            if kind not in _DIGESTS:
                continue
            key = self.keys.get(keyname)
            if key is None:
                unknown.append(keyname)
                continue
            pub = serialization.load_pem_public_key(key.pem)
            if not isinstance(pub, rsa.RSAPublicKey):
                raise SignatureError(f"{what}: key {keyname} is not an RSA public key (apk signs with RSA); replace it")
            h = hashes.Hash(_digest(kind))
            for c in chunks:
                h.update(c)
            try:
                pub.verify(sig, h.finalize(), padding.PKCS1v15(), _prehashed(_digest(kind)))
            except InvalidSignature as exc:
                raise SignatureError(f"{what}: signature by {keyname} does not verify (file tampered or corrupt)") from exc
            return keyname
        if unknown:
            raise SignatureError(
                f"{what} is signed by an unknown key {', '.join(unknown)}: it is neither one of the pinned Alpine keys "
                f"nor in alpine_extra_keys_dir (add its public key there if you trust this repository)"
            )
        raise SignatureError(f"{what} carries no RSA signature apk understands")


def _prehashed(algo: hashes.HashAlgorithm) -> hashes.HashAlgorithm:
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    return Prehashed(algo)  # type: ignore[return-value]


def verify_detached(keyring: Keyring, what: str, data_path: Path, sig_name: str, signature: bytes) -> str:
    """Verify a detached signature file named ``<file>.SIGN.RSA[.sha256].<keyname>`` (apk.static's form)."""
    prefix = data_path.name + ".SIGN.RSA."
    rest = sig_name.removeprefix(prefix)
    kind, keyname = ("RSA", rest)
    for alg in ("sha256", "sha512"):
        if rest.startswith(alg + "."):
            kind, keyname = ("RSA" + alg[3:], rest[len(alg) + 1:])
    with data_path.open("rb") as fh:
        return keyring.verify(what, {f".SIGN.{kind}.{keyname}": signature}, iter(lambda: fh.read(CHUNK), b""))


# ------------------------------------------------------------------------------------------------ gzip streams
@dataclass
class Member:
    start: int
    end: int
    data: bytes | None  # decompressed content when kept


def gzip_members(fh: BinaryIO, keep: int, what: str, limit: int = 64 << 20) -> tuple[list[Member], int]:
    """Split a stream of concatenated gzip members. The first ``keep`` members are decompressed (at most ``limit``
    bytes each) and returned with their offsets; the rest of the stream is only measured. Returns (members, size)."""
    members: list[Member] = []
    offset = 0  # absolute offset of the start of ``buf``
    buf = b""
    start = 0
    d = zlib.decompressobj(31)
    out: list[bytes] = []
    size = 0
    while len(members) < keep:
        if not buf:
            buf = fh.read(CHUNK)
            if not buf:
                raise SignatureError(f"{what} is truncated: expected {keep} gzip members, found {len(members)}")
        try:
            piece = d.decompress(buf, limit - size + 1)
        except zlib.error as exc:
            raise SignatureError(f"{what} is not a valid gzip stream near byte {offset} ({exc})") from exc
        out.append(piece)
        size += len(piece)
        if size > limit:
            raise SignatureError(f"{what}: gzip member {len(members)} unpacks to more than {limit} bytes")
        if d.eof:
            end = offset + len(buf) - len(d.unused_data)
            members.append(Member(start, end, b"".join(out)))
            out, size, start, offset, buf = [], 0, end, end, d.unused_data
            d = zlib.decompressobj(31)
        else:
            offset += len(buf) - len(d.unconsumed_tail)
            buf = d.unconsumed_tail
    total = offset + len(buf)
    while chunk := fh.read(CHUNK):
        total += len(chunk)
    return members, total


def _tar_files(blob: bytes, what: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tf:
            for m in tf:
                if m.isfile():
                    fh = tf.extractfile(m)
                    files[m.name] = fh.read() if fh else b""
    except tarfile.TarError as exc:
        raise SignatureError(f"{what}: malformed tar member ({exc})") from exc
    return files


def _hash_range(fh: BinaryIO, start: int, end: int | None, *algos: str) -> list[str]:
    hs = [hashlib.new(a) for a in algos]
    fh.seek(start)
    remaining = None if end is None else end - start
    while remaining is None or remaining > 0:
        chunk = fh.read(CHUNK if remaining is None else min(CHUNK, remaining))
        if not chunk:
            break
        for h in hs:
            h.update(chunk)
        if remaining is not None:
            remaining -= len(chunk)
    return [h.hexdigest() for h in hs]


# ------------------------------------------------------------------------------------------------------- index
@dataclass(frozen=True)
class IndexEntry:
    name: str
    version: str
    arch: str
    checksum: str  # C: Q1<base64 sha1 of the control member>
    size: int  # S: .apk file size
    installed_size: int
    build_time: int
    origin: str = ""
    depends: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    install_if: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}.apk"


# A package name / version as it may appear in a file name under cache/ (no '/', no leading '.', printable ASCII)
PKG_NAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9_.+-]*")
PKG_VERSION = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9_.+~-]*")


def parse_index_text(text: str, what: str) -> list[IndexEntry]:
    entries = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if len(line) < 2 or line[1] != ":":
                raise SignatureError(f"{what}: malformed line {line!r}")
            fields.setdefault(line[0], line[2:])
        if not fields:
            continue
        if not PKG_NAME.fullmatch(fields.get("P", "")) or not PKG_VERSION.fullmatch(fields.get("V", "")):
            raise SignatureError(
                f"{what}: entry with name {fields.get('P')!r} version {fields.get('V')!r} cannot be a package file "
                f"name (only letters, digits and '_.+-~'); refusing the index"
            )
        try:
            entries.append(
                IndexEntry(
                    name=fields["P"],
                    version=fields["V"],
                    arch=fields.get("A", ""),
                    checksum=fields["C"],
                    size=int(fields.get("S", "0")),
                    installed_size=int(fields.get("I", "0")),
                    build_time=int(fields.get("t", "0")),
                    origin=fields.get("o", ""),
                    depends=tuple(fields.get("D", "").split()),
                    provides=tuple(fields.get("p", "").split()),
                    install_if=tuple(fields.get("i", "").split()),
                )
            )
        except (KeyError, ValueError) as exc:
            raise SignatureError(f"{what}: malformed entry near {block[:60]!r} ({exc})") from exc
    return entries


@dataclass(frozen=True)
class Index:
    entries: tuple[IndexEntry, ...]
    description: str
    signed_by: str
    sha256: str

    def by_name(self) -> dict[str, list[IndexEntry]]:
        out: dict[str, list[IndexEntry]] = {}
        for e in self.entries:
            out.setdefault(e.name, []).append(e)
        return out


def read_index(path: Path, keyring: Keyring) -> Index:
    """Verify the signature of an ``APKINDEX.tar.gz`` against ``keyring`` and parse it."""
    what = f"index {path}"
    with path.open("rb") as fh:
        members, total = gzip_members(fh, 2, what)
        sigs = _tar_files(members[0].data or b"", what)
        fh.seek(members[0].end)
        signed_by = keyring.verify(what, sigs, iter(lambda: fh.read(CHUNK), b""))
        (sha256,) = _hash_range(fh, 0, None, "sha256")
    if total != members[1].end:
        raise SignatureError(f"{what} has trailing data after the index: not an APKINDEX.tar.gz")
    files = _tar_files(members[1].data or b"", what)
    if "APKINDEX" not in files:
        raise SignatureError(f"{what} has no APKINDEX member")
    entries = parse_index_text(files["APKINDEX"].decode("utf-8", "replace"), what)
    return Index(tuple(entries), files.get("DESCRIPTION", b"").decode(errors="replace").strip(), signed_by, sha256)


# ---------------------------------------------------------------------------------------------------- packages
@dataclass(frozen=True)
class VerifiedPackage:
    name: str
    version: str
    checksum: str
    signed_by: str
    pkginfo: dict[str, list[str]]
    data_offset: int
    sha256: str


def checksum_q1(sha1_hex: str) -> str:
    return "Q1" + base64.b64encode(bytes.fromhex(sha1_hex)).decode()


def verify_package(path: Path, keyring: Keyring, expected: IndexEntry | None = None) -> VerifiedPackage:
    """Check a v2 ``.apk``: signature over the control member, ``datahash`` of the data member, and — given the index
    entry it should match — its size, ``C:`` checksum, name and version. Raises ``SignatureError`` naming the file."""
    what = f"package {path.name}"
    with path.open("rb") as fh:
        members, total = gzip_members(fh, 2, what)
        sig, control = members
        sigs = _tar_files(sig.data or b"", what)
        fh.seek(control.start)
        control_bytes = fh.read(control.end - control.start)
        signed_by = keyring.verify(what, sigs, control_bytes)
        sha1 = hashlib.sha1(control_bytes).hexdigest()
        datahash, = _hash_range(fh, control.end, None, "sha256")
        (sha256,) = _hash_range(fh, 0, None, "sha256")
    ctl = _tar_files(control.data or b"", what)
    if ".PKGINFO" not in ctl:
        raise SignatureError(f"{what} has no .PKGINFO")
    info = parse_pkginfo(ctl[".PKGINFO"].decode("utf-8", "replace"))
    want = info.get("datahash", [""])[0]
    if want and want != datahash:
        raise SignatureError(f"{what}: data does not match the signed datahash (file tampered or corrupt)")
    name, version = info.get("pkgname", [""])[0], info.get("pkgver", [""])[0]
    checksum = checksum_q1(sha1)
    if expected is not None:
        if total != expected.size:
            raise SignatureError(f"{what} is {total} bytes but the index says {expected.size} (truncated or replaced)")
        if checksum != expected.checksum:
            raise SignatureError(f"{what}: checksum {checksum} does not match the index ({expected.checksum})")
        if (name, version) != (expected.name, expected.version):
            raise SignatureError(f"{what} contains {name}-{version}, not {expected.name}-{expected.version}")
    return VerifiedPackage(name, version, checksum, signed_by, info, control.end, sha256)


def iter_data(path: Path, pkg: VerifiedPackage) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    """Iterate over the data tar of a verified package (streamed)."""
    with path.open("rb") as fh:
        fh.seek(pkg.data_offset)
        with tarfile.open(fileobj=fh, mode="r|gz") as tf:
            for member in tf:
                yield member, tf
