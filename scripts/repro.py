"""``make repro``: build the image twice from the same inputs under a different environment and require
bit-identical artefacts.

1. A priming build (online, from the fixture mirror of the test material served on 127.0.0.1) fills a package cache.
2. Two builds **offline** (``netboot_offline=true``) from copies of that cache, lockfile, keys and overlay; the
   second copy is written in the opposite file order with other random mtimes on every input file, and the build
   runs with another umask, TZ, locale, PYTHONHASHSEED and a differently named build and dist directory.
3. Every file of the two ``dist/`` directories (``initramfs``, ``boot.ipxe``, ``manifest.json``, ``SHA256SUMS``,
   ``vmlinuz`` and the SBOM/ledger where present) must be byte-identical. On a difference the artefact is named;
   for the initramfs the cpio entries that differ are listed (name, field, both values). The artefacts must not
   contain the builder's paths either.

Exit status 0 when reproducible, 1 on a difference, 2 when the builds themselves fail.

``--inject-nondeterminism`` is a TEST-ONLY hook: it adds an overlay file holding the current time to each build
(``etc/netboot-repro-probe``), which the gate must catch and name.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _p in (str(REPO / ".collections"), str(REPO)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records import _ledger  # noqa: E402
from tests.fixtures.apkrepo import alpine_mirror, serve  # noqa: E402
from tests.fixtures.e2e import NODES, fixture_extravars, free_port  # noqa: E402
from tests.fixtures.playbook import run_playbook, write_inventory  # noqa: E402

PROBE = "etc/netboot-repro-probe"
# the boot server URL is an input (it is written into boot.ipxe): the same in both builds
BOOT_PORT = 8080
CPIO_FIELDS = ("mode", "uid", "gid", "nlink", "mtime", "ino", "devmajor", "devminor", "rdevmajor", "rdevminor")


# --------------------------------------------------------------------------------------------- comparison


def cpio_members(image: Path) -> dict[str, dict[str, Any]]:
    """name -> header fields + sha256 of the body, over every archive of an initramfs (the ledger's reader)."""
    out: dict[str, dict[str, Any]] = {}
    for mem in _ledger.iter_image(image):
        m = mem.entry
        if m is not None and m.name != "TRAILER!!!":
            out[m.name] = {f: getattr(m, f) for f in CPIO_FIELDS} | {
                "size": len(m.data), "sha256": hashlib.sha256(m.data).hexdigest()}
    return out


def cpio_differences(a: Path, b: Path) -> list[str]:
    ma, mb = cpio_members(a), cpio_members(b)
    lines = []
    for name in sorted(ma.keys() - mb.keys()):
        lines.append(f"{name}: only in the first build")
    for name in sorted(mb.keys() - ma.keys()):
        lines.append(f"{name}: only in the second build")
    for name in sorted(ma.keys() & mb.keys()):
        for field, va in ma[name].items():
            vb = mb[name][field]
            if va != vb:
                shown = (oct(va), oct(vb)) if field == "mode" else (va, vb)
                lines.append(f"{name}: {field} {shown[0]} != {shown[1]}")
    if not lines and list(ma) != list(mb):
        lines.append("same entries in another order")
    return lines


def compare_dists(a: Path, b: Path, builder_paths: Mapping[str, str]) -> list[str]:
    """Human-readable differences between two dist/ directories (empty: reproducible)."""
    problems = []
    names_a = {p.name for p in a.iterdir() if p.is_file()}
    names_b = {p.name for p in b.iterdir() if p.is_file()}
    for name in sorted(names_a ^ names_b):
        problems.append(f"{name}: only in {'the first' if name in names_a else 'the second'} build")
    for name in sorted(names_a & names_b):
        da, db = (a / name).read_bytes(), (b / name).read_bytes()
        if da != db:
            problems.append(f"{name}: differs (sha256 {hashlib.sha256(da).hexdigest()[:16]}... != "
                            f"{hashlib.sha256(db).hexdigest()[:16]}...)")
            if name == "initramfs":
                problems += [f"  initramfs entry {line}" for line in cpio_differences(a / name, b / name)]
        for label, path in builder_paths.items():
            if name != "initramfs" and path.encode() in da:
                problems.append(f"{name}: contains the builder's {label} path {path}")
    return problems


# --------------------------------------------------------------------------------------------- inputs


def copy_inputs(src: Path, dest: Path, *, reverse: bool, seed: int) -> int:
    """Copy a tree file by file in sorted (or reverse) order and give every copy a random mtime; returns the count."""
    rng = random.Random(seed)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    if reverse:
        files.reverse()
    for f in files:
        out = dest / f.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, out)
        os.chmod(out, f.stat().st_mode & 0o7777)
    for p in [dest, *dest.rglob("*")]:
        t = rng.randrange(100_000_000, 2_000_000_000)
        os.utime(p, (t, t), follow_symlinks=False)
    return len(files)


@contextmanager
def environment(umask: int, env: Mapping[str, str | None]) -> Iterator[None]:
    old_umask = os.umask(umask)
    old = {k: os.environ.get(k) for k in env}
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        os.umask(old_umask)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def other_locale() -> str:
    """A UTF-8 locale other than C.UTF-8 when the system has one (Ansible needs UTF-8)."""
    import subprocess

    names = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False).stdout.split()
    others = [n for n in names if n.lower().endswith(("utf8", "utf-8")) and not n.lower().startswith("c.")]
    return others[0] if others else "C.utf8"


# --------------------------------------------------------------------------------------------- builds


def build(work: Path, extravars: dict[str, Any], label: str) -> float:
    t = time.monotonic()
    inventory = write_inventory(work / "hosts.yml", NODES)
    res = run_playbook("build.yml", work, extravars, inventory=inventory)
    if res.rc != 0:
        msgs = "; ".join(m for m in res.failure_messages() if m) or res.stdout[-3000:]
        raise SystemExit(f"repro: the {label} build failed: {msgs}")
    return time.monotonic() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, help="work directory (default: a temporary one, removed afterwards)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--level", type=int, default=3, help="initramfs compression level (default 3)")
    ap.add_argument("--extravars", type=json.loads, default={}, metavar="JSON",
                    help="more extravars for all three builds, e.g. a netboot_binaries entry")
    ap.add_argument("--inject-nondeterminism", action="store_true",
                    help="TEST-ONLY: put a file with the current time in each build's overlay (must fail the gate)")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="netboot-repro-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        mirror = alpine_mirror()
        port = free_port()
        prime = work / "prime"
        (prime / "overlay/etc").mkdir(parents=True, exist_ok=True)
        (prime / "overlay/etc/motd").write_text("netboot reproducibility check\n")
        (prime / "overlay/etc/motd").chmod(0o644)
        with serve(mirror.path, port):
            t_prime = build(prime, fixture_extravars(prime, mirror, port, BOOT_PORT, initramfs_level=args.level,
                                                     **args.extravars),
                            "priming (online)")
        runs: list[tuple[str, Path, str, str, bool, int, dict[str, str | None]]] = [
            ("first", work / "a", "build", "dist", False, 0o022,
             {"TZ": "UTC", "LC_ALL": "C.utf8", "LANG": "C.utf8", "PYTHONHASHSEED": "1"}),
            ("second", work / "b", "elsewhere/tree", "out/published", True, 0o077,
             {"TZ": "Pacific/Chatham", "LC_ALL": other_locale(), "LANG": None, "PYTHONHASHSEED": "4242"}),
        ]
        dists = []
        times = []
        for label, root, build_rel, dist_rel, reverse, umask, env in runs:
            n = 0
            for name in ("cache", "overlay", "keys"):
                src = mirror.keys_dir if name == "keys" else prime / name
                n += copy_inputs(src, root / name, reverse=reverse, seed=len(label))
            shutil.copyfile(prime / "alpine-lock.json", root / "alpine-lock.json")
            if args.inject_nondeterminism:
                probe = root / "overlay" / PROBE
                probe.parent.mkdir(parents=True, exist_ok=True)
                probe.write_text(f"{time.time_ns()}\n")
                probe.chmod(0o644)
            extravars = fixture_extravars(
                root, mirror, port, BOOT_PORT, initramfs_level=args.level, netboot_offline=True, **args.extravars,
                alpine_extra_keys_dir=str(root / "keys"),
                netboot_build_dir=str(root / build_rel), netboot_dist_dir=str(root / dist_rel),
            )
            with environment(umask, env):
                times.append(build(root, extravars, f"{label} (offline)"))
            print(f"repro: {label} build: {n} input files copied {'in reverse order ' if reverse else ''}with random "
                  f"mtimes, umask {umask:03o}, TZ={env['TZ']}, LC_ALL={env['LC_ALL']}, "
                  f"PYTHONHASHSEED={env['PYTHONHASHSEED']}, build dir {build_rel}, "
                  f"{times[-1]:.1f}s")
            dists.append(root / dist_rel)
        builder_paths = {"work": str(work.resolve()), "build": str((work / "a/build").resolve())}
        problems = compare_dists(dists[0], dists[1], builder_paths)
        total = time.monotonic() - started
        if problems:
            print("repro: NOT reproducible:")
            for p in problems:
                print("  " + p)
            print(f"repro: {total:.1f}s (priming {t_prime:.1f}s)")
            return 1
        names = sorted(p.name for p in dists[0].iterdir() if p.is_file())
        print(f"repro: bit-identical: {', '.join(names)}")
        print(f"repro: {total:.1f}s (priming {t_prime:.1f}s, offline builds {times[0]:.1f}s + {times[1]:.1f}s)")
        return 0
    finally:
        if not (args.keep or args.work):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
