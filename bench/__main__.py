"""`make bench` / `python -m bench`: run every benchmark in turn (each prints its ratios)."""

from __future__ import annotations

import runpy
import sys

BENCHMARKS = ["bench.prune_decompress", "bench.initramfs", "bench.build_noop", "bench.deploy", "bench.default_image"]

if __name__ == "__main__":
    for name in sys.argv[1:] or BENCHMARKS:
        print(f"== {name}", flush=True)
        sys.argv = [name]
        runpy.run_module(name, run_name="__main__")
