"""The qemu argument builder, accel choice and the inputs of a VM (one initrd file, a serving directory)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._ipxe import DEFAULT_KERNEL_ARGS
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._qemu import (
    QemuSpec,
    build_argv,
    concat_initrds,
    parse_memory,
    pick_accel,
    stage_netboot,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError

ROLES = Path(__file__).resolve().parents[5] / "roles"


def test_parse_memory() -> None:
    assert [parse_memory(v) for v in ("4G", "512M", "512", "1g", "2GiB", 768)] == [4096, 512, 512, 1024, 2048, 768]
    for bad in ("lots", "16M", "1.5G", ""):
        with pytest.raises(ConfigError, match="memory"):
            parse_memory(bad)


def test_tcg_runs_several_cpus_on_one_host_thread() -> None:
    assert build_argv(QemuSpec(kernel=Path("/d/vmlinuz")), "tcg")[1:5] == ["-accel", "tcg", "-cpu", "max"]
    assert build_argv(QemuSpec(kernel=Path("/d/vmlinuz"), smp=2), "kvm")[1:5] == ["-accel", "kvm", "-cpu", "host"]


def test_direct_argv_tcg() -> None:
    spec = QemuSpec(kernel=Path("/d/vmlinuz"), initrd=Path("/d/init,rd"), append="console=ttyS0 x=1", memory="1G",
                    smp=2, mac="AA-BB-CC-00-11-22")
    argv = build_argv(spec, "tcg")
    assert argv[:5] == ["qemu-system-x86_64", "-accel", "tcg,thread=single", "-cpu", "max"]
    joined = " ".join(argv)
    assert "-m 1024M -smp 2 -nographic -serial stdio -monitor none -no-reboot" in joined
    assert argv[argv.index("-kernel") + 1] == "/d/vmlinuz" and argv[argv.index("-initrd") + 1] == "/d/init,rd"
    assert argv[argv.index("-append") + 1] == "console=ttyS0 x=1"
    assert "virtio-net-pci,netdev=n0,mac=aa:bb:cc:00:11:22,romfile=" in argv
    assert "-boot" not in argv


def test_direct_argv_defaults_to_the_ipxe_kernel_args() -> None:
    argv = build_argv(QemuSpec(kernel=Path("/d/vmlinuz")), "tcg")
    assert argv[argv.index("-append") + 1] == DEFAULT_KERNEL_ARGS
    assert "-initrd" not in argv
    # YAML cannot import: the one role default must carry the same value
    defaults = [yaml.safe_load(p.read_text()) or {} for p in sorted(ROLES.glob("*/defaults/main.yml"))]
    assert [d["ipxe_kernel_args"] for d in defaults if "ipxe_kernel_args" in d] == [DEFAULT_KERNEL_ARGS]


def test_netboot_argv_kvm_graphical_interactive() -> None:
    spec = QemuSpec(netboot=True, tftp_dir=Path("/srv/a,b"), bootfile="boot.ipxe", graphical=True, interactive=True,
                    no_reboot=False, nic="e1000")
    argv = build_argv(spec, "kvm")
    assert argv[1:5] == ["-accel", "kvm", "-cpu", "host"]
    assert "-nographic" not in argv and argv[argv.index("-serial") + 1] == "mon:stdio" and "-monitor" not in argv
    assert "user,id=n0,tftp=/srv/a,,b,bootfile=boot.ipxe" in argv  # commas escaped for qemu
    assert "e1000,netdev=n0,mac=52:54:00:12:34:56,bootindex=1" in argv
    assert argv[-2:] == ["-boot", "order=n"] and "-kernel" not in argv and "-no-reboot" not in argv


def test_argv_errors() -> None:
    for spec, accel, message in [
        (QemuSpec(), "tcg", "direct mode needs a kernel"),
        (QemuSpec(netboot=True), "tcg", "netboot mode needs tftp_dir"),
        (QemuSpec(kernel=Path("k")), "whpx", "accel 'whpx'"),
        (QemuSpec(kernel=Path("k"), smp=0), "tcg", "smp 0"),
        (QemuSpec(kernel=Path("k"), nic="ne2k_isa"), "tcg", "nic 'ne2k_isa'"),
        (QemuSpec(kernel=Path("k"), mac="nope"), "tcg", "malformed mac"),
    ]:
        with pytest.raises(ConfigError, match=message):
            build_argv(spec, accel)
    assert pick_accel("tcg") == "tcg"
    with pytest.raises(ConfigError, match="accel 'fast'"):
        pick_accel("fast")


def test_concat_initrds_aligns_each_part_to_4_bytes(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"12345")
    out = concat_initrds([tmp_path / "a", b"xyz", b"0123"], tmp_path / "all")
    assert out.read_bytes() == b"12345\0\0\0" + b"xyz\0" + b"0123"
    assert os.path.getsize(tmp_path / "a") == 5  # the source is untouched


def test_stage_netboot_links_and_overrides(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    for name in ("vmlinuz", "initramfs", "boot.ipxe"):
        (dist / name).write_text(name)
    other = tmp_path / "with-hook"
    other.write_text("hooked")
    serve = stage_netboot(dist, tmp_path / "serve", {"initramfs": other})
    assert {p.name: p.read_text() for p in serve.iterdir()} == {"vmlinuz": "vmlinuz", "initramfs": "hooked",
                                                                "boot.ipxe": "boot.ipxe"}
    assert (dist / "initramfs").read_text() == "initramfs"  # dist untouched
    with pytest.raises(ConfigError, match="plain file name"):
        stage_netboot(dist, tmp_path / "s2", {"../x": other})
