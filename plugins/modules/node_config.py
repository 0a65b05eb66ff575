#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Ansible module: write the node roles, the boot service that applies them and every node's settings."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_config
short_description: Write node roles, key-only SSH and the N100 node settings into the image tree
description:
  - Writes each role of O(roles) to C(/etc/netboot/roles/<role>) and installs the C(netboot-node) OpenRC service
    (boot runlevel, before networking) that, at boot, reads C(/etc/netboot/role), falls back to O(default_role)
    with a console warning for an unknown role, loads the role's modules, names a node without
    C(netboot.hostname=) C(<cattle_prefix><mac>) from its first wired NIC, writes C(/etc/hostid) from that MAC and
    adds the role's services to the default runlevel.
  - Fails, before writing anything, when a role names a service whose init script is not in the image, naming
    the role, the service and the package that ships it.
  - Every node gets root's C(authorized_keys) (0600 in a 0700 directory), a key-only C(sshd_config), root's
    empty password locked, bash as root's shell when present, a serial getty, C(rc_cgroup_mode="unified"),
    C(/etc/subuid) and C(/etc/subgid), container storage on the tmpfs root, C(/dev/kvm) for group kvm, nomad
    client (and server snippet) settings and a MOTD with the build id.
  - Then, as root on an image with OpenRC, makes OpenRC's dependency cache (C(rc-depend -u) chrooted into O(root),
    written to C(/var/cache/rc)) so a node does not compute it at each boot; C(/init) drops it when a per-node
    initrd brings a newer init script or setting.
version_added: "0.2.0"
author:
  - homelab.alpine_netboot maintainers (@homelab)
options:
  roles:
    description: C(node_roles) - role name -> C(services) (required), C(modules), C(zfs_pools), C(nomad_server).
    type: dict
    required: true
  default_role:
    description: Role of a node whose C(netboot.role=) is missing or unknown (C(ipxe_default_role)).
    type: str
    required: true
  boot_script:
    description: The C(netboot-node) OpenRC script (the node role's C(files/netboot-node)).
    type: path
    required: true
  authorized_keys:
    description: Public keys for root (C(node_ssh_authorized_keys)).
    type: list
    elements: str
    default: []
  nomad_servers:
    description: Addresses the nomad agents join (C(node_nomad_servers)).
    type: list
    elements: str
    default: []
  init_scripts:
    description: Init script name -> path of a fallback OpenRC script, installed only when the image has no
      C(/etc/init.d/<name>) but has the program (e.g. nomad from M(homelab.alpine_netboot.netboot_binaries)).
    type: dict
    default: {}
  cache_dir:
    description: Package cache whose C(.apk) file lists help name the package that ships a missing init script.
    type: path
  serial_tty:
    description: Serial port that gets a login getty.
    type: str
    default: ttyS0
  node_table:
    description:
      - Secure Boot (docsite "Secure Boot") - the inventory's nodes (C(name), C(mac), C(hostname), C(role), as the ipxe
        role collects them), written to C(/etc/netboot/nodes). A node booted from the signed UKI, whose command line
        names no node, takes its hostname and role from the line of its first wired NIC's MAC; other MACs are cattle.
        The kernel module efivarfs is then kept too (how the node reads its generation).
      - Omitted - no table (boot.ipxe names each node on the kernel command line); an old table is removed.
    type: list
    elements: dict
    version_added: 0.2.0
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.image_tree
  - homelab.alpine_netboot.netboot.attributes
  - ansible.builtin.action_common_attributes
requirements:
  - Jinja2 (Python library)
  - PyYAML (Python library)
  - zstandard (Python library)
"""

EXAMPLES = r"""
- name: Configure the node roles
  homelab.alpine_netboot.node_config:
    root: build/image
    roles:
      worker: {services: [cgroups, podman, nomad], modules: [kvm_intel, vhost_vsock, tun, overlay]}
    default_role: worker
    boot_script: "{{ role_path }}/files/netboot-node"
    authorized_keys: ["ssh-ed25519 AAAAC3Nza... admin@laptop"]
"""

RETURN = r"""
stage_input:
  description: Digest of what this stage loads (M(homelab.alpine_netboot.stage_tree) keys the image copy on it).
  returned: success
  type: str
files:
  description: Paths (relative to O(root)) written, removed or linked.
  returned: always
  type: list
  elements: str
build_id:
  description: The build id shown in the MOTD.
  returned: always
  type: str
keep_modules:
  description: Every module some role loads (the kernel stage keeps them).
  returned: always
  type: list
  elements: str
commands:
  description: External commands run (none).
  returned: always
  type: list
  elements: str
"""

from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _ipxe
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._checkmode import exit_if_missing
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._options import IMAGE_TREE, NODE
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _binaries, _nodeconf, _noderoles
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._stage import stage_inputs

ARGUMENT_SPEC = {
    **IMAGE_TREE, **NODE,
    "cache_dir": {"type": "path"},
    "node_table": {"type": "list", "elements": "dict"},
}

FALLBACK_BINARIES = {"nomad": ("usr/bin/nomad", "usr/local/bin/nomad")}


def main() -> None:
    runner = Runner()
    with stage(ARGUMENT_SPEC, runner, supports_check_mode=True, diff=True, image=True) as (module, result):
        p = module.params
        exit_if_missing(module, p["root"], f"write the node roles and settings in {p['root']}", "image")
        root = Path(p["root"])
        try:
            roles = _noderoles.parse_roles(p["roles"])
            if p["default_role"] not in {r.name for r in roles}:
                raise NetbootError(f"ipxe_default_role {p['default_role']!r} is not a role of node_roles "
                                   f"({', '.join(r.name for r in roles)})")
            if not root.is_dir():
                raise NetbootError(f"image tree {root} does not exist: run the image stage first")
            # where netboot_binaries installed each program (its record in the image) comes first
            pinned = {str(r.get("name")): str(r.get("dest", "")).lstrip("/")
                      for r in _binaries.read_record(root) or []}
            init_scripts = {
                str(name): (Path(str(path)).read_text(),
                            tuple(dict.fromkeys([*([pinned[str(name)]] if str(name) in pinned else []),
                                                 *FALLBACK_BINARIES.get(str(name), (f"usr/bin/{name}",))])))
                for name, path in p["init_scripts"].items()
            }
            spec = _nodeconf.NodeSpec(
                roles=tuple(roles), default_role=p["default_role"], cattle_prefix=_ipxe.CATTLE_PREFIX,
                boot_script=Path(p["boot_script"]).read_text(), authorized_keys=tuple(p["authorized_keys"]),
                nomad_servers=tuple(p["nomad_servers"]), serial_tty=p["serial_tty"], init_scripts=init_scripts,
                node_table=None if p["node_table"] is None else tuple(
                    (n.mac, n.hostname, n.role)
                    for n in _ipxe.parse_nodes(p["node_table"], default_role=p["default_role"])),
            )
            plan = _nodeconf.plan_node(root, spec)
            # the init scripts this run installs count as present
            staged = {c.path.rpartition("/")[2] for c in plan.changes if c.path.startswith("etc/init.d/") and c.after}
            _noderoles.check_services(root, [
                _noderoles.Role(r.name, tuple(s for s in r.services if s not in staged)) for r in roles
            ], Path(p["cache_dir"]) if p["cache_dir"] else None)
            deptree: list[str] = []
            if not module.check_mode:
                _nodeconf.apply_node(plan)
                deptree = _nodeconf.refresh_deptree(root, runner)
        except OSError as exc:  # a file the options name (init script, boot script) cannot be read: the user's to fix
            raise NetbootError(str(exc)) from exc
        result.update(changed=plan.changed or bool(deptree), files=plan.paths() + deptree, build_id=plan.build_id,
                      # efivarfs: how a Secure Boot node reads its generation (netboot-node, LoaderImageIdentifier)
                      keep_modules=_noderoles.keep_modules(roles)
                      + (["efivarfs"] if p["node_table"] is not None else []),
                      stage_input=stage_inputs({"node": p})["node"], diff=plan.diff())


if __name__ == "__main__":
    main()
