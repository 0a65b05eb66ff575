"""``playbooks/build.yml`` end to end on the fixture mirror -> ``dist/``, then the very artefacts boot in qemu.

One build per session (tests/integration/conftest.py, about a minute cold); each test reads or boots its output.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _vm
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import sha256_file
from tests.fixtures.e2e import Built

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="building the rootfs needs root"),
]

ARTEFACTS = ["vmlinuz", "initramfs", "boot.ipxe", "manifest.json", "SHA256SUMS"]
CHECKS = ["cat /etc/hostname", "cat /etc/netboot/role", "grep ' / ' /proc/mounts", "cat /proc/cmdline"]


@pytest.fixture(scope="module")
def built(e2e_built: Built) -> Iterator[Built]:
    yield e2e_built  # the session's one build (tests/integration/conftest.py)


def test_dist_holds_every_artefact_with_checksums(built: Built) -> None:
    for name in ARTEFACTS:
        assert (built.dist / name).is_file(), name
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=built.dist, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    listed = {line.split()[-1] for line in (built.dist / "SHA256SUMS").read_text().splitlines()}
    assert {"vmlinuz", "initramfs", "boot.ipxe"} <= listed
    manifest = json.loads((built.dist / "manifest.json").read_text())
    text = json.dumps(manifest)
    assert sha256_file(built.dist / "initramfs") in text and sha256_file(built.dist / "vmlinuz") in text
    assert "busybox" in text and "linux-virt" in text
    # the kernel comes from the rootfs' /boot, byte for byte
    assert sha256_file(built.dist / "vmlinuz") == sha256_file(built.build / "rootfs/boot/vmlinuz-virt")
    # the rootfs stays as apk made it; pruning happened on the image copy
    assert len(list((built.build / "rootfs/lib/modules").rglob("*.ko*"))) > len(
        list((built.build / "image/lib/modules").rglob("*.ko*"))
    )


def test_rerun_changes_nothing_and_does_not_compress(built: Built) -> None:
    before = {n: (built.dist / n).stat().st_mtime_ns for n in ARTEFACTS}
    res = built.run()
    assert res.rc == 0, res.stdout
    assert res.changed() == 0, res.stdout
    assert {n: (built.dist / n).stat().st_mtime_ns for n in ARTEFACTS} == before
    init = res.task_results("Build the initramfs")
    assert init and init[0].get("compressed") is False


def test_initramfs_is_bit_identical_whatever_mtimes_umask_and_tz(built: Built, tmp_path: Path) -> None:
    """Issue 4, must show 1, on the image built by build.yml."""
    rng = random.Random(4)
    image = built.build / "image"
    for dirpath, dirnames, filenames in os.walk(image):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            t = rng.randrange(0, 2_000_000_000)
            os.utime(p, (t, t), follow_symlinks=False)
    old = os.umask(0o077)
    os.environ["TZ"] = "Pacific/Chatham"
    try:
        res = built.run(
            tags="initramfs",
            extravars={
                "netboot_artefact_dir": str(tmp_path / "dist2"),
                "initramfs_progress_log": str(tmp_path / "progress.log"),
            },
        )
    finally:
        os.umask(old)
        del os.environ["TZ"]
    assert res.rc == 0, res.stdout
    assert sha256_file(tmp_path / "dist2" / "initramfs") == sha256_file(built.dist / "initramfs")
    listing = subprocess.run(
        f"zstd -dc {tmp_path / 'dist2' / 'initramfs'} | cpio -t --quiet", shell=True, capture_output=True, text=True,
        check=True,
    ).stdout.split()
    assert listing[0] == "." and "init" in listing and "sbin/openrc" in listing


def checks(result: _vm.BootResult) -> dict[str, str]:
    return {str(c["command"]): str(c["output"]) for c in result.checks}


# The direct boot of the built vmlinuz + initramfs to OpenRC on a tmpfs root (issue 4, must show 2) is
# test_node_e2e.py::test_same_mac_without_netboot_args_names_itself_keeps_its_hostid, which boots the same dist/.
# The known node's netboot over HTTP through the built boot.ipxe (issue 5, must show 1 and 2) is
# test_node_e2e.py::test_known_node_runs_its_role: one boot of the same dist/ checks both issues.


def test_netboot_new_cattle_over_tftp(built: Built, tmp_path: Path) -> None:
    """Issue 5, must show 1 (TFTP) and 2 (unknown MAC): the ipxe role renders boot.ipxe for a TFTP server."""
    dist = tmp_path / "dist"
    dist.mkdir()
    for name in ("vmlinuz", "initramfs"):
        os.link(built.dist / name, dist / name)
    res = built.run(tags="ipxe", extravars={"netboot_artefact_dir": str(dist), "boot_server_url": "tftp://10.0.2.2"})
    assert res.rc == 0, res.stdout
    assert "tftp://10.0.2.2" in (dist / "boot.ipxe").read_text()
    result = _vm.boot_test(
        _vm.BootTest(kernel=dist / "vmlinuz", initrds=[dist / "initramfs"], mode="netboot", dist_dir=dist,
                     mac="52:54:00:aa:bb:77", memory="1G", checks=CHECKS, timeout=400)
    )
    assert result.ok, result.tail()
    out = checks(result)
    assert out["cat /etc/hostname"].strip() == "node-525400aabb77"
    assert out["cat /etc/netboot/role"].strip() == "worker"
    assert "tftp://10.0.2.2" in result.console
    print(f"netboot TFTP: qemu start -> marker {result.seconds_to_marker}s, kernel -> marker {result.kernel_to_marker}s")
