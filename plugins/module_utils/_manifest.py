"""The ``dist/`` directory: kernel copy, ``manifest.json``, ``SHA256SUMS``.

Everything written here is a pure function of its inputs (no timestamps, sorted keys), so a rerun with unchanged
inputs rewrites nothing and reports ``changed=false``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils import _apkdb, _binaries, _kmod
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import (
    ConfigError,
    NetbootError,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._fs import (
    atomic_copy,
    atomic_write_bytes,
    resolve_in_root,
    sha256_file,
)

ROOTFS_MANIFEST = "etc/alpine-netboot/manifest.json"  # in the image: what alpine_rootfs built it from
MANIFEST_FORMAT = "homelab.alpine_netboot/dist/1"
MANIFEST_NAME = "manifest.json"
SUMS_NAME = "SHA256SUMS"
AUDIT_NAME = "audit.json"  # written by image_audit (_audit.py)
SBOM_NAME = "sbom.cdx.json"  # written by netboot_sbom (_sbom.py)
LEDGER_NAME = "ledger.json"  # written by netboot_ledger (_ledger.py)


# ------------------------------------------------------------------------------------------- rootfs metadata


def read_rootfs_manifest(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The rootfs manifest (``<root>/ROOTFS_MANIFEST``, or a path given), or None when there is none. Unreadable or
    damaged (not a JSON object) is an error naming the file: nothing can be trusted about that tree."""
    fix = f"delete {path} and run the rootfs stage again (playbooks/build.yml --tags rootfs) to rebuild the tree"
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise NetbootError(f"the rootfs manifest {path} is not valid JSON ({exc}); {fix}") from exc
    except OSError as exc:
        raise NetbootError(f"cannot read the rootfs manifest {path}: {exc.strerror}; {fix}") from exc
    if not isinstance(data, dict):
        raise NetbootError(f"the rootfs manifest {path} is not a JSON object; {fix}")
    return data


def apk_installed(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Packages from the image's ``lib/apk/db/installed`` (name, version, checksum, arch, build_time), or none."""
    if not Path(root, _apkdb.INSTALLED_DB).exists():
        return []
    return [{"name": p.name, "version": p.version, "checksum": p.checksum, "arch": p.arch}
            | ({} if p.build_time is None else {"build_time": p.build_time}) for p in _apkdb.read_installed(root)]


def newest_build_time(packages: Sequence[Mapping[str, Any]]) -> int | None:
    times = [int(p["build_time"]) for p in packages if isinstance(p.get("build_time"), int | str)
             and str(p.get("build_time")).isdigit()]
    return max(times) if times else None


def source_date_epoch(
    root: str | os.PathLike[str],
    explicit: int | None = None,
    manifest_path: str | os.PathLike[str] | None = None,
) -> tuple[int, str]:
    """The SOURCE_DATE_EPOCH of an image and where it came from.

    Order: ``explicit``; the newest ``build_time`` of the rootfs manifest's packages; the manifest's
    ``source_date_epoch``; the newest build time (``t:``) in the image's ``lib/apk/db/installed``; else an error
    (a clock or file mtimes would make the image unreproducible).
    """
    if explicit is not None:
        if explicit < 0:
            raise ConfigError(f"source_date_epoch {explicit} is negative")
        return explicit, "option"
    mpath = manifest_path if manifest_path is not None else Path(root, ROOTFS_MANIFEST)
    manifest = read_rootfs_manifest(mpath)
    if manifest is not None:
        newest = newest_build_time(manifest.get("packages") or [])
        if newest is not None:
            return newest, f"newest package build_time in {mpath}"
        sde = manifest.get("source_date_epoch")
        if isinstance(sde, int) and sde >= 0:
            return sde, f"source_date_epoch in {mpath}"
    newest = newest_build_time(apk_installed(root))
    if newest is not None:
        return newest, f"newest package build time in {Path(root, _apkdb.INSTALLED_DB)}"
    raise ConfigError(
        f"cannot tell the image's SOURCE_DATE_EPOCH: no package build times in {mpath} nor in lib/apk/db/installed; "
        "set source_date_epoch"
    )


def find_kernel(rootfs: str | os.PathLike[str], kernel: str | None = None) -> Path:
    """The image's kernel: ``kernel`` (relative to the rootfs, or a name in boot/), else the one boot/vmlinuz-*."""
    if kernel:
        rel = kernel if "/" in kernel else f"boot/{kernel}"
        path = resolve_in_root(Path(rootfs), rel)
        if not path.is_file():
            raise NetbootError(f"kernel {kernel!r} not found at {path}; check dist kernel setting")
        return path
    found = sorted(p for p in Path(rootfs, "boot").glob("vmlinuz*") if p.is_file())
    if not found:
        raise NetbootError(
            f"no kernel (boot/vmlinuz*) in {rootfs}; install a linux-* package in the rootfs or set the kernel option"
        )
    if len(found) > 1:
        raise ConfigError(
            f"several kernels in {rootfs}/boot ({', '.join(p.name for p in found)}); set the kernel option to one"
        )
    return found[0]


def kernel_version(rootfs: str | os.PathLike[str]) -> str | None:
    """The image's one kernel version (``_kmod.detect_kernel_version``), or None when it has none or several."""
    try:
        return _kmod.detect_kernel_version(Path(rootfs), None)
    except ConfigError:
        return None


# ---------------------------------------------------------------------------------------------- dist manifest


def sha256sums_text(sums: Mapping[str, str]) -> str:
    """``sha256sum``-compatible lines, sorted by name (``sha256sum -c SHA256SUMS`` checks them)."""
    for name in sums:
        if "/" in name or "\n" in name:
            raise ConfigError(f"artefact name {name!r} must be a plain file name in the dist directory")
    return "".join(f"{sums[n]}  {n}\n" for n in sorted(sums))


def dump_json(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def default_artefacts(dist: str | os.PathLike[str]) -> list[str]:
    """Every visible regular file of the dist directory except the manifest and the sums themselves."""
    try:
        names = os.listdir(dist)
    except FileNotFoundError:
        return []
    return sorted(
        n for n in names
        if not n.startswith(".") and n not in (MANIFEST_NAME, SUMS_NAME) and not n.endswith(".tmp")
        and os.path.isfile(os.path.join(dist, n))
    )


def dist_manifest(
    *,
    rootfs: str | os.PathLike[str],
    rootfs_manifest: Mapping[str, Any] | None,
    kernel_source: str,
    artefacts: Mapping[str, Mapping[str, Any]],
    inputs: Mapping[str, Any],
) -> dict[str, Any]:
    """The dist ``manifest.json`` document (deterministic: no clocks, no absolute host paths but the inputs')."""
    base = dict(rootfs_manifest or {})
    packages = base.pop("packages", None)
    if packages is None:
        packages = apk_installed(rootfs)
        package_source = _apkdb.INSTALLED_DB
    else:
        package_source = ROOTFS_MANIFEST
    sde = base.get("source_date_epoch")
    if not isinstance(sde, int):
        sde = newest_build_time(packages)
    return {
        "format": MANIFEST_FORMAT,
        "release": base.get("release"),
        "arch": base.get("arch"),
        "source_date_epoch": sde,
        "kernel": {"source": kernel_source, "version": kernel_version(rootfs)},
        "packages": list(packages),
        "package_source": package_source,
        "rootfs": base,
        "inputs": dict(inputs),
        "artefacts": {k: dict(v) for k, v in sorted(artefacts.items())},
        # the image audit (image_audit) and the pinned extra binaries (netboot_binaries) installed in the image
        # the CycloneDX SBOM (netboot_sbom) and the size ledger (netboot_ledger), when the dist role wrote them
        "sbom": ({"file": SBOM_NAME, "format": "CycloneDX 1.6 JSON", "sha256": artefacts[SBOM_NAME]["sha256"]}
                 if SBOM_NAME in artefacts else None),
        "ledger": ({"file": LEDGER_NAME, "sha256": artefacts[LEDGER_NAME]["sha256"]}
                   if LEDGER_NAME in artefacts else None),
        "audit": ({"file": AUDIT_NAME, "sha256": artefacts[AUDIT_NAME]["sha256"]} if AUDIT_NAME in artefacts else None),
        "binaries": _binaries.read_record(rootfs),
    }


def missing_boot_artefacts(dest: str | os.PathLike[str], boot_artefacts: Mapping[str, str],
                           kernel_name: str) -> list[str]:
    """One message per file a boot script fetches that ``dest`` lacks (every node would fail to boot)."""
    problems = []
    for name, what in sorted(boot_artefacts.items()):
        if not name or name.startswith("/") or ".." in name.split("/"):
            problems.append(f"the boot script fetches {name!r} ({what}), which is not a path inside {dest}")
        elif name != kernel_name and not os.path.isfile(os.path.join(dest, name)):
            problems.append(
                f"the boot script fetches {name} ({what}) but {dest} has no {name}: every node would fail to boot. "
                f"Build it or stop naming it - {BOOT_ARTEFACT_FIX.get(what.split()[0], 'check the setting that names it')}"
            )
    return problems


def boot_script_breaks_published(dist: str | os.PathLike[str], boot_artefacts: Mapping[str, str],
                                 kernel_name: str) -> list[str]:
    """What a new boot script would break in an already published ``dist`` (one holding ``manifest.json``).

    The boot script is written before the dist stage publishes; a script that fetches a file the published directory
    lacks must not replace a working one (the dist stage would fail after it, leaving nodes an unbootable script).
    A directory nothing was published to yet has nothing to protect: the dist stage checks it when it publishes.
    The kernel is copied by the dist stage, so its name is not checked here.
    """
    if not os.path.isfile(os.path.join(dist, MANIFEST_NAME)):
        return []
    return missing_boot_artefacts(dist, boot_artefacts, kernel_name)


# What to change when a boot script names an artefact dist/ lacks, by the kind ipxe_script reports.
BOOT_ARTEFACT_FIX = {
    "microcode": "initramfs_microcode decides whether there is microcode (true builds it, false drops it from "
                 "boot.ipxe); netboot_microcode_artefact is its name",
    "initramfs": "netboot_initramfs_artefact must name the file the initramfs stage writes (initramfs_dest)",
    "kernel": "netboot_kernel_artefact names the kernel",
    "initrd": "put the file in the dist directory or remove the host var initrd",
}


# The collection's own files (prune profiles, templates) wherever it is installed or checked out.
_COLLECTION_PATH = re.compile(r"/(?:[^\s'\"]*/)?ansible_collections/homelab/alpine_netboot/")


def publishable(value: Any, tree: str) -> Any:
    """``value`` (a report) without the builder's paths: ``tree`` (the image directory) becomes ``<image>`` and the
    collection's location ``<collection>/``. manifest.json is published and must not depend on where it was built."""
    if isinstance(value, str):
        out = value.replace(tree.rstrip("/") + "/", "<image>/")
        out = "<image>" if out == tree.rstrip("/") else out.replace(tree.rstrip("/"), "<image>")
        return _COLLECTION_PATH.sub("<collection>/", out)
    if isinstance(value, dict):
        return {k: publishable(v, tree) for k, v in value.items()}
    if isinstance(value, list):
        return [publishable(v, tree) for v in value]
    return value


def _load_reports(reports: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    warnings: list[str] = []
    for name, path in sorted(reports.items()):
        data = read_rootfs_manifest(path) if path else None
        if data is None:
            warnings.append(f"report {name}: {path} does not exist; recorded as null in manifest.json")
        out[name] = data
    return out, warnings


def build_dist(
    *,
    rootfs: str,
    dest: str,
    kernel: str | None = None,
    kernel_name: str = "vmlinuz",
    rootfs_manifest: str | None = None,
    inputs: Mapping[str, Any] | None = None,
    reports: Mapping[str, str] | None = None,
    artefacts: Sequence[str] | None = None,
    boot_artefacts: Mapping[str, str] | None = None,
    check_mode: bool = False,
) -> dict[str, Any]:
    """Copy the kernel, then write manifest.json and SHA256SUMS for the dist directory (temp + rename each).

    ``boot_artefacts`` (file name -> what names it, e.g. from ``ipxe_script``'s ``artefacts``) must all be in
    ``dest`` (``kernel_name`` counts: it is copied here); otherwise nothing is written and the error names the file.
    Returns the module result: ``changed``, ``artefacts`` (name -> size, sha256), ``manifest``, ``diff``, ``warnings``.
    """
    if "/" in kernel_name:
        raise ConfigError(f"kernel_name {kernel_name!r} must be a plain file name")
    kernel_path = find_kernel(rootfs, kernel)
    warnings: list[str] = []
    for problem in missing_boot_artefacts(dest, boot_artefacts or {}, kernel_name):
        if not check_mode:
            raise ConfigError(problem)
        warnings.append(f"{problem} (check mode: fine if an earlier stage writes it)")
    kernel_dest = os.path.join(dest, kernel_name)
    changed = False
    before_sums = _read_text(os.path.join(dest, SUMS_NAME))
    if check_mode:
        changed |= sha256_file(kernel_path) != sha256_file(kernel_dest)
    else:
        os.makedirs(dest, exist_ok=True)
        changed |= atomic_copy(kernel_path, kernel_dest)
    names = sorted(set(artefacts)) if artefacts is not None else default_artefacts(dest)
    if kernel_name not in names:
        names = sorted([*names, kernel_name])
    infos: dict[str, dict[str, Any]] = {}
    for name in names:
        if "/" in name or name in (MANIFEST_NAME, SUMS_NAME):
            raise ConfigError(f"artefact {name!r}: give plain names of files in {dest} (not the manifest or sums)")
        path = kernel_path if (check_mode and name == kernel_name) else Path(dest, name)
        sha = sha256_file(path)
        if sha is None:
            raise NetbootError(f"artefact {name} is missing from {dest}; run the stage that builds it first")
        infos[name] = {"size": os.path.getsize(path), "sha256": sha}
    mpath = rootfs_manifest or os.path.join(rootfs, ROOTFS_MANIFEST)
    rmanifest = read_rootfs_manifest(mpath)
    if rmanifest is None:
        warnings.append(f"no rootfs manifest at {mpath}: the package list comes from lib/apk/db/installed")
    merged_inputs = dict(inputs or {})
    if reports:
        loaded, report_warnings = _load_reports(reports)
        loaded = publishable(loaded, os.path.abspath(rootfs))
        merged_inputs["reports"] = loaded
        warnings += report_warnings
    kernel_rel = os.path.relpath(kernel_path, os.path.realpath(rootfs))
    doc = dist_manifest(rootfs=rootfs, rootfs_manifest=rmanifest, kernel_source=kernel_rel, artefacts=infos,
                        inputs=merged_inputs)
    manifest_bytes = dump_json(doc)
    sums = {n: i["sha256"] for n, i in infos.items()}
    sums[MANIFEST_NAME] = hashlib.sha256(manifest_bytes).hexdigest()
    sums_text = sha256sums_text(sums)
    if check_mode:
        changed |= _read_bytes(os.path.join(dest, MANIFEST_NAME)) != manifest_bytes
        changed |= before_sums != sums_text
    else:
        changed |= atomic_write_bytes(os.path.join(dest, MANIFEST_NAME), manifest_bytes)
        changed |= atomic_write_bytes(os.path.join(dest, SUMS_NAME), sums_text.encode())
    return {
        "changed": changed,
        "kernel": str(kernel_path),
        "artefacts": infos,
        "manifest": doc,
        "sha256sums": sums_text,
        "warnings": warnings,
        "diff": {"before": before_sums or "", "after": sums_text, "before_header": f"{dest}/{SUMS_NAME}",
                 "after_header": f"{dest}/{SUMS_NAME}"},
    }


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def _read_text(path: str) -> str | None:
    data = _read_bytes(path)
    return None if data is None else data.decode("utf-8", errors="replace")
