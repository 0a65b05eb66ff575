"""_herd: the pure parts of the roll (nodes, batches, the node probe and its judgement, DHCP leases)."""

from __future__ import annotations

import subprocess

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._herd import (
    PROBE,
    Node,
    Nodes,
    SshOptions,
    judge,
    lease_addresses,
    parse_nodes,
    parse_probe,
    plan_batches,
)

GEN = "g-0123456789ab"


def nodes(n: int) -> list[Node]:
    return parse_nodes([{"name": f"n{i}", "mac": f"52-54-00-00-00-{i:02X}"} for i in range(1, n + 1)])


def test_nodes_need_distinct_macs_and_errors_name_the_host() -> None:
    assert nodes(1) == [Node("n1", "52:54:00:00:00:01")]
    with pytest.raises(ConfigError, match="inventory host b: no mac"):
        parse_nodes([{"name": "b", "mac": ""}])
    with pytest.raises(ConfigError, match="inventory host b: mac 'zz' is not a MAC"):
        parse_nodes([{"name": "b", "mac": "zz"}])
    with pytest.raises(ConfigError, match="a and b have the same mac"):
        parse_nodes([{"name": "a", "mac": "52:54:00:00:00:01"}, {"name": "b", "mac": "52-54-00-00-00-01"}])
    with pytest.raises(ConfigError, match="group nodes is empty"):
        parse_nodes([])


def test_batches_put_canaries_first_then_inventory_order() -> None:
    herd = nodes(5)
    names = [[n.name for n in b] for b in plan_batches(herd, ["n4"], 2)]
    assert names == [["n4"], ["n1", "n2"], ["n3", "n5"]]
    assert [[n.name for n in b] for b in plan_batches(herd, [], 1)] == [["n1"], ["n2"], ["n3"], ["n4"], ["n5"]]
    with pytest.raises(ConfigError, match="herd_canary names nx"):
        plan_batches(herd, ["nx"], 1)
    with pytest.raises(ConfigError, match="herd_max_unavailable 0"):
        plan_batches(herd, [], 0)


def probe_text(**kw: str) -> str:
    values = {"boot_id": "b1", "generation": GEN, "role": "worker", "root_fs": "tmpfs", "booting": "no", **kw}
    return "\n".join(f"{k}={v}" for k, v in values.items()) + "\nservice=sshd 0\nservice=nomad 3\nprobe=done\n"


def test_probe_judgement_names_the_first_failed_check() -> None:
    p = parse_probe(probe_text())
    assert p is not None and dict(p.services) == {"sshd": 0, "nomad": 3}
    assert judge(p, GEN) == ("service nomad not started (rc-service nomad status: rc 3) in role worker", False)
    assert judge(p, "g-ffffffffffff")[0] == f"wrong generation: booted {GEN}, expected g-ffffffffffff"
    booting = parse_probe(probe_text(booting="yes"))
    assert booting is not None and judge(booting, GEN) == ("still starting its services", True)
    disk = parse_probe(probe_text(root_fs="ext4"))
    assert disk is not None and judge(disk, GEN)[0].startswith("/ is ext4, not tmpfs")
    good = parse_probe(probe_text().replace("service=nomad 3\n", ""))
    assert good is not None and judge(good, GEN) == ("", False)
    assert parse_probe(probe_text().replace("probe=done\n", "")) is None  # cut short: not a probe


def test_the_probe_is_plain_posix_shell() -> None:
    """PROBE run by this machine's /bin/sh (not a node: no netboot.generation=, no role) still reads back."""
    out = subprocess.run(["/bin/sh", "-c", PROBE], capture_output=True, text=True, check=True).stdout
    p = parse_probe(out)
    assert p is not None and len(p.boot_id) == 36 and p.generation == "" and p.services == {}
    assert judge(p, GEN)[0].startswith("wrong generation: booted none")


def test_leases_by_mac_prefer_the_bound_active_address() -> None:
    rows = [{"mac-address": "52:54:00:00:00:01", "address": "192.168.88.100", "status": "offered"},
            {"mac-address": "52:54:00:00:00:01", "active-address": "192.168.88.101", "status": "bound"},
            {"mac-address": "52:54:00:00:00:02", "address": "192.168.88.102", "disabled": "true"}]
    assert lease_addresses(rows) == {"52:54:00:00:00:01": "192.168.88.101"}


def test_ssh_is_key_only_batch_and_checks_host_keys_when_given() -> None:
    strict = Nodes(SshOptions(key_file="/k", known_hosts="/kh")).argv("10.0.0.5", "true")
    assert strict[:3] == ["ssh", "-o", "BatchMode=yes"] and "StrictHostKeyChecking=yes" in strict
    assert "UserKnownHostsFile=/kh" in strict and strict[-2:] == ["root@10.0.0.5", "true"]
    loose = Nodes(SshOptions()).argv("10.0.0.5", "true")
    assert "StrictHostKeyChecking=no" in loose and "-i" not in loose
