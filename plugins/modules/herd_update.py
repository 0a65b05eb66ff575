#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Ansible module: roll a staged generation out over the herd, node by node, with health checks and rollback."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: herd_update
short_description: Roll a staged netboot generation out over the nodes, with health checks and rollback
description:
  - Runs on the controller for one boot server (RouterOS) and the nodes that boot from it (C(playbooks/update_herd.yml)).
  - Pre-flight - every node in O(nodes) answers over SSH and is healthy on the live generation (or, after an earlier
    stopped run, already on the staged one), else it fails naming each node that is not, rebooting nothing. Holds the
    router's deploy lock for the whole run. A node's address is its DHCP lease on the router (by MAC) unless given.
  - Works one batch at a time (O(max_unavailable) nodes, O(canary) nodes first) - runs O(pre_reboot_commands) on each
    node, points the batch's MACs at the staged generation (the stable C(boot.ipxe) serves a dispatcher), reboots
    them over SSH (key only), then waits until each has booted anew (a new boot id) on the staged generation (its
    C(netboot.generation=)), with every service of its role started, C(/) a tmpfs and O(health_commands) passing; then
    runs O(post_boot_commands).
  - When every node is healthy the staged generation goes live for all clients, unknown MACs included.
  - A node not healthy within O(boot_timeout) stops the roll - no further node is rebooted, the staged generation does
    not go live, the failed nodes' MACs point back at the live generation, each is rebooted into it over SSH or, with
    SSH gone, by O(power_cycle_command) (else the message says to power-cycle it by hand) and waited for; the task fails
    naming the node, the generation and the first check that failed.
  - Check mode probes the nodes (read only) and returns the plan; nothing is rebooted or written.
  - With nothing staged it checks that every node is healthy on the live generation and reports C(changed=false).
version_added: "0.2.0"
author: homelab.alpine_netboot maintainers (@homelab)
options:
  report:
    description: JSON report written after the roll (also when it fails), not in check mode.
    type: path
  generation:
    description: The staged generation to roll out; default the one staged (or the one an earlier stopped roll used).
    type: str
  nodes:
    description: The nodes, in inventory order - C(name), C(mac) and optionally C(address) (C(ansible_host)).
    type: list
    elements: dict
    required: true
  canary:
    description: Names of nodes rolled first, before any other.
    type: list
    elements: str
    default: []
  max_unavailable:
    description: Nodes rebooted at once (a batch).
    type: int
    default: 1
  boot_timeout:
    description: Seconds from a node's reboot until it must be healthy.
    type: int
    default: 900
  poll_interval:
    description: Seconds between two probes of a node that is not back yet.
    type: int
    default: 5
  pre_reboot_commands:
    description: Shell commands run on each node before it is rebooted (e.g. drain a Nomad client); one failing stops
      the roll before that batch reboots.
    type: list
    elements: str
    default: []
  health_commands:
    description: Shell commands that must exit 0 on a node for it to count as healthy (retried until O(boot_timeout)).
    type: list
    elements: str
    default: []
  post_boot_commands:
    description: Shell commands run on each node once it is healthy (e.g. mark the Nomad node eligible).
    type: list
    elements: str
    default: []
  power_cycle_command:
    description:
      - Run by C(/bin/sh) on the controller to power-cycle a node whose SSH is gone (a smart plug, AMT, Wake-on-LAN),
        with C(HERD_NODE), C(HERD_MAC) and C(HERD_ADDRESS) in its environment. Empty - the message says to do it by
        hand.
    type: str
    default: ""
  ssh_user:
    description: User on the nodes (key-only login).
    type: str
    default: root
  ssh_node_port:
    description: SSH port of the nodes.
    type: int
    default: 22
  ssh_private_key_file:
    description: Private key for the nodes; empty uses the controller's ssh agent and default keys.
    type: path
  ssh_known_hosts:
    description:
      - known_hosts file with the nodes' host keys, checked strictly. Empty - host keys are not checked (the image makes
        new ones at each boot unless a per-node initrd gives stable ones) and a warning says so.
    type: path
  ssh_extra_args:
    description: More arguments for C(ssh) (e.g. C(-o ProxyJump=bastion)).
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.generations
  - homelab.alpine_netboot.netboot.routeros_api
  - homelab.alpine_netboot.netboot.routeros_sftp
  - homelab.alpine_netboot.netboot.attributes
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Probes the nodes over SSH (read only) and the router (API only) and returns the plan; reboots nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
    details: Runs on the controller (C(connection=local)); talks to RouterOS over the network and to the nodes over SSH.
notes:
  - The RouterOS user needs the api, ssh, ftp, read and write policies, as for M(homelab.alpine_netboot.rb4011_deploy).
  - The nodes need no Python - every check is one POSIX shell command over SSH.
requirements:
  - Jinja2 (Python library)
  - librouteros (Python library)
  - paramiko (Python library)
"""

EXAMPLES = r"""
- name: Roll the staged generation out, one node at a time, canary first
  homelab.alpine_netboot.herd_update:
    host: 192.168.88.1
    user: netboot
    password: "{{ rb4011_password }}"
    host_key_fingerprint: "SHA256:abc..."
    staging_dir: build/deploy/rb4011
    nodes:
      - {name: n100-a, mac: "52:54:00:aa:bb:01"}
      - {name: n100-b, mac: "52:54:00:aa:bb:02"}
    canary: [n100-a]
    pre_reboot_commands: ["nomad node drain -self -enable -yes -deadline 5m"]
    post_boot_commands: ["nomad node eligibility -self -enable"]
    power_cycle_command: "curl -fsS http://plug-$HERD_NODE/cycle"
"""

RETURN = r"""
generation:
  description: The staged generation rolled out (the live one when nothing was staged).
  returned: success
  type: str
live_before:
  description: The generation live before the run.
  returned: success
  type: str
live:
  description: The generation live after the run.
  returned: success
  type: str
plan:
  description: The batches, in order, and the switch to live.
  returned: success
  type: list
  elements: str
nodes:
  description:
    - Per node - name, mac, address, before and after (generations), state (skipped, updated, failed, rolled back,
      not recovered), down_at and up_at (epoch seconds), seconds_down, checks (each step and check) and failure.
  returned: always
  type: list
  elements: dict
unknown_macs:
  description: MACs with a DHCP lease on the router that are not in O(nodes) (they boot the live generation at their
    next boot).
  returned: success
  type: list
  elements: str
kept_generations:
  description: Generations kept on the router after the switch to live.
  returned: when the staged generation went live
  type: list
  elements: str
commands:
  description: The SSH and power-cycle commands run, as argv lines.
  returned: always
  type: list
  elements: str
"""

from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._options import GENERATIONS
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploy import (
    TARGET_ARGUMENT_SPEC,
    TARGET_REQUIRED_ONE_OF,
    Options,
    target_options,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._herd import (
    HerdError,
    Nodes,
    RollOptions,
    SshOptions,
    parse_nodes,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._herdupdate import update_herd
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._sftp import Progress

NODE_COMMANDS = ("pre_reboot_commands", "post_boot_commands", "health_commands")  # RollOptions' order

ARGUMENT_SPEC = {
    **GENERATIONS,
    **TARGET_ARGUMENT_SPEC,
    "report": {"type": "path"},
    "generation": {"type": "str"},
    "nodes": {"type": "list", "elements": "dict", "required": True},
    "canary": {"type": "list", "elements": "str", "default": []},
    "max_unavailable": {"type": "int", "default": 1},
    "boot_timeout": {"type": "int", "default": 900},
    "poll_interval": {"type": "int", "default": 5},
    **{k: {"type": "list", "elements": "str", "default": []} for k in NODE_COMMANDS},
    "power_cycle_command": {"type": "str", "default": ""},
    "ssh_user": {"type": "str", "default": "root"},
    "ssh_node_port": {"type": "int", "default": 22},
    "ssh_private_key_file": {"type": "path", "no_log": False},  # a path, not the key
    "ssh_known_hosts": {"type": "path"},
    "ssh_extra_args": {"type": "list", "elements": "str", "default": []},
}


def main() -> None:
    with stage(ARGUMENT_SPEC, supports_check_mode=True, required_one_of=TARGET_REQUIRED_ONE_OF) as (module, result):
        p = module.params
        talk = Nodes(SshOptions(p["ssh_user"], p["ssh_node_port"], p["ssh_private_key_file"] or "",
                                p["ssh_known_hosts"] or "", tuple(p["ssh_extra_args"])), p["power_cycle_command"])
        target = target_options(p)
        opts = Options(p["dir"].strip("/"), p["keep"], lock_timeout=p["lock_timeout"], lock_stale=p["lock_stale"])
        roll = RollOptions(p["max_unavailable"], tuple(p["canary"]), p["boot_timeout"], p["poll_interval"],
                           *(tuple(p[k]) for k in NODE_COMMANDS))
        progress = Progress(Path(p["progress_log"]) if p["progress_log"] and not module.check_mode else None)
        report = Path(p["report"]) if p["report"] and not module.check_mode else None
        try:
            result.update(update_herd(target, opts, Path(p["staging_dir"]), nodes=parse_nodes(p["nodes"]),
                                      wanted=p["generation"] or None, roll=roll, talk=talk, check=module.check_mode,
                                      progress=progress, report_path=report))
        except HerdError as e:
            result.update(e.details.get("result") or {})
            raise
        finally:
            result["commands"] = list(dict.fromkeys(talk.runner.log))  # each command once


if __name__ == "__main__":
    main()
