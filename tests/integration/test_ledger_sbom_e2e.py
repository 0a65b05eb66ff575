"""Issue 11 on the image ``playbooks/build.yml`` builds from the fixture mirror: the size ledger, the budgets and the
CycloneDX SBOM in ``dist/``; a second (offline) build gives the same SBOM, a third with one package added shows it
in the ledger's delta."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apkdb import read_installed
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records import _ledger, _sbom
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records import _ledger_render as render
from tests.fixtures.e2e import PACKAGES, Built
from tests.fixtures.material import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="building the rootfs needs root"),
]

ADDED = "sudo"


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_ledger_files_in_dist_and_the_estimate_sums_to_the_image(e2e_built: Built) -> None:
    dist = e2e_built.dist
    for name in ("ledger.json", "ledger.md", "ledger.svg", "sbom.cdx.json"):
        assert (dist / name).is_file(), name
    led = load(dist / "ledger.json")
    real = (dist / "initramfs").stat().st_size
    assert led["total_compressed_bytes"] == real
    assert sum(p["compressed_bytes_estimate"] for p in led["packages"] + led["unowned"]) == real
    assert sum(g["compressed_bytes_estimate"] for g in led["groups"]) == real
    est = led["estimate"]
    deviation = abs(est["compressed_alone_sum"] - real) / real
    print(f"ledger: groups compressed alone {est['compressed_alone_sum']} vs real {real} ({deviation:.2%})")
    assert deviation <= _ledger.TOLERANCE and est["within_tolerance"]
    installed = {p.name: p.version for p in read_installed(e2e_built.build / "image")}
    # the glibc runtime (issue 22) is a package row of its own: Debian's libc6, its bytes not left unowned
    rows = {p["name"]: p for p in led["packages"]}
    libc6 = rows.pop("libc6")
    assert libc6["version"] == "2.36-9+deb12u14" and libc6["unpacked_bytes"] > 2_000_000, libc6
    assert not any("opt" in u["name"] for u in led["unowned"]), led["unowned"]
    print(f"ledger: glibc runtime {libc6['unpacked_bytes']} bytes unpacked, ~{libc6['compressed_bytes_estimate']} "
          f"compressed, {libc6['files']} files")
    assert {n: p["version"] for n, p in rows.items()} == installed
    assert set(PACKAGES) <= set(installed)
    assert led["download_bytes"] == sum((dist / n).stat().st_size for n in led["artefacts"])
    md = (dist / "ledger.md").read_text()
    assert led["groups"][0]["name"] in md and "linux-virt" in md
    # manifest.json links the SBOM and the ledger with their sha256; SHA256SUMS covers them
    manifest = load(dist / "manifest.json")
    for key, name in (("sbom", "sbom.cdx.json"), ("ledger", "ledger.json")):
        assert manifest[key]["file"] == name
        assert manifest[key]["sha256"] == hashlib.sha256((dist / name).read_bytes()).hexdigest()
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=dist, capture_output=True, text=True, check=False)
    assert check.returncode == 0 and "sbom.cdx.json: OK" in check.stdout and "ledger.svg: OK" in check.stdout


def test_the_ledger_picture_renders_with_the_top_names(e2e_built: Built) -> None:
    led = load(e2e_built.dist / "ledger.json")
    root = ET.parse(e2e_built.dist / "ledger.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    bars = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.get("height") == str(render.ROW - 4)]
    packages = [p for p in led["packages"] if p["compressed_bytes_estimate"] > 0][: render.CHART_BARS // 2]
    assert len(bars) == len(packages) + len(led["groups"][: render.CHART_BARS]) > 20
    for row in led["packages"][:3] + led["groups"][:3]:
        assert row["name"] in texts, row["name"]


def test_the_sbom_validates_and_lists_every_package_with_its_purl(e2e_built: Built) -> None:
    text = (e2e_built.dist / "sbom.cdx.json").read_text()
    _sbom.validate(text)
    doc = json.loads(text)
    comps = {c["name"]: c for c in doc["components"] if c["type"] == "library"}
    pkgs = read_installed(e2e_built.build / "image")
    # the glibc runtime of the fixture's glibc program (issue 22): Debian's libc6, with every file it put there
    libc6 = comps.pop("libc6")
    assert libc6["purl"] == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64", libc6
    files = {p["value"].split("  ")[1] for p in libc6["properties"] if p["name"].endswith(":file")}
    assert "/opt/netboot-glibc/lib/libresolv.so.2" in files and "/opt/netboot-glibc/lib/libc.so.6" in files
    assert set(comps) == {p.name for p in pkgs}
    for p in pkgs:
        assert comps[p.name]["purl"] == f"pkg:apk/alpine/{p.name}@{p.version}?arch={p.arch}&distro=alpine-3.23"
        assert comps[p.name]["licenses"], p.name


def test_budgets_one_byte_short_fail_naming_the_top_contributors(e2e_built: Built) -> None:
    led = load(e2e_built.dist / "ledger.json")
    figures = {
        "netboot_budget_image_bytes": led["download_bytes"],
        "netboot_budget_node_ram_bytes": led["node_ram"]["minimum_mib"] * 1024 * 1024,
        "netboot_budget_server_bytes": led["download_bytes"] * 2,  # live + 1 kept generation
    }
    before = {n: (e2e_built.dist / n).stat().st_mtime_ns for n in ("ledger.json", "ledger.md", "manifest.json")}
    res = e2e_built.run(tags="dist", extravars={k: v - 1 for k, v in figures.items()})
    assert res.rc != 0
    msg = " ".join(res.failure_messages())
    for budget, figure in figures.items():
        assert f"{budget} = {figure - 1} exceeded" in msg and f"is {figure} bytes" in msg, msg
    top = led["groups"][0]
    assert f"{top['name']} {top['compressed_bytes_estimate'] / 1e6:.2f} MB (" in msg, msg
    assert "Top contributors" in msg and "%)" in msg
    # exactly at the figure passes; the shipped inventory's budgets pass; nothing was rewritten
    shipped = yaml.safe_load((REPO / "inventory/group_vars/all/netboot.yml").read_text())
    budgets = {k: v for k, v in shipped.items() if k.startswith("netboot_budget_")}
    assert set(figures) <= set(budgets) and all(int(v) > 0 for v in budgets.values())
    for extravars in (figures, budgets):
        ok = e2e_built.run(tags="dist", extravars=extravars)
        assert ok.rc == 0, ok.stdout[-3000:]
        assert ok.changed() == 0, ok.stdout[-3000:]
    assert {n: (e2e_built.dist / n).stat().st_mtime_ns for n in before} == before


def test_offline_rebuild_same_sbom_then_an_added_package_shows_in_the_delta(e2e_built: Built) -> None:
    work = e2e_built.work
    second = {
        "netboot_build_dir": str(work / "build-2"),
        "netboot_dist_dir": str(work / "dist-2"),
        "alpine_lockfile": str(work / "alpine-lock-2.json"),
        "initramfs_progress_log": str(work / "build-2" / "initramfs.log"),
    }
    res = e2e_built.run(extravars={**second, "netboot_offline": True})
    assert res.rc == 0, res.stdout[-5000:]
    dist2 = work / "dist-2"
    assert (dist2 / "sbom.cdx.json").read_bytes() == (e2e_built.dist / "sbom.cdx.json").read_bytes()
    assert load(dist2 / "ledger.json")["delta"] == {"previous": None}
    res = e2e_built.run(extravars={**second, "alpine_packages": [*PACKAGES, ADDED]})
    assert res.rc == 0, res.stdout[-5000:]
    led = load(dist2 / "ledger.json")
    new = {r["name"]: r for r in led["delta"]["packages"]["new"]}
    assert ADDED in new and new[ADDED]["bytes"] > 0, led["delta"]
    assert led["delta"]["total_compressed_bytes"] > 0
    assert led["delta"]["previous"]["total_compressed_bytes"] == e2e_built.dist.joinpath("initramfs").stat().st_size
    assert f"packages new: {ADDED}" in (dist2 / "ledger.md").read_text()
    assert any(c["name"] == ADDED for c in load(dist2 / "sbom.cdx.json")["components"])
