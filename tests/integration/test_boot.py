"""Boot tests under qemu (TCG here): direct, PXE -> iPXE -> boot.ipxe over HTTP and TFTP, retries, fast failures.

The image is ``tests/fixtures/bootimage.py`` (the real Alpine linux-virt kernel + a tiny busybox initramfs whose
/init honours netboot.hostname= / netboot.role= like the product's). The boot API takes (kernel, initrds) paths,
so the same tests run against the real ``dist/`` once build.yml produces it: set ``NETBOOT_BOOT_TEST_DIST`` to a
directory holding ``vmlinuz`` and ``initramfs`` (the panic test keeps its own broken image).
Each test is one qemu boot (~3 s direct, ~10 s netboot under TCG).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _ipxe, _minram, _vm
from tests.fixtures.bootimage import BootImage, boot_image
from tests.fixtures.bootserver import boot_test_refusing

REPO = Path(__file__).resolve().parents[2]
KNOWN_MAC = "52-54-00-AA-BB-01"  # notation differs from what qemu reports on purpose
CATTLE_MAC = "52:54:00:aa:bb:02"
CHECKS = ["cat /etc/hostname", "hostname", "cat /etc/netboot/role", "cat /proc/mounts"]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def image() -> BootImage:
    return boot_image()


@pytest.fixture
def dist(tmp_path: Path, image: BootImage) -> Path:
    """A dist/ directory: the real dist when NETBOOT_BOOT_TEST_DIST is set, else the fixture image."""
    real = os.environ.get("NETBOOT_BOOT_TEST_DIST")
    d = tmp_path / "dist"
    d.mkdir()
    if real:
        for name in ("vmlinuz", "initramfs"):
            (d / name).symlink_to(Path(real).resolve() / name)
    else:
        shutil.copyfile(image.kernel, d / "vmlinuz")
        shutil.copyfile(image.initramfs, d / "initramfs")
    return d


def render(dist: Path, urls: object, node_initrd: str = "", **kw: object) -> None:
    spec = _ipxe.ScriptSpec(
        boot_server_url=urls,
        nodes=[{"name": "n100-01", "mac": KNOWN_MAC, "hostname": "alpha", "role": "storage", "initrd": node_initrd}],
        retry_delay=1,
        **kw,  # type: ignore[arg-type]
    )
    (dist / "boot.ipxe").write_text(_ipxe.render(spec))


def netboot(dist: Path, mac: str, checks: list[str] | None = None, refuse: dict[str, int] | None = None,
            **kw: object) -> _vm.BootResult:
    test = _vm.BootTest(kernel=dist / "vmlinuz", initrds=[dist / "initramfs"], mode="netboot", mac=mac,
                        memory="1G", checks=CHECKS if checks is None else checks, timeout=300, **kw)  # type: ignore[arg-type]
    return boot_test_refusing(test, refuse) if refuse else _vm.boot_test(test)


def checks(result: _vm.BootResult) -> dict[str, object]:
    return {str(c["command"]): c["output"] for c in result.checks}


def test_netboot_tftp_unknown_mac_boots_as_cattle(dist: Path) -> None:
    """Must show 1 (TFTP) + 2 (unknown MAC -> derived cattle hostname, default role)."""
    render(dist, "tftp://10.0.2.2", default_role="worker")
    r = netboot(dist, CATTLE_MAC)
    assert r.ok, f"{r.reason}\n{r.tail()}"
    # iPXE's progress output varies (percentages, 80-column wraps): check the fetches and that none failed
    assert "tftp://10.0.2.2/vmlinuz..." in r.console and "tftp://10.0.2.2/initramfs..." in r.console
    assert "failed (attempt" not in r.console and "netboot: starting the kernel" in r.console
    out = checks(r)
    assert out["cat /etc/hostname"] == "node-525400aabb02"
    assert out["cat /etc/netboot/role"] == "worker"
    print(f"netboot TFTP ({r.accel}): qemu start -> marker {r.seconds_to_marker} s, kernel -> marker "
          f"{r.kernel_to_marker} s")


def test_flaky_http_server_and_dead_fallback_still_boot(dist: Path) -> None:
    """Must show 3: a dead first server, then an HTTP server refusing the first two kernel requests (503)."""
    port, dead = free_port(), free_port()
    # the node also gets its own initrd (files added after the image's)
    tree = dist.parent / "node-tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "alpha-node").write_text("per-node initrd of alpha\n")
    cpio = subprocess.run(["cpio", "-o", "-H", "newc", "-R", "+0:+0", "--quiet"], cwd=tree, input=b"etc\netc/alpha-node\n",
                          capture_output=True, check=True).stdout
    (dist / "alpha.cpio").write_bytes(cpio)
    render(dist, [f"http://10.0.2.2:{dead}", f"http://10.0.2.2:{port}"], node_initrd="alpha.cpio", retries=3)
    r = netboot(dist, KNOWN_MAC, checks=[*CHECKS, "cat /etc/alpha-node"], http_port=port,
                refuse={"vmlinuz": 2})
    assert r.ok, f"{r.reason}\n{r.tail()}"
    assert r.http_requests[:3] == ["GET /vmlinuz 503", "GET /vmlinuz 503", "GET /vmlinuz 200"], r.http_requests
    assert f"netboot: vmlinuz from http://10.0.2.2:{dead} failed (attempt 3/3)" in r.console
    assert f"netboot: vmlinuz from http://10.0.2.2:{port} failed (attempt 2/3)" in r.console
    assert checks(r)["cat /etc/hostname"] == "alpha"
    assert checks(r)["cat /etc/alpha-node"] == "per-node initrd of alpha"
    assert "GET /alpha.cpio 200" in r.http_requests


def test_missing_initramfs_fails_fast_with_the_cause(dist: Path) -> None:
    """Must show 4a: the initramfs URL 404s -> retries, then BOOT FAILED well before the timeout."""
    port = free_port()
    render(dist, f"http://10.0.2.2:{port}", initramfs="initramfs-missing", retries=2)
    start = time.monotonic()
    r = netboot(dist, KNOWN_MAC, http_port=port)
    took = time.monotonic() - start
    assert not r.ok
    assert r.reason.startswith("iPXE: boot.ipxe gave up: netboot: BOOT FAILED: could not download initramfs-missing")
    assert "/initramfs-missing..." in r.tail() and "No such file or directory" in r.tail()
    assert took < 60, took  # timeout is 300 s
    assert r.http_requests.count("GET /initramfs-missing 404") == 2


def test_panicking_kernel_fails_fast_with_the_panic(image: BootImage) -> None:
    """Must show 4b: init exits -> kernel panic, detected at once (no waiting for the timeout)."""
    test = _vm.BootTest(kernel=image.kernel, initrds=[image.panic_initramfs], append="console=ttyS0,115200",
                        memory="256M", timeout=300, hook=False)
    start = time.monotonic()
    r = _vm.boot_test(test)
    assert not r.ok
    assert r.reason.startswith("kernel panic: Kernel panic - not syncing: Attempted to kill init")
    assert "this init exits on purpose" in r.tail()  # the cause (before the long call trace) is in the tail
    assert r.tail().rstrip().endswith("]---")
    assert time.monotonic() - start < 120  # well before the 300 s timeout, with room for a slow TCG host


def test_direct_boot_at_the_computed_minimum_ram(dist: Path) -> None:
    """Direct mode, booted with exactly the RAM minimum_ram() computes for the image (rounded up to 8 MiB)."""
    need = _minram.minimum_ram(dist / "vmlinuz", [dist / "initramfs"])
    mib = -(-int(str(need["minimum_mib"])) // 8) * 8
    test = _vm.BootTest(kernel=dist / "vmlinuz", initrds=[dist / "initramfs"], memory=mib, timeout=300,
                        checks=CHECKS, append="console=ttyS0,115200 netboot.hostname=direct-node netboot.role=edge")
    r = _vm.boot_test(test)
    assert r.ok, f"{r.reason}\n{r.tail()}"
    assert checks(r)["cat /etc/hostname"] == "direct-node"
    assert checks(r)["cat /etc/netboot/role"] == "edge"
    print(f"direct ({r.accel}) at {mib} MiB: qemu start -> marker {r.seconds_to_marker} s, kernel -> marker "
          f"{r.kernel_to_marker} s; minimum_ram {json.dumps(need)}")


def test_playbook_netboots_known_node_over_http(dist: Path, tmp_path: Path) -> None:
    """Must show 1 (HTTP, via playbooks/boot_test.yml and the ipxe role) + 2 (known MAC -> its hostname)."""
    inv = tmp_path / "hosts.yml"
    inv.write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        "      ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
        "  children:\n    nodes:\n      hosts:\n"
        f"        n100-01: {{mac: '{KNOWN_MAC.lower().replace('-', '')}', role: storage, hostname: alpha}}\n"
        "        n100-02: {mac: 'aa:bb:cc:00:00:02'}\n"
    )
    extra = {
        "netboot_dist_dir": str(dist), "boot_test_mode": "netboot", "boot_test_mac": KNOWN_MAC,
        "boot_test_http_port": free_port(), "boot_test_checks": CHECKS, "node_min_ram": "1G",
        "boot_test_timeout": 300, "ipxe_retry_delay": 1,
    }
    proc = subprocess.run(
        [str(REPO / ".venv/bin/ansible-playbook"), "-i", str(inv), "playbooks/boot_test.yml", "-e", json.dumps(extra)],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_FORCE_COLOR": "0",
             "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert '"output": "alpha"' in proc.stdout  # cat /etc/hostname in the guest
    assert '"output": "storage"' in proc.stdout  # cat /etc/netboot/role
    assert "netboot boot (" in proc.stdout and "minimum RAM for this image:" in proc.stdout
    assert not (dist / "boot.ipxe").exists()  # the test copy lives in a scratch dir, dist/ is untouched
