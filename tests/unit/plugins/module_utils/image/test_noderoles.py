"""_noderoles: node_roles validation, the role files the boot service reads, missing init scripts, hostid."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _noderoles

REPO = Path(__file__).resolve().parents[5]
BOOT_SCRIPT = REPO / "roles/node/files/netboot-node"


def test_roles_parse_and_round_trip_through_the_role_file() -> None:
    roles = _noderoles.parse_roles({
        "worker": {"services": ["cgroups", "nomad"], "modules": ["kvm-intel", "tun"]},
        "storage": {"services": ["zfs-import"], "zfs_pools": ["tank", "backup"], "nomad_server": True},
    })
    assert [r.name for r in roles] == ["storage", "worker"]
    worker = roles[1]
    assert worker.modules == ("kvm_intel", "tun")
    back = _noderoles.parse_role_file(_noderoles.role_file(worker))
    assert back == {"services": ["cgroups", "nomad"], "modules": ["kvm_intel", "tun"], "zfs_pools": [],
                    "nomad_server": ["no"]}
    assert _noderoles.parse_role_file(_noderoles.role_file(roles[0]))["zfs_pools"] == ["tank", "backup"]
    assert _noderoles.keep_modules(roles) == ["kvm_intel", "tun"]
    # what prune_kernel keeps and image_audit checks: the same names, normalised once
    assert _noderoles.role_modules({"worker": {"services": [], "modules": ["kvm-intel", "tun"]},
                                    "storage": {"services": []}}) == {"worker": ("kvm_intel", "tun"), "storage": ()}
    assert _noderoles.role_modules({}) == {}


@pytest.mark.parametrize(("raw", "words"), [
    ({"w": {"modules": ["tun"]}}, ["node_roles.w", "services"]),
    ({"w": {"services": ["a b"]}}, ["node_roles.w.services", "'a b'"]),
    ({"w": {"services": [], "zfs": ["x"]}}, ["node_roles.w", "unknown key", "zfs"]),
    ({"w": {"services": [], "nomad_server": "yes"}}, ["node_roles.w.nomad_server"]),
    ({"bad role": {"services": []}}, ["'bad role'"]),
    ({"w": {"services": "crond"}}, ["node_roles.w.services", "list"]),
])
def test_bad_roles_name_the_role_and_key(raw: dict[str, object], words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        _noderoles.parse_roles(raw)
    for w in words:
        assert w in str(err.value)


def test_missing_init_script_names_role_service_and_package(tmp_path: Path) -> None:
    (tmp_path / "etc/init.d").mkdir(parents=True)
    (tmp_path / "etc/init.d/crond").write_text("#!/sbin/openrc-run\n")
    db = tmp_path / "lib/apk/db"
    db.mkdir(parents=True)
    # an installed package that ships an init script under another runlevel's name
    db.joinpath("installed").write_text("P:busybox-openrc\nV:1\nF:etc/init.d\nR:crond\nR:ntpd\n\n")
    roles = _noderoles.parse_roles({"worker": {"services": ["crond", "sshd", "ntpd2"]},
                                    "db": {"services": ["frobd"]}})
    with pytest.raises(ConfigError) as err:
        _noderoles.check_services(tmp_path, roles)
    msg = str(err.value)
    assert "role worker: service sshd" in msg and "openssh-server-openrc" in msg
    assert "role db: service frobd" in msg and "frobd-openrc" in msg
    assert "crond" not in msg.replace("ntpd2", "")  # present: not reported
    _noderoles.check_services(tmp_path, _noderoles.parse_roles({"w": {"services": ["crond"]}}))


def test_hostid_is_stable_per_mac_and_differs_between_macs() -> None:
    a = _noderoles.hostid("52:54:00:AA:BB:01")
    assert a == _noderoles.hostid("52:54:00:aa:bb:01") and len(a) == 4
    assert a != _noderoles.hostid("52:54:00:aa:bb:02")


@pytest.mark.skipif(shutil.which("busybox") is None, reason="needs busybox (Debian busybox-static)")
@pytest.mark.parametrize("mac", ["52:54:00:aa:bb:01", "A8:B8:E0:00:00:01"])
def test_boot_service_computes_the_same_hostid_with_busybox(mac: str) -> None:
    out = subprocess.run(["busybox", "sh", "-c", f'. "{BOOT_SCRIPT}"; netboot_hostid "$1"', "sh", mac],
                         capture_output=True, check=True).stdout
    assert out == _noderoles.hostid(mac)


def test_cached_package_named_by_its_pkginfo(tmp_path: Path) -> None:
    import io
    import tarfile

    with tarfile.open(tmp_path / "nomad-openrc-1.0-r0.apk", "w:gz") as tf:
        for name, data in ((".PKGINFO", b"# generated\npkgname = nomad-openrc\npkgver = 1.0-r0\n"),
                           ("etc/init.d/nomad", b"#!/sbin/openrc-run\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    assert _noderoles.cached_providers(tmp_path, {"nomad", "zfs"}) == {"nomad": "nomad-openrc"}
    assert _noderoles.cached_providers(tmp_path, {"zfs"}) == {}
