"""_prune on real trees (downloaded material): whole plans with firmware selection/audit and decompression on
Debian's kernel and firmware and on Alpine's linux-virt, and the firmware/metadata phases on the Debian tree. The
rules, profiles and each phase on small trees: tests/unit/plugins/module_utils/test_prune*.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import zstandard

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _kmod, _prune, _pruneselect
from tests.fixtures.debian import DebianKernel, clone_tree
from tests.fixtures.material import QuicksandImage
from tests.fixtures.prune import HARDWARE, PROFILES, RTL8156B, rules_of

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="hard-links root-owned material trees and keeps ownership: needs root"),
]


def opts(root: Path, **kw: object) -> _prune.Options:
    o = _prune.Options(root=root, profile_dirs=[PROFILES], hardware_dirs=[HARDWARE], profiles=[], hardware_profiles=[],
                       hardware_mode="select", module_compression="keep", firmware_compression="keep", strip=False)
    for k, v in kw.items():
        setattr(o, k, v)
    return o


def rtl_profile(tmp_path: Path) -> Path:
    hw = tmp_path / "rtl8156b.modalias"
    hw.write_text(f"# a box with the RTL8156B USB 2.5GbE dongle\n{RTL8156B}\n")
    return hw


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


def test_keep_rule_naming_unknown_module_is_an_error(debian: DebianKernel, tmp_path: Path) -> None:
    prof = tmp_path / "mine.yml"
    prof.write_text("modules:\n  keep: [r8152, no_such_driver]\n")
    with pytest.raises(ConfigError, match=r"mine:modules\.keep: keep names module 'no_such_driver'"):
        _prune.make_plan(opts(debian.root, profiles=[str(prof)]))
    with pytest.raises(ConfigError, match=r"keep_modules names 'zfs'"):
        _prune.make_plan(opts(debian.root, keep_modules=["zfs"]))


def test_globs_and_alias_files_matching_nothing_warn(debian: DebianKernel, tmp_path: Path) -> None:
    prof = tmp_path / "mine.yml"
    prof.write_text("modules:\n  remove: [kernel/drivers/no/such/dir]\nfirmware:\n  keep: ['nothing-*.bin']\n")
    hw = tmp_path / "alien.modalias"
    hw.write_text("pci:v0000FFFFd0000FFFFsv0000FFFFsd0000FFFFbcFFscFFiFF\n")
    plan = _prune.make_plan(opts(debian.root, profiles=[str(prof)], hardware_profiles=[str(hw)]))
    assert f"mine:modules.remove: 'kernel/drivers/no/such/dir' matches nothing in {debian.root}" in plan.warnings
    assert f"mine:firmware.keep: 'nothing-*.bin' matches nothing in {debian.root}" in plan.warnings
    assert any(w.startswith(f"hardware profile {hw} matches no module") for w in plan.warnings)


def test_rule_removal_loses_to_dependency_closure(debian: DebianKernel, tmp_path: Path) -> None:
    """Removing a module a kept one depends on would break loading: the closure wins, with a warning."""
    prof = tmp_path / "mine.yml"
    prof.write_text("modules:\n  remove: [kernel/drivers/net/mii.ko]\n  keep: [r8152]\n")
    plan = _prune.make_plan(opts(debian.root, profiles=[str(prof)], hardware_profiles=[str(rtl_profile(tmp_path))]))
    assert plan.kept_modules["mii"] == "dependency of r8152"
    assert any("mii.ko matches" in w and "kept: dependency of r8152" in w for w in plan.warnings)


def test_firmware_of_built_in_drivers_is_kept(debian: DebianKernel, tmp_path: Path) -> None:
    root = clone_tree(debian.root, tmp_path / "root")
    with open(root / f"lib/modules/{debian.kernel_version}/modules.builtin.modinfo", "ab") as fh:
        fh.write(b"r8169.firmware=rtl_nic/rtl8168h-2.fw\0")  # as if r8169 were built in (=y)
    plan = _prune.make_plan(opts(root, hardware_profiles=[str(rtl_profile(tmp_path))]))
    assert "r8169" not in plan.kept_modules
    assert "lib/firmware/rtl_nic/rtl8168h-2.fw" not in plan.remove
    assert "lib/firmware/rtl_nic/rtl8168g-2.fw" in plan.remove


def test_headless_profile_on_top_of_original(debian: DebianKernel) -> None:
    """Rules of several profiles add up; a glob matched by an earlier profile still counts as used."""
    orig = _prune.make_plan(opts(debian.root, profiles=["original"], firmware_audit="warn"))
    both = _prune.make_plan(opts(debian.root, profiles=["original", "headless"], firmware_audit="warn"))
    assert not any(tree.startswith(("kernel/sound/", "kernel/drivers/media/", "kernel/drivers/bluetooth/"))
                   for tree in both.module_paths.values())
    assert both.report["modules"]["after"]["bytes"] < orig.report["modules"]["after"]["bytes"]
    assert len(both.missing_firmware) < len(orig.missing_firmware) / 5
    assert not any(w.startswith("headless:modules.remove: 'kernel/drivers/gpu'") for w in both.warnings)


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


def test_empty_modules_dep_on_alpine_is_rebuilt_with_target_kmod(alpine: QuicksandImage, tmp_path: Path) -> None:
    """The host-depmod pitfall left behind (empty modules.dep over .ko.gz): plan from .modinfo, target kmod fixes it."""
    img = alpine
    root = clone_tree(img.root, tmp_path / "root")
    moddir = root / f"lib/modules/{img.kernel_version}"
    (moddir / "modules.dep").write_text("")
    plan = _prune.make_plan(opts(root, keep_modules=["ext4"], profiles=[], firmware_audit="warn"))
    assert plan.kept_modules["jbd2"] == "not removed by any rule" and plan.depmod_needed
    _prune.apply_plan(plan, Runner())
    reference = (img.root / f"lib/modules/{img.kernel_version}/modules.dep").read_text()
    assert (moddir / "modules.dep").read_text() == reference


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


def test_phase_select_firmware_and_metadata_on_the_debian_tree(debian: DebianKernel, tmp_path: Path) -> None:
    tree = _kmod.read_tree(debian.root, debian.kernel_version)
    fw_entries = _pruneselect.walk(debian.root, "lib/firmware")
    rules = rules_of(tmp_path, "firmware:\n  keep: [intel-ucode/*]\n  remove: [rtl_nic/rtl8153*]\n")
    fw = _pruneselect.select_firmware(debian.root, tree, ["r8152"], fw_entries, rules, critical=None, audit="warn")
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
    assert not _pruneselect.metadata_needed(debian.root, debian.kernel_version, ["etc/x"], [], files)
    assert _pruneselect.metadata_needed(debian.root, debian.kernel_version, [f"{moddir}/{files[0]}"], [], files[1:])
    assert _pruneselect.metadata_needed(debian.root, debian.kernel_version, [], ["x.ko.zst"], files)  # decompressing
    # modules.dep does not list a module file that stays
    assert _pruneselect.metadata_needed(debian.root, debian.kernel_version, [], [], [*files, "kernel/extra/new.ko"])
