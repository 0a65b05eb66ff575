# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Where a PE32+ (EFI) image's headers are, for the UKI builder (``_uki``) and the signed-copy check (``_secureboot``)."""

from __future__ import annotations

import struct

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError

PE32_PLUS = 0x20B  # the optional header's magic
CHECKSUM = 64  # offsets in the optional header: its CheckSum, its data directories (RVA, size: 8 bytes each)
DIRECTORIES = 112
DIR_SECURITY = 4  # the certificate table (its "RVA" is a file offset)
DIR_DEBUG = 6


class PeFormatError(NetbootError):
    """Not a PE image; the message names the missing header."""


def headers(data: bytes) -> tuple[int, int]:
    """(offset of the ``PE\\0\\0`` signature, offset of the optional header) of a PE image."""
    if len(data) < 0x40 or data[:2] != b"MZ":
        raise PeFormatError("no MZ header")
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    if pe + 24 > len(data) or data[pe:pe + 4] != b"PE\0\0":
        raise PeFormatError(f"no PE signature at 0x{pe:x}")
    return pe, pe + 24


def is_pe32_plus(data: bytes, opt: int) -> bool:
    """Whether the optional header at ``opt`` is PE32+ (64-bit)."""
    return opt + 2 <= len(data) and struct.unpack_from("<H", data, opt)[0] == PE32_PLUS
