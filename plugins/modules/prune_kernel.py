#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Ansible module: prune kernel modules, firmware and files of a rootfs by data rules and hardware profiles."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: prune_kernel
short_description: Shrink a rootfs's kernel modules and firmware without breaking boot
description:
  - Selects the kernel modules of C(root)/lib/modules/<kver> to keep from rule profiles (remove/except/keep globs)
    or, when O(hardware_profiles) are given, from modalias captures of real machines matched against
    C(modules.alias) plus a base set; adds the full closure (C(modules.dep) dependencies, softdep and weakdep
    targets resolved through aliases) and removes the rest.
  - Keeps exactly the firmware the kept modules name (C(firmware:) in their modinfo, also as C(.zst)/C(.xz), with the
    symlinks leading to it) plus explicit keep globs, and audits it - a kept module whose firmware is absent fails
    the run naming the module, the file and the Alpine package that ships it.
  - Optionally decompresses C(.ko.gz/.ko.xz/.ko.zst) modules and C(.zst/.xz) firmware so the outer initramfs
    compressor does better, and strips userland ELF files (never C(.ko) files, which may carry signatures).
  - Regenerates C(modules.dep) and friends with the target tree's own kmod (run through the tree's ELF
    interpreter), or the host kmod for a tree without one, then verifies the result and runs
    C(modprobe --show-depends) for every kept module.
  - Writes a JSON report (bytes and counts before/removed/after, per rule and per top directory).
version_added: "0.1.0"
author: homelab.alpine_netboot maintainers (@homelab)
options:
  kernel_version:
    description: Kernel version under C(lib/modules); detected when there is exactly one.
    type: str
  profiles:
    description:
      - Rule profiles, as names (looked up in O(profile_dirs), then in the installed collection's
        C(roles/kernel/files/profiles) - C(original), C(headless), C(base), C(n100)) or YAML file paths.
      - Format - C(modules.remove/except/keep/base), C(firmware.remove/keep), C(files.remove), lists of fnmatch
        globs (C(*) crosses C(/), a pattern also matches everything below it) or module names.
    type: list
    elements: str
    default: [original, headless, n100]
  hardware_profiles:
    description:
      - Modalias capture files (C(find /sys/devices -name modalias -exec cat {} +), optionally with C(lsmod) output),
        as names looked up in O(hardware_dirs) (C(<name>.modalias)), then in the installed collection's
        C(roles/kernel/files/hardware) - C(n100-i226), C(n100-rtl8111) - or paths. Several are a union.
      - When given, only modules matching these machines, the profiles' C(modules.base) set, keep rules and their
        closure stay. Without them, every module not removed by a rule stays.
    type: list
    elements: str
    default: [n100-i226, n100-rtl8111]
  hardware_mode:
    description:
      - C(select) keeps only what the O(hardware_profiles) need (plus base set, keep rules and closure); remove rules
        still win over hardware matches (e.g. C(i915) with the C(original) profile), with a warning.
      - C(audit) keeps every module not removed by a rule (a broad image that still boots unknown boxes), always keeps
        the drivers the hardware profiles match (like keep rules) and scopes the firmware audit to them - only
        modules those machines need (and keep rules) fail the run on missing firmware; the others warn.
    type: str
    choices: [select, audit]
    default: audit
  keep_modules:
    description: Module names always kept (with their closure). An unknown name is an error.
    type: list
    elements: str
    default: []
  node_roles:
    description: C(node_roles) (role -> C(services), C(modules), ...); every module a role loads is kept too.
  module_compression:
    description: C(decompress) turns C(.ko.gz/.ko.xz/.ko.zst) into C(.ko) inside the image.
    type: str
    choices: [keep, decompress]
    default: decompress
  firmware_compression:
    description: C(decompress) turns C(.zst/.xz) firmware into plain files (symlinks follow).
    type: str
    choices: [keep, decompress]
    default: decompress
  firmware_audit:
    description: What a kept module naming an absent firmware file does - fail (C(error)) or warn.
    type: str
    choices: [error, warn]
    default: error
  strip:
    description: Strip debug info and unneeded symbols from userland ELF executables and libraries (never C(.ko)).
    type: bool
    default: true
  report:
    description: Path of the JSON report. Rewritten when the tree changes or the file is absent.
    type: path
  profile_dirs:
    description:
      - Directories searched for profile names (the C(kernel) role passes its C(files/profiles)).
      - A module run by Ansible carries only C(plugins/module_utils), not the collection's C(roles/), so a shipped
        profile name is found only through this option (the role sets it); without it the module fails naming
        this option. Called directly from an installed collection, the shipped directory is searched last.
    type: list
    elements: path
    default: []
  hardware_dirs:
    description:
      - Directories searched for hardware profile names (the C(kernel) role passes its C(files/hardware)).
      - Same rule as O(profile_dirs) for the shipped C(roles/kernel/files/hardware).
    type: list
    elements: path
    default: []
  verify:
    description: Run the target's C(modprobe --show-depends) for every kept module after pruning.
    type: bool
    default: true
notes:
  - Check mode computes the plan without touching files; diff mode lists what goes.
  - A second run with the same input finds nothing to remove and current metadata, and reports C(changed=false).
extends_documentation_fragment:
  - homelab.alpine_netboot.netboot.image_tree
  - homelab.alpine_netboot.netboot.node_roles
  - homelab.alpine_netboot.netboot.attributes
  - ansible.builtin.action_common_attributes
requirements:
  - PyYAML (Python library)
  - zstandard (Python library)
"""

EXAMPLES = r"""
- name: Prune like the original image
  homelab.alpine_netboot.prune_kernel:
    root: /build/rootfs
    profiles: [original]
    profile_dirs: ["{{ role_path }}/files/profiles"]
    report: /build/prune-report.json

- name: Keep only what the N100 herd needs, decompressed for a better outer zstd
  homelab.alpine_netboot.prune_kernel:
    root: /build/rootfs
    profiles: [base]
    hardware_profiles: [n100-i226, /srv/captures/new-box.modalias]
    keep_modules: [zfs]
    module_compression: decompress
    firmware_compression: decompress
    strip: true
    profile_dirs: ["{{ role_path }}/files/profiles"]
    hardware_dirs: ["{{ role_path }}/files/hardware"]
"""

RETURN = r"""
stage_input:
  description: Digest of what this stage loads (M(homelab.alpine_netboot.stage_tree) keys the image copy on it).
  returned: success
  type: str
kernel_version:
  description: The kernel version pruned.
  returned: always
  type: str
report:
  description: The prune report (same content as the JSON file).
  returned: always
  type: dict
kept_modules:
  description: Names of the kept modules.
  returned: always
  type: list
  elements: str
removed:
  description: Number of paths removed (or to remove in check mode).
  returned: always
  type: int
commands:
  description: Commands run (depmod, modprobe --show-depends, strip).
  returned: always
  type: list
  elements: str
"""

from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._checkmode import exit_if_missing
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import (
    atomic_write_bytes,
    read_json_object,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._options import (
    IMAGE_TREE,
    NODE_ROLES,
    PRUNE,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _noderoles, _prune
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._stage import stage_inputs, stamp_path

ARGUMENT_SPEC = {
    **IMAGE_TREE, **PRUNE, **NODE_ROLES,
    "report": {"type": "path"},
    "verify": {"type": "bool", "default": True},
}


def _newer(a: Path, b: Path) -> bool:
    return a.is_file() and b.is_file() and a.stat().st_mtime_ns > b.stat().st_mtime_ns


def main() -> None:
    runner = Runner()
    with stage(ARGUMENT_SPEC, runner, supports_check_mode=True, diff=True, image=True) as (module, result):
        p = module.params
        exit_if_missing(module, p["root"], f"prune kernel modules and firmware in {p['root']}", "image", report=None)
        report = Path(p["report"]) if p["report"] else None
        role_modules = _noderoles.role_modules(p["node_roles"])
        plan = _prune.make_plan(_prune.Options(
            root=Path(p["root"]),
            keep_modules=p["keep_modules"] + [m for ms in role_modules.values() for m in ms],
            **{k: p[k] for k in ("kernel_version", "profiles", "hardware_profiles", "hardware_mode",
                                 "module_compression", "firmware_compression", "firmware_audit", "strip")},
            **{k: [Path(d) for d in p[k]] for k in ("profile_dirs", "hardware_dirs")},
            # a report older than the copy's stamp describes another copy (stage_tree remade it from the full rootfs)
            previous_report=read_json_object(report) if report and not _newer(stamp_path(Path(p["root"])), report)
            else None,
        ))
        if not module.check_mode:
            if plan.changes:
                _prune.apply_plan(plan, runner, verify=p["verify"])
            if report and (plan.changes or not report.exists()):
                atomic_write_bytes(report, _prune.PRUNE_REPORT.dump(plan.report))
        result.update(changed=plan.changes, kernel_version=plan.kver, report=plan.report,
                      kept_modules=sorted(plan.kept_modules), removed=len(plan.remove), warnings=plan.warnings,
                      stage_input=stage_inputs({"prune": p})["prune"], diff=_prune.diff(plan))


if __name__ == "__main__":
    main()
