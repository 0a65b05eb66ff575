"""The newc writer: format read back by GNU cpio, order, inodes, owners, mtimes, hardlinks, devices, streaming."""

from __future__ import annotations

import io
import os
import stat
import subprocess
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _cpio as cpio
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _cpioread as cpioread
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError

SDE = 1_700_000_000


def make_tree(root: Path, order: list[str] | None = None) -> Path:
    """A small tree with files, a symlink, a hardlink pair, an empty dir and a non-UTF-8 name."""
    files = {
        "etc/hostname": b"node\n",
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n",
        "bin/busybox": b"\x7fELF" + bytes(range(256)) * 40,
        "usr/lib/a-b": b"dash sorts before slash\n",
        "usr/lib/a/x": b"child\n",
    }
    names = order or sorted(files)
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(files[name])
    (root / "bin/sh").symlink_to("busybox")
    os.link(root / "bin/busybox", root / "bin/busybox-hl")
    (root / "var/empty").mkdir(parents=True)
    (root / "var/empty").chmod(0o555)
    (root / "etc/passwd").chmod(0o600)
    (root / os.fsdecode(b"etc/caf\xe9")).write_bytes(b"latin-1 name\n")
    return root


def members(data: bytes) -> list[cpioread.Member]:
    return list(cpioread.read_newc(io.BytesIO(data)))


def build(root: Path | None, **kw: object) -> bytes:
    plan = cpio.plan_tree(root, source_date_epoch=SDE, **kw)  # type: ignore[arg-type]
    return cpio.archive_bytes(plan)


def test_gnu_cpio_reads_back_the_tree(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    data = build(root, extras=cpio.DEFAULT_DEVICES)
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True, check=True).stdout
    names = listing.split(b"\n")[:-1]
    assert names[0] == b"."
    assert names == sorted(names, key=lambda n: (n != b".", n))
    assert b"bin/sh" in names and b"dev/console" in names and b"etc/caf\xe9" in names
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["cpio", "-i", "-d", "-m", "--quiet", "--no-absolute-filenames"], input=data, cwd=out,
                   check=True, capture_output=True)
    for rel in ("etc/hostname", "bin/busybox", "usr/lib/a-b", "usr/lib/a/x", "bin/busybox-hl"):
        assert (out / rel).read_bytes() == (root / rel).read_bytes()
    assert os.readlink(out / "bin/sh") == "busybox"
    assert (out / "bin/busybox").stat().st_ino == (out / "bin/busybox-hl").stat().st_ino
    assert stat.S_IMODE((out / "etc/passwd").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "var/empty").stat().st_mode) == 0o555
    assert int((out / "etc/hostname").stat().st_mtime) == SDE  # the tree is newer than SDE: clamped


def test_order_inodes_and_no_host_device_numbers(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    ms = members(build(root))
    names = [os.fsencode(m.name) for m in ms]
    assert names[1:] == sorted(names[1:])
    seen: set[str] = set()
    for m in ms[1:]:  # parents first
        parent = os.path.dirname(m.name)
        assert parent == "" or parent in seen, m.name
        seen.add(m.name)
    inos = [m.ino for m in ms]
    assert inos[0] == 1
    distinct = sorted(set(inos))
    assert distinct == list(range(1, len(distinct) + 1))
    assert all(m.devmajor == 0 and m.devminor == 0 for m in ms)
    assert all(m.mtime <= SDE for m in ms)


def test_hardlinks_share_inode_and_store_data_once(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    by_name = {m.name: m for m in members(build(root))}
    a, b = by_name["bin/busybox"], by_name["bin/busybox-hl"]
    assert a.ino == b.ino and a.nlink == b.nlink == 2
    assert a.data == b"" and b.data == (root / "bin/busybox").read_bytes()  # data on the last name only


def test_same_bytes_whatever_mtimes_creation_order_and_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        a = make_tree(tmp_path / "a")
        os.umask(0o077)
        b = make_tree(tmp_path / "b", order=["usr/lib/a/x", "usr/lib/a-b", "etc/passwd", "etc/hostname", "bin/busybox"])
    finally:
        os.umask(old)
    # modes were set explicitly for the files that matter; make b's umask-dependent modes equal to a's
    for pa in a.rglob("*"):
        pb = b / pa.relative_to(a)
        if not pa.is_symlink():
            os.chmod(pb, stat.S_IMODE(pa.stat().st_mode))
    for i, p in enumerate(sorted(b.rglob("*"))):
        os.utime(p, (SDE + 1000 + i, SDE + 5000 + i), follow_symlinks=False)
    assert build(a) == build(b)


def test_owner_policies(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown test files")
    root = make_tree(tmp_path / "root")
    for p in [root, *root.rglob("*")]:
        os.lchown(p, 1234, 1234)
    os.chown(root / "etc/passwd", 0, 42)
    os.chown(root / "etc/hostname", 100, 101)
    auto = {m.name: (m.uid, m.gid) for m in members(build(root))}
    assert auto["bin/busybox"] == (0, 0) and auto["etc/passwd"] == (0, 42) and auto["etc/hostname"] == (100, 101)
    keep = {m.name: (m.uid, m.gid) for m in members(build(root, owner="keep"))}
    assert keep["bin/busybox"] == (1234, 1234)
    squash = {m.name: (m.uid, m.gid) for m in members(build(root, owner="root"))}
    assert set(squash.values()) == {(0, 0)}


def test_spec_entries_devices_and_implicit_parents() -> None:
    extras = [
        *cpio.DEFAULT_DEVICES,
        {"path": "/init", "content": "#!/bin/sh\n", "mode": "0755"},
        {"path": "etc/netboot/initramfs.conf", "content": "tmpfs_size=50%\n"},
        {"path": "bin/sh", "type": "symlink", "target": "busybox"},
    ]
    ms = {m.name: m for m in members(build(None, extras=extras))}
    console, null = ms["dev/console"], ms["dev/null"]
    assert stat.S_ISCHR(console.mode) and (console.rdevmajor, console.rdevminor) == (5, 1)
    assert stat.S_ISCHR(null.mode) and (null.rdevmajor, null.rdevminor) == (1, 3)
    assert stat.S_IMODE(null.mode) == 0o666
    assert ms["init"].data == b"#!/bin/sh\n" and stat.S_IMODE(ms["init"].mode) == 0o755
    assert stat.S_ISDIR(ms["etc/netboot"].mode) and stat.S_ISDIR(ms["etc"].mode) and stat.S_ISDIR(ms["dev"].mode)
    assert all(m.mtime == SDE for m in ms.values())


def test_extra_entry_replaces_tree_file(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    ms = {m.name: m for m in members(build(root, extras=[{"path": "etc/hostname", "content": "other\n"}]))}
    assert ms["etc/hostname"].data == b"other\n"
    assert (root / "etc/hostname").read_bytes() == b"node\n"  # the tree is not touched


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"path": "../etc/x", "content": "x"}, "'..'"),
        ({"path": "dev/x", "type": "char"}, "major"),
        ({"path": "x", "type": "socket"}, "not one of"),
        ({"path": "x"}, "exactly one of"),
        ({"path": "x", "content": "a", "mode": "0999"}, "octal"),
        ({"path": "l", "type": "symlink"}, "target"),
    ],
)
def test_bad_specs_are_refused(spec: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build(None, extras=[spec])


def test_replacing_a_populated_directory_is_refused(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    with pytest.raises(ConfigError, match="non-empty directory"):
        build(root, extras=[{"path": "etc", "content": "x"}])


def test_exclude_leaves_out_subtrees(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    names = {m.name for m in members(build(root, exclude=["usr/lib/a", "etc/pass*"]))}
    assert "usr/lib/a" not in names and "usr/lib/a/x" not in names and "etc/passwd" not in names
    assert "usr/lib/a-b" in names


def test_archive_size_is_exact_and_writing_streams(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    big = root / "big.bin"
    with open(big, "wb") as fh:
        fh.write(os.urandom(1 << 20) * 5)
    plan = cpio.plan_tree(root, source_date_epoch=SDE)

    class Sink:
        def __init__(self) -> None:
            self.total = 0
            self.largest = 0

        def write(self, b: bytes) -> int:
            self.total += len(b)
            self.largest = max(self.largest, len(b))
            return len(b)

    sink = Sink()
    written = cpio.write_newc(plan, sink)  # type: ignore[arg-type]
    assert written == sink.total == plan.archive_size()
    assert sink.largest <= 2 * cpio.CHUNK  # never the whole 5 MiB file in one buffer


def test_file_changing_size_during_write_is_an_error(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    plan = cpio.plan_tree(root, source_date_epoch=SDE)
    (root / "etc/hostname").write_bytes(b"a much longer hostname than before\n")
    with pytest.raises(NetbootError, match="changed size"):
        cpio.archive_bytes(plan)


def test_digest_follows_content_identity_and_options(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    d1 = cpio.plan_tree(root, source_date_epoch=SDE).digest({"level": 19})
    assert cpio.plan_tree(root, source_date_epoch=SDE).digest({"level": 19}) == d1
    assert cpio.plan_tree(root, source_date_epoch=SDE).digest({"level": 3}) != d1
    (root / "etc/hostname").write_bytes(b"edon\n")  # same size, new mtime/ctime
    assert cpio.plan_tree(root, source_date_epoch=SDE).digest({"level": 19}) != d1


def test_huge_fields_are_refused() -> None:
    entry = cpio.Entry(path=b"x", mode=0o100644, mtime=1 << 33)
    with pytest.raises(NetbootError, match="32-bit"):
        cpio.header(entry)


def test_mtime_policies(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    os.utime(root / "etc/hostname", (SDE - 500, SDE - 500))
    os.utime(root / "etc/passwd", (SDE + 500, SDE + 500))
    epoch = {m.name: m.mtime for m in members(build(root))}
    assert set(epoch.values()) == {SDE}
    clamp = {m.name: m.mtime for m in members(build(root, mtime="clamp"))}
    assert clamp["etc/hostname"] == SDE - 500 and clamp["etc/passwd"] == SDE
    with pytest.raises(ConfigError, match="mtime"):
        build(root, mtime="now")
