"""_deploy: the storage directory and the module result of a plan."""

from __future__ import annotations

from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploy import (
    plan_result,
    storage_dir,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploydist import read_dist
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deployplan import (
    Options,
    RouterFile,
    RouterState,
    make_plan,
)
from tests.fixtures.routeros.dist import make_dist

MB = 1_000_000


def state(files: list[tuple[str, int]] = ()) -> RouterState:
    rf = [RouterFile(f"*{i:X}", n, "directory" if s < 0 else "file", max(s, 0)) for i, (n, s) in enumerate(files, 1)]
    return RouterState("r1", "7.16 (stable)", "rb", 500 * MB, 512 << 20, tuple(rf), ())


def test_flash_disk_puts_the_directory_under_flash() -> None:
    plain = state([("netboot", -1)])
    assert storage_dir(plain, "netboot") == "netboot"
    flash = RouterState("r1", "7.16", "rb", 100 * MB, 128 << 20, (RouterFile("*1", "flash", "disk", 0),), ())
    assert storage_dir(flash, "netboot") == "flash/netboot"
    assert storage_dir(flash, "flash/boot") == "flash/boot"
    # a directory the user called flash on a router without a flash disk is just a directory
    assert storage_dir(state([("flash", -1)]), "netboot") == "netboot"


def test_the_result_of_a_fresh_deploy_plans_every_file(tmp_path: Path) -> None:
    d = read_dist(make_dist(tmp_path / "d", "tftp://r"), tmp_path / "s")
    st = state()
    res = plan_result(st, Options(), make_plan(st, Options(), d))
    assert res["generation"] == res["live"] == d.generation and res["live_before"] is None
    assert sorted(res["planned_uploads"]) == sorted(a.name for a in d.artefacts)
    assert res["changed"] and res["uploads"] == [] and res["bytes_sent"] == 0 and res["dhcp"] is None
