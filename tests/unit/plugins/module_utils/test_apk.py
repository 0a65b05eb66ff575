"""apk argv building, output parsing and safe extraction (packages signed here with a test key). The real apk-tools
of the quicksand image is exercised in tests/integration/test_apk.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils._apk import (
    ApkContext,
    parse_installing,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import ConfigError
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


def test_extract_never_writes_through_a_symlink_out_of_dest(tmp_path: Path) -> None:
    import tarfile

    from ansible_collections.homelab.alpine_netboot.plugins.module_utils._apk import extract_package
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils._apkformat import IndexEntry, Keyring
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import PathEscapeError
    from tests.fixtures.apkrepo import Package, build_package

    outside = tmp_path / "outside"
    outside.mkdir()

    def member(name: str, *, link: str | None = None, data: bytes | None = None) -> tuple[tarfile.TarInfo, bytes | None]:
        info = tarfile.TarInfo(name)
        if link is not None:
            info.type, info.linkname = tarfile.SYMTYPE, link
        elif data is not None:
            info.size, info.mode = len(data), 0o644
        else:
            info.type, info.mode = tarfile.DIRTYPE, 0o755
        return info, data

    key = SigningKey.create("extract-test")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / key.name).write_bytes(key.public_pem())
    ring = Keyring.for_arch("x86_64", [tmp_path / "keys"])
    cases = {
        "absolute": [member("usr"), member("usr/etc", link="/etc"), member("usr/etc/passwd", data=b"x\n")],
        "climbing": [member("etc", link="../../" + "../" * len(tmp_path.parts) + str(outside).lstrip("/")),
                     member("etc/passwd", data=b"x\n")],
    }
    for case, entries in cases.items():
        pkg = Package(name=f"evil-{case}", version="1.0-r0", entries=entries)
        built = build_package(pkg, key)
        path = tmp_path / pkg.filename
        path.write_bytes(built.apk)
        entry = IndexEntry(pkg.name, pkg.version, "x86_64", built.checksum, len(built.apk), 0, pkg.build_time)
        dest = tmp_path / f"dest-{case}"
        if case == "absolute":  # an absolute link is the image's /etc: the file lands in dest/etc
            extract_package(path, ring, entry, dest)
            assert (dest / "etc/passwd").read_bytes() == b"x\n"
        else:
            with pytest.raises(PathEscapeError, match=r"package evil-climbing-1\.0-r0\.apk: member 'etc/passwd'"):
                extract_package(path, ring, entry, dest)
    assert list(outside.iterdir()) == []
