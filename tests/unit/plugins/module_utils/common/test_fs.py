"""_fs: hashing, atomic writes that never leave a half-written file, and paths that never leave their root."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _fs as fs
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import (
    ConfigError,
    NetbootError,
    PathEscapeError,
)


class Boom(Exception):
    pass


def test_sha256_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 3_000_000)
    assert fs.sha256_file(f) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    assert fs.sha256_file(tmp_path / "absent") is None


def test_atomic_write_skips_identical_bytes(tmp_path: Path) -> None:
    f = tmp_path / "d" / "x"
    assert fs.atomic_write_bytes(f, b"one") is True
    ino = f.stat().st_ino
    assert fs.atomic_write_bytes(f, b"one") is False and f.stat().st_ino == ino
    assert fs.atomic_write_bytes(f, b"two") is True and f.read_bytes() == b"two"
    assert oct(f.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in f.parent.iterdir()] == ["x"]  # no temp files left behind


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    f = tmp_path / "image"
    f.write_bytes(b"good")
    with pytest.raises(Boom), fs.atomic_output(f) as out:
        out.write(b"half")
        raise Boom
    assert f.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["image"]
    with pytest.raises(Boom), fs.atomic_path(f) as tmp:
        tmp.write_bytes(b"half")
        raise Boom
    assert f.read_bytes() == b"good" and [p.name for p in tmp_path.iterdir()] == ["image"]


def test_only_if_changed_keeps_an_identical_file(tmp_path: Path) -> None:
    f = tmp_path / "initramfs"
    f.write_bytes(b"same")
    os.utime(f, (1, 1))
    ino = f.stat().st_ino
    with fs.atomic_output(f, only_if_changed=True) as out:
        out.write(b"same")
    assert f.stat().st_ino == ino and f.stat().st_mtime == 1
    with fs.atomic_output(f, only_if_changed=True) as out:
        out.write(b"new")
    assert f.read_bytes() == b"new" and f.stat().st_ino != ino
    assert [p.name for p in tmp_path.iterdir()] == ["initramfs"]


def test_like_keeps_mode_and_times(tmp_path: Path) -> None:
    src = tmp_path / "mod.ko.zst"
    src.write_bytes(b"compressed")
    os.chmod(src, 0o600)
    os.utime(src, ns=(1_000_000_123, 2_000_000_456))
    dest = tmp_path / "mod.ko"
    with fs.atomic_path(dest, like=src.stat()) as tmp:
        tmp.write_bytes(b"module")  # e.g. a command writing its output there
    st = dest.stat()
    assert dest.read_bytes() == b"module" and oct(st.st_mode & 0o7777) == "0o600"
    assert st.st_mtime_ns == 2_000_000_456
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (src.stat().st_uid, src.stat().st_gid)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another owner needs root")
def test_like_keeps_setuid_of_a_file_owned_by_someone_else(tmp_path: Path) -> None:
    """A stripped setuid binary (busybox-suid's bbsuid) stays setuid: chown, which clears the bit, comes first."""
    src = tmp_path / "bbsuid"
    src.write_bytes(b"unstripped")
    os.chown(src, 65534, 65534)
    os.chmod(src, 0o4755)
    dest = tmp_path / "bbsuid.new"
    with fs.atomic_path(dest, like=src.stat()) as tmp:
        tmp.write_bytes(b"stripped")
    st = dest.stat()
    assert (st.st_uid, st.st_gid) == (65534, 65534) and oct(st.st_mode & 0o7777) == "0o4755"


def test_atomic_symlink_replaces_file_or_link(tmp_path: Path) -> None:
    dest = tmp_path / "fw.bin"
    dest.write_bytes(b"old")
    fs.atomic_symlink("real/fw.bin", dest)
    assert os.readlink(dest) == "real/fw.bin"
    fs.atomic_symlink("other.bin", dest)
    assert os.readlink(dest) == "other.bin"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw.bin"]


def test_inside_is_lexical_and_refuses_climbing_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("/etc", root / "etc")  # not looked at: inside() is lexical
    assert fs.inside(root, "lib/modules/x.ko") == root / "lib/modules/x.ko"
    assert fs.inside(root, "/etc/passwd") == root / "etc/passwd"
    assert fs.inside(root, "a/../b") == root / "b"
    assert fs.inside(root, ".") == root
    with pytest.raises(PathEscapeError, match=r"'\.\./root2/x' climbs above the root .*/root; give a path"):
        fs.inside(root, "../root2/x")
    with pytest.raises(PathEscapeError):
        fs.inside(root, "a/../../x")


def test_absolute_links_resolve_inside_the_root(rootfs: Path) -> None:
    assert fs.resolve_in_root(rootfs, "bin/sh") == rootfs / "usr/bin/busybox"
    assert fs.resolve_in_root(rootfs, "bin/sh", follow_last=False) == rootfs / "usr/bin/sh"
    assert fs.resolve_in_root(rootfs, "/etc/../etc/x") == rootfs / "etc/x"


def test_clamped_resolution_stays_in_the_root_like_a_chroot(rootfs: Path) -> None:
    links: list[str] = []
    assert fs.resolve_in_root(rootfs, "../../bin/sh", clamp=True, links=links) == rootfs / "usr/bin/busybox"
    assert links == ["bin", "usr/bin/sh"]


def test_escapes_and_loops_are_refused(rootfs: Path) -> None:
    with pytest.raises(PathEscapeError, match="climbs above the root"):
        fs.resolve_in_root(rootfs, "../outside")
    os.symlink("../../../../tmp", rootfs / "etc/evil")
    with pytest.raises(PathEscapeError):
        fs.resolve_in_root(rootfs, "etc/evil/x")
    os.symlink("loop", rootfs / "etc/loop")
    with pytest.raises(PathEscapeError, match="too many levels of symbolic links"):
        fs.resolve_in_root(rootfs, "etc/loop")


def test_swap_dir_puts_the_new_tree_in_one_rename_and_removes_the_old(tmp_path: Path) -> None:
    dest, new = tmp_path / "dist", tmp_path / "dist.new-1"
    new.mkdir()
    (new / "a").write_text("first")
    fs.swap_dir(new, dest)  # nothing there yet: a plain rename
    new.mkdir()
    (new / "b").write_text("second")
    fs.swap_dir(new, dest)
    assert [p.name for p in dest.iterdir()] == ["b"] and sorted(p.name for p in tmp_path.iterdir()) == ["dist"]


def test_replacing_dir_swaps_in_a_finished_tree_only(tmp_path: Path) -> None:
    dest = tmp_path / "build" / "image"
    with fs.replacing_dir(dest) as new:  # nothing there yet, not even the parent
        (new / "etc").mkdir(parents=True)
    with pytest.raises(Boom), fs.replacing_dir(dest) as new:
        new.mkdir()
        (new / "half").write_text("x")
        raise Boom
    assert [p.name for p in dest.iterdir()] == ["etc"]
    with fs.replacing_dir(dest) as new:
        (new / "usr").mkdir(parents=True)
    assert [p.name for p in dest.iterdir()] == ["usr"] and [p.name for p in dest.parent.iterdir()] == ["image"]


def test_the_strict_reader_names_the_file_and_the_fault(tmp_path: Path) -> None:
    rec = tmp_path / "rec.json"
    assert fs.load_json_object(rec, "the record", "rerun it") is None  # absent: nothing to read
    rec.write_text('{"a": 1}')
    assert fs.load_json_object(rec, "the record", "rerun it") == {"a": 1}
    for body, fault in (('{"a": ', "is not valid JSON"), ("[1, 2]", "is not a JSON object"),
                        ("\udcff", "is not valid JSON")):
        rec.write_bytes(body.encode("utf-8", "surrogateescape"))
        with pytest.raises(NetbootError, match=f"^the record {rec} {fault}.*; rerun it$"):
            fs.load_json_object(rec, "the record", "rerun it")
    with pytest.raises(ConfigError, match=f"^cannot read the record {tmp_path}: .*; rerun it$"):
        fs.load_json_object(tmp_path, "the record", "rerun it", error=ConfigError)  # a directory
    with pytest.raises(NetbootError, match=r"^the SBOM is not a JSON object$"):
        fs.strict_json_object("1", "the SBOM")
    assert fs.strict_json_object(b'{"b": [2]}', "x") == {"b": [2]}


def test_the_lenient_reader_returns_none_for_anything_but_an_object(tmp_path: Path) -> None:
    rec = tmp_path / "cache.json"
    assert fs.read_json_object(rec) is None
    assert fs.read_json_object(tmp_path) is None
    for body in (b'{"a": ', b"[1]", b"\xff{}", b""):
        rec.write_bytes(body)
        assert fs.read_json_object(rec) is None
    rec.write_bytes(b'{"a": 1}')
    assert fs.read_json_object(rec) == {"a": 1}
    assert fs.parse_json_object('{"a": 2}') == {"a": 2} and fs.parse_json_object("nope") is None
