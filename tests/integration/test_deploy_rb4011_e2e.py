"""Issue 9, must show 1 and 2: build.yml's image deployed to the RouterOS peer, then netbooted from it over TFTP.

The image is the session's e2e build (tests/integration/conftest.py). boot.ipxe is rendered for the peer's TFTP port
(``tftp://10.0.2.2:PORT``: qemu's user network forwards 10.0.2.2 to the host's 127.0.0.1) by the ipxe and dist roles
on a copy of dist/, as a user would rebuild with ``boot_server_url: tftp://<router>``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _qemu, _testhook, _vm
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import sha256_file
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploydist import parse_sums
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records._manifest import sha256sums_text
from tests.fixtures.e2e import Built
from tests.fixtures.routeros.deploy import HOST, deploy, result
from tests.fixtures.routeros.peer import Peer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="building the rootfs needs root"),
]
CHECKS = ["cat /etc/hostname", "grep ' / ' /proc/mounts"]


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    with Peer(tmp_path_factory.mktemp("peer")) as p:
        yield p


def render(built: Built, peer: Peer, dist: Path) -> Path:
    """dist/ for the peer: the ipxe and dist roles with boot_server_url tftp://10.0.2.2:PORT, rendered into a copy
    of build/artefacts so the shared build keeps its own boot.ipxe (test_dist_publish reruns it: changed=0)."""
    artefacts = dist.parent / "artefacts"
    shutil.copytree(built.build / "artefacts", artefacts)
    res = built.run(tags="ipxe,dist", extravars={"netboot_dist_dir": str(dist), "netboot_artefact_dir": str(artefacts),
                                                 "boot_server_url": f"tftp://10.0.2.2:{peer.tftp_port}"})
    assert res.rc == 0, res.stdout[-4000:]
    return dist


@pytest.fixture(scope="module")
def tftp_dist(e2e_built: Built, peer: Peer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("tftp") / "dist"
    shutil.copytree(e2e_built.dist, dist)
    return render(e2e_built, peer, dist)


def sums(dist: Path) -> dict[str, str]:
    return parse_sums((dist / "SHA256SUMS").read_text(), str(dist / "SHA256SUMS"))


def test_built_image_deployed_verified_idempotent_and_check_mode_clean(peer: Peer, tftp_dist: Path,
                                                                       tmp_path: Path) -> None:
    before = peer.snapshot()
    planned = deploy(tmp_path, peer, tftp_dist, check=True)
    assert planned.rc == 0 and peer.snapshot() == before, planned.stdout
    assert {"vmlinuz", "initramfs", "boot.ipxe"} <= set(result(planned)["planned_uploads"])
    t0 = time.monotonic()
    res = deploy(tmp_path, peer, tftp_dist)
    first = time.monotonic() - t0
    assert res.rc == 0, res.stdout
    out = result(res)
    gen = out["generation"]
    listed = sums(tftp_dist)
    assert {"vmlinuz", "initramfs", "boot.ipxe", "manifest.json"} <= set(listed)
    for name, digest in listed.items():
        assert peer.store.sha256(f"netboot/{gen}/{name}") == digest, name
    rules = {r["req-filename"]: r for r in peer.rows("/ip/tftp")}
    assert rules[r"^boot\.ipxe$"]["real-filename"] == f"netboot/{gen}/generation.ipxe"
    for name in ("vmlinuz", "initramfs"):
        rule = rules[f"^{gen}/{name}$"]
        assert rule["read-only"] == "true" and rule["real-filename"] == f"netboot/{gen}/{name}"
        size = (tftp_dist / name).stat().st_size
        assert rule["allow-rollover"] == ("true" if size // 512 + 1 > 65535 else "false"), (name, size)
    t0 = time.monotonic()
    again = deploy(tmp_path, peer, tftp_dist)
    noop = time.monotonic() - t0
    assert again.rc == 0 and again.changed(HOST) == 0 and result(again)["bytes_sent"] == 0, again.stdout
    print(f"deploy e2e: {out['generation_bytes']} bytes in {first:.1f}s (playbook), no-op rerun {noop:.1f}s")


def test_netboot_from_the_deployed_router(peer: Peer, tftp_dist: Path, tmp_path: Path) -> None:
    """PXE ROM -> iPXE -> boot.ipxe -> kernel + initramfs, all over TFTP from the peer's rules -> the marker.

    The boot-test hook must be inside the initramfs the router serves, so a second generation is deployed whose
    initramfs is the built one with the hook appended (a switch on real artefacts)."""
    hooked = tmp_path / "dist"
    shutil.copytree(tftp_dist, hooked)
    _qemu.concat_initrds([tftp_dist / "initramfs", _testhook.hook_cpio(CHECKS)], hooked / "initramfs")
    # the test-only initramfs replaces the built one in SHA256SUMS (the deploy checks dist/ against it)
    (hooked / "SHA256SUMS").write_text(sha256sums_text({**sums(hooked), "initramfs": str(sha256_file(hooked / "initramfs"))}))
    res = deploy(tmp_path / "w", peer, hooked)
    assert res.rc == 0, res.stdout
    gen = result(res)["generation"]
    peer.transfers.clear()
    (tmp_path / "empty").mkdir()
    boot = _vm.boot_test(_vm.BootTest(
        kernel=hooked / "vmlinuz", initrds=[hooked / "initramfs"], mode="netboot", dist_dir=tmp_path / "empty",
        boot_ipxe=hooked / "boot.ipxe", bootfile=f"tftp://10.0.2.2:{peer.tftp_port}/boot.ipxe", hook=False,
        checks=CHECKS, memory="1G", timeout=600,
    ))
    assert boot.ok, boot.tail()
    served = {(t.request, t.file, t.error) for t in peer.transfers}
    for name in ("vmlinuz", "initramfs"):
        assert (f"{gen}/{name}", f"netboot/{gen}/{name}", None) in served, served
    assert ("boot.ipxe", f"netboot/{gen}/generation.ipxe", None) in served, served
    whole = {t.request: t.bytes for t in peer.transfers if t.error is None}
    assert whole[f"{gen}/initramfs"] == (hooked / "initramfs").stat().st_size
    assert sha256_file(hooked / "initramfs") == peer.store.sha256(
        f"netboot/{gen}/initramfs")
    print(f"netboot from the peer: qemu start -> marker {boot.seconds_to_marker}s")
