"""`make bench` / `python -m bench`: run every benchmark in turn (each prints its ratios)."""

from __future__ import annotations

import runpy
import sys

BENCHMARKS = ["bench.prune_decompress", "bench.initramfs", "bench.build_noop", "bench.deploy", "bench.default_image",
              "bench.secureboot"]

if __name__ == "__main__":
    worst = 0
    for name in sys.argv[1:] or BENCHMARKS:
        print(f"== {name}", flush=True)
        sys.argv = [name]
        try:  # each bench ends in sys.exit(main()): go on to the next one, keep the worst status
            runpy.run_module(name, run_name="__main__")
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            if code:
                print(f"== {name}: exit status {code}", flush=True)
            worst = max(worst, code)
    sys.exit(worst)
