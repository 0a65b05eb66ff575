"""The ledger's walk of an image (the project's one newc reader): names and bodies exactly as packed, whatever the
name padding, in plain and compressed segments, and the image's own apk database read back whole; the compression
the ledger measures with is the initramfs record's."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _compress as compress
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _cpio as cpio
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _cpioread as cpioread
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _initramfs
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apkdb import INSTALLED_DB
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records import _ledger as ledger
from tests.fixtures.bootimage import bzimage_header

# 110-byte header + name + NUL, padded to 4: names of 1..4 bytes need 0, 3, 2, 1 bytes of padding, bodies of
# 4..7 bytes 0, 3, 2, 1; the database's name (20 bytes) needs 1.
FILES = {"a": b"body", "ab": b"body5", "abc": b"body-6", "abcd": b"body--7"}
DB = "C:Q1/SgNTU4vWt18rSRsvDy5vFyMfDs=\nP:alpine-baselayout\nV:3.7.2-r0\nF:etc\nR:hostname\n\nC:Q1AAAA\nP:zlib\nV:1\n\n"
SDE = 1_700_000_000


def archive() -> bytes:
    specs: list[dict[str, object]] = [{"path": n, "content": d} for n, d in FILES.items()]
    specs.append({"path": INSTALLED_DB, "content": DB})
    return cpio.archive_bytes(cpio.finalize(cpio.spec_entries(specs, source_date_epoch=SDE), source_date_epoch=SDE))


def test_every_name_padding_reads_back_exactly() -> None:
    data = archive()
    assert sorted((110 + len(n) + 1) % 4 for n in FILES) == [0, 1, 2, 3]  # every padding length is exercised
    members = {m.name: m for m in cpioread.read_newc(io.BytesIO(data))}
    assert {n: members[n].data for n in FILES} == FILES
    assert b"".join(m.raw for m in cpioread.read_newc(io.BytesIO(data), trailer=True)) == data


@pytest.mark.parametrize("method", ["none", "zstd"])
def test_the_ledger_reads_names_and_bodies_exactly(tmp_path: Path, method: str) -> None:
    image = tmp_path / "initramfs"
    with open(image, "wb") as out, compress.compressor(compress.make_spec(method, 3, None, 0), out, None) as comp:
        comp.write(archive())
    members = [m for m in ledger.iter_image(image) if m.name]
    assert not any("\0" in m.name for m in members)
    bodies = {m.name: hashlib.sha256(m.entry.data).hexdigest() for m in members if m.entry and m.name in FILES}
    assert bodies == {n: hashlib.sha256(d).hexdigest() for n, d in FILES.items()}
    assert b"".join(m.raw for m in ledger.iter_image(image)) == archive()


def test_the_image_database_keeps_the_first_package_checksum(tmp_path: Path) -> None:
    """Issue 16: the database member was read without its name padding, so its text began with a NUL and the first
    package lost its ``C:`` checksum."""
    image = tmp_path / "initramfs"
    image.write_bytes(archive())
    packages = ledger.image_packages(ledger.Measure(image=image, spec=compress.make_spec("none", 0, None, 0)))
    assert [(p.name, p.checksum) for p in packages] == [("alpine-baselayout", "Q1/SgNTU4vWt18rSRsvDy5vFyMfDs="),
                                                        ("zlib", "Q1AAAA")]
    assert packages[0].files == ("etc/hostname",)


def test_the_ledger_compresses_as_the_initramfs_record_says_unless_overridden(tmp_path: Path) -> None:
    """Issue 23: the dist role no longer passes the initramfs role's settings; the ledger reads the record."""
    root = tmp_path / "rootfs"
    for name, data in {**FILES, INSTALLED_DB: DB.encode(), "boot/config-6.18.0-virt": b"CONFIG_RD_XZ=y\n"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    bzimage_header(root / "boot/vmlinuz-6.18.0-virt", 1 << 20)
    image = tmp_path / "dist" / "initramfs"
    _initramfs.build_initramfs(_initramfs.InitramfsRequest(src=str(root), dest=str(image), source_date_epoch=SDE,
                                                           compression=compress.make_spec("xz", 1)))
    req = ledger.LedgerRequest(image=image, rootfs=root, dest=tmp_path / "dist")
    assert json.loads(Path(ledger.build_ledger(req)["files"]["ledger.json"]).read_text())["estimate"]["compression"] == "xz -1"
    over = ledger.build_ledger(replace(req, spec=compress.make_spec("gzip", 9)))
    assert json.loads(Path(over["files"]["ledger.json"]).read_text())["estimate"]["compression"] == "gzip -9"
    _initramfs.record_path(image).unlink()
    with pytest.raises(ConfigError, match=r"no initramfs record at .*--tags initramfs"):
        ledger.build_ledger(req)
