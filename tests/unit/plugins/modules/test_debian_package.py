"""debian_package run as Ansible runs it: a dpkg-deb built package over real HTTP; check, diff, idempotence,
URL override, refusal of other bytes, offline."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.apkrepo import serve
from tests.fixtures.module import run_module
from tests.unit.plugins.module_utils.common.test_debpkg import EFI, KPXE, build_deb

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb to build a .deb")
FILES = {"snponly.efi": "usr/lib/ipxe/snponly.efi", "ipxe.efi": "usr/lib/ipxe/ipxe.efi",
         "undionly.kpxe": "usr/lib/ipxe/undionly.kpxe"}


def test_fetch_unpack_check_diff_rerun_offline(tmp_path: Path) -> None:
    deb = build_deb(tmp_path)
    other = build_deb(tmp_path, "gzip", version="9.9-1")
    srv_dir = tmp_path / "srv"
    srv_dir.mkdir()
    shutil.copy(deb, srv_dir / "good.deb")
    shutil.copy(other, srv_dir / "other.deb")
    data = deb.read_bytes()
    dest = tmp_path / "build" / "ipxe"
    with serve(srv_dir) as srv:
        args: dict[str, Any] = {
            "pin": {"name": "ipxe-test", "version": "2.0.0+dfsg-5", "arch": "all", "url": f"{srv.url}/gone.deb",
                    "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)},
            "url": f"{srv.url}/good.deb", "cache_dir": str(tmp_path / "cache"), "dest": str(dest), "files": FILES,
        }
        rc, res = run_module("debian_package", tmp_path / "w", args, check=True, diff=True)
        assert rc == 0 and res["changed"] is True and not dest.exists(), res  # check mode: dest untouched
        assert res["diff"]["after"].splitlines()[0] == f"{hashlib.sha256(EFI[::-1]).hexdigest()}  ipxe.efi"
        rc, res = run_module("debian_package", tmp_path / "w", args)
        assert rc == 0 and res["changed"] is True and res["downloaded"] is False, res  # check mode filled the cache
        assert res["package"]["url"] == f"{srv.url}/good.deb"
        assert (dest / "snponly.efi").read_bytes() == EFI and (dest / "undionly.kpxe").read_bytes() == KPXE
        assert (dest / "ipxe.efi").read_bytes() == EFI[::-1] and not (dest / "ipxe.efi").is_symlink()
        assert res["files"]["snponly.efi"] == {"member": FILES["snponly.efi"], "size": len(EFI), "changed": True,
                                               "sha256": hashlib.sha256(EFI).hexdigest()}
        mtime = (dest / "snponly.efi").stat().st_mtime_ns
        rc, res = run_module("debian_package", tmp_path / "w", args)
        assert rc == 0 and res["changed"] is False and (dest / "snponly.efi").stat().st_mtime_ns == mtime
        # a mirror serving other bytes: refused, named, nothing cached or written
        (dest / "snponly.efi").write_bytes(b"edited")
        unsized = {k: v for k, v in args["pin"].items() if k != "size"}  # a size would cut it off first
        rc, res = run_module("debian_package", tmp_path / "w2", {**args, "pin": unsized, "url": f"{srv.url}/other.deb",
                                                                 "cache_dir": str(tmp_path / "cache2")})
        assert rc == 1 and "sha256 mismatch" in res["msg"] and f"{srv.url}/other.deb" in res["msg"], res
        assert hashlib.sha256(other.read_bytes()).hexdigest() in res["msg"]
        assert not list((tmp_path / "cache2" / "debs").iterdir()) and (dest / "snponly.efi").read_bytes() == b"edited"
    # offline from the cache (the server is gone): the edited file is put back
    rc, res = run_module("debian_package", tmp_path / "w", {**args, "offline": True})
    assert rc == 0 and res["changed"] is True and res["files"]["snponly.efi"]["changed"] is True
    assert (dest / "snponly.efi").read_bytes() == EFI
    rc, res = run_module("debian_package", tmp_path / "w", {**args, "offline": True,
                                                            "cache_dir": str(tmp_path / "empty")})
    assert rc == 1 and "netboot_offline is true. Fill the cache" in res["msg"]
