# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The size ledger: what is in the image and what each part costs, measured on the image a node downloads.

The groups (module directories, firmware directories, packages, overlay, other), the estimate method and its
``TOLERANCE``, the files and the delta are docsite "Size ledger and budgets". The groups partition the exact cpio
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
import json
import lzma
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _compress as compress
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _cpio as cpio
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _cpioread as cpioread
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _initramfs
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._minram import minimum_ram
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _deps
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import (
    dump_json,
    parse_json_object,
    read_json_object,
    sha256_file,
    write_if_changed,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _apkdb, _binaries, _glibc
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._prune import read_report
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records import _ledger_render as render
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records._manifest import (
    LEDGER_NAME,
    find_kernel,
)

_deps.lazy("zstandard")  # imported where used

LEDGER_FORMAT = "homelab.alpine_netboot/ledger/1"
JSON_NAME = LEDGER_NAME
MD_NAME = "ledger.md"
SVG_NAME = "ledger.svg"
TOLERANCE = 0.10  # |raw sum of groups compressed alone - real size| / real size
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Member:
    entry: cpioread.Member | None  # None: zeros between archives
    raw: bytes  # the member's exact newc bytes (header, name, padding, body, padding), or the zeros
    compressed_segment: bool  # False: a plain cpio segment (early microcode), stored as is

    @property
    def name(self) -> str:
        return self.entry.name if self.entry else ""


def _members(src: cpioread.Stream, path: Path, compressed: bool) -> Iterator[Member]:
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
        for m in cpioread.read_newc(src, what=f"{path} (unpacked)", trailer=True):
            yield Member(m, m.raw, compressed)


def iter_image(path: str | os.PathLike[str]) -> Iterator[Member]:
    """Every member of an initramfs file: plain newc segments and gzip/zstd/xz-compressed ones, in order."""
    p = Path(path)
    try:
        raw = open(p, "rb")
    except OSError as exc:
        raise NetbootError(f"cannot read the initramfs {p}: {exc.strerror}; build it first") from exc
    with raw:
        outer = cpioread.Stream(raw)
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
            raw.seek(outer.pos)
            inner: IO[bytes]
            if method == "zstd":
                import zstandard

                inner = cast(IO[bytes], zstandard.ZstdDecompressor(max_window_size=1 << 31).stream_reader(
                    raw, read_across_frames=True))
            elif method == "gzip":
                inner = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
            else:
                inner = cast(IO[bytes], lzma.LZMAFile(raw, "rb"))
            try:
                yield from _members(cpioread.Stream(inner), p, compressed=True)
            except (OSError, EOFError, lzma.LZMAError) as exc:
                raise NetbootError(f"{p}: cannot decompress the initramfs ({exc}); rebuild it") from exc
            return


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
    return frozenset(os.path.relpath(os.path.join(dirpath, name), overlay_dir)
                     for dirpath, dirnames, filenames in os.walk(overlay_dir) for name in dirnames + filenames)


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


def _spool(m: Measure, classifier: Classifier, tmp: str) -> tuple[dict[tuple[str, str], _Group], int, int]:
    """One walk of the image: each member's exact bytes into its group's spool ``tmp/<i>.bin``. Returns the groups,
    the bytes of plain (uncompressed) segments and the number of compressed entries."""
    groups: dict[tuple[str, str], _Group] = {}
    plain = 0
    entries = 0
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
    return groups, plain, entries


def _compress_groups(spec: compress.CompressionSpec, groups: dict[tuple[str, str], _Group], tmp: str) -> None:
    """Each group's ``raw``: its spool compressed alone (microcode: as stored)."""
    jobs = {key: Path(tmp, f"{i}.bin") for i, key in enumerate(groups) if key[0] != "microcode"}
    # largest first, so the pool ends together; compression releases the GIL
    order = sorted(jobs, key=lambda k: -groups[k].unpacked)
    with concurrent.futures.ThreadPoolExecutor(max_workers=spec.threads or os.cpu_count() or 1) as pool:
        for key, size in zip(order, pool.map(lambda k: compressed_size(spec, jobs[k]), order), strict=True):
            groups[key].raw = size
    for key, g in groups.items():
        if key[0] == "microcode":
            g.raw = g.unpacked


def _package_rows(groups: Mapping[tuple[str, str], _Group], packages: Sequence[_apkdb.InstalledPackage],
                  owners: dict[str, str], real: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """File shares summed per package, and per group for files of no package: (packages, unowned)."""
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
    return ([{"name": n, "version": versions[n], "unpacked_bytes": pkg_unpacked.get(n, 0),
              "compressed_bytes_estimate": pkg_est.get(n, 0), "files": pkg_files.get(n, 0)} for n in versions],
            [{"name": n, "unpacked_bytes": pkg_unpacked[n], "compressed_bytes_estimate": pkg_est[n],
              "files": pkg_files[n]} for n in pkg_unpacked if n not in versions])


def measure(m: Measure) -> dict[str, Any]:
    """Walk and measure the image: groups (partition of the cpio), packages, totals and the estimate check."""
    real = os.path.getsize(m.image)
    packages = image_packages(m)
    owners = _apkdb.owner_map(packages)
    with tempfile.TemporaryDirectory(prefix="ledger-", dir=m.spool_dir) as tmp:
        groups, plain, entries = _spool(m, Classifier(owners, overlay_files(m.overlay_dir)), tmp)
        _compress_groups(m.spec, groups, tmp)
    compressed_real = real - plain
    raw_sum = sum(g.raw for k, g in groups.items() if k[0] != "microcode")
    scaled = {f"{k[0]}\0{k[1]}": (g.raw * compressed_real / raw_sum if raw_sum else 0.0)
              for k, g in groups.items() if k[0] != "microcode"}
    rounded = _largest_remainder(scaled, compressed_real)
    for k, g in groups.items():
        g.estimate = g.unpacked if k[0] == "microcode" else rounded[f"{k[0]}\0{k[1]}"]
    package_rows, unowned = _package_rows(groups, packages, owners, real)
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


def pruned_summary(report: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if not report:
        return []
    rules = report.get("removed_by_rule") or {}
    rows = [{"rule": str(k), "bytes": int(v.get("bytes", 0)), "count": int(v.get("count", 0))}
            for k, v in rules.items() if isinstance(v, Mapping)]
    return sorted(rows, key=lambda r: (-r["bytes"], r["rule"]))


def inputs_digest(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class LedgerRequest:
    image: Path  # dist/initramfs
    rootfs: Path  # the image tree (kernel, apk database fallback)
    dest: Path  # dist/
    spec: compress.CompressionSpec | None = None  # None: the compression the initramfs record names
    kernel: str | None = None
    microcode: Path | None = None  # dist/intel-ucode.img when a node loads it first
    prune_report: Path | None = None
    overlay_dir: Path | None = None
    budgets: render.Budgets = field(default_factory=render.Budgets)
    cmdline: str = ""
    spool_dir: Path | None = None


def _sha(path: Path | None) -> str | None:
    return sha256_file(path) if path is not None else None


def _new_ledger(req: LedgerRequest, kernel: Path, microcode: Path | None, *, report_path: Path | None,
                spec: compress.CompressionSpec, info: Mapping[str, Any], digest: str,
                previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """Measure the image; add what a node downloads and needs, what prune_kernel removed and the delta. ``info``:
    the image's path, sha256 and size as ``build_ledger`` hashed it (once: the record checks reuse it)."""
    image_sha = info["sha256"]
    artefacts = {"vmlinuz": kernel.stat().st_size, req.image.name: req.image.stat().st_size}
    if microcode is not None:
        artefacts[microcode.name] = microcode.stat().st_size
    ledger = measure(Measure(image=req.image, spec=spec, apk_db_root=req.rootfs, overlay_dir=req.overlay_dir,
                             spool_dir=req.spool_dir))
    ram = minimum_ram(kernel, [p for p in (microcode, req.image) if p is not None], req.cmdline, {req.image: info})
    report = read_report(report_path)
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
        ledger["delta"] = render.delta(previous, ledger)
    return ledger


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
    report_path = req.prune_report if req.prune_report is not None and req.prune_report.is_file() else None
    image_sha = _sha(req.image)
    info = {"path": os.fspath(req.image), "sha256": image_sha, "size": req.image.stat().st_size}
    spec = req.spec or compress.CompressionSpec(**_initramfs.read_record(req.image, info)["compression"])
    digest = inputs_digest({
        "format": LEDGER_FORMAT, "image": image_sha, "kernel": _sha(kernel), "microcode": _sha(microcode),
        "compression": spec.describe(), "prune_report": _sha(report_path),
        "overlay": sorted(overlay_files(req.overlay_dir)), "cmdline": req.cmdline, "tolerance": TOLERANCE,
    })
    paths = {n: req.dest / n for n in (JSON_NAME, MD_NAME, SVG_NAME)}
    previous = read_json_object(paths[JSON_NAME])  # unreadable: only the delta is lost
    if previous is not None and previous.get("inputs_digest") == digest and all(p.is_file() for p in paths.values()):
        ledger, changed = previous, False
    else:
        ledger = _new_ledger(req, kernel, microcode, report_path=report_path, spec=spec, info=info,
                             digest=digest, previous=previous)
        blobs = {JSON_NAME: dump_json(ledger, indent=1), MD_NAME: render.render_markdown(ledger).encode(),
                 SVG_NAME: render.render_svg(ledger)}
        written = [write_if_changed(paths[n], b, check_mode=check_mode) for n, b in blobs.items()]  # every file
        changed = any(written)
    budgets = render.check_budgets(ledger, req.budgets)  # not stored: the files describe the image, not the limits
    before = previous.get("total_compressed_bytes") if previous else None
    return {
        "changed": changed,
        "ledger": {k: ledger[k] for k in ("total_compressed_bytes", "total_unpacked_bytes", "download_bytes",
                                          "node_ram", "estimate", "delta")},
        "top": ledger["groups"][:render.TOP],
        "budgets": budgets,
        "failures": [str(b["message"]) for b in budgets if not b["ok"]],
        "files": {n: str(p) for n, p in paths.items()},
        "diff": {"before": f"total_compressed_bytes: {before}\n", "after":
                 f"total_compressed_bytes: {ledger['total_compressed_bytes']}\n",
                 "before_header": str(paths[JSON_NAME]), "after_header": str(paths[JSON_NAME])},
    }
