#!/usr/bin/python
# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT

from __future__ import annotations

DOCUMENTATION = r"""
---
module: netboot_lock
short_description: Hold the build lock on the build directory, cache and dist/ for the whole playbook run
description:
  - Takes an exclusive C(flock) on each of O(paths) (through a lock file beside it, C(.<name>.netboot-lock)) for
    the C(ansible-playbook) process that runs the task, and keeps it until that process exits - at the end of the
    run, on failure, or when it is killed. The holder is recorded in the lock file (host, playbook pid, its start
    time, boot id, start time, playbook) and named by a second run's error.
  - A second run on the same paths fails at once naming the holder and the path, or waits up to O(timeout) seconds.
  - A record left by a holder that is gone (killed together with its keeper, or the machine rebooted) is taken over
    with a warning.
  - In check mode only reads, and warns when a run holds the lock.
  - An action plugin; it runs on the controller. docsite "Concurrent runs".
version_added: "0.2.0"
author:
  - homelab.alpine_netboot maintainers (@homelab)
options:
  paths:
    description: The directories to lock (build directory, cache, dist/).
    type: list
    elements: path
    required: true
  timeout:
    description: Seconds to wait for another run's lock (C(netboot_lock_timeout)); 0 fails at once.
    type: float
    default: 0
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the lock files and warns when a run holds them; takes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
    details: Linux (C(/proc), C(flock)); the locked paths must be on a local file system.
"""

EXAMPLES = r"""
- name: Lock the build directory, cache and dist/ for this run
  homelab.alpine_netboot.netboot_lock:
    paths: ["{{ netboot_build_dir }}", "{{ netboot_cache_dir }}", "{{ netboot_dist_dir }}"]
    timeout: "{{ netboot_lock_timeout }}"
"""

RETURN = r"""
commands:
  description: Commands run (none - the lock is taken in Python); kept for the collection's common result shape.
  returned: always
  type: list
  elements: str
holder:
  description: The holder recorded (host, pid of ansible-playbook, pid_start, boot_id, started, playbook, paths, keeper).
  returned: success, not in check mode
  type: dict
lock_files:
  description: The lock files, one per path.
  returned: always
  type: list
  elements: str
held_by:
  description: In check mode, locked path -> the run holding it.
  returned: check mode
  type: dict
"""

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._deps import stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError

ARGUMENT_SPEC = {
    "paths": {"type": "list", "elements": "path", "required": True},
    "timeout": {"type": "float", "default": 0},
}


def main() -> None:
    with stage(ARGUMENT_SPEC, supports_check_mode=True):
        raise NetbootError("homelab.alpine_netboot.netboot_lock runs as an action plugin on the controller")


if __name__ == "__main__":
    main()
