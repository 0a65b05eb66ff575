"""_pe: where a PE image's headers are, on Debian's pinned systemd-boot stub and on what is not PE."""

from __future__ import annotations

import struct

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._pe import (
    CHECKSUM,
    PeFormatError,
    headers,
    is_pe32_plus,
)
from tests.fixtures.secureboot import stub_path


def test_the_stubs_headers_are_found() -> None:
    data = stub_path().read_bytes()
    pe, opt = headers(data)
    assert data[pe:pe + 4] == b"PE\0\0" and opt == pe + 24 and is_pe32_plus(data, opt)
    assert struct.unpack_from("<I", data, opt + CHECKSUM)[0] != 0  # Debian's stub carries a checksum


def test_what_is_missing_is_named() -> None:
    with pytest.raises(PeFormatError, match="no MZ header"):
        headers(b"\x7fELF" + bytes(100))
    with pytest.raises(PeFormatError, match="no PE signature at 0x40"):
        headers(b"MZ" + bytes(0x3A) + struct.pack("<I", 0x40) + b"NE\0\0" + bytes(40))
    pe32 = b"MZ" + bytes(0x3A) + struct.pack("<I", 0x40) + b"PE\0\0" + bytes(20) + struct.pack("<H", 0x10B)
    assert headers(pe32) == (0x40, 0x58) and not is_pe32_plus(pe32, 0x58)
    assert not is_pe32_plus(pe32, len(pe32))
