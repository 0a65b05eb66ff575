"""ipxe_script run as Ansible runs it (the module file with an args file): changed, idempotence, check, diff, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _ipxe
from tests.fixtures.module import run_module as _run_module


def run_module(tmp_path: Path, args: dict[str, object], check: bool = False) -> tuple[int, dict[str, object]]:
    return _run_module("ipxe_script", tmp_path, args, check=check, diff=True, timeout=60)


@pytest.fixture
def args(tmp_path: Path) -> dict[str, object]:
    return {
        "dest": str(tmp_path / "dist" / "boot.ipxe"),
        "boot_server_url": ["tftp://192.168.88.1", "http://192.168.88.10:8080"],
        "nodes": [{"name": "n100-01", "mac": "A8-B8-E0-00-00-01", "role": "storage"},
                  {"name": "n100-02", "mac": "a8b8.e000.0002", "hostname": "beta", "kernel_args": ["quiet"]}],
        "default_role": "worker",
    }


def test_changed_then_unchanged_check_and_diff(tmp_path: Path, args: dict[str, object]) -> None:
    dest = Path(str(args["dest"]))
    rc, res = run_module(tmp_path, args, check=True)
    assert rc == 0 and res["changed"] is True and not dest.exists()  # check mode writes nothing
    assert res["diff"]["before"] == "" and "goto mac_${netX/mac:hexraw}" in res["diff"]["after"]  # type: ignore[index]
    rc, res = run_module(tmp_path, args)
    assert rc == 0 and res["changed"] is True
    assert dest.read_text() == res["diff"]["after"]  # type: ignore[index]
    assert res["nodes"] == [
        {"name": "n100-01", "mac": "a8:b8:e0:00:00:01", "hostname": "n100-01", "role": "storage", "kernel_args": "",
         "initrd": ""},
        {"name": "n100-02", "mac": "a8:b8:e0:00:00:02", "hostname": "beta", "role": "worker",
         "kernel_args": "quiet", "initrd": ""},
    ]
    assert res["urls"] == ["tftp://192.168.88.1", "http://192.168.88.10:8080"]
    first = dest.stat().st_mtime_ns
    rc, res = run_module(tmp_path, args)
    assert rc == 0 and res["changed"] is False and dest.stat().st_mtime_ns == first
    rc, res = run_module(tmp_path, {**args, "retries": 5}, check=True)
    assert res["changed"] is True and "(attempt 5/5)" in res["diff"]["after"]  # type: ignore[index]
    assert "(attempt 5/5)" not in dest.read_text()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"nodes": [{"name": "n100-09", "mac": "a8:b8:e0:00:00"}]}, "host n100-09: malformed mac"),
        ({"nodes": [{"name": "a", "mac": "a8:b8:e0:00:00:01"}, {"name": "b", "mac": "A8B8E0000001"}]},
         "host b: mac a8:b8:e0:00:00:01 is already used by host a"),
        ({"nodes": [{"name": "a", "mac": "a8:b8:e0:00:00:01", "hostname": "x"},
                    {"name": "b", "mac": "a8:b8:e0:00:00:02", "hostname": "x"}]},
         "host b: hostname 'x' is already used by host a"),
        ({"boot_server_url": "ftp://192.168.88.1"}, "unsupported URL scheme in 'ftp://192.168.88.1'"),
    ],
)
def test_bad_input_fails_naming_the_culprit(tmp_path: Path, args: dict[str, object], change: dict[str, object],
                                            message: str) -> None:
    rc, res = run_module(tmp_path, {**args, **change})
    assert rc == 1 and res["failed"] is True
    assert message in str(res["msg"])
    assert not Path(str(args["dest"])).exists()


def test_failed_render_keeps_the_previous_script(tmp_path: Path, args: dict[str, object]) -> None:
    rc, _unused = run_module(tmp_path, args)
    before = Path(str(args["dest"])).read_text()
    bad = tmp_path / "bad.j2"
    bad.write_text("#!ipxe\n{{ undefined_thing }}\n")
    rc, res = run_module(tmp_path, {**args, "template": str(bad)})
    assert rc == 1 and "'undefined_thing' is undefined" in str(res["msg"])
    assert Path(str(args["dest"])).read_text() == before


def test_what_the_script_fetches_is_recorded_beside_it(tmp_path: Path, args: dict[str, object]) -> None:
    dest = Path(str(args["dest"]))
    rc, res = run_module(tmp_path, {**args, "microcode": "intel-ucode.img"})
    record = _ipxe.read_record(dest.parent / "boot.ipxe.json")
    assert rc == 0 and record["artefacts"] == res["artefacts"] and record["artefacts"]["intel-ucode.img"] == "microcode"
    assert _ipxe.render(record) == dest.read_text()  # the record renders the script again
    (dest.parent / "boot.ipxe.json").unlink()  # an older build's artefact dir: the record is written
    rc, res = run_module(tmp_path, {**args, "microcode": "intel-ucode.img"})
    assert rc == 0 and res["changed"] is True and (dest.parent / "boot.ipxe.json").is_file()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kernel_args": "console=ttyS0 && shell"}, "kernel arguments .* contain '&'"),
        ({"extra_kernel_args": "quiet ; reboot"}, "extra kernel args: kernel arguments .* contain ';'"),
        ({"nodes": [{"name": "evil\nshell", "mac": "a8:b8:e0:00:00:01"}]}, r"inventory host 'evil\\nshell'"),
        ({"nodes": [{"name": "evil\\", "mac": "a8:b8:e0:00:00:01"}]}, r"inventory host 'evil\\\\'"),
        ({"nodes": [{"name": "n1", "mac": "a8:b8:e0:00:00:01", "kernel_args": "a || shell"}]}, "host n1: kernel"),
    ],
)
def test_hostile_values_keep_the_published_script(
    tmp_path: Path, args: dict[str, object], change: dict[str, object], message: str
) -> None:
    """Issue 17: a refused value fails naming it, and dist/ keeps its boot.ipxe byte for byte."""
    import re

    rc, _res = run_module(tmp_path, args)
    assert rc == 0
    dist = Path(str(args["dest"])).parent
    before = {p.name: p.read_bytes() for p in dist.iterdir()}
    rc, res = run_module(tmp_path, {**args, **change})
    assert rc != 0 and re.search(message, str(res["msg"])), res["msg"]
    assert {p.name: p.read_bytes() for p in dist.iterdir()} == before


def test_digests_of_the_built_files_go_into_the_script_and_beside_it(tmp_path: Path, args: dict[str, object]) -> None:
    import hashlib

    art = tmp_path / "artefacts"
    (art / "nodes").mkdir(parents=True)
    image = tmp_path / "image"
    (image / "boot").mkdir(parents=True)
    (image / "boot" / "vmlinuz-virt").write_bytes(b"kernel bytes")
    (art / "initramfs").write_bytes(b"initramfs bytes")
    nodes = [{"name": "n100-01", "mac": "A8-B8-E0-00-00-01", "initrd": "nodes/a.img"}]
    full = {**args, "dest": str(art / "boot.ipxe"), "nodes": nodes, "artefact_dir": str(art), "rootfs": str(image)}
    # a file boot.ipxe fetches is not built yet: check mode warns, a real run fails naming it, nothing written
    rc, res = run_module(tmp_path, full, check=True)
    assert rc == 0 and "nodes/a.img (initrd of host n100-01) does not exist" in str(res["warnings"])
    rc, res = run_module(tmp_path, full)
    assert rc == 1 and "nodes/a.img (initrd of host n100-01) does not exist" in str(res["msg"])
    assert not (art / "boot.ipxe").exists()
    (art / "nodes" / "a.img").write_bytes(b"node initrd")
    rc, res = run_module(tmp_path, full)
    want = {"vmlinuz": hashlib.sha256(b"kernel bytes").hexdigest(),
            "initramfs": hashlib.sha256(b"initramfs bytes").hexdigest(),
            "nodes/a.img": hashlib.sha256(b"node initrd").hexdigest()}
    assert rc == 0 and res["digests"] == want, res
    text = (art / "boot.ipxe").read_text()
    assert f"set check_want {want['vmlinuz']}" in text and f"set check_want {want['initramfs']}" in text
    assert f"set node_initrd_sha256 {want['nodes/a.img']}" in text
    assert _ipxe.read_record(art / "boot.ipxe.json")["spec"]["digests"] == want
    rc, res = run_module(tmp_path, full)
    assert rc == 0 and res["changed"] is False
    # a new initramfs: a new digest
    (art / "initramfs").write_bytes(b"initramfs bytes 2")
    rc, res = run_module(tmp_path, full)
    assert rc == 0 and res["changed"] is True and hashlib.sha256(b"initramfs bytes 2").hexdigest() in (
        art / "boot.ipxe").read_text()
    # rendered without the files (no artefact_dir): no checks, and no digests in the record for dist to hold it to
    rc, res = run_module(tmp_path, {**args, "dest": str(art / "boot.ipxe")})
    assert rc == 0 and res["changed"] is True and "sha256sum" not in (art / "boot.ipxe").read_text()
    assert _ipxe.read_record(art / "boot.ipxe.json")["spec"]["digests"] is None
