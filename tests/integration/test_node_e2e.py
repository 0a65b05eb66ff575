"""Issue 10 on the e2e image (``build.yml`` on the fixture mirror, built once per session: ``e2e_built``).

Boots (through qemu's PXE ROM -> iPXE -> the built ``boot.ipxe``, and one direct kernel boot) show that the role
decides what runs: the known node's role (``storage`` in the fixture inventory) enables ``crond``, the cattle role
(``worker``) does not; the kernel's hostname is set; the NIC got its driver from the role's ``modules`` (the fixture
has no mdev/udev) and a DHCP lease from qemu's user network; ``/etc/hostid`` follows the MAC. The audit fails a build
whose overlay holds a private key, a passworded root and a glibc ELF, naming each, and leaves ``dist/`` alone; the
node and audit stages rerun without change and write nothing in check mode.
"""

from __future__ import annotations

import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _vm
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._ipxe import DEFAULT_KERNEL_ARGS
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import sha256_file
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._noderoles import hostid
from tests.fixtures.e2e import KNOWN_HOSTNAME, KNOWN_MAC, KNOWN_ROLE, Built
from tests.fixtures.glibc import PROBE_MARKER

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="building the rootfs needs root"),
]

CATTLE_MAC = "52:54:00:aa:bb:02"
# what the guest prints (the boot test hook runs these from OpenRC's local service, after the default runlevel)
WAIT_LEASE = ("i=0; while [ $i -lt 40 ] && ! ip -4 -o addr show dev eth0 | grep -q 'inet 10\\.0\\.2\\.'; "
              "do sleep 0.5; i=$((i + 1)); done; ip -4 -o addr show dev eth0")
CHECKS = {
    "hostname": "hostname",
    "etc_hostname": "cat /etc/hostname",
    "role": "cat /etc/netboot/role",
    "default": "rc-status default",
    "boot": "rc-status boot",
    "crond": "rc-service crond status",
    "driver": "basename $(readlink /sys/class/net/eth0/device/driver)",
    "modules": "cut -d' ' -f1 /proc/modules",
    "lease": WAIT_LEASE,
    "hostid": "od -An -tx1 /etc/hostid | tr -d ' \\n'",
    "root": "grep ' / ' /proc/mounts",
    # the glibc program of the fixture's netboot_binaries, on its private runtime (issue 22)
    "glibc": "/usr/local/bin/glibc-probe 2>&1; echo rc=$?",
}


def boot(built: Built, mac: str, *, direct_append: str | None = None, nic: str = "virtio-net-pci") -> dict[str, str]:
    """Boot the built dist/ as the machine ``mac`` (through boot.ipxe over HTTP, or directly with ``direct_append``
    as the whole kernel command line); the checks' output by name."""
    common = {"kernel": built.dist / "vmlinuz", "initrds": [built.dist / "initramfs"], "mac": mac, "nic": nic,
              "memory": "1G", "checks": list(CHECKS.values()), "timeout": 400}
    if direct_append is None:
        test = _vm.BootTest(mode="netboot", dist_dir=built.dist, http_port=built.http_port,
                            bootfile=f"http://10.0.2.2:{built.http_port}/boot.ipxe", **common)  # type: ignore[arg-type]
    else:
        test = _vm.BootTest(mode="direct", append=direct_append, **common)  # type: ignore[arg-type]
    result = _vm.boot_test(test)
    assert result.ok, result.tail()
    out = {name: str(c["output"]).strip() for name, c in zip(CHECKS, result.checks, strict=True)}
    out["console"] = result.console
    out["crond_rc"] = str(next(c["rc"] for c in result.checks if c["command"] == CHECKS["crond"]))
    out["http_requests"] = "\n".join(result.http_requests)
    print(f"{mac} {test.mode}: qemu start -> marker {result.seconds_to_marker}s, "
          f"kernel -> marker {result.kernel_to_marker}s")
    return out


def started(rc_status: str, service: str) -> bool:
    return re.search(rf"^\s*{re.escape(service)}\s+\[\s*started", rc_status, re.M) is not None


def assert_real_boot(out: dict[str, str], mac: str, driver: str) -> None:
    """What every node's boot shows, whatever its role: OpenRC not in container mode, the boot runlevel's
    '-lxc' services run, the kernel hostname set, the NIC driven by the role's module, a lease from slirp."""
    assert "[LXC]" not in out["console"], "OpenRC booted in LXC mode (rc_sys): the fixture is not a real node"
    for svc in ("hostname", "modules", "netboot-node"):
        assert started(out["boot"], svc), (svc, out["boot"])
    assert out["hostname"] == out["etc_hostname"], out  # the kernel's hostname, not only the file
    assert out["driver"] == driver, out
    assert driver in out["modules"].split(), out
    assert re.search(r"inet 10\.0\.2\.\d+/", out["lease"]), out["lease"]
    assert started(out["default"], "dhcpcd"), out["default"]
    assert out["hostid"] == hostid(mac).hex(), out  # the build-side formula and the boot service agree


@pytest.fixture(scope="module")
def first_boots(e2e_built: Built) -> dict[str, dict[str, str]]:
    """The known node's netboot and the same machine's direct boot, two VMs at once (one per core). The cattle boot
    comes later: it needs the HTTP port the known node's netboot serves on."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        known = pool.submit(boot, e2e_built, KNOWN_MAC)
        direct = pool.submit(boot, e2e_built, KNOWN_MAC,
                             direct_append=f"{DEFAULT_KERNEL_ARGS} netboot.role=no-such-role", nic="e1000")
        return {"known": known.result(), "direct": direct.result()}


@pytest.fixture(scope="module")
def known_node(first_boots: dict[str, dict[str, str]]) -> dict[str, str]:
    return first_boots["known"]


def test_known_node_runs_its_role(known_node: dict[str, str]) -> None:
    """Issue 5, must show 1 (HTTP) and 2 (known MAC): PXE ROM -> iPXE -> dist/boot.ipxe -> kernel + initramfs over
    HTTP, / on a tmpfs. Issue 10: the storage role's crond runs, its virtio_net module drives the NIC, workers'
    e1000 is not loaded."""
    out = known_node
    assert out["hostname"] == KNOWN_HOSTNAME and out["role"] == KNOWN_ROLE, out
    assert out["etc_hostname"] == KNOWN_HOSTNAME and out["root"].split()[2] == "tmpfs", out
    assert any(r.startswith("GET /initramfs 200") for r in out["http_requests"].splitlines()), out["http_requests"]
    assert_real_boot(out, KNOWN_MAC, "virtio_net")
    assert started(out["default"], "crond") and out["crond_rc"] == "0", out["default"]
    assert "e1000" not in out["modules"].split(), out["modules"]


def test_a_vendor_glibc_binary_runs_on_the_musl_image(known_node: dict[str, str]) -> None:
    """Issue 22: a glibc program (threads, dlopen, getaddrinfo, libresolv) given as a netboot_binaries entry runs
    on the booted image through the private glibc runtime; no loader error, no missing symbol."""
    out = known_node["glibc"]
    assert PROBE_MARKER in out and out.rstrip().endswith("rc=0"), out
    assert "dlopen libm.so.6 ok" in out and "glibc 2.36" in out, out
    for bad in ("not found", "symbol lookup error", "No such file", "cannot open shared object"):
        assert bad not in out, out


def test_same_mac_without_netboot_args_names_itself_keeps_its_hostid(first_boots: dict[str, dict[str, str]],
                                                                     known_node: dict[str, str]) -> None:
    """The same machine booted directly (another boot loader): no netboot.hostname= so it names itself
    node-<mac>, an unknown netboot.role= falls back to the default role with a console warning, the worker role
    loads e1000 (the NIC here) and does not start crond; /etc/hostid is the same as in the netboot. Issue 4, must
    show 2: the built vmlinuz + initramfs boot directly to OpenRC with / on a tmpfs."""
    out = first_boots["direct"]
    assert out["root"].split()[2] == "tmpfs", out
    assert out["hostname"] == "node-" + KNOWN_MAC.replace(":", ""), out
    assert out["role"] == "worker", out
    assert "unknown role 'no-such-role'" in out["console"], out["console"][-3000:]
    assert_real_boot(out, KNOWN_MAC, "e1000")
    assert not started(out["default"], "crond") and out["crond_rc"] != "0", out["default"]
    assert out["hostid"] == known_node["hostid"]


def test_cattle_runs_the_default_role_with_its_own_hostid(e2e_built: Built, known_node: dict[str, str]) -> None:
    out = boot(e2e_built, CATTLE_MAC)
    assert out["hostname"] == "node-" + CATTLE_MAC.replace(":", ""), out
    assert out["role"] == "worker", out
    assert_real_boot(out, CATTLE_MAC, "virtio_net")
    assert not started(out["default"], "crond") and out["crond_rc"] != "0", out["default"]
    assert out["hostid"] != known_node["hostid"]


# ------------------------------------------------------------------------------------------- audit and stages
def snapshot(*roots: Path) -> dict[str, tuple[int, int, str]]:
    """Every path under ``roots`` -> (size, mtime_ns, link target or sha256 of a file)."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath, name)
                st = p.lstat()
                what = os.readlink(p) if p.is_symlink() else sha256_file(p) if p.is_file() else ""
                out[str(p)] = (st.st_size, st.st_mtime_ns, what)
    return out


def openssh_private_key() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                      serialization.NoEncryption())


def test_audit_fails_the_build_naming_each_file_and_leaves_dist_alone(e2e_built: Built, tmp_path: Path) -> None:
    """Issue 10, must show 2 at playbook level: an overlay with a private key, a passworded root and a glibc-linked
    ELF (Debian's /bin/true) fails build.yml at the audit, naming each file; dist/ keeps the previous good image.
    Runs in its own build directory (the session's build stays as it is) on a copy of the session's dist/."""
    # the session image's own overlay (its roles' init scripts: tests/fixtures/sshd.py) plus what the audit refuses
    overlay = Path(shutil.copytree(e2e_built.extravars["netboot_overlay_dir"], tmp_path / "overlay"))
    (overlay / "root/.ssh").mkdir(parents=True)
    (overlay / "root/.ssh/id_ed25519").write_bytes(openssh_private_key())
    (overlay / "root/.ssh/id_ed25519").chmod(0o600)
    shadow = (e2e_built.build / "image/etc/shadow").read_text()
    root_hash = "$6$netboottest$" + "A" * 86
    (overlay / "etc/shadow").write_text(re.sub(r"^root:[^:]*:", f"root:{root_hash}:", shadow, flags=re.M))
    (overlay / "etc/shadow").chmod(0o640)
    (overlay / "usr/local/bin").mkdir(parents=True)
    glibc_true = Path("/bin/true").resolve()
    assert b"ld-linux-x86-64.so.2" in glibc_true.read_bytes(), "the host's /bin/true is not a glibc ELF"
    shutil.copy2(glibc_true, overlay / "usr/local/bin/glibc-true")
    dist = tmp_path / "dist"
    shutil.copytree(e2e_built.dist, dist, symlinks=True)
    before = snapshot(dist)

    res = e2e_built.run(extravars={
        "netboot_overlay_dir": str(overlay),
        "netboot_build_dir": str(tmp_path / "build"),
        "netboot_dist_dir": str(dist),
        "alpine_lockfile": str(shutil.copy2(e2e_built.work / "alpine-lock.json", tmp_path / "alpine-lock.json")),
    })
    assert res.rc != 0, res.stdout[-4000:]
    failed = [ev["event_data"] for ev in res.events if ev.get("event") == "runner_on_failed"]
    assert len(failed) == 1 and "Audit the image" in failed[0]["task"], res.stdout[-4000:]
    msg = str(failed[0]["res"]["msg"])
    assert msg.startswith("image audit failed"), msg
    assert "/root/.ssh/id_ed25519" in msg and "private key" in msg.lower(), msg
    assert "/etc/shadow" in msg and "user root" in msg, msg
    assert "/usr/local/bin/glibc-true" in msg and "ld-linux-x86-64.so.2" in msg, msg
    assert not res.task_results("Build the initramfs"), "the build went on past a failed audit"
    assert snapshot(dist) == before, "a failed audit changed dist/"
    report = (tmp_path / "build/audit.failed.json").read_text()
    assert "/usr/local/bin/glibc-true" in report and "/root/.ssh/id_ed25519" in report


def test_node_and_audit_stages_rerun_unchanged_and_check_mode_writes_nothing(e2e_built: Built) -> None:
    """A rerun of the node and audit stages with unchanged input changes nothing; in check mode a changed input
    (a new role) is reported with its diff and nothing is written."""
    image, dist = e2e_built.build / "image", e2e_built.dist
    before = snapshot(image, dist)
    res = e2e_built.run(tags="node,audit")
    assert res.rc == 0, res.stdout[-4000:]
    assert res.changed() == 0, res.stdout[-4000:]
    for task in ("Install the pinned extra binaries", "Write the node roles", "Audit the image"):
        results = [r for r in res.task_results(task) if "validate_args_context" not in r]
        assert results and results[0].get("changed") is False, (task, results)
    assert snapshot(image, dist) == before

    roles = {**e2e_built.extravars["node_roles"], "extra": {"services": ["crond"], "modules": []}}
    res = e2e_built.run(tags="node,audit", check=True, diff=True, extravars={"node_roles": roles})
    assert res.rc == 0, res.stdout[-4000:]
    node = [r for r in res.task_results("Write the node roles") if "validate_args_context" not in r]
    assert node and node[0].get("changed") is True, node
    assert "etc/netboot/roles/extra" in res.stdout, res.stdout[-4000:]
    assert snapshot(image, dist) == before, "check mode wrote files"
