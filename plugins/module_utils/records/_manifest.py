# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The ``dist/`` directory: kernel copy, ``manifest.json``, ``SHA256SUMS``.

Everything written here is a pure function of its inputs (no timestamps, sorted keys), so a rerun with unchanged
inputs rewrites nothing and reports ``changed=false``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _ipxe
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import (
    ConfigError,
    NetbootError,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import (
    atomic_write_bytes,
    dump_json,
    load_json_object,
    read_or_none,
    remove_dead_temps,
    sha256_file,
    swap_dir,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _apkdb, _binaries, _kernel
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._rootfs_spec import (
    ROOTFS_MANIFEST,
    read_rootfs_manifest,
)

MANIFEST_FORMAT = "homelab.alpine_netboot/dist/1"
MANIFEST_NAME = "manifest.json"
SUMS_NAME = "SHA256SUMS"
AUDIT_NAME = "audit.json"  # written by image_audit (_audit.py)
SBOM_NAME = "sbom.cdx.json"  # written by netboot_sbom (_sbom.py)
LEDGER_NAME = "ledger.json"  # written by netboot_ledger (_ledger.py)


# ------------------------------------------------------------------------------------------- rootfs metadata


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
    return _kernel.find_kernel(rootfs, image=kernel).image


def kernel_version(rootfs: str | os.PathLike[str]) -> str | None:
    """The image's one kernel version, or None when it has none or several."""
    try:
        return _kernel.find_kernel(rootfs).version
    except ConfigError:
        return None


# ---------------------------------------------------------------------------------------------- dist manifest


def sha256sums_text(sums: Mapping[str, str]) -> str:
    """``sha256sum``-compatible lines, sorted by name (``sha256sum -c SHA256SUMS`` checks them)."""
    for name in sums:
        if "/" in name or "\n" in name:
            raise ConfigError(f"artefact name {name!r} must be a plain file name in the dist directory")
    return "".join(f"{sums[n]}  {n}\n" for n in sorted(sums))


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
        # the CycloneDX SBOM (netboot_sbom), the size ledger (netboot_ledger) and the image audit (image_audit), when
        # the dist role wrote them; the pinned extra binaries (netboot_binaries) installed in the image
        **{key: {"file": name, **extra, "sha256": artefacts[name]["sha256"]} if name in artefacts else None
           for key, name, extra in (("sbom", SBOM_NAME, {"format": "CycloneDX 1.6 JSON"}), ("ledger", LEDGER_NAME, {}),
                                    ("audit", AUDIT_NAME, {}))},
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


# What to change when a boot script names an artefact dist/ lacks, by the kind ipxe_script reports.
BOOT_ARTEFACT_FIX = {
    "microcode": "initramfs_microcode decides whether there is microcode (true builds it, false drops it from "
                 "boot.ipxe); netboot_microcode_artefact is its name",
    "initramfs": "build it (playbooks/build.yml --tags initramfs); netboot_initramfs_artefact must name the file "
                 "the initramfs stage writes (initramfs_dest)",
    "kernel": "netboot_kernel_artefact names the kernel",
    "initrd": "put the file in the artefact directory (netboot_artefact_dir) or remove the host var initrd",
}


def _load_reports(reports: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    warnings: list[str] = []
    for name, path in sorted(reports.items()):
        data = load_json_object(path, f"report {name}", "rerun the stage that writes it") if path else None
        if data is None:
            warnings.append(f"report {name}: {path} does not exist; recorded as null in manifest.json")
        out[name] = data
    return out, warnings


def mismatched_boot_digests(script: str | os.PathLike[str], digests: Mapping[str, object],
                            files: Mapping[str, Path]) -> list[str]:
    """One message per file the boot script checks whose sha256 differs from the file about to be published: the
    nodes would refuse it (docsite "Integrity at boot")."""
    problems = []
    for name, want in sorted(digests.items()):
        got = sha256_file(files[name]) if name in files else None
        if got is not None and got != want:
            problems.append(
                f"{script} expects {name} with sha256 {want}, but the {name} to publish ({files[name]}) has sha256 "
                f"{got}: every node would refuse it. Render boot.ipxe for these files: playbooks/build.yml "
                f"--tags ipxe,dist"
            )
    return problems


def _published(src: str, names: Mapping[str, Path]) -> dict[str, Path]:
    """Every visible file under ``src`` (node initrds may sit in subdirectories) and ``names``: relative path ->
    the file to publish."""
    out: dict[str, Path] = {}
    for top, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in files:
            if not n.startswith(".") and not n.endswith(".tmp") and n not in (MANIFEST_NAME, SUMS_NAME):
                path = Path(top, n)
                out[str(path.relative_to(src))] = path
    return {**out, **names}


def _same_tree(dest: str, files: Mapping[str, Path], generated: Mapping[str, bytes]) -> bool:
    """Whether ``dest`` holds exactly ``files`` (same bytes) and ``generated``: then nothing is published."""
    if not os.path.isdir(dest):
        return False
    if set(_published(dest, {})) | ({MANIFEST_NAME, SUMS_NAME} & set(os.listdir(dest))) != {*files, *generated}:
        return False
    return (all(read_or_none(os.path.join(dest, n)) == data for n, data in generated.items())
            and all(sha256_file(os.path.join(dest, n)) == sha256_file(p) for n, p in files.items()))


def build_dist(
    *,
    rootfs: str,
    src: str,
    dest: str,
    kernel: str | None = None,
    kernel_name: str = "vmlinuz",
    rootfs_manifest: str | None = None,
    inputs: Mapping[str, Any] | None = None,
    reports: Mapping[str, str] | None = None,
    artefacts: Sequence[str] | None = None,
    boot_script: str | None = None,
    check_mode: bool = False,
) -> dict[str, Any]:
    """Publish ``dest``: every file of the artefact directory ``src`` (what the stages wrote under build/), the
    kernel, manifest.json and SHA256SUMS, built in ``<dest>.new-<pid>`` beside ``dest`` and swapped in by one rename;
    nothing happens when ``dest`` already holds exactly that, and ``dest`` stays intact when anything fails first.

    ``src``/``boot_script`` (when given) must exist and fetch only files this publishes (its boot record, ``_ipxe.read_record``,
    written by ipxe_script); otherwise nothing is published and the error names the file and the setting to fix.
    Returns the module result: ``changed``, ``artefacts`` (name -> size, sha256), ``manifest``, ``diff``, ``warnings``.
    """
    if "/" in kernel_name:
        raise ConfigError(f"kernel_name {kernel_name!r} must be a plain file name")
    kernel_path = find_kernel(rootfs, kernel)
    files = _published(src, {kernel_name: kernel_path})
    problems = _boot_script_problems(src, boot_script, kernel_name, files) if boot_script else []
    if problems and not check_mode:
        raise ConfigError(" ".join(problems))
    warnings = [f"{p} (check mode: fine if an earlier stage writes it)" for p in problems]
    infos = _artefact_infos(src, artefacts, kernel_name, files)
    mpath = rootfs_manifest or os.path.join(rootfs, ROOTFS_MANIFEST)
    rmanifest = read_rootfs_manifest(mpath)
    if rmanifest is None:
        warnings.append(f"no rootfs manifest at {mpath}: the package list comes from lib/apk/db/installed")
    merged_inputs = dict(inputs or {})
    if reports:
        loaded, report_warnings = _load_reports(reports)
        merged_inputs["reports"] = loaded
        warnings += report_warnings
    doc = dist_manifest(rootfs=rootfs, rootfs_manifest=rmanifest, artefacts=infos, inputs=merged_inputs,
                        kernel_source=os.path.relpath(os.path.realpath(kernel_path), os.path.realpath(rootfs)))
    manifest_bytes = dump_json(doc)
    sums = {**{n: i["sha256"] for n, i in infos.items()}, MANIFEST_NAME: hashlib.sha256(manifest_bytes).hexdigest()}
    sums_text = sha256sums_text(sums)
    before_sums = (read_or_none(os.path.join(dest, SUMS_NAME)) or b"").decode("utf-8", errors="replace")
    generated = {MANIFEST_NAME: manifest_bytes, SUMS_NAME: sums_text.encode()}
    changed = not _same_tree(dest, files, generated)
    if changed and not check_mode:
        _publish(dest, files, generated)
    return {
        "changed": changed,
        "kernel": str(kernel_path),
        "artefacts": infos,
        "manifest": doc,
        "sha256sums": sums_text,
        "warnings": warnings,
        "diff": {"before": before_sums, "after": sums_text, "before_header": f"{dest}/{SUMS_NAME}",
                 "after_header": f"{dest}/{SUMS_NAME}"},
    }


def _boot_script_problems(src: str, boot_script: str, kernel_name: str, files: Mapping[str, Path]) -> list[str]:
    """Why the boot script cannot be published: it must fetch only files published here (its boot record, written
    by ipxe_script), and the sha256 it checks before booting must be the published files'."""
    script = Path(src, boot_script)
    record = _ipxe.record_path(script)
    if not script.is_file() or not record.is_file():
        return [f"{script} or its record {record.name} is missing: render it (playbooks/build.yml --tags ipxe)"]
    data = _ipxe.read_record(record)
    return (missing_boot_artefacts(src, data["artefacts"], kernel_name)
            + mismatched_boot_digests(script, data["spec"]["digests"] or {}, files))


def _artefact_infos(src: str, artefacts: Sequence[str] | None, kernel_name: str,
                    files: Mapping[str, Path]) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every artefact published (the kernel always), by name."""
    infos: dict[str, dict[str, Any]] = {}
    for name in sorted({*(artefacts if artefacts is not None else default_artefacts(src)), kernel_name}):
        if "/" in name or name in (MANIFEST_NAME, SUMS_NAME):
            raise ConfigError(f"artefact {name!r}: give plain names of files in {src} (not the manifest or sums)")
        sha = sha256_file(files[name]) if name in files else None
        if sha is None:
            raise NetbootError(f"artefact {name} is missing from {src}; run the stage that builds it first")
        infos[name] = {"size": os.path.getsize(files[name]), "sha256": sha}
    return infos


def _publish(dest: str, files: Mapping[str, Path], generated: Mapping[str, bytes]) -> None:
    parent, name = os.path.split(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    remove_dead_temps(parent, f"{name}.new-")  # what a killed run left
    tmp = os.path.join(parent, f"{name}.new-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for rel, path in sorted(files.items()):
            os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
            shutil.copy2(path, os.path.join(tmp, rel))  # a copy: a later write to build/ cannot reach dist/
        for rel, data in generated.items():
            atomic_write_bytes(os.path.join(tmp, rel), data)
        os.chmod(tmp, 0o755)
        swap_dir(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
