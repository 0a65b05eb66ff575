#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Ansible module: verify from the controller what a netbooting node gets from a RouterOS boot server (RB4011)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rb4011_verify
short_description: Check what a node gets from an RB4011 boot server over TFTP and DHCP
description:
  - Reads the router over the API (files, C(/ip/tftp) rules, the live generation) and then, from the controller,
    fetches every file a node fetches through the router's TFTP service and rules, once, with iPXE's block size
    (1432) - the iPXE binaries, the stable C(boot.ipxe), the live generation's C(SHA256SUMS) and every file its
    script fetches (kernel, microcode, initramfs, per-node initrds).
  - Compares each sha256 with what the deploy put there - the generation's own C(SHA256SUMS) on the router (checked
    against the generation id), C(boot.ipxe) against the deploy's rewrite of the listed C(boot.ipxe), each iPXE
    binary against the digest naming its directory. Never against the local dist/.
  - Reports MB/s per file and the predicted TFTP seconds of one node's boot; fails naming the file and what differs
    (no rule, wrong bytes, too big without rollover, timeout, the controller outside the rules' C(ip-addresses)).
  - With root or CAP_NET_RAW on the boot network, asks the router's DHCP server as UEFI PXE firmware (option 93 = 7
    and 9), BIOS PXE (93 = 0) and iPXE (77 = C(iPXE)) would, from MACs of its own, never sending a REQUEST (no lease
    is taken), and follows each answer the way EDK2 and iPXE read it to C(boot.ipxe); an answer that would loop fails.
    Where it cannot ask, the report marks the DHCP check skipped with the reason.
  - Writes the report as JSON to O(report) (not in check mode).
version_added: "0.2.0"
author: homelab.alpine_netboot maintainers (@homelab)
options:
  dir:
    description: Directory on the router holding the generations (as for rb4011_deploy).
    type: str
    default: netboot
  tftp_address:
    description: The router's address nodes fetch from (the DHCP next-server); default O(host).
    type: str
  tftp_port:
    description: The router's TFTP port.
    type: int
    default: 69
  tftp_timeout:
    description: Seconds to wait for each TFTP packet before sending again.
    type: float
    default: 2.0
  tftp_retries:
    description: How often a TFTP request or acknowledgement is sent again before the file counts as timed out.
    type: int
    default: 5
  pass_512:
    description: Also read every file with 512-byte blocks (an RFC 1350 client; slow for large files).
    type: bool
    default: false
  dhcp:
    description: Ask the router's DHCP server as each client kind would (needs root or CAP_NET_RAW and the boot
      network); false marks the DHCP check skipped.
    type: bool
    default: true
  dhcp_interface:
    description: Interface on the boot network to ask DHCP on; default the one holding the controller's address
      toward O(tftp_address), if that address is on its network.
    type: str
  dhcp_timeout:
    description: Seconds to wait for each DHCP answer.
    type: float
    default: 3.0
  report:
    description: File the report is written to as JSON (not in check mode).
    type: path
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.routeros_api
  - homelab.alpine_netboot.netboot.attributes
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Runs the same read-only checks and returns the report; writes no report file.
  diff_mode:
    support: none
  platform:
    platforms: posix
    details: Runs on the controller (C(connection=local)) and talks to RouterOS over the network.
notes:
  - The RouterOS user needs the api and read policies; nothing is written to the router.
  - Integrity, not authenticity - this proves what the router serves; anyone on the boot LAN can still answer DHCP
    and TFTP.
requirements:
  - Jinja2 (Python library)
  - librouteros (Python library)
  - paramiko (Python library)
"""

EXAMPLES = r"""
- name: Verify the boot server
  homelab.alpine_netboot.rb4011_verify:
    host: 192.168.88.1
    user: netboot
    password: "{{ vault_rb4011_password }}"
    report: /srv/netboot/build/verify-rb4011.json
"""

RETURN = r"""
ok:
  description: True when every check that ran passed.
  returned: always
  type: bool
generation:
  description: The live generation checked.
  returned: success
  type: str
files:
  description:
    - Per file read over TFTP - request, role, real_filename, size, sha256, expected_sha256, expected_from, seconds,
      MBps, blocks, rolled_over, rollover_512_needed, rollover_allowed, problem, ok, pass_512.
  returned: always
  type: list
  elements: dict
boot_seconds:
  description: Predicted TFTP seconds of one node's boot at the measured rates (boot_files summed).
  returned: always
  type: float
boot_files:
  description: The files one node's boot fetches, as counted in RV(boot_seconds).
  returned: always
  type: list
  elements: str
dhcp:
  description: C(status) checked or skipped (with C(reason)); per client kind the answer and the chain followed.
  returned: always
  type: dict
clients:
  description: Per iPXE binary whether it has iPXE's C(sha256sum) command, and per firmware kind whether the
    binary it gets can check boot digests (C(boot_checked)).
  returned: always
  type: dict
failures:
  description: What failed, each naming the file or client kind.
  returned: always
  type: list
  elements: str
report:
  description: The report file written (null in check mode).
  returned: always
  type: str
commands:
  description: What was asked of the router - the API reads, each TFTP read (file and block size) and each DHCP
    question (client kind); nothing is written to it.
  returned: always
  type: list
  elements: str
"""

from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import atomic_write_bytes, dump_json
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._routeros import (
    API_ARGUMENT_SPEC,
    api_options,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._verify import VerifyOptions, verify

ARGUMENT_SPEC = {
    **API_ARGUMENT_SPEC,
    "dir": {"type": "str", "default": "netboot"},
    "tftp_address": {"type": "str"},
    "tftp_port": {"type": "int", "default": 69},
    "tftp_timeout": {"type": "float", "default": 2.0},
    "tftp_retries": {"type": "int", "default": 5},
    "pass_512": {"type": "bool", "default": False, "no_log": False},
    "dhcp": {"type": "bool", "default": True},
    "dhcp_interface": {"type": "str"},
    "dhcp_timeout": {"type": "float", "default": 3.0},
    "report": {"type": "path"},
}


def main() -> None:
    with stage(ARGUMENT_SPEC, supports_check_mode=True) as (module, result):
        p = module.params
        result["ok"] = False
        api = api_options(p)
        opts = VerifyOptions(p["dir"].strip("/"), p["tftp_address"] or "", p["tftp_port"], p["pass_512"],
                             p["tftp_timeout"], p["tftp_retries"], p["dhcp"], p["dhcp_interface"] or "",
                             p["dhcp_timeout"])
        report = verify(api, opts)
        doc = report.as_dict()
        result.update(doc, report=None)
        if p["report"] and not module.check_mode:
            Path(p["report"]).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(Path(p["report"]), dump_json(doc))
            result["report"] = p["report"]
        result["commands"] = (["/system/resource/print", "/file/print", "/ip/tftp/print"]
                              + [f"tftp get {f['request']} blksize {result['tftp_blksize']}" for f in result["files"]]
                              + [f"dhcp discover as {kind}" for kind in (result["dhcp"].get("answers") or {})])
        if not report.ok:
            raise NetbootError(f"{p['host']}: verify failed: " + "; ".join(report.failures))
        result["changed"] = False


if __name__ == "__main__":
    main()
