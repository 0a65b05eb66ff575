"""apk argv building, output parsing and safe extraction (packages signed here with a test key). The real apk-tools
of the quicksand image is exercised in tests/integration/test_apk.py."""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apk import (
    ApkContext,
    parse_installing,
)
from tests.fixtures.apkrepo import SigningKey


def test_relative_paths_are_refused() -> None:
    # apk resolves a relative --keys-dir inside --root and then trusts nothing: never hand it one
    with pytest.raises(ConfigError, match="keys_dir"):
        ApkContext(Path("/r"), Path("keys"), Path("/repos"), "x86_64")


def test_argv_is_absolute_and_offline() -> None:
    ctx = ApkContext(Path("/r"), Path("/k"), Path("/repos"), "x86_64")
    argv = ctx.argv(["/apk.static"], "add", "busybox")
    assert argv[:9] == ["/apk.static", "--root", "/r", "--keys-dir", "/k", "--repositories-file", "/repos",
                        "--arch", "x86_64"]
    assert "--no-network" in argv and argv[-2:] == ["add", "busybox"]


def test_parse_installing_lines() -> None:
    out = "( 1/42) Installing musl (1.2.5-r23)\n(42/42) Installing dhcpcd-openrc (10.5.2-r1)\nOK: 63 MiB\n"
    assert parse_installing(out) == [("musl", "1.2.5-r23"), ("dhcpcd-openrc", "10.5.2-r1")]


# ------------------------------------------------------------------------------------------- apk.static bootstrap


def _evil_member(
    name: str, *, link: str | None = None, hard: str | None = None, data: bytes | None = None, kind: bytes = b"",
    mode: int = 0o644,
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
    elif hard is not None:
        info.type, info.linkname = tarfile.LNKTYPE, hard
    elif kind:
        info.type, info.mode, info.devmajor, info.devminor = kind, 0o666, 1, 3
    elif data is not None:
        info.size, info.mode = len(data), mode
    else:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, data


def _tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` (links not followed) -> what it is: a listing to compare before/after."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


def _signed(tmp_path: Path, name: str, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> tuple[Path, object, object]:
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apkformat import IndexEntry, Keyring
    from tests.fixtures.apkrepo import Package, build_package

    keys = tmp_path / "keys"
    if not keys.is_dir():
        keys.mkdir()
        key = SigningKey.create("extract-test")
        key.save(tmp_path / "private")
        (keys / key.name).write_bytes(key.public_pem())
    key = SigningKey.load(tmp_path / "private")
    pkg = Package(name=name, version="1.0-r0", entries=entries)
    built = build_package(pkg, key)
    path = tmp_path / "cache" / pkg.filename
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(built.apk)
    entry = IndexEntry(pkg.name, pkg.version, "x86_64", built.checksum, len(built.apk), 0, pkg.build_time)
    return path, entry, Keyring.for_arch("x86_64", [keys])


def _outside_canary(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "canary").write_text("canary\n")
    return outside


def _climb(tmp_path: Path, to: Path, depth: int = 0) -> str:
    """A relative link text from a member ``depth`` dirs deep in an unpack root under tmp_path up to ``to``."""
    return "../" * (depth + 1) + str(to.relative_to(tmp_path))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("absolute link", r"member 'usr/etc' is a symlink and: its target '/.*/outside' is absolute"),
        ("climbing link", r"member 'etc' would be written outside|member 'etc' is a symlink and: its target .* leaves"),
        ("link changed later", r"symlink x: its target 's/\.\./outside' leaves"),
        ("symlinked parent dir", r"member 'etc' is a symlink"),
        ("hardlink climbing", r"member 'passwd' is a hardlink to '\.\./.*' outside"),
        ("hardlink absolute", r"member 'passwd' is a hardlink to '/.*canary', which is not a file unpacked before"),
        ("character device", r"member 'dev/null' is a device node, fifo or other special file"),
        ("fifo", r"member 'run/fifo' is a device node, fifo or other special file"),
        ("dotdot file", r"member '\.\./escape' would be written outside"),
    ],
)
def test_extract_refuses_members_that_leave_dest(tmp_path: Path, case: str, message: str) -> None:
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import (
        PathEscapeError,
        UnpackError,
    )
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apk import extract_package

    outside = _outside_canary(tmp_path)
    m = _evil_member
    entries = {
        "absolute link": [m("usr"), m("usr/etc", link=str(outside)), m("usr/etc/canary", data=b"owned\n")],
        "climbing link": [m("etc", link=_climb(tmp_path, outside)), m("etc/canary", data=b"owned\n")],
        # x -> s/.. is inside while s is missing; s -> . later makes x the parent of dest
        "link changed later": [m("x", link="s/../outside"), m("s", link=".")],
        "symlinked parent dir": [m("etc", link="../outside"), m("etc/canary", data=b"owned\n")],
        "hardlink climbing": [m("passwd", hard=_climb(tmp_path, outside / "canary"))],
        "hardlink absolute": [m("passwd", hard=str(outside / "canary"))],
        "character device": [m("dev"), m("dev/null", kind=tarfile.CHRTYPE)],
        "fifo": [m("run"), m("run/fifo", kind=tarfile.FIFOTYPE)],
        "dotdot file": [m("../escape", data=b"owned\n")],
    }[case]
    path, entry, ring = _signed(tmp_path, "evil", entries)
    before = _tree(outside)
    dest = tmp_path / "dest"
    with pytest.raises((PathEscapeError, UnpackError), match=r"package evil-1\.0-r0\.apk: .*" + message):
        extract_package(path, ring, entry, dest)  # type: ignore[arg-type]
    assert _tree(outside) == before, "nothing outside the unpack root changed"
    assert not (tmp_path / "escape").exists()


def test_extract_keeps_inside_links_and_drops_setid_bits(tmp_path: Path) -> None:
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apk import extract_package

    m = _evil_member
    entries = [m("sbin"), m("sbin/tool", data=b"#!/bin/sh\n", mode=0o6755), m("bin", link="sbin"),
               m("sbin/tool2", hard="sbin/tool"), m("lib"), m("lib/up", link="../sbin/tool")]
    path, entry, ring = _signed(tmp_path, "good", entries)
    dest = tmp_path / "dest"
    extract_package(path, ring, entry, dest)  # type: ignore[arg-type]
    assert (dest / "bin/tool").read_bytes() == (dest / "lib/up").read_bytes() == b"#!/bin/sh\n"
    assert (dest / "sbin/tool2").stat().st_ino == (dest / "sbin/tool").stat().st_ino
    assert stat.S_IMODE((dest / "sbin/tool").stat().st_mode) == 0o755
