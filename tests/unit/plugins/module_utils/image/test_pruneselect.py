"""_pruneselect: each planning phase alone, on small trees (whole plans on real Debian and Alpine trees:
tests/integration/test_prune.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import zstandard

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _kmod, _prunerules, _pruneselect
from tests.fixtures.prune import RTL8156B, rules_of

# --- each planning phase alone, on small trees ---------------------------------------------------------------------

KVER = "6.1.0-test"


def small_tree(tmp_path: Path) -> _kmod.ModuleTree:
    """A module tree as read_tree returns it: net drivers over a wireless stack, a filesystem, a built-in."""
    tree = _kmod.ModuleTree(tmp_path, KVER)
    tree.modules = {
        "cfg80211": "kernel/net/wireless/cfg80211.ko",
        "mac80211": "kernel/net/mac80211/mac80211.ko",
        "iwlwifi": "kernel/drivers/net/wireless/intel/iwlwifi.ko",
        "igc": "kernel/drivers/net/ethernet/intel/igc/igc.ko",
        "r8152": "kernel/drivers/net/usb/r8152.ko",
        "mii": "kernel/drivers/net/mii.ko",
        "ext4": "kernel/fs/ext4/ext4.ko",
        "jbd2": "kernel/fs/jbd2/jbd2.ko",
    }
    tree.deps = {"mac80211": ["cfg80211"], "iwlwifi": ["mac80211", "cfg80211"], "r8152": ["mii"], "ext4": ["jbd2"]}
    tree.aliases = [("pci:v00008086d0000125Csv*", "igc"), ("usb:v0BDAp8156d*", "r8152")]
    tree.builtin = {"unix"}
    return tree


def hw(text: str) -> list[_prunerules.Hardware]:
    return [_prunerules.parse_hardware_text("box.modalias", text)]


def test_phase_select_modules_keep_remove_except_and_hardware(tmp_path: Path) -> None:
    tree = small_tree(tmp_path)
    rules = rules_of(tmp_path, "modules:\n  remove: [kernel/drivers/net/*]\n  except: [kernel/drivers/net/usb/*]\n"
                               "  keep: [ext4, kernel/fs/jbd2/*]\n  base: [ext4, nosuch]\n")
    sel = _pruneselect.select_modules(tree, rules, hw(f"{RTL8156B}\nunix 1 0\nigb 2 0\n"), ["mii"], "select")
    assert sel.forced == {"ext4", "jbd2", "mii"}
    assert sel.reasons == {"ext4": "t:modules.keep:ext4", "jbd2": "t:modules.keep:kernel/fs/jbd2/*", "mii": "keep_modules"}
    assert set(sel.rule_removed) == {"iwlwifi", "igc", "mii"}  # r8152 is excepted
    assert sel.wants == [("ext4", "t:modules.base:ext4"), ("r8152", "hardware:box.modalias:1")]
    assert sel.warnings == ["t:modules.base: base module 'nosuch' is not in kernel 6.1.0-test (skipped)",
                            "box.modalias:3: lsmod module 'igb' is not in kernel 6.1.0-test"]
    assert {"t:modules.except:kernel/drivers/net/usb/*", "t:modules.remove:kernel/drivers/net/*"} <= sel.used
    audit = _pruneselect.select_modules(tree, rules, hw(RTL8156B), [], "audit")
    assert "r8152" in audit.forced and ("ext4", "t:modules.base:ext4") not in audit.wants
    with pytest.raises(ConfigError, match=r"keep_modules names 'zfs'.*kernel 6\.1\.0-test"):
        _pruneselect.select_modules(tree, rules, [], ["zfs"], "select")


def test_phase_close_over_deps_removes_dependents_and_keeps_what_keep_needs(tmp_path: Path) -> None:
    tree = small_tree(tmp_path)
    rules = rules_of(tmp_path, "modules:\n  remove: [kernel/net/wireless/*, kernel/drivers/net/mii.ko]\n  keep: [r8152]\n")
    sel = _pruneselect.select_modules(tree, rules, [], [], "select")
    out = _pruneselect.close_over_deps(tree, sel, False, "select")
    # cfg80211 goes by the rule and takes what needs it; mii matches a rule but r8152 (kept) needs it
    assert out.removed == {n: "t:modules.remove:kernel/net/wireless/*" for n in ("cfg80211", "mac80211", "iwlwifi")}
    assert out.removed_dependents == {"mac80211": "cfg80211", "iwlwifi": "cfg80211"}
    assert set(out.kept) == {"igc", "r8152", "mii", "ext4", "jbd2"} and out.kept["r8152"] == "t:modules.keep:r8152"
    assert out.critical is None
    assert out.warnings == ["kernel/drivers/net/mii.ko matches t:modules.remove:kernel/drivers/net/mii.ko but is kept: "
                            "not removed by any rule"]
    entries = {f"lib/modules/{KVER}/{p}": _pruneselect.Entry(p, 1, False) for p in tree.modules.values()}
    removals = _pruneselect.module_removals(tree, out, entries, f"lib/modules/{KVER}", False)
    assert removals == {f"lib/modules/{KVER}/{tree.modules[n]}": out.removed[n] for n in out.removed}


def test_phase_close_over_deps_with_hardware(tmp_path: Path) -> None:
    tree = small_tree(tmp_path)
    rules = rules_of(tmp_path, "modules:\n  remove: [kernel/drivers/net/usb/*]\n  base: [ext4]\n")
    boxes = hw(f"{RTL8156B}\npci:v00008086d0000125Csv00008086sd0bc02sc00i00\n")
    sel = _pruneselect.select_modules(tree, rules, boxes, [], "select")
    out = _pruneselect.close_over_deps(tree, sel, True, "select")
    assert set(out.kept) == {"igc", "ext4", "jbd2"} and out.kept["jbd2"] == "dependency of ext4"
    assert out.warnings == ["r8152 (hardware:box.modalias:1) is removed by t:modules.remove:kernel/drivers/net/usb/*"]
    entries = {f"lib/modules/{KVER}/{p}": _pruneselect.Entry(p, 1, False) for p in tree.modules.values()}
    removals = _pruneselect.module_removals(tree, out, entries, f"lib/modules/{KVER}", True)
    assert removals[f"lib/modules/{KVER}/kernel/drivers/net/mii.ko"] == "hardware: not needed by any hardware profile"
    audit_sel = _pruneselect.select_modules(tree, rules_of(tmp_path, "{}"), hw(RTL8156B), [], "audit")
    audit = _pruneselect.close_over_deps(tree, audit_sel, True, "audit")
    assert audit.critical == {"r8152", "mii"} and set(audit.kept) == set(tree.modules)


def test_phase_select_files_and_rule_usage(tmp_path: Path) -> None:
    rules = rules_of(tmp_path, "files:\n  remove: [usr/share/man, usr/share/doc/*.gz, etc/nothing]\n")
    entries = {r: _pruneselect.Entry(r, 10, False) for r in ("usr/share/man/man1/ls.1", "usr/share/doc/a.gz", "etc/hosts")}
    removed, used = _pruneselect.select_files(entries, rules)
    assert removed == {"usr/share/man/man1/ls.1": "t:files.remove:usr/share/man",
                       "usr/share/doc/a.gz": "t:files.remove:usr/share/doc/*.gz"}
    used_rules, warnings = _pruneselect.rule_usage(rules, used, None, tmp_path)
    assert used_rules == sorted(used) and warnings == [f"t:files.remove: 'etc/nothing' matches nothing in {tmp_path}"]
    # a rule that matched in the run the previous report describes did its work: no warning on the rerun
    used_rules, warnings = _pruneselect.rule_usage(rules, set(), {"used_rules": ["t:files.remove:etc/nothing"]}, tmp_path)
    assert used_rules == ["t:files.remove:etc/nothing"] and len(warnings) == 2


def test_phase_select_decompression(tmp_path: Path) -> None:
    fw = tmp_path / "lib/firmware/rtl_nic"
    fw.mkdir(parents=True)
    (fw / "a.fw.zst").write_bytes(zstandard.ZstdCompressor().compress(b"fw"))
    os.symlink("a.fw.zst", fw / "b.fw.zst")
    (fw / "c.fw").write_bytes(b"plain")
    mods = ["lib/modules/k/x.ko.zst", "lib/modules/k/y.ko"]
    firmware = ["lib/firmware/rtl_nic/a.fw.zst", "lib/firmware/rtl_nic/b.fw.zst", "lib/firmware/rtl_nic/c.fw"]
    assert _pruneselect.select_decompression(tmp_path, mods, firmware, "keep", "keep") == ([], [])
    decompress, relink = _pruneselect.select_decompression(tmp_path, mods, firmware, "decompress", "decompress")
    assert decompress == ["lib/modules/k/x.ko.zst", "lib/firmware/rtl_nic/a.fw.zst"]
    assert relink == [("lib/firmware/rtl_nic/b.fw.zst", "a.fw")]
    (fw / "a.fw").write_bytes(b"fw")
    with pytest.raises(NetbootError, match=r"cannot decompress lib/firmware/rtl_nic/a\.fw\.zst: lib/firmware/rtl_nic/"
                                           r"a\.fw exists too"):
        _pruneselect.select_decompression(tmp_path, [], firmware, "keep", "decompress")


def test_phase_select_strip_takes_only_unstripped_elf_outside_modules_kernel_firmware(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to make an unstripped ELF program")
    src = tmp_path / "p.c"
    src.write_text("int main(void) { return 0; }\n")
    prog = tmp_path / "usr/bin/prog"
    prog.parent.mkdir(parents=True)
    subprocess.run(["gcc", "-g", "-o", str(prog), str(src)], check=True)
    for rel in ("lib/firmware/blob.bin", "boot/vmlinuz", "usr/lib/x.ko"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(prog, tmp_path / rel)
    (tmp_path / "usr/bin/script").write_text("#!/bin/sh\n" + "echo not an ELF file\n" * 10)
    entries = _pruneselect.walk(tmp_path, "")
    assert _pruneselect.select_strip(tmp_path, entries, {}) == ["usr/bin/prog"]
    assert _pruneselect.select_strip(tmp_path, entries, {"usr/bin/prog": "rule"}) == []
