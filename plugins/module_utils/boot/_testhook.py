# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The TEST-ONLY boot hook: a cpio appended to a temporary copy of the initramfs by the boot test, and the parser
of what it prints. Never part of ``dist/``.

* ``hook_cpio(checks, marker)``: an uncompressed newc cpio adding an OpenRC ``local.d`` script that prints the output
  of each check between ``BOOT-TEST-CHECK-BEGIN/END`` lines and then ``marker`` on the serial console.
* ``parse_checks(console, checks)``: each check's output and exit status, from the console text.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _cpio
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError

# The one definition (module default, runner, tests); the boot_test role default repeats it in YAML and
# tests/unit/plugins/module_utils/boot/test_testhook.py checks that they agree.
DEFAULT_MARKER = "NETBOOT-BOOT-TEST-READY"
DEFAULT_CHECKS = ("cat /etc/hostname", "cat /proc/mounts")  # likewise (boot_test_checks)
CHECK_BEGIN = "BOOT-TEST-CHECK-BEGIN"
CHECK_END = "BOOT-TEST-CHECK-END"
_PRINTK = re.compile(r"\[\s*\d+\.\d{6}\] ")  # a kernel console message interleaved with check output


def hook_cpio(checks: Sequence[str], marker: str = DEFAULT_MARKER) -> bytes:
    """A TEST-ONLY uncompressed newc cpio appended after the image's initramfs.

    Adds an OpenRC ``local.d`` script (enabled in the default runlevel) that prints the output of ``checks``
    between ``BOOT-TEST-CHECK-BEGIN/END`` lines and then ``marker`` on the serial console. It gives no shell and no
    login; it only exists in the boot test's temporary copy of the initrd.
    """
    if not marker or "\n" in marker or "'" in marker:
        raise ConfigError(f"boot_test_marker {marker!r} must be one line without single quotes")
    lines = [
        "#!/bin/sh",
        "# homelab.alpine_netboot boot test hook (TEST ONLY: appended by the boot test, never shipped in dist/)",
        "out=/dev/ttyS0; [ -c $out ] || out=/dev/console",
        "dmesg -n 1 2>/dev/null  # keep kernel messages from interleaving with the check output (panics still show)",
        "{",
        "echo",  # OpenRC's "Starting local ..." has no newline yet
    ]
    for i, cmd in enumerate(checks):
        lines += [f"echo '{CHECK_BEGIN} {i}'", f"sh -c {shlex.quote(cmd)} </dev/null 2>&1",
                  f"echo \"{CHECK_END} {i} rc=$?\""]
    lines += [f"echo {shlex.quote(marker)}", "} >$out 2>&1", ""]
    script = "\n".join(lines)
    specs: list[dict[str, object]] = [
        {"path": "etc/local.d/zz-netboot-boot-test.start", "mode": 0o755, "content": script},
        {"path": "etc/runlevels/default/local", "type": "symlink", "target": "/etc/init.d/local"}]
    return _cpio.archive_bytes(_cpio.finalize(_cpio.spec_entries(specs, source_date_epoch=0), source_date_epoch=0))


def parse_checks(console: str, checks: Sequence[str]) -> list[dict[str, object]]:
    """Output and exit status of each hook check, from the console text."""
    results: list[dict[str, object]] = []
    for i, cmd in enumerate(checks):
        # not anchored: OpenRC's "Starting local ..." or output without a final newline may share the line
        m = re.search(rf"{CHECK_BEGIN} {i}\n(.*?)\n?{CHECK_END} {i} rc=(\d+)$", console, re.M | re.S)
        output = "\n".join(ln for ln in m.group(1).splitlines() if not _PRINTK.match(ln)) if m else None
        results.append({"command": cmd, "rc": int(m.group(2)) if m else None, "output": output})
    return results
