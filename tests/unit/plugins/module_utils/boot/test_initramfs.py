"""_initramfs on small trees: the build / record / no-op decision, check mode, the kernel-config check messages, exclude
globs, and the early microcode cpio (read back by GNU cpio). Real compressors and cpio, no downloaded material."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _cpio as cpio
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _cpioread as cpioread
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _initramfs
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._compress import make_spec
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._initramfs import (
    MICROCODE_PATH,
    InitramfsRequest,
    build_initramfs,
    microcode_archive,
    microcode_blob,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError

SDE = 1_700_000_000
GZIP = make_spec("gzip", 1)
CONFIG = "CONFIG_BLK_DEV_INITRD=y\nCONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\nCONFIG_RD_XZ=y\n"
INIT = {"path": "init", "content": "#!/bin/sh\nexec /sbin/init\n", "mode": "0755"}


def ucode(revision: int, size: int = 2048) -> bytes:
    """Bytes laid out as an Intel microcode update: header version 1, a revision, loader revision 1."""
    head = (1).to_bytes(4, "little") + revision.to_bytes(4, "little") + bytes(12) + (1).to_bytes(4, "little")
    return head + bytes(range(256)) * ((size - len(head)) // 256) + bytes((size - len(head)) % 256)


def members(data: bytes) -> list[cpioread.Member]:
    return list(cpioread.read_newc(io.BytesIO(data)))


def gnu_cpio_list(data: bytes) -> list[str]:
    out = subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True, check=True).stdout
    return out.decode().splitlines()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    files = {
        "bin/busybox": b"\x7fELF" + bytes(range(256)) * 16,
        "etc/hostname": b"node\n",
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n",
        "var/cache/apk/APKINDEX.abc.tar.gz": b"cached index\n",
        "usr/lib/python3/x/mod.pyc": b"bytecode",
        "usr/lib/python3/x/mod.py": b"source\n",
        "boot/config-6.18.0-virt": CONFIG.encode(),
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "bin/sh").symlink_to("busybox")
    return root


def request(tree: Path, tmp_path: Path, **kw: object) -> InitramfsRequest:
    args: dict[str, object] = {
        "src": str(tree), "dest": str(tmp_path / "dist" / "initramfs"), "compression": GZIP,
        "source_date_epoch": SDE, "extras": [INIT],
    }
    args.update(kw)
    return InitramfsRequest(**args)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- build and no-op


def test_first_build_writes_the_image_and_a_record_beside_it(tree: Path, tmp_path: Path) -> None:
    req = request(tree, tmp_path)
    res = build_initramfs(req)
    dest = Path(req.dest)
    assert res["changed"] is True and res["compressed"] is True
    assert res["diff"]["before"] == "(absent)\n" and f"sha256: {res['sha256']}\n" in res["diff"]["after"]
    data = dest.read_bytes()
    assert res["size"] == len(data) and res["sha256"] == hashlib.sha256(data).hexdigest()
    names = gnu_cpio_list(gzip.decompress(data))
    assert names[0] == "."
    assert {"init", "bin/sh", "bin/busybox", "etc/passwd", "boot/config-6.18.0-virt"} <= set(names)
    assert all(m.mtime == SDE for m in members(gzip.decompress(data)))
    rec = _initramfs.read_record(dest)
    assert rec == json.loads((dest.parent / ".initramfs.json").read_text())
    assert rec["format"] == "homelab.alpine_netboot/initramfs/1" and rec["plan"] == res["plan_digest"]
    assert (rec["sha256"], rec["size"], rec["microcode_sha256"]) == (res["sha256"], len(data), None)
    assert rec["compression"] == {"method": "gzip", "level": 1, "window_log": None, "threads": 0}
    [part] = rec["parts"]
    assert (part["offset"], part["size"], part["sha256"]) == (0, len(data), res["sha256"])
    assert part["unpacked_size"] == len(gzip.decompress(data)) == res["uncompressed_size"]
    assert (rec["entries"], rec["files"]) == (res["entries"], res["files"])
    assert res["source_date_epoch"] == SDE and res["source_date_epoch_source"] == "option"
    assert res["compression"] == "gzip -1" and res["warnings"] == []


def test_unchanged_input_is_a_no_op_without_compressing(tree: Path, tmp_path: Path) -> None:
    req = request(tree, tmp_path, progress_log=str(tmp_path / "progress.log"))
    first = build_initramfs(req)
    log = (tmp_path / "progress.log").read_text()
    mtime = os.stat(req.dest).st_mtime_ns
    again = build_initramfs(req)
    assert (again["changed"], again["compressed"], again["sha256"]) == (False, False, first["sha256"])
    assert again["diff"]["before"] == again["diff"]["after"]
    assert (tmp_path / "progress.log").read_text() == log  # nothing was streamed
    assert os.stat(req.dest).st_mtime_ns == mtime
    assert build_initramfs(req, check_mode=True)["changed"] is False


def test_a_changed_file_rebuilds(tree: Path, tmp_path: Path) -> None:
    req = request(tree, tmp_path)
    first = build_initramfs(req)
    (tree / "etc/hostname").write_bytes(b"other\n")
    second = build_initramfs(req)
    assert second["changed"] is True and second["sha256"] != first["sha256"]
    assert second["plan_digest"] != first["plan_digest"]
    body = {m.name: m.data for m in members(gzip.decompress(Path(req.dest).read_bytes()))}
    assert body["etc/hostname"] == b"other\n"


def test_compression_settings_are_part_of_the_plan(tree: Path, tmp_path: Path) -> None:
    first = build_initramfs(request(tree, tmp_path))
    second = build_initramfs(request(tree, tmp_path, compression=make_spec("gzip", 9)))
    assert second["plan_digest"] != first["plan_digest"] and second["compressed"] is True


def test_a_hand_edited_output_is_rebuilt(tree: Path, tmp_path: Path) -> None:
    req = request(tree, tmp_path)
    first = build_initramfs(req)
    Path(req.dest).write_bytes(b"not what we built")
    again = build_initramfs(req)
    assert again["changed"] is True and again["compressed"] is True and again["sha256"] == first["sha256"]
    assert again["diff"]["before"] == f"sha256: {hashlib.sha256(b'not what we built').hexdigest()}\nsize: 17\n"


def test_a_lost_record_recompresses_but_reports_no_change(tree: Path, tmp_path: Path) -> None:
    req = request(tree, tmp_path)
    first = build_initramfs(req)
    _initramfs.record_path(req.dest).write_text("{ damaged")
    again = build_initramfs(req)
    assert (again["changed"], again["compressed"], again["sha256"]) == (False, True, first["sha256"])
    assert _initramfs.read_record(req.dest)["plan"] == first["plan_digest"]


def test_the_record_of_another_version_or_another_image_is_refused(tree: Path, tmp_path: Path) -> None:
    req = request(tree, tmp_path)
    build_initramfs(req)
    path = _initramfs.record_path(req.dest)
    path.write_text(json.dumps({**json.loads(path.read_text()), "format": "homelab.alpine_netboot/initramfs/0"}))
    with pytest.raises(ConfigError, match=rf"{path} has format .*initramfs/0.* --tags initramfs"):
        _initramfs.read_record(req.dest)
    build_initramfs(req)
    Path(req.dest).write_bytes(b"other")
    with pytest.raises(ConfigError, match=r"does not describe .* --tags initramfs"):
        _initramfs.read_record(req.dest)
    path.unlink()
    with pytest.raises(ConfigError, match=r"no initramfs record at .* --tags initramfs"):
        _initramfs.read_record(req.dest)


def test_check_mode_reports_a_build_and_writes_nothing(tree: Path, tmp_path: Path) -> None:
    req = request(tree, tmp_path, microcode=[str(tmp_path / "ucode")])
    (tmp_path / "ucode").mkdir()
    (tmp_path / "ucode" / "06-be-00").write_bytes(ucode(0x10))
    res = build_initramfs(req, check_mode=True)
    assert res["changed"] is True and res["compressed"] is False and res["sha256"] is None
    assert res["diff"]["after"] == "(rebuilt: inputs differ from the last build)\n"
    assert not (tmp_path / "dist").exists()


def test_src_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(NetbootError, match=r"src .*/missing is not a directory; build the rootfs stage first"):
        build_initramfs(request(tmp_path / "missing", tmp_path))


# ------------------------------------------------------------------------------------------ exclude globs


def test_exclude_globs_drop_paths_and_whole_subtrees(tree: Path, tmp_path: Path) -> None:
    req = request(tree, tmp_path, exclude=["var/cache/*", "*.pyc", "/boot/"])
    res = build_initramfs(req)
    names = set(gnu_cpio_list(gzip.decompress(Path(req.dest).read_bytes())))
    assert "var/cache" in names and "var/cache/apk" not in names  # the directory stays, its contents go
    assert "usr/lib/python3/x/mod.py" in names and "usr/lib/python3/x/mod.pyc" not in names  # '*' spans '/'
    assert not {n for n in names if n == "boot" or n.startswith("boot/")}  # leading/trailing '/' ignored
    full = build_initramfs(request(tree, tmp_path / "all"))
    assert res["files"] == full["files"] - 3
    assert res["plan_digest"] != full["plan_digest"]


# ------------------------------------------------------------------------------------------ kernel config


def test_a_kernel_without_the_decompressor_is_refused_with_what_would_work(tree: Path, tmp_path: Path) -> None:
    req = request(tree, tmp_path, compression=make_spec("zstd", 3))
    with pytest.raises(ConfigError) as err:
        build_initramfs(req)
    msg = str(err.value)
    assert f"the kernel cannot unpack a zstd initramfs: CONFIG_RD_ZSTD is not set in {tree}/boot/config-6.18.0-virt" in msg
    assert "use compression: gzip or xz or a kernel built with CONFIG_RD_ZSTD=y" in msg
    assert not Path(req.dest).exists()


def test_a_refused_rebuild_keeps_the_previous_image(tree: Path, tmp_path: Path) -> None:
    req = request(tree, tmp_path)
    first = build_initramfs(req)
    before = Path(req.dest).read_bytes()
    (tree / "etc/hostname").write_bytes(b"changed\n")
    with pytest.raises(ConfigError, match="CONFIG_RD_ZSTD"):
        build_initramfs(request(tree, tmp_path, compression=make_spec("zstd", 3)))
    assert Path(req.dest).read_bytes() == before
    assert _initramfs.read_record(req.dest)["sha256"] == first["sha256"]


def test_no_decompressor_at_all_suggests_none(tree: Path, tmp_path: Path) -> None:
    (tree / "boot/config-6.18.0-virt").write_text("CONFIG_BLK_DEV_INITRD=y\n")
    with pytest.raises(ConfigError, match=r"CONFIG_RD_GZIP is not set .* use compression: none or a kernel built"):
        build_initramfs(request(tree, tmp_path))
    assert build_initramfs(request(tree, tmp_path, compression=make_spec("none")))["compression"] == "none"


def test_no_kernel_config_is_a_warning_naming_the_option(tree: Path, tmp_path: Path) -> None:
    shutil.rmtree(tree / "boot")
    res = build_initramfs(request(tree, tmp_path))
    assert res["kernel_config"] is None
    assert res["warnings"] == [
        f"no boot/config-* in {tree}: cannot check that the kernel unpacks gzip; set kernel_config"
    ]


def test_kernel_config_option_overrides_and_must_exist(tree: Path, tmp_path: Path) -> None:
    other = tmp_path / "config-with-zstd"
    other.write_text("CONFIG_RD_ZSTD=y\n")
    res = build_initramfs(request(tree, tmp_path, compression=make_spec("zstd", 3), kernel_config=str(other)))
    assert res["kernel_config"] == str(other) and res["changed"] is True
    with pytest.raises(NetbootError, match=f"kernel_config {tmp_path}/nope does not exist"):
        build_initramfs(request(tree, tmp_path, kernel_config=str(tmp_path / "nope")))


def test_several_kernel_configs_are_ambiguous(tree: Path, tmp_path: Path) -> None:
    (tree / "boot/config-6.19.0-virt").write_text(CONFIG)
    with pytest.raises(ConfigError, match=r"several kernel configs \(config-6.18.0-virt, config-6.19.0-virt\); set "
                                          r"kernel_config"):
        build_initramfs(request(tree, tmp_path))


# ---------------------------------------------------------------------------------------------- microcode


def test_microcode_archive_is_an_early_cpio_gnu_cpio_reads(tmp_path: Path) -> None:
    blob = ucode(0x2C) + ucode(0x2D)
    archive = microcode_archive(blob, SDE)
    assert archive[:6] == b"070701"
    assert gnu_cpio_list(archive) == [MICROCODE_PATH]  # first (and only) entry, no directories
    subprocess.run(["cpio", "-id", "--quiet"], input=archive, cwd=tmp_path, check=True)
    assert (tmp_path / MICROCODE_PATH).read_bytes() == blob
    (m,) = members(archive)
    assert (m.mode, m.mtime) == (0o100644, SDE)


def test_microcode_off() -> None:
    assert microcode_blob("/nonexistent", False) is None
    assert microcode_blob("/nonexistent", []) is None


def test_microcode_true_reads_the_image_firmware_in_name_order(tree: Path) -> None:
    fw = tree / "lib/firmware/intel-ucode"
    fw.mkdir(parents=True)
    (fw / "06-be-00").write_bytes(ucode(2))
    (fw / "06-97-02").write_bytes(ucode(1))
    blob, used = microcode_blob(str(tree), True) or (b"", [])
    assert blob == ucode(1) + ucode(2)
    assert used == [str(fw / "06-97-02"), str(fw / "06-be-00")]


def test_microcode_true_prefers_the_images_intel_ucode_img(tree: Path) -> None:
    (tree / "lib/firmware/intel-ucode").mkdir(parents=True)
    (tree / "lib/firmware/intel-ucode/06-be-00").write_bytes(ucode(1))
    (tree / "boot/intel-ucode.img").write_bytes(microcode_archive(ucode(7), 0))
    blob, used = microcode_blob(str(tree), True) or (b"", [])
    assert blob == ucode(7) and used == [str(tree / "boot/intel-ucode.img")]


def test_microcode_true_without_any_says_what_to_install(tree: Path) -> None:
    with pytest.raises(ConfigError) as err:
        microcode_blob(str(tree), True)
    assert str(err.value) == (
        f"microcode is enabled but the image {tree} has neither boot/intel-ucode.img nor lib/firmware/intel-ucode/: "
        "add the intel-ucode package to the image or list microcode files"
    )


def test_microcode_list_refuses_files_that_are_not_microcode(tmp_path: Path) -> None:
    bogus = tmp_path / "GenuineIntel.txt"
    bogus.write_text("not microcode at all, but long enough to have a header " * 4)
    with pytest.raises(ConfigError, match=f"{bogus} is not an Intel microcode file .*intel-ucode / intel-microcode"):
        microcode_blob("/", [str(bogus)])
    empty_cpio = tmp_path / "other.img"
    empty_cpio.write_bytes(cpio.archive_bytes([cpio.Entry(path=b"etc/x", mode=0o100644, mtime=0, size=1, data=b"x",
                                                          ino=1)]))
    with pytest.raises(ConfigError, match=f"microcode archive {empty_cpio} has no {MICROCODE_PATH}"):
        microcode_blob("/", [str(empty_cpio)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=f"{tmp_path}/empty holds no microcode files"):
        microcode_blob("/", [str(tmp_path / "empty")])
    with pytest.raises(NetbootError, match=f"cannot read microcode file {tmp_path}/gone: No such file"):
        microcode_blob("/", [str(tmp_path / "gone")])


def test_microcode_build_writes_intel_ucode_img_and_tracks_it(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "ucode").mkdir()
    (tmp_path / "ucode" / "06-be-00").write_bytes(ucode(0x10))
    req = request(tree, tmp_path, microcode=[str(tmp_path / "ucode")])
    res = build_initramfs(req)
    img = tmp_path / "dist" / "intel-ucode.img"
    assert res["microcode"]["path"] == str(img) and img.read_bytes() == microcode_archive(ucode(0x10), SDE)
    assert "microcode sha256: " in res["diff"]["after"]
    assert build_initramfs(req)["changed"] is False
    img.unlink()  # the image is there, its microcode is not: rebuild
    again = build_initramfs(req)
    assert again["compressed"] is True and again["changed"] is True and img.is_file()
    (tmp_path / "ucode" / "06-be-00").write_bytes(ucode(0x11))  # a microcode update changes the plan
    assert build_initramfs(req)["plan_digest"] != res["plan_digest"]


def test_microcode_concat_prefixes_the_image(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "ucode").mkdir()
    (tmp_path / "ucode" / "06-be-00").write_bytes(ucode(0x10))
    req = request(tree, tmp_path, microcode=[str(tmp_path / "ucode")], microcode_concat=True,
                  microcode_dest=str(tmp_path / "elsewhere" / "ucode.cpio"))
    build_initramfs(req)
    early = microcode_archive(ucode(0x10), SDE)
    data = Path(req.dest).read_bytes()
    assert data.startswith(early) and (tmp_path / "elsewhere" / "ucode.cpio").read_bytes() == early
    assert "init" in gnu_cpio_list(gzip.decompress(data[len(early):]))
    parts = _initramfs.read_record(req.dest)["parts"]
    expect = [("microcode", 0, len(early)), ("image", len(early), len(data) - len(early))]
    assert [(p["part"], p["offset"], p["size"]) for p in parts] == expect
    assert [p["sha256"] for p in parts] == [hashlib.sha256(b).hexdigest() for b in (early, data[len(early):])]


@pytest.mark.parametrize(("value", "expect"), [
    (None, False), (False, False), ("", False), ("none", False), ("None", False), ("off", False), ("0", False), (0, False),
    ([], []), (True, True), ("yes", True), (1, True), ("ucode.bin", ["ucode.bin"]), (["a", "b"], ["a", "b"]),
])
def test_one_microcode_switch(value: object, expect: object) -> None:
    assert _initramfs.microcode_switch(value) == expect
    assert _initramfs.microcode_initrd(value, "intel-ucode.img") == ("intel-ucode.img" if expect else "")
    assert _initramfs.microcode_initrd(value, "intel-ucode.img", concat=True) == ""
