"""The shipped default image vs the original project's method, on the fixture package set (issue 11, goal <= 0.60).

Tree: the rootfs ``build.yml`` installs for ``tests/fixtures/e2e.py``'s PACKAGES (linux-virt) from the fixture mirror
(or ``--rootfs DIR``, a tree made that way). Three copies are pruned and packed as the initramfs role packs them
(the project's reproducible cpio, ``initramfs_exclude``) and compressed alike, ``zstd -19 --long=27`` by default:

* **original** - the original project's method: its README's directory pruning (profile ``original``), kernel
  modules and firmware left compressed as Alpine ships them, no stripping;
* **default**  - the shipped defaults of ``roles/common/defaults/main.yml`` (profiles, hardware profiles and mode,
  decompression, strip), read from that file;
* **select**   - the same with ``kernel_hardware_mode: select`` (a known herd: only what the shipped captures need).

Prints bytes, the ratio against the original method measured in the same run, and the TFTP time at the RB4011's
~0.7 MB/s. Exit status 1 when default / original > 0.60.

    .venv/bin/python -m bench.default_image [--rootfs DIR] [--level 19] [--window-log 27] [--profiles a,b]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, cast

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(REPO / ".collections"), str(REPO)) if p not in sys.path]

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _compress, _cpio  # noqa: E402
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner  # noqa: E402
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _prune  # noqa: E402
from tests.fixtures.debian import clone_tree  # noqa: E402
from tests.fixtures.e2e import PACKAGES, build_fixture_image  # noqa: E402
from tests.fixtures.prune import HARDWARE, PROFILES  # noqa: E402

GOAL = 0.60
TFTP_BYTES_PER_S = 0.7e6  # RB4011 TFTP, lockstep (issue 11)
KERNEL_DEFAULTS = REPO / "roles/common/defaults/main.yml"  # the kernel role's pruning settings live there
INITRAMFS_DEFAULTS = REPO / "roles/initramfs/defaults/main.yml"


def shipped(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def fixture_rootfs(work: Path) -> Path:
    """build.yml's rootfs stage for the fixture PACKAGES (the e2e image's tree)."""
    return build_fixture_image(work, tags="rootfs").build / "rootfs"


def prune(root: Path, **options: Any) -> dict[str, Any]:
    opts = _prune.Options(root=root, profile_dirs=[PROFILES], hardware_dirs=[HARDWARE], firmware_audit="warn",
                          **options)
    plan = _prune.make_plan(opts)
    _prune.apply_plan(plan, Runner())
    return plan.report


def image_bytes(root: Path, spec: _compress.CompressionSpec, exclude: Sequence[str]) -> tuple[int, int, float]:
    """(cpio bytes, compressed bytes, seconds) of ``root`` packed like the initramfs role does."""
    plan = _cpio.plan_tree(root, source_date_epoch=1_700_000_000, exclude=exclude)
    sink = _compress.CountingSink()
    t = time.monotonic()
    with _compress.compressor(spec, cast(IO[bytes], sink), plan.archive_size()) as comp:
        _cpio.write_newc(plan, comp)
    return plan.archive_size(), sink.count, time.monotonic() - t


def variants(kernel: dict[str, Any], profiles: list[str] | None) -> dict[str, dict[str, Any]]:
    ours = {
        "profiles": profiles or list(kernel["kernel_prune_profiles"]),
        "hardware_profiles": list(kernel["kernel_hardware_profiles"]),
        "hardware_mode": kernel["kernel_hardware_mode"],
        "module_compression": kernel["kernel_module_compression"],
        "firmware_compression": kernel["kernel_firmware_compression"],
        "strip": bool(kernel["kernel_strip"]),
        "keep_modules": list(kernel["kernel_keep_modules"]),
    }
    return {
        "original": {"profiles": ["original"], "hardware_profiles": [], "module_compression": "keep",
                     "firmware_compression": "keep", "strip": False, "hardware_mode": "audit"},
        "default": ours,
        "select": {**ours, "hardware_mode": "select"},
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rootfs", type=Path, help="a fixture rootfs already built (default: build one)")
    initramfs = shipped(INITRAMFS_DEFAULTS)  # the build's settings are the defaults
    ap.add_argument("--level", type=int, default=int(initramfs["initramfs_level"]))
    ap.add_argument("--window-log", type=int, default=int(initramfs["initramfs_window_log"]))
    ap.add_argument("--profiles", help="comma-separated prune profiles to try instead of the shipped default")
    ap.add_argument("--only", help="comma-separated variants (original,default,select)")
    args = ap.parse_args(argv)
    spec = _compress.make_spec("zstd", args.level, args.window_log or None, 0)
    exclude = list(initramfs["initramfs_exclude"])
    kernel = shipped(KERNEL_DEFAULTS)
    todo = variants(kernel, args.profiles.split(",") if args.profiles else None)
    if args.only:
        todo = {k: v for k, v in todo.items() if k in args.only.split(",") or k == "original"}
    with tempfile.TemporaryDirectory(prefix="bench-default-image-", dir=os.environ.get("TMPDIR")) as tmp:
        work = Path(tmp)
        rootfs = args.rootfs or fixture_rootfs(work / "fixture")
        print(f"fixture packages: {' '.join(PACKAGES)}; rootfs {rootfs}")
        print(f"compression: {spec.describe()} (the project's cpio + compressor, initramfs_exclude)")
        rows: dict[str, tuple[int, int, float, dict[str, Any]]] = {}
        for name, options in todo.items():
            root = clone_tree(rootfs, work / name)
            report = prune(root, **options)
            raw, size, secs = image_bytes(root, spec, exclude)
            rows[name] = (raw, size, secs, options)
            shutil.rmtree(root)
            print(f"  {name}: {size:,d} bytes ({raw:,d} unpacked), {secs:.0f} s; "
                  f"modules kept {report['modules']['after']['count']}", flush=True)
    ref = rows["original"][1]
    print()
    print("| image | prune rules | initramfs bytes | vs original method | RB4011 TFTP (initramfs) |")
    print("|---|---|---:|---:|---:|")
    for name, (_raw, size, _secs, options) in rows.items():
        rules = ", ".join(options["profiles"]) + (f"; hardware {options['hardware_mode']}"
                                                  if options.get("hardware_profiles") else "")
        rules += "; modules " + options["module_compression"]
        print(f"| {name} | {rules} | {size:,d} | {size / ref:.3f} | {size / TFTP_BYTES_PER_S:.0f} s |")
    ratio = rows["default"][1] / ref if "default" in rows else 0.0
    if "default" in rows:
        print(f"\ndefault / original method = {ratio:.3f} (goal <= {GOAL:.2f}): {'ok' if ratio <= GOAL else 'FAIL'}")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
