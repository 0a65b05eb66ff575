"""_deploydist: dist/ read against its SHA256SUMS, the generation script rewrite and the dispatcher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _ipxe
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploydist import (
    GENERATION_SCRIPT,
    DeployError,
    dispatch_macs,
    dispatch_path,
    dispatch_script,
    generation_id,
    generation_script,
    normal_mac,
    parse_sums,
    read_dist,
)
from tests.fixtures.routeros.dist import make_dist


def record(tmp_path: Path, urls: object, template: str) -> dict[str, Any]:
    """The boot record ipxe_script writes for ``urls`` and the template text ``template``."""
    (tmp_path / "t.j2").write_text(template)
    (tmp_path / "boot.ipxe.json").write_bytes(_ipxe.boot_record(_ipxe.ScriptSpec(urls), tmp_path / "t.j2"))
    return _ipxe.read_record(tmp_path / "boot.ipxe.json")


def test_generation_script_points_only_tftp_bases_into_the_generation(tmp_path: Path) -> None:
    loop = "#!ipxe\n{% for url in urls %}\nset base {{ base(url) }}\nkernel ${base}/vmlinuz\n{% endfor %}\n"
    out = generation_script(record(tmp_path, ["tftp://10.0.0.1/", "http://h:8080"], loop), "g-0123456789ab")
    # what the 'set base tftp://' rewrite of the built boot.ipxe gave
    assert out == ("#!ipxe\n# homelab.alpine_netboot generation g-0123456789ab: artefact URLs point into the "
                   "generation directory.\nset netboot_generation g-0123456789ab\nset base tftp://10.0.0.1/"
                   "g-0123456789ab\nkernel ${base}/vmlinuz\nset base http://h:8080\nkernel ${base}/vmlinuz\n")
    with pytest.raises(DeployError, match="boot_server_url: tftp://"):
        generation_script(record(tmp_path, "http://h", loop), "g-0123456789ab")
    with pytest.raises(DeployError, match=r"set base \{\{ base\(url\) \}\}"):  # a template ignoring base()
        generation_script(record(tmp_path, "tftp://h", "#!ipxe\nset base {{ urls[0] }}\n"), "g-0123456789ab")


def test_read_dist_checks_sums(tmp_path: Path) -> None:
    dist = make_dist(tmp_path / "d", "tftp://r")
    d = read_dist(dist, tmp_path / "s")
    assert d.generation.startswith("g-") and len(d.generation) == 14
    names = {a.name for a in d.artefacts}
    assert names == {"boot.ipxe", "boot.ipxe.json", "vmlinuz", "initramfs", "manifest.json", "SHA256SUMS",
                     GENERATION_SCRIPT}
    (dist / "vmlinuz").write_bytes(b"tampered")
    with pytest.raises(DeployError, match=r"vmlinuz does not match SHA256SUMS"):
        read_dist(dist, tmp_path / "s")


def test_sums_lines_name_files_in_dist_only() -> None:
    digest = "a" * 64
    assert parse_sums(f"{digest}  vmlinuz\n\n{digest} *initramfs\n", "S") == {"vmlinuz": digest, "initramfs": digest}
    with pytest.raises(DeployError, match="S line 1"):
        parse_sums(f"{digest}  sub/vmlinuz\n", "S")
    assert generation_id(b"x") == generation_id(b"x") != generation_id(b"y")


def test_snapshot_keeps_one_generation_and_the_script_points_into_it(tmp_path: Path) -> None:
    a = read_dist(make_dist(tmp_path / "a", "tftp://r"), tmp_path / "s")
    b = read_dist(make_dist(tmp_path / "b", "tftp://r", kernel_args="console=ttyS0 b=1"), tmp_path / "s")
    assert [p.name for p in (tmp_path / "s" / "dist-snapshot").iterdir()] == [b.generation]
    script = next(x for x in b.artefacts if x.name == GENERATION_SCRIPT).local.read_text()
    assert f"tftp://r/{b.generation}" in script and a.generation != b.generation


def test_dispatcher_macs_round_trip_and_its_path_names_its_content() -> None:
    assert normal_mac(" 52-54-00-AA-BB-01 ") == "52:54:00:aa:bb:01"
    with pytest.raises(ConfigError, match="not a MAC"):
        normal_mac("52:54:00")
    text = dispatch_script("g-000000000001", "g-000000000002", ["52:54:00:00:00:02", "52-54-00-00-00-01"])
    assert dispatch_macs(text) == ["52:54:00:00:00:01", "52:54:00:00:00:02"]
    path = dispatch_path("netboot", "g-000000000001", "g-000000000002", text)
    assert path.startswith("netboot/dispatch/g-000000000001.g-000000000002.") and path.endswith(".ipxe")
    assert path != dispatch_path("netboot", "g-000000000001", "g-000000000002", text + "\n")
