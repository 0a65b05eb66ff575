# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""CycloneDX SBOM of the image (``dist/sbom.cdx.json``), made with cyclonedx-python-lib from the apk database.

What it holds and why it is reproducible is README's "SBOM": one ``library`` component per installed package (purl
``pkg:apk/alpine/NAME@VERSION?arch=ARCH&distro=alpine-X.Y``), the extra binaries, the kernel as an
``operating-system`` component summarising what prune_kernel kept; a serial number derived from the content, the
image's SOURCE_DATE_EPOCH as timestamp, sorted components, validated against the schema before it is written.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _deps
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import (
    dump_json,
    inside,
    read_json_object,
    strict_json_object,
    write_if_changed,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _apkdb, _binaries, _glibc
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._kernel import find_kernel
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._prune import read_report
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._rootfs_spec import (
    ROOTFS_MANIFEST,
    read_rootfs_manifest,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records._manifest import (
    SBOM_NAME,
    kernel_version,
    source_date_epoch,
)

_deps.lazy("cyclonedx")  # imported where used

SPEC_VERSION = "1.6"
PROP = "homelab.alpine_netboot"
_NAMESPACE = uuid.UUID("6f1c2b5e-9a53-4c1e-8d0f-4a1e7c3b2d90")  # fixed: serial = uuid5(namespace, content)


@dataclass(frozen=True)
class ExtraBinary:
    name: str
    path: str  # inside the image
    url: str = ""
    version: str = ""
    sha256: str = ""


def distro(root: str | os.PathLike[str], release: str | None = None) -> str:
    """``alpine-X.Y`` (or ``alpine-edge``) for purls: the given release, else the rootfs manifest's, else
    ``etc/alpine-release``."""
    rel = (release or "").strip()
    if not rel:
        manifest = read_rootfs_manifest(Path(root, ROOTFS_MANIFEST))
        rel = str((manifest or {}).get("release") or "")
    if not rel:
        try:
            rel = Path(root, "etc/alpine-release").read_text(encoding="utf-8").strip()
        except OSError:
            rel = ""
    m = re.match(r"v?(\d+)\.(\d+)", rel)
    if m:
        return f"alpine-{m.group(1)}.{m.group(2)}"
    if rel in ("edge",) or "_alpha" in rel or "_rc" in rel:
        return "alpine-edge"
    raise ConfigError(f"cannot tell the Alpine release of {root} (etc/alpine-release: {rel!r}); set release")


def purl(pkg: _apkdb.InstalledPackage, distro_name: str) -> str:
    from packageurl import PackageURL

    quals = {"distro": distro_name}
    if pkg.arch:
        quals["arch"] = pkg.arch
    return str(PackageURL(type="apk", namespace="alpine", name=pkg.name, version=pkg.version, qualifiers=quals))


def kernel_summary(report: Mapping[str, Any] | None, root: str | os.PathLike[str]) -> dict[str, str]:
    """Properties of the kernel component: kept modules/firmware (from prune-report.json, else the tree)."""
    props: dict[str, str] = {}
    if report:
        for area in ("modules", "firmware"):
            after = (report.get(area) or {}).get("after") or {}
            removed = (report.get(area) or {}).get("removed") or {}
            props[f"{PROP}:kept_{area}"] = str(after.get("count", 0))
            props[f"{PROP}:kept_{area}_bytes"] = str(after.get("bytes", 0))
            props[f"{PROP}:removed_{area}"] = str(removed.get("count", 0))
        props[f"{PROP}:prune_profiles"] = ", ".join(os.path.basename(str(p)) for p in report.get("profiles") or [])
        hw = report.get("hardware_profiles") or []
        if hw:
            props[f"{PROP}:hardware_profiles"] = ", ".join(os.path.basename(str(p)) for p in hw)
    kver = kernel_version(root)
    if kver:
        base = find_kernel(root, kver).moddir / "kernel"
        dirs: dict[str, int] = {}
        for dirpath, _dirs, files in os.walk(base):
            n = sum(1 for f in files if ".ko" in f)
            if n:
                rel = os.path.relpath(dirpath, base).split(os.sep)
                key = "kernel/" + "/".join(rel[:2])
                dirs[key] = dirs.get(key, 0) + n
        props[f"{PROP}:module_dirs"] = ", ".join(f"{k} ({v})" for k, v in sorted(dirs.items()))
        if not report:
            props[f"{PROP}:kept_modules"] = str(sum(dirs.values()))
        fw = Path(root, "lib/firmware")
        if fw.is_dir():
            props[f"{PROP}:firmware_dirs"] = ", ".join(sorted(p.name for p in fw.iterdir()))
    return props


def _components(root: str | os.PathLike[str], packages: Sequence[_apkdb.InstalledPackage], dname: str,
                extras: Sequence[ExtraBinary]) -> list[Any]:
    """One component per installed package (purl, SHA-1, licence, apk properties), per extra binary (checked against
    its sha256) and for the glibc runtime they need, if any."""
    from cyclonedx.contrib.license.factories import LicenseFactory
    from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
    from cyclonedx.model.component import Component, ComponentType
    from packageurl import PackageURL

    licenses = LicenseFactory()
    components = []
    for pkg in packages:
        sha1 = pkg.checksum_sha1_hex()
        props = [Property(name=f"{PROP}:apk:{k}", value=str(v)) for k, v in (
            ("checksum", pkg.checksum), ("origin", pkg.origin), ("commit", pkg.commit), ("build_time", pkg.build_time)
        ) if v not in (None, "")]
        p = purl(pkg, dname)
        components.append(Component(
            type=ComponentType.LIBRARY, name=pkg.name, version=pkg.version, bom_ref=p,
            purl=PackageURL.from_string(p), description=pkg.description or None,
            hashes=[HashType(alg=HashAlgorithm.SHA_1, content=sha1)] if sha1 else [],
            licenses=[licenses.make_from_string(pkg.license)] if pkg.license else [], properties=props,
            external_references=[ExternalReference(type=ExternalReferenceType.WEBSITE, url=XsUri(pkg.url))]
            if pkg.url else [],
        ))
    for extra in extras:
        full = inside(root, extra.path)
        if not full.is_file():
            raise NetbootError(f"extra binary {extra.name}: {extra.path} is not in the image {root}")
        digest = hashlib.sha256(full.read_bytes()).hexdigest()
        if extra.sha256 and extra.sha256.lower() != digest:
            raise NetbootError(f"extra binary {extra.name}: {extra.path} has sha256 {digest}, expected {extra.sha256}")
        components.append(Component(
            type=ComponentType.APPLICATION, name=extra.name, version=extra.version or None,
            bom_ref=f"extra:{extra.name}", hashes=[HashType(alg=HashAlgorithm.SHA_256, content=digest)],
            external_references=[ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(extra.url))]
            if extra.url else [],
            properties=[Property(name=f"{PROP}:path", value=extra.path)],
        ))
    runtime = _glibc.read_runtime(read_json_object(Path(root) / _binaries.RECORD))
    if runtime is not None:  # the glibc runtime of glibc-linked binaries: Debian's libc6, byte for byte
        rpurl = str(runtime["purl"])
        components.append(Component(
            type=ComponentType.LIBRARY, name=str(runtime["package"]), version=str(runtime["version"]),
            bom_ref=rpurl, purl=PackageURL.from_string(rpurl),
            description=f"glibc {runtime.get('glibc')} runtime of the glibc-linked netboot_binaries, in "
                        f"{runtime.get('prefix')}",
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=str(runtime["sha256"]))],
            external_references=[ExternalReference(type=ExternalReferenceType.DISTRIBUTION,
                                                   url=XsUri(str(runtime["url"])))],
            properties=[Property(name=f"{PROP}:file", value=f"{f['sha256']}  {path}")
                        for path, f in sorted(runtime["files"].items())],
        ))
    return components


def build_document(
    root: str | os.PathLike[str],
    *,
    release: str | None = None,
    kernel: str | None = None,
    report: Mapping[str, Any] | None = None,
    extras: Sequence[ExtraBinary] = (),
    source_date_epoch_value: int | None = None,
) -> str:
    """The SBOM as CycloneDX JSON text (validated)."""
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6

    packages = _apkdb.read_installed(root)
    if not packages:
        raise NetbootError(f"{root}/{_apkdb.INSTALLED_DB} lists no package; rebuild the rootfs stage")
    dname = distro(root, release)
    sde, _unused = source_date_epoch(root, source_date_epoch_value)
    components = _components(root, packages, dname, extras)
    kver = kernel_version(root)
    kprops = [Property(name=k, value=v) for k, v in sorted(kernel_summary(report, root).items()) if v]
    if kernel:
        kprops.append(Property(name=f"{PROP}:kernel_file", value=kernel))
    components.append(Component(type=ComponentType.OPERATING_SYSTEM, name="linux", version=kver or None,
                                bom_ref="kernel:linux", properties=kprops,
                                description="The image's kernel; kept modules and firmware summarised as properties"))
    bom = Bom(components=components)
    bom.metadata.timestamp = datetime.datetime.fromtimestamp(sde, tz=datetime.UTC)
    image = Component(type=ComponentType.OPERATING_SYSTEM, name="homelab.alpine_netboot image", version=dname,
                      bom_ref="image")
    bom.metadata.component = image
    bom.register_dependency(image, components)
    # serial number from the content (with a fixed placeholder serial, then the real one)
    bom.serial_number = uuid.UUID(int=0)
    draft = JsonV1Dot6(bom).output_as_string(indent=1)
    bom.serial_number = uuid.uuid5(_NAMESPACE, hashlib.sha256(draft.encode()).hexdigest())
    text = JsonV1Dot6(bom).output_as_string(indent=1)
    validate(text)
    # stable formatting (sorted keys) and a trailing newline
    return dump_json(strict_json_object(text, "the SBOM"), indent=1).decode()


def validate(text: str) -> None:
    """Refuse a document the CycloneDX JSON schema rejects (the library's strict validator)."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise NetbootError(f"the SBOM does not validate against CycloneDX {SPEC_VERSION}: {error}")


def write_sbom(
    root: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    release: str | None = None,
    kernel: str | None = None,
    report_path: str | os.PathLike[str] | None = None,
    extras: Sequence[ExtraBinary] = (),
    check_mode: bool = False,
) -> dict[str, Any]:
    text = build_document(root, release=release, kernel=kernel, report=read_report(report_path), extras=extras)
    blob = text.encode()
    path = Path(dest, SBOM_NAME)
    changed = write_if_changed(path, blob, check_mode=check_mode)
    doc = strict_json_object(text, "the SBOM")
    return {
        "changed": changed,
        "dest": str(path),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "serial_number": doc.get("serialNumber"),
        "components": len(doc.get("components") or []),
    }
