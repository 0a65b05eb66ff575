#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stage_tree
short_description: Keep a working copy of the rootfs for the stages that edit it
description:
  - Copies O(src) to O(dest) (owners, modes, hardlinks, xattrs kept) when the source's manifest or what the stages
    in O(stages) load changed since the last copy, so editing always starts from the full rootfs, a rerun with
    unchanged inputs does nothing, and an input changed and changed back gives the first image again.
  - The copy is built beside O(dest) and swapped in when complete.
  - A file beside O(dest) (C(<dest>.stage.json), e.g. C(build/image.stage.json)) records what it was made from;
    nothing is added inside O(dest), which ships in the image.
  - In check mode, when O(src) does not exist yet (its stage was not run for real), the module reports that it
    would make the copy and succeeds.
version_added: "0.1.0"
author:
  - homelab.alpine_netboot maintainers (@homelab)
options:
  src:
    description: The pristine tree (the rootfs built by M(homelab.alpine_netboot.alpine_rootfs)).
    type: path
    required: true
  dest:
    description: The working copy to (re)create.
    type: path
    required: true
  stages:
    description:
      - The stages that will edit O(dest), each with the options its role passes to its module; the key of the copy
        is computed from what they load (settings, and the contents of the files they read).
      - C(prune) (M(homelab.alpine_netboot.prune_kernel); its profiles and hardware profiles are found by name in
        C(profile_dirs)/C(hardware_dirs) or by path, as that module finds them), C(node)
        (M(homelab.alpine_netboot.node_config); C(boot_script) and C(init_scripts) are read) and C(binaries)
        (M(homelab.alpine_netboot.netboot_binaries); each entry is pinned by its sha256).
    type: dict
    default: {}
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.attributes
  - ansible.builtin.action_common_attributes
attributes:
  diff_mode:
    support: none
requirements:
  - PyYAML (Python library)
  - zstandard (Python library)
"""

EXAMPLES = r"""
- name: Stage the image tree
  homelab.alpine_netboot.stage_tree:
    src: build/rootfs
    dest: build/image
    stages:
      prune:
        profiles: [original]
        hardware_mode: audit
        profile_dirs: ["{{ role_path }}/../kernel/files/profiles"]
"""

RETURN = r"""
digest:
  description: Digest of the source manifest and the stage inputs the copy is (or would be) made from.
  returned: always
  type: str
stage_inputs:
  description: Per stage in O(stages), the digest of what it loads.
  returned: always
  type: dict
commands:
  description: External commands run.
  returned: always
  type: list
  elements: str
"""

from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._checkmode import exit_if_missing
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._stage import (
    apply_stage,
    plan_stage,
    stage_inputs,
    stage_key,
)

ARGUMENT_SPEC = {
    "src": {"type": "path", "required": True},
    "dest": {"type": "path", "required": True},
    "stages": {"type": "dict", "default": {}},
}


def main() -> None:
    runner = Runner()
    with stage(ARGUMENT_SPEC, runner, supports_check_mode=True) as (module, result):
        p = module.params
        src = Path(p["src"]).absolute()
        inputs = stage_inputs(p["stages"])
        exit_if_missing(module, src, f"copy {src} to {p['dest']}", "rootfs", digest=None, stage_inputs=inputs)
        plan = plan_stage(src, Path(p["dest"]).absolute(), stage_key(inputs))
        if plan.changed and not module.check_mode:
            apply_stage(plan, runner)
        result.update(changed=plan.changed, digest=plan.digest, stage_inputs=inputs)


if __name__ == "__main__":
    main()
