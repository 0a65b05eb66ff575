#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Ansible module: deploy dist/ to a RouterOS boot server (RB4011) as one generation."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rb4011_deploy
short_description: Deploy dist/ to a MikroTik RB4011 as a generation served over TFTP
description:
  - Preflight before any write - API login, RouterOS version (7.1+ required), identity, and C(free-hdd-space)
    against the bytes the new generation needs while the kept generations stay.
  - Uploads every file of O(dist_dir) listed in its C(SHA256SUMS) to C(<dir>/g-<id>/) over SFTP (the host key is
    checked against O(known_hosts) or O(host_key_fingerprint), never accepted silently), skipping files already
    there with the right size and sha256, and verifies each (size over the API, sha256 read back over SFTP).
  - Adds a C(generation.ipxe) - dist's boot.ipxe rendered again from its record C(boot.ipxe.json) with its
    C(set base tftp://...) lines pointing into the generation - and
    one anchored C(/ip/tftp) rule per file; only then switches the single stable C(^boot\.ipxe$) rule to the new
    generation, so a node that already fetched the old script keeps getting the old kernel and initramfs.
  - Keeps O(keep) previous generations (never the one live before the switch) and deletes older ones.
  - Holds a lock on the router for the whole write (a C(/system/script) entry RouterOS refuses to add twice, naming
    the controller, pid, time and generation); a second deploy from any machine fails at once naming it
    (O(lock_timeout) waits), a lock older than O(lock_stale) is taken over with a warning, and cleanup never removes
    the generation a live lock is writing. dist/ is read once into a snapshot under O(staging_dir) and uploaded from
    there, so a build swapping dist/ meanwhile cannot mix generations.
  - O(rollback) switches back to the previously live generation, O(generation) pins one that is kept.
  - O(stage) uploads and keeps the generation without making it live (its rules carry C(staged)); a staged
    generation is never removed by cleanup until it is made live (O(generation)) or dropped (O(unstage)).
    C(playbooks/update_herd.yml) rolls it out node by node.
  - On a router whose C(/file) list has a C(flash) disk, O(dir) is taken under C(flash/) (the rest is a RAM disk).
  - With O(manage_dhcp), uploads the iPXE binaries (O(ipxe_bios), O(ipxe_snp), O(ipxe_efi)) with one owned TFTP rule
    each, sets C(next-server), unsets C(boot-file-name) (iPXE would read it before option 67 and loop) and names the
    owned option 67 of O(dhcp_firmware) in C(dhcp-option) on the C(/ip dhcp-server network) O(dhcp_network), and adds
    owned DHCP options (67), option sets and matchers - option 93 (client architecture) for the other firmware kind,
    option 77 = O(dhcp_matcher_value) (first and last) giving clients running iPXE C(boot.ipxe).
version_added: "0.2.0"
author: homelab.alpine_netboot maintainers (@homelab)
options:
  dist_dir:
    description: The built dist/ directory (C(SHA256SUMS), C(manifest.json), C(boot.ipxe), kernel, initramfs).
    type: path
  verify:
    description: C(sha256) reads every uploaded file back; C(size) trusts the size reported by the API.
    type: str
    choices: [sha256, size]
    default: sha256
  rollback:
    description: Switch to the previously live generation instead of deploying O(dist_dir).
    type: bool
    default: false
  generation:
    description: Switch to this kept generation (C(g-<12 hex>)) instead of deploying O(dist_dir).
    type: str
  stage:
    description:
      - Upload O(dist_dir) as a staged generation - kept, served under its own directory, given to no node - while
        the live one stays live. Needs a live generation. Already live - nothing is staged (a warning says so).
    type: bool
    default: false
  unstage:
    description: Staged generations (C(g-<12 hex>)) to keep no longer; cleanup then treats them as any other.
    type: list
    elements: str
    default: []
  tftp_allow_addresses:
    description: Networks allowed to read the TFTP rules (C(ip-addresses)); empty means any.
    type: list
    elements: str
    default: []
  manage_dhcp:
    description:
      - Manage DHCP chainloading on O(dhcp_network). Off leaves every DHCP row and chainload rule as it is (also the
        ones an earlier run with it on made); the README says how to remove them.
    type: bool
    default: false
  dhcp_network:
    description: Address of the C(/ip dhcp-server network) to manage, e.g. C(192.168.88.0/24). Required with
      O(manage_dhcp).
    type: str
  dhcp_next_server:
    description: The router's address that DHCP clients fetch from over TFTP (C(next-server)); empty means the
      network's C(gateway).
    type: str
  dhcp_firmware:
    description:
      - The firmware kind O(dhcp_network) serves by default (the network's own option 67, no matcher) - C(uefi)
        (O(dhcp_uefi_binary); N100 boards) or C(bios) (C(undionly.kpxe)). The other kind is chosen by option 93
        (client architecture) matchers, so both boot on one network.
    type: str
    choices: [uefi, bios]
    default: uefi
  dhcp_uefi_binary:
    description: The iPXE binary UEFI firmware gets - C(snponly.efi) (uses the board's own UEFI NIC driver, e.g.
      i226-V, RTL8125) or C(ipxe.efi) (iPXE's own drivers). All binaries are served.
    type: str
    choices: [snponly.efi, ipxe.efi]
    default: snponly.efi
  dhcp_matcher_value:
    description: The DHCP option 77 (user class) value the matcher looks for; iPXE sends C(iPXE).
    type: str
    default: iPXE
  dhcp_matching_type:
    description: The matcher's C(matching-type) (C(exact) or C(substring), RouterOS 7.16+); empty leaves RouterOS'
      default.
    type: str
    default: ""
  dhcp_server:
    description: The C(/ip dhcp-server) the matcher applies to.
    type: str
    default: all
  ipxe_bios:
    description: iPXE binary for BIOS PXE firmware.
    type: path
    default: /usr/lib/ipxe/undionly.kpxe
  ipxe_efi:
    description: iPXE binary for UEFI PXE firmware with iPXE's own NIC drivers (O(dhcp_uefi_binary=ipxe.efi)).
    type: path
    default: /usr/lib/ipxe/ipxe.efi
  ipxe_snp:
    description: iPXE binary for UEFI PXE firmware using the firmware's NIC driver (O(dhcp_uefi_binary=snponly.efi)).
    type: path
    default: /usr/lib/ipxe/snponly.efi
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.generations
  - homelab.alpine_netboot.netboot.routeros_api
  - homelab.alpine_netboot.netboot.routeros_sftp
  - homelab.alpine_netboot.netboot.attributes
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the router (API only) and lists the planned uploads and rule changes; writes nothing.
  diff_mode:
    support: full
    details: The collection's TFTP rules (and with O(manage_dhcp) its DHCP rows and the network) before and after.
  platform:
    platforms: posix
    details: Runs on the controller (C(connection=local)) and talks to RouterOS over the network.
notes:
  - The RouterOS user needs the api, ssh, ftp, read and write policies (docsite "Deploying to the RB4011").
  - RouterOS has no hash command; O(verify=sha256) reads each new file back over SFTP.
requirements:
  - Jinja2 (Python library)
  - librouteros (Python library)
  - paramiko (Python library)
"""

EXAMPLES = r"""
- name: Deploy dist/ to the boot server
  homelab.alpine_netboot.rb4011_deploy:
    host: 192.168.88.1
    user: netboot
    password: "{{ vault_rb4011_password }}"
    host_key_fingerprint: "SHA256:abc..."
    dist_dir: /srv/netboot/dist
    staging_dir: /srv/netboot/build/deploy
"""

RETURN = r"""
generation:
  description: The generation live after the run.
  returned: success
  type: str
bytes_sent:
  description: Bytes actually uploaded (0 on a rerun with the same dist).
  returned: success
  type: int
generation_bytes:
  description: Total size of the generation.
  returned: success
  type: int
uploads:
  description: Per uploaded file - name, bytes, bytes_sent, seconds, MBps, verified.
  returned: success
  type: list
  elements: dict
planned_uploads:
  description: Files the plan sends (check mode lists them too).
  returned: always
  type: list
  elements: str
rule_changes:
  description: The TFTP rule changes as RouterOS commands.
  returned: always
  type: list
  elements: str
dhcp_changes:
  description: The DHCP changes as RouterOS commands (empty without O(manage_dhcp)).
  returned: always
  type: list
  elements: str
dhcp:
  description:
    - With O(manage_dhcp), what DHCP hands out - C(network), C(next_server) (the network's gateway unless
      O(dhcp_next_server) is set), C(firmware) (the network's default kind), C(boot_files) (firmware kind -> the iPXE
      binary its firmware gets as option 67) and C(matcher_value); null without it.
  returned: always
  type: dict
  version_added: 0.2.0
commands:
  description:
    - What the run sent to (or, in check mode, would send to) the router, in order of kind - SFTP uploads,
      then the RouterOS commands of RV(rule_changes) and RV(dhcp_changes), then the removal of old generations.
  returned: always
  type: list
  elements: str
dir:
  description: The directory on the router holding the generations (C(flash/...) on routers with a flash disk).
  returned: success
  type: str
kept_generations:
  description: Generations on the router after the run, live first.
  returned: success
  type: list
  elements: str
removed_generations:
  description: Generations deleted by the run.
  returned: success
  type: list
  elements: str
"""

from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._checkmode import text_diff
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._options import GENERATIONS
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploy import (
    TARGET_ARGUMENT_SPEC,
    TARGET_REQUIRED_ONE_OF,
    Options,
    deploy,
    target_options,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._dhcp import DhcpOptions
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._sftp import Progress

ARGUMENT_SPEC = {
    **GENERATIONS,
    **TARGET_ARGUMENT_SPEC,
    "dist_dir": {"type": "path"},
    "verify": {"type": "str", "choices": ["sha256", "size"], "default": "sha256"},
    "rollback": {"type": "bool", "default": False},
    "generation": {"type": "str"},
    "stage": {"type": "bool", "default": False},
    "unstage": {"type": "list", "elements": "str", "default": []},
    "tftp_allow_addresses": {"type": "list", "elements": "str", "default": []},
    "manage_dhcp": {"type": "bool", "default": False},
    "dhcp_network": {"type": "str"},
    "dhcp_next_server": {"type": "str"},
    "dhcp_firmware": {"type": "str", "choices": ["uefi", "bios"], "default": "uefi"},
    "dhcp_uefi_binary": {"type": "str", "choices": ["snponly.efi", "ipxe.efi"], "default": "snponly.efi"},
    "dhcp_matcher_value": {"type": "str", "default": "iPXE"},
    "dhcp_matching_type": {"type": "str", "default": ""},
    "dhcp_server": {"type": "str", "default": "all"},
    "ipxe_bios": {"type": "path", "default": "/usr/lib/ipxe/undionly.kpxe"},
    "ipxe_efi": {"type": "path", "default": "/usr/lib/ipxe/ipxe.efi"},
    "ipxe_snp": {"type": "path", "default": "/usr/lib/ipxe/snponly.efi"},
}


def main() -> None:
    with stage(ARGUMENT_SPEC, supports_check_mode=True, diff=True, required_one_of=TARGET_REQUIRED_ONE_OF,
               required_if=[("manage_dhcp", True, ("dhcp_network",))]) as (module, result):
        p = module.params
        target = target_options(p)
        dhcp = DhcpOptions(p["dhcp_network"], p["dhcp_next_server"] or "", p["dhcp_firmware"],
                           p["dhcp_matcher_value"], p["dhcp_matching_type"], p["dhcp_server"], Path(p["ipxe_bios"]),
                           Path(p["ipxe_efi"]), p["dhcp_uefi_binary"], Path(p["ipxe_snp"])) if p["manage_dhcp"] else None
        opts = Options(p["dir"].strip("/"), p["keep"], p["verify"], p["rollback"], p["generation"] or None,
                       tuple(p["tftp_allow_addresses"]), dhcp, lock_timeout=p["lock_timeout"],
                       lock_stale=p["lock_stale"], stage=p["stage"], unstage=tuple(p["unstage"]))
        progress = Progress(Path(p["progress_log"]) if p["progress_log"] and not module.check_mode else None)
        result.update(deploy(target, opts, Path(p["dist_dir"]) if p["dist_dir"] else None, Path(p["staging_dir"]),
                             check=module.check_mode, progress=progress), progress_log=p["progress_log"])
        result["commands"] = ([f"sftp put {name}" for name in result["planned_uploads"]]
                              + result["rule_changes"] + result["dhcp_changes"]
                              + [f"/file/remove {result['dir']}/{gen}" for gen in result["removed_generations"]])
        result["diff"] = text_diff(f"{p['host']} owned /ip/tftp rules{' and DHCP' if p['manage_dhcp'] else ''}",
                                   *("\n".join(result.pop(k)) + "\n" for k in ("rules_before", "rules_after")),
                                   after_header=f"{p['host']} after")


if __name__ == "__main__":
    main()
