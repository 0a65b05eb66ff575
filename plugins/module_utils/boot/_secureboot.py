# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Secure Boot with the user's own keys: the PK/KEK/db key set, the files firmware enrolls, signing EFI binaries.

Keys dir (mode 0700), one pair per name of ``NAMES``:

* ``<NAME>.key`` - PEM private key, RSA 2048, mode 0600. It may be vault-encrypted (it starts with
  ``$ANSIBLE_VAULT;``): it is then never parsed here, and the caller passes its plaintext (Ansible's file lookup
  decrypts it) in ``private``. A plaintext key file readable by group or others is refused. ``PK.key`` and
  ``KEK.key`` may be absent (kept offline) while their certificates are here: they are needed only when an
  ``.auth`` they sign must be written again, and the error then says which key to bring back.
* ``<NAME>.crt`` - PEM self-signed X.509, CN ``<prefix> <NAME>``, 20 years, random serial, SHA-256/RSA.
* ``owner.guid`` - the SignatureOwner of the signature lists, generated once.
* ``enroll/<NAME>.cer`` (DER), ``enroll/<NAME>.esl`` (EFI_SIGNATURE_LIST with one EFI_CERT_X509 entry) and
  ``enroll/<NAME>.auth`` (EFI_VARIABLE_AUTHENTICATION_2 + the ESL: a time-based authenticated write of the
  variable, PK signed by PK, KEK by PK, db by KEK) - public, what firmware setup screens and tools enroll.

An ``.auth`` carries the time it was made; it is kept as long as its ESL is unchanged and its PKCS#7 carries the
current signer's certificate, so a rerun with the same keys rewrites nothing.

``sign_efi`` signs an EFI binary with ``sbsign`` (through ``Runner``), checks the result with ``sbverify --cert``
and renames it over the destination. sbsign's output is not deterministic (its PKCS#7 has a signing time), so a
destination is left alone when ``sbverify --cert`` accepts it and its bytes without the certificate table (and
without the PE checksum, which sbsign rewrites) are the source's.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import stat
import struct
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _pe
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _deps
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError, SignatureError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import (
    atomic_path,
    read_or_none,
    write_if_changed,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs7
    from cryptography.x509.oid import NameOID
except ImportError:
    _deps.missing("cryptography")


class SecureBootError(NetbootError):
    """A Secure Boot key, certificate or key directory is unusable (the message names the file and the fix)."""


NAMES = ("PK", "KEK", "db")
SIGNER = {"PK": "PK", "KEK": "PK", "db": "KEK"}  # who signs each variable's .auth
EFI_GLOBAL_VARIABLE = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
EFI_IMAGE_SECURITY_DATABASE = uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
VENDOR = {"PK": EFI_GLOBAL_VARIABLE, "KEK": EFI_GLOBAL_VARIABLE, "db": EFI_IMAGE_SECURITY_DATABASE}
EFI_CERT_X509 = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
EFI_CERT_TYPE_PKCS7 = uuid.UUID("4aafd29d-68df-49ee-8aa9-347d375665a7")
# EFI_VARIABLE_NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS | TIME_BASED_AUTHENTICATED_WRITE_ACCESS
AUTH_ATTRIBUTES = 0x27
WIN_CERT_REVISION = 0x0200
WIN_CERT_TYPE_EFI_GUID = 0x0EF1
VAULT_HEADER = b"$ANSIBLE_VAULT;"
KEY_BITS = 2048
VALID_DAYS = 20 * 365 + 5
OWNER_FILE = "owner.guid"
ENROLL_DIR = "enroll"


@dataclass
class KeySet:
    """The key directory after ``ensure_keys`` (or what it would hold, in check mode)."""

    dir: Path
    certs: dict[str, Path]
    keys: dict[str, Path]
    created: list[str] = field(default_factory=list)  # names whose pair (or certificate) was made
    enroll_files: list[Path] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)  # every file written (or that would be)
    fingerprints: dict[str, str] = field(default_factory=dict)  # name -> sha256 of the DER certificate
    owner_guid: str | None = None
    private: dict[str, bytes] = field(default_factory=dict, repr=False)  # name -> PEM key (never returned)

    @property
    def changed(self) -> bool:
        return bool(self.written)

    def result(self) -> dict[str, Any]:
        """What a module returns (no key material)."""
        return {"dir": str(self.dir), "created": list(self.created),
                "certs": {n: str(p) for n, p in self.certs.items()},
                "enroll_files": [str(p) for p in self.enroll_files], "fingerprints": dict(self.fingerprints),
                "owner_guid": self.owner_guid}


# ------------------------------------------------------------------------------------------------- EFI structures
def efi_time(when: datetime.datetime) -> bytes:
    """EFI_TIME of ``when`` (UTC) as a time-based authenticated write wants it: Pad1, Nanosecond, TimeZone,
    Daylight and Pad2 zero."""
    t = when.astimezone(datetime.UTC)
    return struct.pack("<HBBBBBBIhBB", t.year, t.month, t.day, t.hour, t.minute, t.second, 0, 0, 0, 0, 0)


def signature_list(cert_der: bytes, owner: uuid.UUID) -> bytes:
    """EFI_SIGNATURE_LIST of type EFI_CERT_X509_GUID holding one EFI_SIGNATURE_DATA (``owner`` + ``cert_der``)."""
    entry = owner.bytes_le + cert_der
    return EFI_CERT_X509.bytes_le + struct.pack("<III", 28 + len(entry), 0, len(entry)) + entry


def signed_payload(name: str, timestamp: bytes, esl: bytes) -> bytes:
    """What an authenticated write of variable ``name`` signs: VariableName (UTF-16LE, no NUL) || VendorGuid ||
    Attributes || EFI_TIME || data."""
    return name.encode("utf-16-le") + VENDOR[name].bytes_le + struct.pack("<I", AUTH_ATTRIBUTES) + timestamp + esl


def parse_auth(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(EFI_TIME, DER PKCS#7, ESL) of an ``.auth`` file (EFI_VARIABLE_AUTHENTICATION_2 followed by the data)."""
    if len(data) < 16 + 24:
        raise SecureBootError("truncated EFI_VARIABLE_AUTHENTICATION_2")
    length, revision, cert_type = struct.unpack_from("<IHH", data, 16)
    if (revision, cert_type) != (WIN_CERT_REVISION, WIN_CERT_TYPE_EFI_GUID) or length < 24 \
            or uuid.UUID(bytes_le=data[24:40]) != EFI_CERT_TYPE_PKCS7 or 16 + length > len(data):
        raise SecureBootError("not a WIN_CERTIFICATE_UEFI_GUID with a PKCS#7 certificate")
    return data[:16], data[40:16 + length], data[16 + length:]


def authenticated_write(name: str, esl: bytes, signer_cert: x509.Certificate, signer_key: rsa.RSAPrivateKey,
                        when: datetime.datetime) -> bytes:
    """The ``.auth`` file of variable ``name``: EFI_VARIABLE_AUTHENTICATION_2 (EFI_TIME + WIN_CERTIFICATE_UEFI_GUID
    with a detached DER PKCS#7 SHA-256 signature, no signed attributes) followed by ``esl``."""
    timestamp = efi_time(when)
    options = [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary, pkcs7.PKCS7Options.NoAttributes]
    signature = (pkcs7.PKCS7SignatureBuilder().set_data(signed_payload(name, timestamp, esl))
                 .add_signer(signer_cert, signer_key, hashes.SHA256())
                 .sign(serialization.Encoding.DER, options))
    header = struct.pack("<IHH", 24 + len(signature), WIN_CERT_REVISION, WIN_CERT_TYPE_EFI_GUID)
    return timestamp + header + EFI_CERT_TYPE_PKCS7.bytes_le + signature + esl


# ----------------------------------------------------------------------------------------------------------- keys
def _is_vault(data: bytes) -> bool:
    return data.lstrip().startswith(VAULT_HEADER)


def _load_key(pem: bytes, where: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SecureBootError(f"{where} is not an unencrypted PEM private key ({exc}); give the key's PEM text "
                              "(a vault-encrypted file is decrypted by Ansible's file lookup)") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SecureBootError(f"{where} is not an RSA key; UEFI firmware verifies RSA 2048 signatures")
    return key


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as exc:
        raise SecureBootError(f"{path} is not a PEM certificate ({exc}); remove it (with its .key) to have a new "
                              "pair made, or put the right certificate there") from exc


def _check_private_file(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecureBootError(f"{path} is a plaintext private key readable by group or others (mode {mode:04o}): "
                              f"run chmod 600 {path} (or vault-encrypt it with ansible-vault)")


def _new_cert(key: rsa.RSAPrivateKey, common_name: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _same_public(key: rsa.RSAPrivateKey, cert: x509.Certificate) -> bool:
    return bool(key.public_key().public_numbers() == cert.public_key().public_numbers())  # type: ignore[union-attr]


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 (hex) of the certificate's DER."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _private_dir(directory: Path, check_mode: bool, written: list[Path]) -> None:
    if directory.exists() and not directory.is_dir():
        raise SecureBootError(f"{directory} is not a directory; give the Secure Boot keys directory")
    if not directory.exists() or stat.S_IMODE(directory.stat().st_mode) & 0o077:  # missing, or open to others
        written.append(directory)
        if not check_mode:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)


def _owner(directory: Path, check_mode: bool, written: list[Path]) -> uuid.UUID | None:
    path = directory / OWNER_FILE
    raw = read_or_none(path)
    if raw is not None:
        try:
            return uuid.UUID(raw.decode().strip())
        except ValueError as exc:
            raise SecureBootError(f"{path} does not hold a GUID ({raw[:40]!r}); remove it to have one made (the "
                                  "enrollment files are then rewritten with the new owner)") from exc
    written.append(path)
    if check_mode:
        return None
    owner = uuid.uuid4()
    write_if_changed(path, f"{owner}\n".encode(), 0o644)
    return owner


OFFLINE_OK = ("PK", "KEK")  # keys a build does not need once enroll/ is written: the user may keep them offline


def _pair(keyset: KeySet, name: str, prefix: str, given: bytes | None, *, check_mode: bool) -> tuple[x509.Certificate | None, rsa.RSAPrivateKey | None]:
    """The certificate and key of ``name`` (made when missing); (None, None) in check mode for one to be made."""
    key_path, crt_path = keyset.keys[name], keyset.certs[name]
    on_disk = read_or_none(key_path)
    if on_disk is not None and not _is_vault(on_disk):
        _check_private_file(key_path)
    if given is not None:
        key = _load_key(given, f"private_keys.{name}")
        key_where = f"private_keys.{name}"
    elif on_disk is not None and _is_vault(on_disk):
        raise SecureBootError(f"{key_path} is vault-encrypted; pass its plaintext as private_keys.{name} (e.g. "
                              f"\"{{{{ lookup('file', '{key_path}') }}}}\", which decrypts it)")
    elif on_disk is not None:
        key = _load_key(on_disk, str(key_path))
        key_where = str(key_path)
    elif crt_path.exists() and name in OFFLINE_OK:
        # kept offline (docsite "Secure Boot"): needed only to sign a new .auth, which the caller checks
        return _load_cert(crt_path), None
    elif crt_path.exists():
        raise SecureBootError(f"{crt_path} has no private key: {key_path} is missing and private_keys.{name} is not "
                              f"given; put the key back (or pass it), or remove {crt_path} to have a new {name} made "
                              "(which must then be enrolled again)")
    else:
        keyset.created.append(name)
        keyset.written.append(key_path)
        if check_mode:
            keyset.written.append(crt_path)
            return None, None
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        write_if_changed(key_path, _key_pem(key), 0o600)
        key_where = str(key_path)
    if crt_path.exists():
        cert = _load_cert(crt_path)
        if not _same_public(key, cert):
            raise SecureBootError(f"the {name} key {key_where} does not match the certificate {crt_path}; give the "
                                  f"key that certificate was made with, or remove {crt_path} to make a new one "
                                  "(which must then be enrolled again)")
        return cert, key
    if name not in keyset.created:
        keyset.created.append(name)
    keyset.written.append(crt_path)
    if check_mode:
        return None, key
    cert = _new_cert(key, f"{prefix} {name}")
    write_if_changed(crt_path, _pem(cert), 0o644)
    return cert, key


def _existing_auth_ok(path: Path, esl: bytes, signer: x509.Certificate) -> bool:
    """Whether the ``.auth`` at ``path`` holds ``esl`` and a PKCS#7 carrying ``signer``'s certificate."""
    raw = read_or_none(path)
    if raw is None:
        return False
    try:
        signature, payload = parse_auth(raw)[1:]
        carried = pkcs7.load_der_pkcs7_certificates(signature)
    except (SecureBootError, ValueError):
        return False
    return payload == esl and signer in carried


def ensure_keys(directory: str | os.PathLike[str], prefix: str = "homelab netboot",
                private: Mapping[str, bytes | str] | None = None, *, check_mode: bool = False,
                now: datetime.datetime | None = None) -> KeySet:
    """Make the missing PK/KEK/db pairs and the enrollment files in ``directory`` (see the module docstring).

    ``private``: name -> PEM private key given by the caller (its file on disk may then be vault-encrypted, or
    absent). In check mode nothing is written; the KeySet says what would be."""
    root = Path(directory)
    keyset = KeySet(dir=root, certs={n: root / f"{n}.crt" for n in NAMES}, keys={n: root / f"{n}.key" for n in NAMES})
    given = {k: v.encode() if isinstance(v, str) else v for k, v in (private or {}).items() if v}
    unknown = sorted(set(given) - set(NAMES))
    if unknown:
        raise SecureBootError(f"private_keys has unknown key name(s) {', '.join(unknown)}; the names are PK, KEK, db")
    _private_dir(root, check_mode, keyset.written)
    certs: dict[str, x509.Certificate] = {}
    keys: dict[str, rsa.RSAPrivateKey] = {}
    for name in NAMES:
        cert, key = _pair(keyset, name, prefix, given.get(name), check_mode=check_mode)
        if cert is not None:
            certs[name] = cert
            keyset.fingerprints[name] = fingerprint(cert)
        if key is not None and cert is not None:
            keys[name] = key
            keyset.private[name] = _key_pem(key)
    owner = _owner(root, check_mode, keyset.written)
    keyset.owner_guid = str(owner) if owner else None
    enroll = root / ENROLL_DIR
    if not enroll.is_dir():
        keyset.written.append(enroll)
        if not check_mode:
            enroll.mkdir(mode=0o755)
    when = now or datetime.datetime.now(datetime.UTC)
    for name in NAMES:
        files = {ext: enroll / f"{name}.{ext}" for ext in ("cer", "esl", "auth")}
        keyset.enroll_files += files.values()
        cert = certs.get(name)
        signer = SIGNER[name]
        if cert is None or owner is None or signer not in certs:  # check mode, to be made
            keyset.written += [p for p in files.values() if p not in keyset.written]
            continue
        der = cert.public_bytes(serialization.Encoding.DER)
        esl = signature_list(der, owner)
        for ext, data in (("cer", der), ("esl", esl)):
            if write_if_changed(files[ext], data, 0o644, check_mode=check_mode):
                keyset.written.append(files[ext])
        if not _existing_auth_ok(files["auth"], esl, certs[signer]):
            keyset.written.append(files["auth"])
            if signer not in keys and not check_mode:
                raise SecureBootError(
                    f"{files['auth']} must be signed again by the {signer} key, which is not here "
                    f"({keyset.keys[signer]} is missing): put it back for this run, or pass it as "
                    f"private_keys.{signer} (e.g. from a vault-encrypted copy), then move it offline again")
            if not check_mode:
                write_if_changed(files["auth"], authenticated_write(name, esl, certs[signer], keys[signer], when),
                                 0o644)
    return keyset


# -------------------------------------------------------------------------------------------------------- signing
def _need_sbsigntool() -> None:
    for tool in ("sbsign", "sbverify"):
        if shutil.which(tool) is None:
            raise SecureBootError(f"{tool} is not installed; run apt-get install sbsigntool on the controller")


def unsigned_body(data: bytes) -> bytes | None:
    """A PE image's bytes without its certificate table, with the CheckSum and the security directory entry zeroed
    and the end padded to 8 bytes (as sbsign pads before the table): equal for an image and its signed copy.
    None when ``data`` is not a PE32+ file."""
    try:
        _unused, opt = _pe.headers(data)
    except _pe.PeFormatError:
        return None
    security = opt + _pe.DIRECTORIES + 8 * _pe.DIR_SECURITY
    if security + 8 > len(data) or not _pe.is_pe32_plus(data, opt):
        return None
    offset, size = struct.unpack_from("<II", data, security)
    body = bytearray(data[:offset] if offset and size and offset + size <= len(data) else data)
    body[opt + _pe.CHECKSUM:opt + _pe.CHECKSUM + 4] = b"\0\0\0\0"
    body[security:security + 8] = bytes(8)
    body.extend(bytes(-len(body) % 8))
    return bytes(body)


def verify_efi(path: str | os.PathLike[str], cert: str | os.PathLike[str], runner: Runner, *,
               shown: str | None = None) -> None:
    """``SignatureError`` naming ``path`` (or ``shown``, what it will become) unless ``sbverify --cert cert``
    accepts it."""
    _need_sbsigntool()
    proc = runner.run(["sbverify", "--cert", os.fspath(cert), os.fspath(path)], check=False, what="sbverify")
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        name = shown or os.fspath(path)
        raise SignatureError(f"{name} is not validly signed by the key of {os.fspath(cert)} "
                             f"(sbverify: {' / '.join(why)}); sign it again with that key's pair "
                             "(a key that does not match the certificate signs nothing it accepts)", path=name)


def signed_copy_current(src_data: bytes, dest: str | os.PathLike[str], cert: str | os.PathLike[str],
                        runner: Runner) -> bool:
    """Whether ``dest`` is the image ``src_data`` signed by ``cert``'s key (same image bytes, sbverify accepts it)."""
    old = read_or_none(dest)
    if old is None:
        return False
    body = unsigned_body(old)
    if body is None or body != unsigned_body(src_data):
        return False
    try:
        verify_efi(dest, cert, runner)
    except SignatureError:
        return False
    return True


def sign_efi_check(cert: str | os.PathLike[str]) -> None:
    """What signing needs before anything runs: sbsign/sbverify installed and the certificate present."""
    _need_sbsigntool()
    if not Path(cert).is_file():
        raise SecureBootError(f"the certificate {os.fspath(cert)} does not exist; make the keys first "
                              "(homelab.alpine_netboot.secure_boot_keys)")


def sign_efi(src: str | os.PathLike[str], dest: str | os.PathLike[str], key_pem: bytes | str,
             cert: str | os.PathLike[str], runner: Runner, *, check_mode: bool = False) -> bool:
    """Sign EFI binary ``src`` into ``dest`` with ``key_pem`` and ``cert`` (sbsign); True when ``dest`` changed.

    The key goes to a 0600 file in a private 0700 temp dir, removed afterwards whatever happens. The signed file
    is written to a temp name beside ``dest``, checked with ``sbverify --cert`` and then renamed. ``dest`` is left
    alone when it already is ``src`` signed by ``cert``'s key (``signed_copy_current``)."""
    sign_efi_check(cert)
    if not Path(src).is_file():
        raise SecureBootError(f"{os.fspath(src)} does not exist: nothing to sign")
    if signed_copy_current(Path(src).read_bytes(), dest, cert, runner):
        return False
    if check_mode:
        return True
    private = tempfile.mkdtemp(prefix="netboot-sbsign.")  # mode 0700
    try:
        key_file = os.path.join(private, "signing.key")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key_pem.encode() if isinstance(key_pem, str) else key_pem)
        with atomic_path(dest, 0o644) as tmp:
            runner.run(["sbsign", "--key", key_file, "--cert", os.fspath(cert), "--output", str(tmp),
                        os.fspath(src)], what=f"sbsign of {os.fspath(src)}")
            verify_efi(tmp, cert, runner, shown=f"{os.fspath(dest)} (signed from {os.fspath(src)})")
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return True
