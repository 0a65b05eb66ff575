"""_shipped: the role files are the only copy; found through the installed collection, or a clear error naming the
option when the code runs from an AnsiballZ payload (module_utils only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _ipxe
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _shipped
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _prunerules
from tests.fixtures.material import REPO

ANSIBLE = Path(sys.executable).parent / "ansible"


def test_the_checkout_is_the_installed_collection() -> None:
    root = _shipped.collection_root()
    assert root is not None and root.resolve() == REPO.resolve()
    for rel in (_shipped.KERNEL_PROFILES, _shipped.KERNEL_HARDWARE, _shipped.IPXE_TEMPLATE):
        found = _shipped.shipped(rel)
        assert found is not None and found.resolve() == (REPO / rel).resolve()
    assert _shipped.shipped("roles/kernel/files/nothing-here") is None


def test_shipped_profiles_resolve_by_name_without_search_dirs(tmp_path: Path) -> None:
    rules = _prunerules.load_rules(["original", "headless", "base"], [])
    shipped = _shipped.shipped(_shipped.KERNEL_PROFILES)
    assert rules.sources == [str(shipped / f"{n}.yml") for n in ("original", "headless", "base")]
    assert any(g.pattern == "kernel/drivers/net/wireless" for g in rules.module_remove)
    hw = _prunerules.find_hardware("n100-i226", [])
    assert any(a.startswith("usb:v0BDAp8156") for _unused, a in hw.modaliases)
    mine = tmp_path / "original.yml"  # a search dir wins over the shipped file
    mine.write_text("modules:\n  remove: [kernel/sound]\n")
    assert _prunerules.load_rules(["original"], [tmp_path]).sources == [str(mine)]
    with pytest.raises(ConfigError, match=r"unknown profile 'n200'.*available: n100-i226, n100-rtl8111\)$"):
        _prunerules.find_hardware("n200", [])


def test_the_default_ipxe_template_is_the_role_file() -> None:
    assert _ipxe.default_template().resolve() == (REPO / _shipped.IPXE_TEMPLATE).resolve()


def ansible_adhoc(tmp_path: Path, module: str, args: dict[str, object]) -> str:
    """Run a module the way Ansible does (AnsiballZ payload on localhost); its output."""
    proc = subprocess.run(
        [str(ANSIBLE), "localhost", "-c", "local", "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}",
         "-m", f"homelab.alpine_netboot.{module}", "-a", json.dumps(args)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"), "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
             "ANSIBLE_NOCOLOR": "1"},
    )
    assert proc.returncode != 0, proc.stdout
    return proc.stdout + proc.stderr


def test_ansiballz_payload_names_profile_dirs(tmp_path: Path) -> None:
    (tmp_path / "root/lib/modules/6.1.0").mkdir(parents=True)
    out = ansible_adhoc(tmp_path, "prune_kernel", {"root": str(tmp_path / "root"), "profiles": ["original"]})
    assert ("unknown profile 'original': not a file and not in any directory (no profile_dirs given) (available: "
            "none); the collection's roles/kernel/files/profiles is not reachable from here (a module run by Ansible "
            "carries only plugins/module_utils): set profile_dirs to that path of the installed collection, as the "
            "homelab.alpine_netboot.kernel role does") in out
    out = ansible_adhoc(tmp_path, "prune_kernel", {"root": str(tmp_path / "root"), "profiles": ["original"],
                                                   "profile_dirs": [str(REPO / _shipped.KERNEL_PROFILES)],
                                                   "hardware_profiles": ["n100-i226"]})
    assert "unknown profile 'n100-i226'" in out and "set hardware_dirs to that path" in out


def test_ansiballz_payload_names_template(tmp_path: Path) -> None:
    out = ansible_adhoc(tmp_path, "ipxe_script", {"dest": str(tmp_path / "boot.ipxe"),
                                                  "boot_server_url": "http://10.0.0.1/"})
    assert ("no template given and the collection's roles/ipxe/templates/boot.ipxe.j2 is not reachable from here "
            "(a module run by Ansible carries only plugins/module_utils): set template to that path of the installed "
            "collection, as the homelab.alpine_netboot.ipxe role does") in out
    assert not (tmp_path / "boot.ipxe").exists()
