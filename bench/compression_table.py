"""``make compression-table``: the original README's compression table, measured on your own image tree.

Packs the tree (default: ``build/image``, what ``build.yml`` made) the way the initramfs role does - the project's
reproducible newc cpio without ``initramfs_exclude`` - once into a temporary file, then compresses it with the
project's own compressor (python-zstandard / gzip, exactly what ``make_initramfs`` runs) at gzip -9, zstd 3/9/19/22
and zstd -19/-22 with ``--long`` 24..27, all threads. Prints a Markdown table - bytes, ratio against gzip -9 and
against zstd -19, seconds - and the machine it ran on, so you can pick ``initramfs_level`` and
``initramfs_window_log`` for your image. The ratios are the point: the seconds depend on the machine (and on what
else runs on it).

    .venv/bin/python -m bench.compression_table [TREE] [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, cast

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(REPO / ".collections"), str(REPO)) if p not in sys.path]

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _compress, _cpio  # noqa: E402
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError  # noqa: E402
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records._manifest import source_date_epoch  # noqa: E402

# (label, method, level, window_log); the rows of the original README's table
ROWS: list[tuple[str, str, int, int | None]] = [
    ("gzip -9 (reference)", "gzip", 9, None),
    ("zstd -3", "zstd", 3, None),
    ("zstd -9", "zstd", 9, None),
    ("zstd -19", "zstd", 19, None),
    ("zstd -22", "zstd", 22, None),
    ("zstd -19 --long=24", "zstd", 19, 24),
    ("zstd -19 --long=25", "zstd", 19, 25),
    ("zstd -19 --long=26", "zstd", 19, 26),
    ("zstd -19 --long=27 (build default)", "zstd", 19, 27),
    ("zstd -22 --long=27", "zstd", 22, 27),
]
QUICK_SKIP = {"zstd -22", "zstd -22 --long=27"}


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import zstandard

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{model}, {os.cpu_count()} CPUs, load {load:.1f}; Python {platform.python_version()}, "
            f"python-zstandard {zstandard.__version__} (libzstd {'.'.join(map(str, zstandard.ZSTD_VERSION))})")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tree", nargs="?", type=Path, default=REPO / "build" / "image")
    ap.add_argument("--quick", action="store_true", help="skip the -22 rows (minutes each)")
    ap.add_argument("--threads", type=int, default=0, help="zstd workers (0 = all CPUs, like -T0)")
    args = ap.parse_args(argv)
    if not args.tree.is_dir():
        print(f"{args.tree} is not a directory: build the image first (make build) or name a tree", file=sys.stderr)
        return 2
    exclude = yaml.safe_load((REPO / "roles/initramfs/defaults/main.yml").read_text())["initramfs_exclude"]
    try:
        sde = source_date_epoch(args.tree)[0]
    except NetbootError:  # a tree without package build times: any fixed epoch does for a table
        sde = 0
    plan = _cpio.plan_tree(args.tree, source_date_epoch=sde, exclude=exclude)
    with tempfile.TemporaryFile(dir=os.environ.get("TMPDIR")) as raw:
        _cpio.write_newc(plan, cast(IO[bytes], raw))
        size = raw.tell()
        print(f"Tree {args.tree}: {plan.file_count} files, {size:,d} bytes as cpio ({size / 1e6:.0f} MB)")
        print(f"Machine: {machine()}\n")
        results: list[tuple[str, int, float]] = []
        for label, method, level, window in ROWS:
            if args.quick and label in QUICK_SKIP:
                continue
            spec = _compress.make_spec(method, level, window, args.threads)
            raw.seek(0)
            sink = _compress.CountingSink()
            t = time.monotonic()
            with _compress.compressor(spec, cast(IO[bytes], sink), size) as comp:
                while chunk := raw.read(1 << 20):
                    comp.write(chunk)
            results.append((label, sink.count, time.monotonic() - t))
            print(f"  {label}: {sink.count:,d} bytes, {results[-1][2]:.1f} s", file=sys.stderr, flush=True)
    gz = next(n for label, n, _unused in results if label.startswith("gzip"))
    z19 = next((n for label, n, _unused in results if label == "zstd -19"), gz)
    print("| Config | Bytes | Size | vs gzip-9 | vs zstd-19 | Time |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, n, secs in results:
        print(f"| {label} | {n:,d} | {n / 1e6:.1f} MB | {(n / gz - 1) * 100:+.1f}% | {(n / z19 - 1) * 100:+.1f}% | "
              f"{secs:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
