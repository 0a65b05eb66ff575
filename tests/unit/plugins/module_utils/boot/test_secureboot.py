"""_secureboot: the PK/KEK/db key set on disk (modes, certificates, vault-encrypted and given keys, refusals), the
enrollment files parsed back field by field with the PKCS#7 of every .auth checked by ``openssl cms`` against the
signer's certificate only, reruns that write nothing, and sbsign/sbverify through the Runner with the key kept in a
private temp dir."""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import shutil
import stat
import struct
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _secureboot
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._secureboot import SecureBootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import CommandError, SignatureError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from tests.fixtures.secureboot import stub_path
from tests.unit.plugins.module_utils.boot.test_uki import needs_sbsign

# spelled out here, not taken from the code under test
GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
IMAGE_DB = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
X509 = "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"
PKCS7 = "4aafd29d-68df-49ee-8aa9-347d375665a7"
SIGNED_BY = {"PK": "PK", "KEK": "PK", "db": "KEK"}
VARIABLE_GUID = {"PK": GLOBAL, "KEK": GLOBAL, "db": IMAGE_DB}


def _files(d: Path) -> dict[str, int]:
    return {str(p.relative_to(d)): p.stat().st_mtime_ns for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    return tmp_path / "secureboot"


def _cms_verify(p7: bytes, content: bytes, cert: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    """openssl cms -verify of the detached DER signature over ``content``, trusting only the signer ``cert``
    (-nointern: the certificate the PKCS#7 carries is not used to find the signer)."""
    (tmp / "p7.der").write_bytes(p7)
    (tmp / "content").write_bytes(content)
    return subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp / "p7.der"),
                           "-content", str(tmp / "content"), "-noverify", "-nointern", "-certfile", str(cert),
                           "-out", os.devnull], capture_output=True, text=True, check=False)


def test_new_key_set_on_disk(keydir: Path) -> None:
    keys = _secureboot.ensure_keys(keydir, "homelab test")
    assert keys.created == ["PK", "KEK", "db"] and keys.changed
    assert stat.S_IMODE(keydir.stat().st_mode) == 0o700
    owner = uuid.UUID((keydir / "owner.guid").read_text().strip())
    assert keys.owner_guid == str(owner)
    now = datetime.datetime.now(datetime.UTC)
    for name in ("PK", "KEK", "db"):
        key_file, crt_file = keydir / f"{name}.key", keydir / f"{name}.crt"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = serialization.load_pem_private_key(key_file.read_bytes(), None)
        cert = x509.load_pem_x509_certificate(crt_file.read_bytes())
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
        assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
        assert cert.subject.rfc4514_string() == f"CN=homelab test {name}" and cert.issuer == cert.subject
        years = (cert.not_valid_after_utc - now).days / 365
        assert 19.9 < years < 20.1 and cert.not_valid_before_utc <= now
        der = cert.public_bytes(serialization.Encoding.DER)
        assert keys.fingerprints[name] == hashlib.sha256(der).hexdigest()
        assert keys.certs[name] == crt_file and keys.private[name] == key_file.read_bytes()
        enroll = keydir / "enroll"
        assert (enroll / f"{name}.cer").read_bytes() == der
        esl = (enroll / f"{name}.esl").read_bytes()
        # EFI_SIGNATURE_LIST: type, list size, header size, signature size, then owner + DER
        assert uuid.UUID(bytes_le=esl[:16]) == uuid.UUID(X509)
        assert struct.unpack_from("<III", esl, 16) == (len(esl), 0, 16 + len(der))
        assert uuid.UUID(bytes_le=esl[28:44]) == owner and esl[44:] == der
    assert {Path(p) for p in keys.result()["enroll_files"]} == set((keydir / "enroll").iterdir())
    assert "private" not in keys.result() and b"PRIVATE" not in repr(keys.result()).encode()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_auth_files_verify_with_the_signer_only(keydir: Path, tmp_path: Path) -> None:
    _secureboot.ensure_keys(keydir, "t")
    for name, signer in SIGNED_BY.items():
        auth = (keydir / "enroll" / f"{name}.auth").read_bytes()
        esl = (keydir / "enroll" / f"{name}.esl").read_bytes()
        timestamp = auth[:16]
        year, month, day, hour, minute, second, pad1, nano, tz, daylight, pad2 = struct.unpack("<HBBBBBBIhBB",
                                                                                               timestamp)
        assert abs(datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
                   - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(minutes=5)
        assert (pad1, nano, tz, daylight, pad2) == (0, 0, 0, 0, 0)
        length, revision, cert_type = struct.unpack_from("<IHH", auth, 16)
        assert (revision, cert_type) == (0x0200, 0x0EF1) and uuid.UUID(bytes_le=auth[24:40]) == uuid.UUID(PKCS7)
        p7, payload = auth[40:16 + length], auth[16 + length:]
        assert payload == esl
        signed = (name.encode("utf-16-le") + uuid.UUID(VARIABLE_GUID[name]).bytes_le + struct.pack("<I", 0x27)
                  + timestamp + esl)
        ok = _cms_verify(p7, signed, keydir / f"{signer}.crt", tmp_path)
        assert ok.returncode == 0, ok.stderr
        other = "db" if signer != "db" else "KEK"
        assert _cms_verify(p7, signed, keydir / f"{other}.crt", tmp_path).returncode != 0  # not the signer
        assert _cms_verify(p7, signed[:-1] + bytes([signed[-1] ^ 1]), keydir / f"{signer}.crt",
                           tmp_path).returncode != 0  # one byte of the ESL flipped
        printed = subprocess.run(["openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", str(tmp_path / "p7.der")],
                                 capture_output=True, text=True, check=True).stdout
        assert re.search(r"signedAttrs:\s*<ABSENT>", printed), printed  # no signed attributes
        assert re.search(r"eContent:\s*<ABSENT>", printed)  # detached
        assert "sha256" in printed


def test_rerun_writes_nothing_and_check_mode_plans(keydir: Path, tmp_path: Path) -> None:
    plan = _secureboot.ensure_keys(keydir, "t", check_mode=True)
    assert plan.changed and plan.created == ["PK", "KEK", "db"] and not keydir.exists()
    assert plan.owner_guid is None and not plan.fingerprints
    first = _secureboot.ensure_keys(keydir, "t")
    before = _files(keydir)
    again = _secureboot.ensure_keys(keydir, "t")
    assert not again.changed and again.created == [] and _files(keydir) == before
    assert again.fingerprints == first.fingerprints and again.owner_guid == first.owner_guid
    assert not _secureboot.ensure_keys(keydir, "t", check_mode=True).changed
    # a new PK (the old pair removed): PK.auth and KEK.auth are signed again, db.auth (signed by KEK) is kept
    (keydir / "PK.key").unlink()
    (keydir / "PK.crt").unlink()
    rotated = _secureboot.ensure_keys(keydir, "t")
    assert rotated.created == ["PK"]
    after = _files(keydir)
    changed = {p for p in after if after[p] != before.get(p)}
    assert changed == {"PK.key", "PK.crt", "enroll/PK.cer", "enroll/PK.esl", "enroll/PK.auth", "enroll/KEK.auth"}


def test_group_readable_key_refused(keydir: Path) -> None:
    _secureboot.ensure_keys(keydir, "t")
    os.chmod(keydir / "db.key", 0o640)
    with pytest.raises(SecureBootError, match=rf"chmod 600 {re.escape(str(keydir / 'db.key'))}"):
        _secureboot.ensure_keys(keydir, "t")


def test_key_certificate_mismatch_refused(keydir: Path) -> None:
    _secureboot.ensure_keys(keydir, "t")
    (keydir / "KEK.key").write_bytes((keydir / "db.key").read_bytes())
    with pytest.raises(SecureBootError, match=rf"{re.escape(str(keydir / 'KEK.key'))} does not match the "
                                              rf"certificate {re.escape(str(keydir / 'KEK.crt'))}"):
        _secureboot.ensure_keys(keydir, "t")
    db = (keydir / "db.key").read_bytes()
    with pytest.raises(SecureBootError, match=r"private_keys\.PK does not match"):
        _secureboot.ensure_keys(keydir, "t", {"PK": db})


def test_certificate_without_key_refused(keydir: Path) -> None:
    _secureboot.ensure_keys(keydir, "t")
    (keydir / "db.key").unlink()
    with pytest.raises(SecureBootError, match=rf"{re.escape(str(keydir / 'db.crt'))} has no private key"):
        _secureboot.ensure_keys(keydir, "t")


def test_vault_encrypted_and_given_keys(keydir: Path) -> None:
    first = _secureboot.ensure_keys(keydir, "t")
    plain = {n: (keydir / f"{n}.key").read_bytes() for n in ("PK", "KEK", "db")}
    vaulted = b"$ANSIBLE_VAULT;1.1;AES256\n3533613962366431\n"
    for name in plain:
        (keydir / f"{name}.key").write_bytes(vaulted)
        os.chmod(keydir / f"{name}.key", 0o644)  # ciphertext: its mode is not ours to police
    with pytest.raises(SecureBootError, match=r"PK\.key is vault-encrypted; pass its plaintext as private_keys\.PK"):
        _secureboot.ensure_keys(keydir, "t")
    before = _files(keydir)
    given: dict[str, Any] = {n: v.decode() for n, v in plain.items()}  # as Ansible passes them: str
    again = _secureboot.ensure_keys(keydir, "t", given)
    assert not again.changed and _files(keydir) == before and again.fingerprints == first.fingerprints
    assert all((keydir / f"{n}.key").read_bytes() == vaulted for n in plain)
    assert again.private == plain
    with pytest.raises(SecureBootError, match="unknown key name"):
        _secureboot.ensure_keys(keydir, "t", {"pk": plain["PK"]})
    # a given key with no file and no certificate yet: the certificate is made, the key is not written
    other = keydir.parent / "other"
    made = _secureboot.ensure_keys(other, "t", {"db": plain["db"]})
    assert made.created == ["PK", "KEK", "db"] and not (other / "db.key").exists() and (other / "PK.key").exists()
    new_cert = x509.load_pem_x509_certificate((other / "db.crt").read_bytes())
    old_cert = x509.load_pem_x509_certificate((keydir / "db.crt").read_bytes())
    assert new_cert.public_key() == old_cert.public_key()


@needs_sbsign
def test_sign_efi_private_key_file_rerun_and_refusals(keydir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    keys = _secureboot.ensure_keys(keydir, "t")
    private_tmp = tmp_path / "private-tmp"
    private_tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(private_tmp))
    seen: list[tuple[int, int]] = []

    class Watching(Runner):
        def run(self, argv: Any, **kw: Any) -> Any:
            if argv[0] == "sbsign":
                key = Path(argv[argv.index("--key") + 1])
                seen.append((stat.S_IMODE(key.stat().st_mode), stat.S_IMODE(key.parent.stat().st_mode)))
            return super().run(argv, **kw)

    src, dest = stub_path(), tmp_path / "dist" / "signed.efi"
    runner = Watching()
    assert _secureboot.sign_efi(src, dest, keys.private["db"], keys.certs["db"], runner)
    assert seen == [(0o600, 0o700)] and list(private_tmp.iterdir()) == []  # the key's temp dir is gone
    assert [c.split()[0] for c in runner.log] == ["sbsign", "sbverify"]
    _secureboot.verify_efi(dest, keys.certs["db"], Runner())
    with pytest.raises(SignatureError, match=re.escape(str(dest))):
        _secureboot.verify_efi(dest, keys.certs["KEK"], Runner())
    # sbsign is not deterministic (a signing time, in seconds): the rerun does not re-sign
    time.sleep(1.1)
    redo = tmp_path / "redo.efi"
    _secureboot.sign_efi(src, redo, keys.private["db"], keys.certs["db"], Runner())
    assert redo.read_bytes() != dest.read_bytes()  # why the comparison is by image bytes + sbverify
    mtime = dest.stat().st_mtime_ns
    runner.log.clear()
    assert not _secureboot.sign_efi(src, dest, keys.private["db"], keys.certs["db"], runner)
    assert dest.stat().st_mtime_ns == mtime and [c.split()[0] for c in runner.log] == ["sbverify"]
    assert _secureboot.sign_efi(src, dest, keys.private["KEK"], keys.certs["KEK"], Runner(), check_mode=True)
    assert dest.stat().st_mtime_ns == mtime  # check mode: would re-sign with the other key, writes nothing
    assert _secureboot.sign_efi(src, dest, keys.private["KEK"], keys.certs["KEK"], Runner())  # another key: signed
    # a key that does not match the certificate: sbsign fails, dest untouched, no key left behind
    before = dest.read_bytes()
    with pytest.raises((CommandError, SignatureError)):
        _secureboot.sign_efi(src, tmp_path / "bad.efi", keys.private["db"], keys.certs["KEK"], Runner())
    assert not (tmp_path / "bad.efi").exists() and dest.read_bytes() == before
    assert list(private_tmp.iterdir()) == [] and not list(tmp_path.glob(".bad.efi.*"))
    # no sbsigntool
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SecureBootError, match="apt-get install sbsigntool"):
        _secureboot.sign_efi(src, dest, keys.private["db"], keys.certs["db"], Runner())


def test_unsigned_body_ignores_only_signature_fields(tmp_path: Path) -> None:
    stub = stub_path().read_bytes()
    body = _secureboot.unsigned_body(stub)
    assert body is not None and len(body) == len(stub) + (-len(stub) % 8)
    changed = bytearray(stub)
    changed[0x500] ^= 1
    assert _secureboot.unsigned_body(bytes(changed)) != body
    assert _secureboot.unsigned_body(b"not a PE") is None


def test_pk_and_kek_keys_may_live_offline_until_an_auth_must_be_signed_again(tmp_path: Path) -> None:
    """docsite "Secure Boot": once enroll/ is written a build needs only the db key; PK.key and KEK.key may be moved
    offline. Re-signing an .auth (here db.auth, by the KEK) names the missing key and how to give it; the db key is
    always needed."""
    keys = tmp_path / "keys"
    _secureboot.ensure_keys(keys, "t")
    for name in ("PK", "KEK"):
        (keys / f"{name}.key").rename(tmp_path / f"{name}.key.offline")
    mtimes = {p: p.stat().st_mtime_ns for p in keys.rglob("*")}
    assert not _secureboot.ensure_keys(keys, "t").changed
    assert {p: p.stat().st_mtime_ns for p in keys.rglob("*")} == mtimes
    (keys / "enroll/db.auth").unlink()
    with pytest.raises(_secureboot.SecureBootError, match=r"db\.auth must be signed again by the KEK key, which is "
                                                          r"not here .*KEK\.key is missing.*private_keys\.KEK"):
        _secureboot.ensure_keys(keys, "t")
    kek = (tmp_path / "KEK.key.offline").read_bytes()
    _secureboot.ensure_keys(keys, "t", {"KEK": kek})
    assert (keys / "enroll/db.auth").is_file() and not (keys / "KEK.key").exists()  # a given key is not written
    (keys / "db.key").unlink()
    with pytest.raises(_secureboot.SecureBootError, match=r"db\.crt has no private key"):
        _secureboot.ensure_keys(keys, "t")
