"""_herd: the pure parts of the roll (nodes, batches, the node probe and its judgement, DHCP leases)."""

from __future__ import annotations

import subprocess

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._herd import (
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


# -- the roll's decisions, on scripted nodes (the real ones boot in tests/integration/test_herd_update.py) ----------

LIVE, NEW = "g-111111111111", "g-222222222222"


class ScriptedNodes(Nodes):
    """Nodes that reboot at once into whatever the dispatcher gives their MAC; ``bad``: generations whose role
    service fails."""

    def __init__(self, nodes: list[Node], on: dict[str, str], bad: set[str]) -> None:
        super().__init__(SshOptions())
        self.by_addr = {f"10.0.0.{i}": n for i, n in enumerate(nodes, 1)}
        self.gen = {n.mac: on[n.name] for n in nodes}
        self.boots = {n.mac: 1 for n in nodes}
        self.bad = bad
        self.dispatched: list[str] = []
        self.reboots: list[str] = []

    def probe(self, address: str) -> tuple[object, str]:
        n = self.by_addr[address]
        gen = self.gen[n.mac]
        rc = "3" if gen in self.bad else "0"
        text = (f"boot_id={n.mac}-{self.boots[n.mac]}\ngeneration={gen}\nrole=worker\nroot_fs=tmpfs\nbooting=no\n"
                f"service=app {rc}\nprobe=done\n")
        return parse_probe(text), ""

    def run(self, address: str, command: str, timeout: float = 60) -> tuple[int, str]:
        n = self.by_addr[address]
        if "reboot" in command:
            self.reboots.append(n.name)
            self.boots[n.mac] += 1
            self.gen[n.mac] = NEW if n.mac in self.dispatched else LIVE
        return 0, ""


def scripted_herd(on: dict[str, str], bad: set[str] = frozenset()) -> tuple[object, ScriptedNodes]:
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._herd import Herd, RollOptions

    herd_nodes = nodes(len(on))
    talk = ScriptedNodes(herd_nodes, on, set(bad))
    leases = [{"mac-address": n.mac, "address": a, "status": "bound"} for a, n in talk.by_addr.items()]

    def dispatch(macs: list[str]) -> None:
        talk.dispatched = list(macs)

    herd = Herd(herd_nodes, LIVE, NEW, RollOptions(boot_timeout=5, poll=0), talk, leases=lambda: leases,
                dispatch=dispatch, tick=lambda: None, log=lambda _line: None)
    return herd, talk


def test_a_rerun_resumes_with_the_nodes_not_yet_on_the_new_generation() -> None:
    herd, talk = scripted_herd({"n1": NEW, "n2": LIVE, "n3": LIVE})
    assert herd.preflight() == []
    assert herd.on_staged == ["52:54:00:00:00:01"] and herd.reports["n1"].state == "skipped"
    herd.roll(plan_batches(herd.nodes, [], 1))
    assert talk.reboots == ["n2", "n3"] and talk.dispatched == [n.mac for n in herd.nodes]
    assert [herd.reports[n].state for n in ("n1", "n2", "n3")] == ["skipped", "updated", "updated"]


def test_a_failed_node_is_pointed_back_and_no_further_node_is_rebooted() -> None:
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._herd import HerdError

    herd, talk = scripted_herd({"n1": LIVE, "n2": LIVE}, bad={NEW})
    assert herd.preflight() == []
    with pytest.raises(HerdError, match=rf"^n1 not healthy on {NEW} .*: service app not started .* pointed back at "
                                        rf"{LIVE} and came back healthy on it"):
        herd.roll(plan_batches(herd.nodes, [], 1))
    assert talk.reboots == ["n1", "n1"] and talk.dispatched == []  # into NEW, then back; n2 never
    assert talk.gen == {"52:54:00:00:00:01": LIVE, "52:54:00:00:00:02": LIVE}
    assert herd.reports["n1"].state == "rolled back" and herd.reports["n2"].state == "pending"


def test_preflight_names_every_node_that_is_not_ready() -> None:
    herd, _talk = scripted_herd({"n1": "g-333333333333", "n2": LIVE})
    assert herd.preflight() == [f"n1 (10.0.0.1): wrong generation: booted g-333333333333, expected {LIVE} "
                                f"(live is {LIVE}, staged {NEW})"]
