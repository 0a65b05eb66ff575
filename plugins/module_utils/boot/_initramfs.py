# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Build ``dist/initramfs`` (and the early microcode cpio) from an image tree: the logic of ``make_initramfs``.

Flow: resolve SOURCE_DATE_EPOCH -> check the kernel config supports the compression -> plan the archive (tree +
spec entries: ``/init``, device nodes) -> compare the plan's digest with the record of the last build (equal and the
output untouched: nothing to do, no compression) -> else stream cpio -> compressor -> temp file, hash on the way,
rename only if the bytes differ from the current file -> write the record (``read_record`` is its one reader).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _compress as compress
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _cpio as cpio
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _cpioread as cpioread
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import (
    atomic_output,
    atomic_write_bytes,
    sha256_file,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._kernel import find_kernel
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records._manifest import source_date_epoch
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records._record import Kind

MICROCODE_PATH = "kernel/x86/microcode/GenuineIntel.bin"
RECORD = Kind("initramfs", 1, "initramfs")
# make_initramfs's exclude default: boot files the running image does not need (iPXE loads kernel and microcode)
DEFAULT_EXCLUDE = ("boot/vmlinuz*", "boot/System.map-*", "boot/initramfs-*", "boot/intel-ucode.img",
                   "boot/amd-ucode.img")


@dataclass
class InitramfsRequest:
    src: str
    dest: str
    compression: compress.CompressionSpec = field(default_factory=compress.CompressionSpec)
    source_date_epoch: int | None = None
    rootfs_manifest: str | None = None
    kernel_config: str | None = None  # None: boot/config-* of the tree
    microcode: bool | Sequence[str] = False
    microcode_dest: str | None = None
    microcode_concat: bool = False
    extras: Sequence[Mapping[str, object]] = ()
    exclude: Sequence[str] = DEFAULT_EXCLUDE
    owner: str = "auto"
    mtime: str = "epoch"
    progress_log: str | None = None


# -------------------------------------------------------------------------------------------------- microcode


def microcode_switch(value: object) -> bool | list[str]:
    """THE meaning of ``initramfs_microcode``, for every stage (make_initramfs, and through the ``microcode_initrd``
    filter boot.ipxe, the boot test and the dist stage): true/yes/on/1 = the image's intel-ucode; false/no/off/0,
    ``""``, none/null and ``[]`` = no microcode; any other string or a list = microcode files."""
    if value is None or isinstance(value, (bool, int)):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "yes", "on", "1"):
            return True
        return False if low in ("false", "no", "off", "0", "", "none", "null") else [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"initramfs_microcode must be true, false or a list of files, not {value!r}")


def microcode_initrd(value: object, artefact: str, concat: bool = False) -> str:
    """The microcode initrd boot.ipxe loads before the initramfs: ``artefact`` when the switch is on and the
    microcode is not concatenated to the initramfs, else ``""``."""
    return artefact if microcode_switch(value) and not concat else ""


def _is_intel_microcode(blob: bytes) -> bool:
    # Intel microcode update header: header version 1, loader revision 1 (two little-endian dwords).
    return len(blob) >= 48 and blob[:4] == b"\x01\x00\x00\x00" and blob[20:24] == b"\x01\x00\x00\x00"


def _from_cpio(path: Path) -> bytes | None:
    with open(path, "rb") as fh:
        for member in cpioread.read_newc(fh):
            if member.name.lstrip("./") == MICROCODE_PATH:
                return member.data
    return None


def microcode_blob(root: str, microcode: bool | Sequence[str]) -> tuple[bytes, list[str]] | None:
    """The ``GenuineIntel.bin`` bytes and the files they came from, or None when microcode is off.

    ``True``: the image's ``boot/intel-ucode.img`` (Alpine's intel-ucode) or its ``lib/firmware/intel-ucode/*``.
    A list: files (raw microcode, or an early cpio holding GenuineIntel.bin) and directories (their files, sorted).
    """
    if microcode is False or microcode == []:
        return None
    if microcode is True:
        img = Path(root, "boot/intel-ucode.img")
        fw = Path(root, "lib/firmware/intel-ucode")
        if img.is_file():
            sources = [img]
        elif fw.is_dir():
            sources = [fw]
        else:
            raise ConfigError(
                f"microcode is enabled but the image {root} has neither boot/intel-ucode.img nor "
                "lib/firmware/intel-ucode/: add the intel-ucode package to the image or list microcode files"
            )
    else:
        sources = [Path(p) for p in microcode]
    blobs: list[bytes] = []
    used: list[str] = []
    for src in sources:
        files = sorted(p for p in src.iterdir() if p.is_file()) if src.is_dir() else [src]
        for f in files:
            try:
                with open(f, "rb") as fh:
                    head = fh.read(6)
            except OSError as exc:
                raise NetbootError(f"cannot read microcode file {f}: {exc.strerror}") from exc
            if head in cpio.MAGICS:
                data = _from_cpio(f)
                if data is None:
                    raise ConfigError(f"microcode archive {f} has no {MICROCODE_PATH}")
            else:
                data = f.read_bytes()
                if not _is_intel_microcode(data):
                    raise ConfigError(
                        f"{f} is not an Intel microcode file (no version-1 update header); give the files of "
                        "intel-ucode / intel-microcode (lib/firmware/intel-ucode/*)"
                    )
            blobs.append(data)
            used.append(str(f))
    if not blobs:
        raise ConfigError(f"microcode is enabled but {', '.join(map(str, sources))} holds no microcode files")
    return b"".join(blobs), used


def microcode_archive(blob: bytes, sde: int) -> bytes:
    """An uncompressed newc cpio whose FIRST entry is kernel/x86/microcode/GenuineIntel.bin (what the kernel's
    early loader scans for). No directory entries: the early loader does not need them."""
    entry = cpio.Entry(path=MICROCODE_PATH.encode(), mode=0o100644, mtime=sde, size=len(blob), data=blob, ino=1)
    return cpio.archive_bytes([entry])


# ------------------------------------------------------------------------------------------------------ build


def record_path(image: str | os.PathLike[str]) -> Path:
    """Where make_initramfs records the initramfs ``image`` (a hidden file beside it: not published)."""
    return Path(image).with_name(f".{Path(image).name}.json")


def read_record(image: str | os.PathLike[str], info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """THE reader of the initramfs record: checked, and refused unless it describes ``image`` as it is now
    (``info``: the caller's ``_file_info`` of it, when it has hashed the file already)."""
    rec = RECORD.load(record_path(image))
    now = info if info is not None else _file_info(os.fspath(image))
    if now != {"path": os.fspath(image), "sha256": rec["sha256"], "size": rec["size"]}:
        raise ConfigError(f"{record_path(image)} does not describe {image} (rebuilt or changed since): "
                          f"{RECORD.fix}")
    return rec


def _file_info(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    sha = sha256_file(path)
    return None if sha is None else {"path": path, "sha256": sha, "size": os.path.getsize(path)}


def build_initramfs(req: InitramfsRequest, *, check_mode: bool = False) -> dict[str, Any]:
    """Build (or confirm) the initramfs; returns the module result fields."""
    src = os.path.abspath(req.src)
    if not os.path.isdir(src):
        raise NetbootError(f"src {req.src} is not a directory; build the rootfs stage first")
    sde, sde_source = source_date_epoch(src, req.source_date_epoch, req.rootfs_manifest)

    config, warnings = _check_config(req, src)
    plan = cpio.plan_tree(src, source_date_epoch=sde, extras=req.extras, owner=req.owner, exclude=req.exclude,
                          mtime=req.mtime)
    ucode = microcode_blob(src, req.microcode)
    ucode_cpio = microcode_archive(ucode[0], sde) if ucode else None
    microcode_dest = None if ucode_cpio is None else (
        req.microcode_dest or os.path.join(os.path.dirname(os.path.abspath(req.dest)), "intel-ucode.img"))
    digest = plan.digest(
        {
            "stamp": 1,
            "compression": req.compression.describe(),
            "microcode": None if ucode_cpio is None else hashlib.sha256(ucode_cpio).hexdigest(),
            "concat": bool(req.microcode_concat and ucode_cpio),
        }
    )
    before = _file_info(req.dest)
    try:
        last = read_record(req.dest, before) if before is not None else {}
    except ConfigError:  # none, damaged, of another version or of other bytes: rebuild
        last = {}
    before_ucode = _file_info(microcode_dest)
    result: dict[str, Any] = {
        "dest": req.dest,
        "source_date_epoch": sde,
        "source_date_epoch_source": sde_source,
        "compression": req.compression.describe(),
        "kernel_config": str(config) if config else None,
        "entries": len(plan.entries),
        "files": plan.file_count,
        "uncompressed_size": plan.archive_size(),
        "plan_digest": digest,
        "warnings": warnings,
        "diff": {"before": _describe(before, before_ucode), "after": ""},
    }
    up_to_date = last.get("plan") == digest and (ucode_cpio is None or (
        before_ucode is not None and last.get("microcode_sha256") == before_ucode["sha256"]))
    if up_to_date and before is not None:
        result.update(changed=False, compressed=False, sha256=before["sha256"], size=before["size"],
                      microcode=before_ucode, progress=[])
        result["diff"]["after"] = result["diff"]["before"]
        return result
    if check_mode:
        result.update(changed=True, compressed=False, sha256=None, size=None, microcode=None, progress=[])
        result["diff"]["after"] = "(rebuilt: inputs differ from the last build)\n"
        return result
    return _rebuild(req, plan, ucode=(ucode_cpio, microcode_dest), digest=digest, before=before, result=result)


def _check_config(req: InitramfsRequest, src: str) -> tuple[Path | None, list[str]]:
    """The kernel config checked against the compression (``kernel_config``, else the tree's), with the warning
    when there is none."""
    config = Path(req.kernel_config) if req.kernel_config else find_kernel(src).config
    if config is None:
        return None, [f"no boot/config-* in {src}: cannot check that the kernel unpacks {req.compression.method}; "
                      "set kernel_config"]
    if not config.is_file():
        raise NetbootError(f"kernel_config {config} does not exist")
    compress.check_kernel_config(req.compression, config)
    return config, []


def _rebuild(req: InitramfsRequest, plan: cpio.Plan, *, ucode: tuple[bytes | None, str | None], digest: str,
             before: dict[str, Any] | None, result: dict[str, Any]) -> dict[str, Any]:
    """Write the microcode archive and the image, then the record; ``result`` completed with what was written."""
    ucode_cpio, microcode_dest = ucode
    changed = ucode_cpio is not None and microcode_dest is not None and atomic_write_bytes(microcode_dest, ucode_cpio)
    sha, size, parts, progress = _write_image(req, plan, ucode_cpio if req.microcode_concat else None)
    changed = changed or before is None or before["sha256"] != sha
    after = _file_info(req.dest)
    after_ucode = _file_info(microcode_dest)
    if after is None or after["sha256"] != sha:
        raise NetbootError(f"{req.dest} changed while it was being written (another build running?); run the build again")
    atomic_write_bytes(record_path(req.dest), RECORD.dump({
        "plan": digest, "sha256": sha, "size": size, "parts": parts, "entries": len(plan.entries),
        "files": plan.file_count, "source_date_epoch": result["source_date_epoch"],
        "compression": asdict(req.compression), "microcode_sha256": after_ucode["sha256"] if after_ucode else None,
    }))
    result.update(changed=changed, compressed=True, sha256=sha, size=size, microcode=after_ucode, progress=progress)
    result["diff"]["after"] = _describe(after, after_ucode)
    return result


def _describe(info: Mapping[str, Any] | None, ucode: Mapping[str, Any] | None) -> str:
    if info is None:
        return "(absent)\n"
    text = f"sha256: {info['sha256']}\nsize: {info['size']}\n"
    if ucode is not None:
        text += f"microcode sha256: {ucode['sha256']}\nmicrocode size: {ucode['size']}\n"
    return text


def _write_image(req: InitramfsRequest, plan: cpio.Plan,
                 prefix: bytes | None) -> tuple[str, int, list[dict[str, Any]], list[str]]:
    """Stream the image to a temp file next to ``dest``; rename over ``dest`` only when the bytes differ. Returns
    its sha256, size, parts (offset, size, sha256; the cpio's unpacked size) and progress lines."""
    dest = os.path.abspath(req.dest)
    parts: list[dict[str, Any]] = []
    with atomic_output(dest, only_if_changed=True) as raw:
        out = compress.HashingWriter(raw)
        progress = compress.Progress(req.progress_log, plan.archive_size(), out)
        progress.emit(
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} make_initramfs {dest}: "
            f"{req.compression.describe()}, {len(plan.entries)} entries, {plan.archive_size() / 1048576:.1f} MiB"
        )
        if prefix:
            out.write(prefix)
            parts.append({"part": "microcode", "format": "cpio", "offset": 0, "size": len(prefix),
                          "unpacked_size": len(prefix), "sha256": hashlib.sha256(prefix).hexdigest(), "window": 0})
        main = compress.HashingWriter(cast(IO[bytes], out))
        with compress.compressor(req.compression, cast(IO[bytes], main), plan.archive_size()) as comp:
            written = cpio.write_newc(plan, comp, progress=progress)
        progress.close(written)
    method = req.compression.method
    parts.append({"part": "image", "format": "cpio" if method == "none" else method, "offset": out.count - main.count,
                  "size": main.count, "unpacked_size": written, "sha256": main.sha256.hexdigest(),
                  "window": 0 if method == "none" else compress.decoder_window(method, main.head)})
    return out.sha256.hexdigest(), out.count, parts, progress.lines
