"""The size ledger: what is in the image and what each part costs, measured on the image a node downloads.

The groups (module directories, firmware directories, packages, overlay, other), the estimate method and its
``TOLERANCE``, the files and the delta are README's "Size ledger and budgets". The groups partition the exact cpio
bytes of the built initramfs (header, name, data, padding). Each group's estimate is its size compressed alone with
the build's settings (``_compress.compressor``) scaled by ``real / raw sum``, with largest-remainder rounding so the
estimates add up to the real size exactly; a file's share is its group's estimate times its fraction of the group's
bytes, and packages (all their files, modules and firmware included) are sums of file shares, rounded so that
packages + unowned bytes add up to the real size as well.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import hashlib
import io
import json
import lzma
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from ansible_collections.homelab.alpine_netboot.plugins.module_utils import _apkdb, _binaries, _deps, _glibc
from ansible_collections.homelab.alpine_netboot.plugins.module_utils import _compress as compress
from ansible_collections.homelab.alpine_netboot.plugins.module_utils import _cpio as cpio
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import ConfigError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._fs import (
    dump_json,
    parse_json_object,
    read_json_object,
    sha256_file,
    write_if_changed,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._manifest import (
    LEDGER_NAME,
    find_kernel,
    publishable,
    read_prune_report,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._minram import minimum_ram

_deps.lazy("matplotlib")  # imported where used
_deps.lazy("zstandard")  # imported where used

LEDGER_FORMAT = "homelab.alpine_netboot/ledger/1"
JSON_NAME = LEDGER_NAME
MD_NAME = "ledger.md"
SVG_NAME = "ledger.svg"
TOLERANCE = 0.10  # |raw sum of groups compressed alone - real size| / real size
TOP = 5  # contributors named in a budget failure
CHART_BARS = 20
DEFAULT_SERVER_GENERATIONS = 2  # live + 1 kept (rb4011_keep_generations when the deploy role defines it)
BUDGETS = ("netboot_budget_image_bytes", "netboot_budget_node_ram_bytes", "netboot_budget_server_bytes")
_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------- reading the image


@dataclass(frozen=True)
class Member:
    entry: cpio.Member | None  # None: zeros between archives
    raw: bytes  # the member's exact newc bytes (header, name, padding, body, padding), or the zeros
    compressed_segment: bool  # False: a plain cpio segment (early microcode), stored as is

    @property
    def name(self) -> str:
        return self.entry.name if self.entry else ""


def _members(src: cpio.Stream, path: Path, compressed: bool) -> Iterator[Member]:
    """Members of concatenated newc archives in ``src`` up to its end (or a non-cpio byte for a plain segment)."""
    while True:
        pad = src.skip_zeros()
        if pad and not compressed:
            yield Member(None, b"\0" * pad, False)
        head = src.peek(6)
        if head not in cpio.MAGICS:
            if not head or not compressed:
                return
            raise NetbootError(f"{path}: not a newc cpio inside the compressed image (found {head!r}); rebuild it")
        for m in cpio.read_newc(src, what=f"{path} (unpacked)", trailer=True):
            yield Member(m, m.raw, compressed)


def iter_image(path: str | os.PathLike[str]) -> Iterator[Member]:
    """Every member of an initramfs file: plain newc segments and gzip/zstd/xz-compressed ones, in order."""
    p = Path(path)
    try:
        raw = open(p, "rb")
    except OSError as exc:
        raise NetbootError(f"cannot read the initramfs {p}: {exc.strerror}; build it first") from exc
    with raw:
        outer = cpio.Stream(raw)
        while True:
            pad = outer.skip_zeros()
            if pad:
                yield Member(None, b"\0" * pad, False)
            head = outer.peek(6)
            if not head:
                return
            if head in cpio.MAGICS:
                yield from _members(outer, p, compressed=False)
                continue
            method = compress.sniff(head)
            if method is None:
                raise NetbootError(f"{p}: unknown data at byte {outer.pos} ({head!r}); expected a cpio, gzip, zstd or xz")
            # the rest of the file is one compressed stream (the kernel allows more; build.yml writes one)
            rest = io.BufferedReader(cast(Any, _Rest(outer)))
            inner: IO[bytes]
            if method == "zstd":
                import zstandard

                inner = cast(IO[bytes], zstandard.ZstdDecompressor(max_window_size=1 << 31).stream_reader(
                    rest, read_across_frames=True))
            elif method == "gzip":
                inner = cast(IO[bytes], gzip.GzipFile(fileobj=rest, mode="rb"))
            else:
                inner = cast(IO[bytes], lzma.LZMAFile(rest, "rb"))
            try:
                yield from _members(cpio.Stream(inner), p, compressed=True)
            except (OSError, EOFError, lzma.LZMAError) as exc:
                raise NetbootError(f"{p}: cannot decompress the initramfs ({exc}); rebuild it") from exc
            return


class _Rest(io.RawIOBase):
    """The unread part of a ``cpio.Stream`` as a raw stream."""

    def __init__(self, src: cpio.Stream) -> None:
        self.src = src

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.src.read(len(b))
        b[: len(data)] = data
        return len(data)


# -------------------------------------------------------------------------------------------------- grouping


@dataclass(frozen=True)
class Classifier:
    owners: dict[str, str]
    overlay: frozenset[str] = frozenset()

    def group(self, rel: str) -> tuple[str, str]:
        """(kind, group name) of an image path."""
        parts = rel.split("/")
        if len(parts) >= 3 and parts[0] == "lib" and parts[1] == "modules":
            below = parts[3:]
            if below and below[0] == "kernel" and len(below) >= 2:
                return "modules", "/".join(below[: min(3, len(below) - 1)])
            return "modules", "modules metadata"
        if len(parts) >= 3 and parts[0] == "lib" and parts[1] == "firmware":
            return "firmware", "firmware/" + (parts[2] if len(parts) > 3 else "(top level)")
        owner = _apkdb.owner_of(self.owners, rel)
        if owner is not None:
            return "package", owner
        if rel in self.overlay:
            return "overlay", "overlay"
        return "other", "not from a package: " + (parts[0] if len(parts) > 1 else rel)


def overlay_files(overlay_dir: str | os.PathLike[str] | None) -> frozenset[str]:
    if not overlay_dir or not os.path.isdir(overlay_dir):
        return frozenset()
    found = set()
    for dirpath, dirnames, filenames in os.walk(overlay_dir):
        for name in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), overlay_dir))
    return frozenset(found)


# ------------------------------------------------------------------------------------------------ measuring


def compressed_size(spec: compress.CompressionSpec, path: str | os.PathLike[str]) -> int:
    """Bytes of ``path``'s contents compressed alone with ``spec``.

    zstd: the spec's level, long window and checksum, with the size known up front - as for any input of known
    size, zstd then sizes its tables and window to the input (the build's long window never exceeds the group) -
    and one worker (the groups run in parallel). gzip/xz/none: the build's own compressor.
    """
    total = os.path.getsize(path)
    if spec.method == "zstd":
        import zstandard

        window = min(spec.window_log, max(compress.MIN_WINDOW_LOG, total.bit_length())) if spec.window_log else 0
        params = zstandard.ZstdCompressionParameters.from_level(
            spec.level, source_size=total, window_log=window, enable_ldm=spec.window_log is not None,
            write_checksum=1)
        return len(zstandard.ZstdCompressor(compression_params=params).compress(Path(path).read_bytes()))
    sink = compress.CountingSink()
    with open(path, "rb") as fh, compress.compressor(spec, cast(IO[bytes], sink), total) as comp:
        while chunk := fh.read(_CHUNK):
            comp.write(chunk)
    return sink.count


def _workers(spec: compress.CompressionSpec) -> int:
    return spec.threads or os.cpu_count() or 1


def _largest_remainder(shares: Mapping[str, float], total: int) -> dict[str, int]:
    """Round non-negative ``shares`` (summing to ``total``) to integers summing to ``total`` exactly."""
    floors = {k: int(v) for k, v in shares.items()}
    left = total - sum(floors.values())
    order = sorted(shares, key=lambda k: (-(shares[k] - floors[k]), k))
    for k in order[: max(0, left)]:
        floors[k] += 1
    return floors


@dataclass
class _Group:
    kind: str
    name: str
    unpacked: int = 0
    files: int = 0
    raw: int = 0
    estimate: int = 0
    members: list[tuple[str, int]] = field(default_factory=list)  # (path, bytes)


@dataclass(frozen=True)
class Measure:
    """Inputs of one ledger."""

    image: Path  # the compressed initramfs
    spec: compress.CompressionSpec
    apk_db_root: Path | None = None  # tree holding lib/apk/db/installed when the image lacks it
    overlay_dir: Path | None = None
    spool_dir: Path | None = None


def image_packages(m: Measure) -> list[_apkdb.InstalledPackage]:
    """The packages of the image's own apk database (a first, decompress-only pass), else of ``apk_db_root``'s;
    plus the glibc runtime of the pinned binaries (``etc/netboot/binaries.json``) as Debian's libc6."""
    found: list[_apkdb.InstalledPackage] | None = None
    runtime: dict[str, Any] | None = None
    for mem in iter_image(m.image):
        if mem.entry is not None and mem.name == _apkdb.INSTALLED_DB:
            found = _apkdb.parse_installed(mem.entry.data.decode("utf-8", errors="replace"))
        elif mem.entry is not None and mem.name == _binaries.RECORD:
            runtime = _glibc.read_runtime(parse_json_object(mem.entry.data))
    if found is None and m.apk_db_root is not None:
        found = _apkdb.read_installed(m.apk_db_root)
    if found is None:
        raise NetbootError(f"{m.image} holds no {_apkdb.INSTALLED_DB} and no rootfs was given: cannot tell which "
                           "package owns what")
    return found + ([_glibc.as_package(runtime)] if runtime is not None else [])


def measure(m: Measure) -> dict[str, Any]:
    """Walk and measure the image: groups (partition of the cpio), packages, totals and the estimate check."""
    real = os.path.getsize(m.image)
    packages = image_packages(m)
    owners = _apkdb.owner_map(packages)
    classifier = Classifier(owners, overlay_files(m.overlay_dir))
    groups: dict[tuple[str, str], _Group] = {}
    plain = 0
    entries = 0
    with tempfile.TemporaryDirectory(prefix="ledger-", dir=m.spool_dir) as tmp:
        spools: dict[tuple[str, str], BinaryIO] = {}
        try:
            for mem in iter_image(m.image):
                if not mem.compressed_segment:
                    plain += len(mem.raw)
                    key = ("microcode", "early microcode (uncompressed cpio)")
                elif mem.name == os.fsdecode(cpio.TRAILER):
                    key = ("other", "cpio trailer")
                else:
                    entries += 1
                    key = classifier.group(mem.name)
                g = groups.get(key)
                if g is None:
                    g = groups[key] = _Group(key[0], key[1])
                    spools[key] = open(Path(tmp, f"{len(spools)}.bin"), "wb")
                g.unpacked += len(mem.raw)
                g.files += 1
                g.members.append((mem.name, len(mem.raw)))
                spools[key].write(mem.raw)
        finally:
            for fh in spools.values():
                fh.close()
        jobs = {key: Path(tmp, f"{i}.bin") for i, key in enumerate(groups) if key[0] != "microcode"}
        # largest first, so the pool ends together; compression releases the GIL
        order = sorted(jobs, key=lambda k: -groups[k].unpacked)
        with concurrent.futures.ThreadPoolExecutor(max_workers=_workers(m.spec)) as pool:
            for key, size in zip(order, pool.map(lambda k: compressed_size(m.spec, jobs[k]), order), strict=True):
                groups[key].raw = size
        for key, g in groups.items():
            if key[0] == "microcode":
                g.raw = g.unpacked
    compressed_real = real - plain
    raw_sum = sum(g.raw for k, g in groups.items() if k[0] != "microcode")
    scaled = {f"{k[0]}\0{k[1]}": (g.raw * compressed_real / raw_sum if raw_sum else 0.0)
              for k, g in groups.items() if k[0] != "microcode"}
    rounded = _largest_remainder(scaled, compressed_real)
    for k, g in groups.items():
        g.estimate = g.unpacked if k[0] == "microcode" else rounded[f"{k[0]}\0{k[1]}"]
    # file shares -> packages (a file of no package counts under its group's name)
    versions = {p.name: p.version for p in packages}
    pkg_unpacked: dict[str, int] = {}
    pkg_share: dict[str, float] = {}
    pkg_files: dict[str, int] = {}
    for g in groups.values():
        for name, size in g.members:
            owner = _apkdb.owner_of(owners, name) if name else None
            label = owner if owner is not None else f"({g.name})"
            pkg_unpacked[label] = pkg_unpacked.get(label, 0) + size
            pkg_share[label] = pkg_share.get(label, 0.0) + (g.estimate * size / g.unpacked if g.unpacked else 0.0)
            pkg_files[label] = pkg_files.get(label, 0) + 1
    pkg_est = _largest_remainder(pkg_share, real)
    package_rows: list[dict[str, Any]] = [
        {"name": n, "version": versions[n], "unpacked_bytes": pkg_unpacked.get(n, 0),
         "compressed_bytes_estimate": pkg_est.get(n, 0), "files": pkg_files.get(n, 0)} for n in versions]
    unowned: list[dict[str, Any]] = [
        {"name": n, "unpacked_bytes": pkg_unpacked[n], "compressed_bytes_estimate": pkg_est[n], "files": pkg_files[n]}
        for n in pkg_unpacked if n not in versions]
    group_rows: list[dict[str, Any]] = [
        {"kind": g.kind, "name": g.name, "unpacked_bytes": g.unpacked, "files": g.files,
         "compressed_alone_bytes": g.raw, "compressed_bytes_estimate": g.estimate} for g in groups.values()]
    for rows in (package_rows, unowned, group_rows):
        rows.sort(key=lambda r: (-int(r["compressed_bytes_estimate"]), str(r.get("kind", "")), str(r["name"])))
    deviation = (raw_sum - compressed_real) / compressed_real if compressed_real else 0.0
    return {
        "total_compressed_bytes": real,
        "total_unpacked_bytes": sum(g.unpacked for g in groups.values()),
        "files": entries,
        "estimate": {
            "method": "each group compressed alone with the build's settings, scaled to the real size",
            "compression": m.spec.describe(),
            "compressed_alone_sum": raw_sum,
            "real_compressed_bytes": compressed_real,
            "plain_segment_bytes": plain,
            "deviation": round(deviation, 6),
            "tolerance": TOLERANCE,
            "within_tolerance": abs(deviation) <= TOLERANCE,
        },
        "groups": group_rows,
        "packages": package_rows,
        "unowned": unowned,
    }


# ---------------------------------------------------------------------------------------------------- delta


def _index(rows: Sequence[Mapping[str, Any]], key: Sequence[str]) -> dict[str, Mapping[str, Any]]:
    return {"/".join(str(r.get(k, "")) for k in key): r for r in rows}


def delta(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> dict[str, Any]:
    """What grew, shrank, is new or left since ``previous`` (packages and groups, by compressed estimate)."""
    if not previous:
        return {"previous": None}
    out: dict[str, Any] = {
        "previous": {"image_sha256": previous.get("image_sha256"),
                     "total_compressed_bytes": previous.get("total_compressed_bytes")},
        "total_compressed_bytes": int(current["total_compressed_bytes"]) - int(previous.get("total_compressed_bytes") or 0),
    }
    for view, key in (("packages", ("name",)), ("groups", ("kind", "name"))):
        old = _index(previous.get(view) or [], key)
        new = _index(current.get(view) or [], key)
        est = "compressed_bytes_estimate"
        grew, shrank = [], []
        for name in sorted(set(old) & set(new)):
            d = int(new[name].get(est, 0)) - int(old[name].get(est, 0))
            row = {"name": name, "bytes": d, "before": int(old[name].get(est, 0)), "after": int(new[name].get(est, 0))}
            if "version" in new[name] and old[name].get("version") != new[name].get("version"):
                row["version"] = f"{old[name].get('version')} -> {new[name].get('version')}"
            if d > 0:
                grew.append(row)
            elif d < 0:
                shrank.append(row)
        out[view] = {
            "new": [{"name": n, "bytes": int(new[n].get(est, 0)), **({"version": new[n]["version"]}
                                                                     if "version" in new[n] else {})}
                    for n in sorted(set(new) - set(old))],
            "left": [{"name": n, "bytes": int(old[n].get(est, 0))} for n in sorted(set(old) - set(new))],
            "grew": sorted(grew, key=lambda r: (-r["bytes"], r["name"])),
            "shrank": sorted(shrank, key=lambda r: (r["bytes"], r["name"])),
        }
    return out


# -------------------------------------------------------------------------------------------------- budgets


@dataclass(frozen=True)
class Budgets:
    image_bytes: int = 0
    node_ram_bytes: int = 0
    server_bytes: int = 0
    server_generations: int = DEFAULT_SERVER_GENERATIONS

    def __post_init__(self) -> None:
        for name in ("image_bytes", "node_ram_bytes", "server_bytes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"netboot_budget_{name} = {getattr(self, name)} is negative; use 0 for no budget")
        if self.server_generations < 1:
            raise ConfigError(f"server generations = {self.server_generations}: the server keeps at least the live one")


def figures(ledger: Mapping[str, Any], budgets: Budgets) -> dict[str, int]:
    download = int(ledger["download_bytes"])
    return {
        "netboot_budget_image_bytes": download,
        "netboot_budget_node_ram_bytes": int(ledger["node_ram"]["minimum_mib"]) * 1024 * 1024,
        "netboot_budget_server_bytes": download * budgets.server_generations,
    }


def _fmt(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def top_contributors(ledger: Mapping[str, Any], budget: str, count: int = TOP) -> list[tuple[str, int, float]]:
    """(name, bytes, share of the figure) of the largest parts behind a budget's figure."""
    if budget == "netboot_budget_node_ram_bytes":
        rows = [(f"{g['name']} (unpacked)", int(g["unpacked_bytes"])) for g in ledger["groups"]]
        total = int(ledger["node_ram"]["minimum_mib"]) * 1024 * 1024
    else:
        rows = [(str(g["name"]), int(g["compressed_bytes_estimate"])) for g in ledger["groups"]]
        rows += [(f"{name} (artefact)", int(size)) for name, size in ledger["artefacts"].items()
                 if name != ledger.get("image_name")]
        total = int(ledger["download_bytes"])
    rows.sort(key=lambda r: (-r[1], r[0]))
    return [(n, b, b / total if total else 0.0) for n, b in rows[:count]]


def check_budgets(ledger: Mapping[str, Any], budgets: Budgets) -> list[dict[str, Any]]:
    """One entry per budget: the limit (0 = none), the figure, ok, and the message for a failure."""
    limits = {"netboot_budget_image_bytes": budgets.image_bytes,
              "netboot_budget_node_ram_bytes": budgets.node_ram_bytes,
              "netboot_budget_server_bytes": budgets.server_bytes}
    what = {"netboot_budget_image_bytes": "the artefacts a node downloads",
            "netboot_budget_node_ram_bytes": "the RAM a node needs to boot (minimum_ram)",
            "netboot_budget_server_bytes": f"what the boot server stores ({budgets.server_generations} generations)"}
    figs = figures(ledger, budgets)
    out = []
    for name in BUDGETS:
        limit, figure = limits[name], figs[name]
        ok = limit == 0 or figure <= limit
        entry: dict[str, Any] = {"budget": name, "limit": limit, "figure": figure, "ok": ok}
        if not ok:
            tops = "; ".join(f"{n} {_fmt(b)} ({share:.1%})" for n, b, share in top_contributors(ledger, name))
            entry["message"] = (
                f"{name} = {limit} exceeded: {what[name]} is {figure} bytes ({_fmt(figure)}, {figure - limit} over). "
                f"Top contributors: {tops}. Prune (kernel_prune_profiles, alpine_packages) or raise {name}; "
                "see ledger.md in the dist directory."
            )
        out.append(entry)
    return out


# ------------------------------------------------------------------------------------------------ rendering


def render_markdown(ledger: Mapping[str, Any], top: int = 25) -> str:
    est = ledger["estimate"]
    lines = [
        "# Image size ledger",
        "",
        f"Initramfs **{_fmt(ledger['total_compressed_bytes'])}** compressed ({est['compression']}), "
        f"{_fmt(ledger['total_unpacked_bytes'])} unpacked, {ledger['files']} entries. A node downloads "
        f"**{_fmt(ledger['download_bytes'])}** ("
        + ", ".join(f"{n} {_fmt(s)}" for n, s in sorted(ledger["artefacts"].items())) + "); "
        f"it needs at least **{ledger['node_ram']['minimum_mib']} MiB** of RAM to boot.",
        "",
        f"Estimate: {est['method']}. Groups compressed alone sum to {_fmt(est['compressed_alone_sum'])} against "
        f"{_fmt(est['real_compressed_bytes'])} real ({est['deviation']:+.1%}; tolerance ±{est['tolerance']:.0%}: "
        f"{'within' if est['within_tolerance'] else 'OUTSIDE'}).",
        "",
        f"## Top {top} contributors (compressed estimate)",
        "",
        "| # | group | kind | compressed | share | unpacked | files |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    total = max(1, int(ledger["total_compressed_bytes"]))
    for i, g in enumerate(ledger["groups"][:top], start=1):
        lines.append(f"| {i} | {g['name']} | {g['kind']} | {_fmt(g['compressed_bytes_estimate'])} | "
                     f"{g['compressed_bytes_estimate'] / total:.1%} | {_fmt(g['unpacked_bytes'])} | {g['files']} |")
    lines += ["", "## Packages (all their files, kernel modules and firmware included)", "",
              "| package | version | compressed | share | unpacked |", "|---|---|---:|---:|---:|"]
    for p in ledger["packages"]:
        lines.append(f"| {p['name']} | {p['version']} | {_fmt(p['compressed_bytes_estimate'])} | "
                     f"{p['compressed_bytes_estimate'] / total:.1%} | {_fmt(p['unpacked_bytes'])} |")
    for kind, title in (("modules", "Kernel-module directories"), ("firmware", "Firmware directories")):
        rows = [g for g in ledger["groups"] if g["kind"] == kind]
        if rows:
            lines += ["", f"## {title}", "", "| directory | compressed | unpacked | files |", "|---|---:|---:|---:|"]
            lines += [f"| {g['name']} | {_fmt(g['compressed_bytes_estimate'])} | {_fmt(g['unpacked_bytes'])} | "
                      f"{g['files']} |" for g in rows[:top]]
    if ledger.get("unowned"):
        lines += ["", "## Not from a package (overlay, /init, generated)", "", "| part | compressed | unpacked |",
                  "|---|---:|---:|"]
        lines += [f"| {u['name']} | {_fmt(u['compressed_bytes_estimate'])} | {_fmt(u['unpacked_bytes'])} |"
                  for u in ledger["unowned"][:top]]
    d = ledger.get("delta") or {}
    lines += ["", "## Since the previous build", ""]
    if not d.get("previous"):
        lines.append("No previous ledger.")
    else:
        lines.append(f"Total: {d['total_compressed_bytes']:+d} bytes.")
        for what in ("new", "left", "grew", "shrank"):
            rows = d["packages"][what]
            if rows:
                lines.append(f"- packages {what}: " + ", ".join(
                    f"{r['name']} ({r['bytes']:+d} B{', ' + r['version'] if 'version' in r else ''})" for r in rows))
        for what in ("new", "left", "grew", "shrank"):
            rows = d["groups"][what][:10]
            if rows:
                lines.append(f"- groups {what}: " + ", ".join(f"{r['name']} ({r['bytes']:+d} B)" for r in rows))
    pruned = ledger.get("pruned")
    if pruned:
        lines += ["", "## Removed by prune_kernel (unpacked)", "", "| rule | bytes | files |", "|---|---:|---:|"]
        lines += [f"| {r['rule']} | {_fmt(r['bytes'])} | {r['count']} |" for r in pruned[:top]]
    return "\n".join(lines) + "\n"


COLORS = {"package": "#4c72b0", "modules": "#dd8452", "firmware": "#55a868", "overlay": "#8172b3",
          "other": "#937860", "microcode": "#da8bc3"}


def _bars(ax: Any, rows: Sequence[Mapping[str, Any]], total: int, title: str) -> None:
    rows = list(rows)[::-1]
    values = [int(r["compressed_bytes_estimate"]) / 1e6 for r in rows]
    ax.barh(range(len(rows)), values, color=[COLORS.get(str(r.get("kind", "package")), "#999999") for r in rows])
    ax.set_yticks(range(len(rows)), [str(r["name"]) for r in rows])
    for i, r in enumerate(rows):
        ax.text(values[i], i, f" {values[i]:.2f} MB ({int(r['compressed_bytes_estimate']) / total:.1%})",
                va="center", fontsize=8)
    ax.set_xlim(0, max(values, default=1) * 1.35)
    ax.set_xlabel("compressed MB (estimate)")
    ax.set_title(title, fontsize=10)


def render_svg(ledger: Mapping[str, Any], bars: int = CHART_BARS, fmt: str = "svg") -> bytes:
    """Two sorted bar charts - the largest packages and the largest groups (kernel-module and firmware directories
    split out) - drawn with matplotlib's Agg backend; reproducible bytes (fixed hash salt, no date)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    total = max(1, int(ledger["total_compressed_bytes"]))
    packages = [p for p in ledger["packages"] if int(p["compressed_bytes_estimate"]) > 0][: bars // 2]
    groups = list(ledger["groups"][:bars])
    with matplotlib.rc_context({"svg.hashsalt": "homelab.alpine_netboot-ledger", "svg.fonttype": "none",
                                "font.family": "DejaVu Sans", "font.size": 9}):
        fig = Figure(figsize=(10, 0.3 * (len(packages) + len(groups)) + 2.6))
        top, bottom = fig.subplots(2, 1, height_ratios=[max(1, len(packages)), max(1, len(groups))])
        _bars(top, packages, total, f"Largest packages (all their files) - initramfs {total / 1e6:.2f} MB, "
                                    f"{ledger['estimate']['compression']}")
        _bars(bottom, groups, total, "Largest groups (kernel-module and firmware directories split out)")
        kinds = sorted({str(r["kind"]) for r in groups})
        bottom.legend(handles=[Patch(color=COLORS.get(k, "#999999"), label=k) for k in kinds], loc="lower right")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------- files


def pruned_summary(report: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if not report:
        return []
    rules = report.get("removed_by_rule") or {}
    rows = [{"rule": str(k), "bytes": int(v.get("bytes", 0)), "count": int(v.get("count", 0))}
            for k, v in rules.items() if isinstance(v, Mapping)]
    return sorted(rows, key=lambda r: (-r["bytes"], r["rule"]))


def inputs_digest(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------- the module


@dataclass(frozen=True)
class LedgerRequest:
    image: Path  # dist/initramfs
    rootfs: Path  # the image tree (kernel, apk database fallback)
    dest: Path  # dist/
    spec: compress.CompressionSpec
    kernel: str | None = None
    microcode: Path | None = None  # dist/intel-ucode.img when a node loads it first
    prune_report: Path | None = None
    overlay_dir: Path | None = None
    budgets: Budgets = Budgets()
    cmdline: str = ""
    spool_dir: Path | None = None


def _sha(path: Path | None) -> str | None:
    return sha256_file(path) if path is not None else None


def _report_digest(path: Path | None, tree: Path) -> str | None:
    """The prune report's digest without the builder's paths (it names the image directory), so that the ledger
    (``inputs_digest``) is the same whichever directory the build ran in (make repro)."""
    if path is None:
        return None
    data = read_json_object(path)
    if data is None:
        return sha256_file(path)
    return hashlib.sha256(json.dumps(publishable(data, str(tree.absolute())), sort_keys=True).encode()).hexdigest()


def build_ledger(req: LedgerRequest, *, check_mode: bool = False) -> dict[str, Any]:
    """Measure (or reuse) the ledger, write ledger.json/.md/.svg, check the budgets.

    Returns ``changed``, ``ledger``, ``budgets``, ``failures`` (messages of exceeded budgets), ``files``, ``diff``.
    A rerun on the same image, kernel and settings reuses ``ledger.json`` (no compression). The budgets are checked
    against the ledger and never change the files, so a failed check leaves them as they were.
    """
    if not req.image.is_file():
        raise NetbootError(f"{req.image} does not exist: build it first (playbooks/build.yml --tags initramfs)")
    kernel = find_kernel(req.rootfs, req.kernel)
    microcode = req.microcode if req.microcode is not None and req.microcode.is_file() else None
    artefacts = {"vmlinuz": kernel.stat().st_size, req.image.name: req.image.stat().st_size}
    if microcode is not None:
        artefacts[microcode.name] = microcode.stat().st_size
    report_path = req.prune_report if req.prune_report is not None and req.prune_report.is_file() else None
    overlay = sorted(overlay_files(req.overlay_dir))
    image_sha = _sha(req.image)
    digest = inputs_digest({
        "format": LEDGER_FORMAT, "image": image_sha, "kernel": _sha(kernel), "microcode": _sha(microcode),
        "compression": req.spec.describe(), "prune_report": _report_digest(report_path, req.rootfs), "overlay": overlay,
        "cmdline": req.cmdline, "tolerance": TOLERANCE,
    })
    paths = {n: req.dest / n for n in (JSON_NAME, MD_NAME, SVG_NAME)}
    previous = read_json_object(paths[JSON_NAME])  # unreadable: only the delta is lost
    if previous is not None and previous.get("inputs_digest") == digest and all(p.is_file() for p in paths.values()):
        ledger = previous
        changed = False
    else:
        ledger = measure(Measure(image=req.image, spec=req.spec, apk_db_root=req.rootfs, overlay_dir=req.overlay_dir,
                                 spool_dir=req.spool_dir))
        ram = minimum_ram(kernel, [p for p in (microcode, req.image) if p is not None], req.cmdline)
        report = read_prune_report(report_path)
        ledger.update({
            "format": LEDGER_FORMAT,
            "inputs_digest": digest,
            "image_name": req.image.name,
            "image_sha256": image_sha,
            "artefacts": artefacts,
            "download_bytes": sum(artefacts.values()),
            "node_ram": {k: ram[k] for k in ("minimum_mib", "limited_by", "unpacked_bytes", "decoder_window",
                                             "kernel_init_size") if k in ram},
            "kernel_version": report.get("kernel_version") if report else None,
            "pruned": pruned_summary(report),
        })
        if previous is not None and previous.get("image_sha256") == image_sha and "delta" in previous:
            ledger["delta"] = previous["delta"]  # same image: the delta still refers to the build before it
        else:
            ledger["delta"] = delta(previous, ledger)
        blobs = {JSON_NAME: dump_json(ledger, indent=1), MD_NAME: render_markdown(ledger).encode(),
                 SVG_NAME: render_svg(ledger)}
        written = [write_if_changed(paths[n], b, check_mode=check_mode) for n, b in blobs.items()]  # every file
        changed = any(written)
    budgets = check_budgets(ledger, req.budgets)  # not stored: the files describe the image, not the limits
    before = previous.get("total_compressed_bytes") if previous else None
    return {
        "changed": changed,
        "ledger": {k: ledger[k] for k in ("total_compressed_bytes", "total_unpacked_bytes", "download_bytes",
                                          "node_ram", "estimate", "delta")},
        "top": ledger["groups"][:TOP],
        "budgets": budgets,
        "failures": [str(b["message"]) for b in budgets if not b["ok"]],
        "files": {n: str(p) for n, p in paths.items()},
        "diff": {"before": f"total_compressed_bytes: {before}\n", "after":
                 f"total_compressed_bytes: {ledger['total_compressed_bytes']}\n",
                 "before_header": str(paths[JSON_NAME]), "after_header": str(paths[JSON_NAME])},
    }
