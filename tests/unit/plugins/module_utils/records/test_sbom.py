"""The CycloneDX SBOM on a small real tree: two packages as apk records them (busybox and musl of Alpine 3.23, taken
from an installed system's ``lib/apk/db/installed`` without their file lists), a kernel module tree and one extra
binary. What a user reads in ``dist/sbom.cdx.json``: the components, their purls and hashes, a timestamp and serial
number that come from the content alone, and the refusals that name what is wrong."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import (
    ConfigError,
    NetbootError,
    PathEscapeError,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._rootfs_spec import ROOTFS_MANIFEST
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records import _sbom

BUSYBOX = """C:Q18TR4AbuWsapA0X+CI3w/T/AqRyU=
P:busybox
V:1.37.0-r30
A:x86_64
S:504726
I:813480
T:Size optimized toolbox of many common UNIX utilities
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>
t:1765894768
c:1e823a60eb85606954b3a5af5f8e5bbd1ea680cf
D:so:libc.musl-x86_64.so.1
p:cmd:busybox=1.37.0-r30
r:busybox-initscripts
"""
MUSL = """C:Q1G2xQQm08BlbpxaVnpaWWAcf0MHo=
P:musl
V:1.2.5-r23
A:x86_64
S:414071
I:666216
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1775835052
c:8aef0c37b0ad23dc4137f0e4755b97a59dc698b8
p:so:libc.musl-x86_64.so.1=1
"""
KVER = "6.18.56-0-virt"
MODULES = ["drivers/net/virtio_net.ko.gz", "drivers/net/ethernet/intel/e1000/e1000.ko.gz", "fs/ext4/ext4.ko.gz"]
TOOL = b"#!/bin/sh\necho tool\n"
P = _sbom.PROP


def make_tree(root: Path, *entries: str, release: str | None = "3.23.0") -> Path:
    db = root / "lib/apk/db/installed"
    db.parent.mkdir(parents=True)
    db.write_text("\n".join(entries) + "\n", encoding="utf-8")
    if release is not None:
        (root / "etc").mkdir()
        (root / "etc/alpine-release").write_text(release + "\n")
    for rel in MODULES:
        ko = root / "lib/modules" / KVER / "kernel" / rel
        ko.parent.mkdir(parents=True, exist_ok=True)
        ko.write_bytes(b"\x1f\x8b")
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/tool").write_bytes(TOOL)
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "root", BUSYBOX, MUSL)


def tool(**kw: Any) -> _sbom.ExtraBinary:
    return _sbom.ExtraBinary(**{"name": "tool", "path": "/usr/sbin/tool", "url": "https://example.org/tool",
                                "version": "1.0", **kw})


def by_ref(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["bom-ref"]: c for c in doc["components"]}


def props(component: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component.get("properties", [])}


def test_one_component_per_package_extra_binary_and_kernel(tree: Path) -> None:
    doc = json.loads(_sbom.build_document(tree, extras=[tool()]))
    assert (doc["bomFormat"], doc["specVersion"], doc["version"]) == ("CycloneDX", "1.6", 1)
    comps = by_ref(doc)
    busybox_ref = "pkg:apk/alpine/busybox@1.37.0-r30?arch=x86_64&distro=alpine-3.23"
    musl_ref = "pkg:apk/alpine/musl@1.2.5-r23?arch=x86_64&distro=alpine-3.23"
    assert set(comps) == {busybox_ref, musl_ref, "extra:tool", "kernel:linux"}
    busybox = comps[busybox_ref]
    assert (busybox["type"], busybox["name"], busybox["version"], busybox["purl"]) == (
        "library", "busybox", "1.37.0-r30", busybox_ref)
    # apk's C: is "Q1" + base64(sha1): the SBOM carries it as the hex SHA-1 and verbatim
    assert busybox["hashes"] == [{"alg": "SHA-1", "content": "f1347801bb96b1aa40d17f82237c3f4ff02a4725"}]
    assert busybox["licenses"] == [{"license": {"id": "GPL-2.0-only"}}]
    assert busybox["externalReferences"] == [{"type": "website", "url": "https://busybox.net/"}]
    assert props(busybox) == {f"{P}:apk:checksum": "Q18TR4AbuWsapA0X+CI3w/T/AqRyU=", f"{P}:apk:origin": "busybox",
                              f"{P}:apk:commit": "1e823a60eb85606954b3a5af5f8e5bbd1ea680cf",
                              f"{P}:apk:build_time": "1765894768"}
    assert comps[musl_ref]["licenses"] == [{"license": {"id": "MIT"}}]
    extra = comps["extra:tool"]
    assert (extra["type"], extra["version"]) == ("application", "1.0")
    assert extra["hashes"] == [{"alg": "SHA-256", "content": hashlib.sha256(TOOL).hexdigest()}]
    assert extra["externalReferences"] == [{"type": "distribution", "url": "https://example.org/tool"}]
    assert props(extra) == {f"{P}:path": "/usr/sbin/tool"}
    kernel = comps["kernel:linux"]
    assert (kernel["type"], kernel["name"], kernel["version"]) == ("operating-system", "linux", KVER)
    # modules counted per kernel/<top>/<sub> directory, the e1000 driver under drivers/net
    assert props(kernel) == {f"{P}:kept_modules": "3", f"{P}:module_dirs": "kernel/drivers/net (2), kernel/fs/ext4 (1)"}
    image = doc["metadata"]["component"]
    assert (image["bom-ref"], image["version"]) == ("image", "alpine-3.23")
    deps = {d["ref"]: d.get("dependsOn", []) for d in doc["dependencies"]}
    assert sorted(deps["image"]) == sorted(comps)


def test_timestamp_is_the_newest_package_build_time_or_the_given_epoch(tree: Path) -> None:
    doc = json.loads(_sbom.build_document(tree))
    assert doc["metadata"]["timestamp"] == "2026-04-10T15:30:52+00:00"  # musl's t:1775835052, the newest
    assert datetime.datetime.fromisoformat(doc["metadata"]["timestamp"]).timestamp() == 1775835052
    pinned = json.loads(_sbom.build_document(tree, source_date_epoch_value=0))
    assert pinned["metadata"]["timestamp"] == "1970-01-01T00:00:00+00:00"
    with pytest.raises(ConfigError, match="negative"):
        _sbom.build_document(tree, source_date_epoch_value=-1)


def test_same_content_same_bytes_whatever_the_database_order(tmp_path: Path) -> None:
    a = _sbom.build_document(make_tree(tmp_path / "a", BUSYBOX, MUSL), extras=[tool()])
    b = _sbom.build_document(make_tree(tmp_path / "b", MUSL, BUSYBOX), extras=[tool()])
    assert a == b == _sbom.build_document(tmp_path / "a", extras=[tool()])
    doc = json.loads(a)
    assert a == json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"  # sorted keys, final newline
    assert "Sören" not in a and "ö" not in a  # the maintainer (m:) is not recorded
    names = [c["name"] for c in doc["components"]]
    assert names == ["tool", "busybox", "musl", "linux"]  # by type (application, library, OS), then name
    assert doc["serialNumber"].startswith("urn:uuid:") and doc["serialNumber"][len("urn:uuid:") + 14] == "5"


def test_the_serial_number_follows_the_content(tmp_path: Path) -> None:
    base = json.loads(_sbom.build_document(make_tree(tmp_path / "a", BUSYBOX, MUSL)))["serialNumber"]
    bumped = json.loads(_sbom.build_document(make_tree(tmp_path / "b", BUSYBOX.replace("r30", "r31"), MUSL)))
    assert bumped["serialNumber"] != base
    assert json.loads(_sbom.build_document(tmp_path / "a"))["serialNumber"] == base
    assert json.loads(_sbom.build_document(tmp_path / "a", release="3.22"))["serialNumber"] != base


@pytest.mark.parametrize(("release", "distro"), [("3.22", "alpine-3.22"), ("v3.21.4", "alpine-3.21"),
                                                 ("edge", "alpine-edge"), ("3.24_alpha20260101", "alpine-3.24")])
def test_the_release_option_names_the_distro_in_every_purl(tree: Path, release: str, distro: str) -> None:
    doc = json.loads(_sbom.build_document(tree, release=release))
    purls = [c["purl"] for c in doc["components"] if c["type"] == "library"]
    assert purls and all(p.endswith(f"&distro={distro}") for p in purls)
    assert doc["metadata"]["component"]["version"] == distro


def test_the_rootfs_manifest_release_wins_over_etc_alpine_release(tree: Path) -> None:
    (tree / ROOTFS_MANIFEST).parent.mkdir(parents=True, exist_ok=True)
    (tree / ROOTFS_MANIFEST).write_text(json.dumps({"release": "v3.22"}))
    assert _sbom.distro(tree) == "alpine-3.22"
    assert _sbom.distro(tree, "edge") == "alpine-edge"


def test_a_tree_without_a_release_or_packages_is_refused_by_name(tmp_path: Path) -> None:
    bare = make_tree(tmp_path / "bare", BUSYBOX, release=None)
    with pytest.raises(ConfigError, match=r"cannot tell the Alpine release of .*/bare .*; set release"):
        _sbom.build_document(bare)
    empty = make_tree(tmp_path / "empty", "")
    with pytest.raises(NetbootError, match=r"/empty/lib/apk/db/installed lists no package; rebuild the rootfs stage"):
        _sbom.build_document(empty)


def test_an_extra_binary_must_be_in_the_image_and_match_its_sha256(tree: Path) -> None:
    good = hashlib.sha256(TOOL).hexdigest()
    assert good in _sbom.build_document(tree, extras=[tool(sha256=good.upper())])
    with pytest.raises(NetbootError, match=f"extra binary tool: /usr/sbin/tool has sha256 {good}, expected 00+$"):
        _sbom.build_document(tree, extras=[tool(sha256="00" * 32)])
    with pytest.raises(NetbootError, match=r"extra binary tool: /usr/sbin/gone is not in the image .*/root$"):
        _sbom.build_document(tree, extras=[tool(path="/usr/sbin/gone")])
    with pytest.raises(PathEscapeError, match="climbs above the root"):
        _sbom.build_document(tree, extras=[tool(path="../../etc/passwd")])


def test_the_prune_report_summarises_the_kernel(tree: Path, tmp_path: Path) -> None:
    report = {"modules": {"after": {"count": 3, "bytes": 4096}, "removed": {"count": 5000}},
              "firmware": {"after": {"count": 0, "bytes": 0}, "removed": {"count": 12}},
              "profiles": ["/x/kernel_prune/original.yml"], "hardware_profiles": ["/x/hw/n100.yml"]}
    kernel = by_ref(json.loads(_sbom.build_document(tree, report=report, kernel="vmlinuz")))["kernel:linux"]
    assert props(kernel) == {
        f"{P}:kept_modules": "3", f"{P}:kept_modules_bytes": "4096", f"{P}:removed_modules": "5000",
        f"{P}:kept_firmware": "0", f"{P}:kept_firmware_bytes": "0", f"{P}:removed_firmware": "12",
        f"{P}:prune_profiles": "original.yml", f"{P}:hardware_profiles": "n100.yml",
        f"{P}:module_dirs": "kernel/drivers/net (2), kernel/fs/ext4 (1)", f"{P}:kernel_file": "vmlinuz",
    }


def test_write_sbom_writes_once_and_reports_what_it_wrote(tree: Path, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    dry = _sbom.write_sbom(tree, dist, check_mode=True)
    assert dry["changed"] and not (dist / "sbom.cdx.json").exists()
    first = _sbom.write_sbom(tree, dist)
    blob = (dist / "sbom.cdx.json").read_bytes()
    assert first == {"changed": True, "dest": str(dist / "sbom.cdx.json"), "sha256": hashlib.sha256(blob).hexdigest(),
                     "serial_number": json.loads(blob)["serialNumber"], "components": 3}
    assert blob.decode() == _sbom.build_document(tree)
    again = _sbom.write_sbom(tree, dist)
    assert not again["changed"] and again["sha256"] == first["sha256"] == dry["sha256"]


def test_a_document_the_schema_rejects_is_refused() -> None:
    with pytest.raises(NetbootError, match=r"does not validate against CycloneDX 1\.6"):
        _sbom.validate('{"bomFormat": "CycloneDX", "specVersion": "1.6", "version": "one"}')
