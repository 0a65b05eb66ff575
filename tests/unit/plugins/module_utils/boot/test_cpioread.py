"""_cpioread: members of newc archives read back exactly, concatenated archives walked with Stream."""

from __future__ import annotations

import io

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _cpio as cpio
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._cpioread import Stream, read_newc
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError


def archive(*files: tuple[str, bytes]) -> bytes:
    specs = [{"path": p, "content": c.decode()} for p, c in files]
    return cpio.archive_bytes(cpio.finalize(cpio.spec_entries(specs, source_date_epoch=0), source_date_epoch=0))


def test_members_and_their_raw_bytes_round_trip() -> None:
    data = archive(("etc/hostname", b"node\n"), ("init", b"#!/bin/sh\n"))
    got = list(read_newc(io.BytesIO(data)))
    assert [(m.name, m.data) for m in got if m.name != "etc"] == [("etc/hostname", b"node\n"), ("init", b"#!/bin/sh\n")]
    with_trailer = list(read_newc(io.BytesIO(data), trailer=True))
    assert with_trailer[-1].name == "TRAILER!!!" and b"".join(m.raw for m in with_trailer) == data


def test_concatenated_archives_are_walked_with_the_zeros_between() -> None:
    first, second = archive(("a", b"1")), archive(("b", b"22"))
    src = Stream(io.BytesIO(first + b"\0" * 512 + second + b"tail"))
    assert [m.name for m in read_newc(src)] == ["a"]
    assert src.pos == len(first) and src.skip_zeros() == 512 and src.peek(6) == cpio.MAGIC
    assert [m.data for m in read_newc(src)] == [b"22"]
    assert src.read(2) == b"ta" and src.rest() == b"il"


def test_truncated_and_foreign_data_are_named() -> None:
    data = archive(("a", b"12345678"))
    with pytest.raises(NetbootError, match=r"x: truncated cpio archive at byte"):
        list(read_newc(io.BytesIO(data[:120]), what="x"))
    with pytest.raises(NetbootError, match=r"not a newc cpio archive \(magic b'\\x1f\\x8b"):
        list(read_newc(io.BytesIO(b"\x1f\x8b" + b"\0" * 200)))
