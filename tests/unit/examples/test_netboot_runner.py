"""examples/netboot_runner.py's progress tail: it reports finished downloads only, and a cache file that goes away
between the listing and the report (a download renamed from its temp name, a pruned entry) does not end the run."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.fixtures.material import REPO

sys.path.insert(0, str(REPO / "examples"))
import netboot_runner


def test_a_download_in_flight_is_not_reported_until_it_is_renamed(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    tail = netboot_runner._Tail(None, cache)
    part = cache / "musl-1.2.5-r10.apk.part-4242"
    part.write_bytes(b"x" * 10)
    assert tail.poll() == []
    part.rename(cache / "musl-1.2.5-r10.apk")
    assert tail.poll() == ["  download: musl-1.2.5-r10.apk (10 bytes)"]
    assert tail.poll() == []


def test_a_file_gone_before_its_size_is_read_is_skipped(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    tail = netboot_runner._Tail(None, cache)
    (cache / "kept.apk").write_bytes(b"abc")
    gone = cache / "gone.apk"
    monkeypatch.setattr(netboot_runner._Tail, "_cached", lambda self: [gone, cache / "kept.apk"])
    assert tail.poll() == ["  download: kept.apk (3 bytes)"]
