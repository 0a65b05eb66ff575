"""qemu argument builder, test hook cpio, initrd concatenation and the minimum-RAM computation (no boots here)."""

from __future__ import annotations

import gzip
import lzma
import os
import subprocess
from pathlib import Path

import pytest
import zstandard

from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils._qemu import (
    CHECK_BEGIN,
    CHECK_END,
    MIB,
    QemuSpec,
    build_argv,
    bzimage_init_size,
    concat_initrds,
    hook_cpio,
    initrd_segments,
    minimum_ram,
    node_cmdline,
    parse_checks,
    parse_memory,
    pick_accel,
    stage_netboot,
)
from tests.fixtures.bootimage import boot_image


def test_parse_memory() -> None:
    assert [parse_memory(v) for v in ("4G", "512M", "512", "1g", "2GiB", 768)] == [4096, 512, 512, 1024, 2048, 768]
    for bad in ("lots", "16M", "1.5G", ""):
        with pytest.raises(ConfigError, match="memory"):
            parse_memory(bad)


def test_direct_argv_tcg() -> None:
    spec = QemuSpec(kernel=Path("/d/vmlinuz"), initrd=Path("/d/init,rd"), append="console=ttyS0 x=1", memory="1G",
                    smp=2, mac="AA-BB-CC-00-11-22")
    argv = build_argv(spec, "tcg")
    assert argv[:5] == ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max"]
    joined = " ".join(argv)
    assert "-m 1024M -smp 2 -nographic -serial stdio -monitor none -no-reboot" in joined
    assert argv[argv.index("-kernel") + 1] == "/d/vmlinuz" and argv[argv.index("-initrd") + 1] == "/d/init,rd"
    assert argv[argv.index("-append") + 1] == "console=ttyS0 x=1"
    assert "virtio-net-pci,netdev=n0,mac=aa:bb:cc:00:11:22,romfile=" in argv
    assert "-boot" not in argv


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


def test_hook_cpio_is_a_valid_newc_archive_gnu_cpio_reads(tmp_path: Path) -> None:
    data = hook_cpio(["cat /etc/hostname", "echo 'quoted' \"x\""], marker="READY-1")
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=data, capture_output=True, check=True).stdout.decode()
    names = [line.split()[-1] if "->" not in line else line.split()[-3] for line in listing.splitlines()]
    assert names == ["etc", "etc/local.d", "etc/local.d/zz-netboot-boot-test.start", "etc/runlevels",
                     "etc/runlevels/default", "etc/runlevels/default/local"]
    assert "-> /etc/init.d/local" in listing
    subprocess.run(["cpio", "-id", "--quiet"], input=data, cwd=tmp_path, check=True)
    script = tmp_path / "etc/local.d/zz-netboot-boot-test.start"
    assert os.access(script, os.X_OK)
    # Run the hook script on the host (with the console redirected) and parse what it prints.
    text = script.read_text().replace("out=/dev/ttyS0; [ -c $out ] || out=/dev/console", f"out={tmp_path}/console")
    assert text.count("dmesg -n 1") == 1
    text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("dmesg "))  # not on the host!
    (tmp_path / "etc/hostname").write_text("alpha\n")
    text = text.replace("/etc/hostname", f"{tmp_path}/etc/hostname")
    runnable = tmp_path / "hook.sh"
    runnable.write_text(text)
    subprocess.run(["sh", str(runnable)], check=True)
    console = (tmp_path / "console").read_text()
    assert console.endswith("READY-1\n")
    assert parse_checks(console, ["cat /etc/hostname", "echo 'quoted' \"x\""]) == [
        {"command": "cat /etc/hostname", "rc": 0, "output": "alpha"},
        {"command": "echo 'quoted' \"x\"", "rc": 0, "output": 'quoted x'},
    ]
    assert parse_checks(f"{CHECK_BEGIN} 0\nboom\n{CHECK_END} 0 rc=3\n", ["false"])[0]["rc"] == 3
    interleaved = f"{CHECK_BEGIN} 0\n[    2.184546] tsc: Refined TSC\nedge\n{CHECK_END} 0 rc=0\n"
    assert parse_checks(interleaved, ["cat /etc/netboot/role"])[0]["output"] == "edge"
    assert parse_checks("no hook output", ["true"]) == [{"command": "true", "rc": None, "output": None}]
    shared = f" * Starting local ...{CHECK_BEGIN} 0\nno-newline{CHECK_END} 0 rc=0\n"
    assert parse_checks(shared, ["printf no-newline"])[0]["output"] == "no-newline"
    with pytest.raises(ConfigError, match="boot_test_marker"):
        hook_cpio([], marker="it's")


def test_concat_and_segments_of_a_mixed_initrd(tmp_path: Path) -> None:
    """gzip + zstd (window 2^20) + xz + plain cpio concatenated like iPXE/the kernel see them."""
    hook = hook_cpio(["true"])
    payload = os.urandom(300_000) + b"\0" * 700_000
    gz = gzip.compress(payload)
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=20)
    zc = zstandard.ZstdCompressor(compression_params=params).compressobj()  # streamed: no content size in header
    zs = zc.compress(payload) + zc.flush()
    (tmp_path / "a.gz").write_bytes(gz)
    xz = lzma.compress(payload, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    out = concat_initrds([tmp_path / "a.gz", zs, xz, hook], tmp_path / "all")
    raw = out.read_bytes()
    assert raw.startswith(gz) and len(raw) % 4 == 0
    segs = initrd_segments(out)
    assert [(s.kind, s.unpacked) for s in segs] == [("gzip", len(payload)), ("zstd", len(payload)),
                                                      ("xz", len(payload)), ("cpio", len(hook))]
    assert [s.window for s in segs[:2]] == [32 * 1024, 1 << 20]
    assert segs[0].compressed == len(gz) and segs[1].compressed == len(zs) and segs[2].compressed == len(xz)
    (tmp_path / "junk").write_bytes(b"NOTANARCHIVE" * 3)
    with pytest.raises(ConfigError, match="unknown initrd data"):
        initrd_segments(tmp_path / "junk")


def test_minimum_ram_of_the_fixture_image() -> None:
    image = boot_image()
    init_size = bzimage_init_size(image.kernel)
    assert 16 * MIB < init_size < 128 * MIB
    need = minimum_ram(image.kernel, [image.initramfs])
    unpacked = len(gzip.decompress(image.initramfs.read_bytes()))
    assert need["unpacked_bytes"] == unpacked
    assert need["initrd_bytes"] == image.initramfs.stat().st_size
    total = init_size + image.initramfs.stat().st_size + unpacked + 32 * 1024 + 48 * MIB
    assert need["minimum_mib"] == -(-total // MIB)
    assert need["limited_by"] == "unpack"
    with pytest.raises(ConfigError, match="not an x86 bzImage"):
        bzimage_init_size(image.initramfs)


def test_minimum_ram_tmpfs_cap(tmp_path: Path) -> None:
    """A big unpacked tree is limited by the initramfs tmpfs (50 % of RAM) unless the cmdline lifts the cap."""
    image = boot_image()
    big = tmp_path / "big.zst"
    big.write_bytes(zstandard.ZstdCompressor(level=1).compress(b"\0" * (400 * MIB)))
    capped = minimum_ram(image.kernel, [big])
    assert capped["limited_by"] == "initramfs tmpfs cap"
    init_size = bzimage_init_size(image.kernel)
    expected = int((400 * MIB / 0.5 + big.stat().st_size + init_size + 8 * MIB) * 64 / 63)
    assert capped["minimum_mib"] == -(-expected // MIB)  # ~ 2 x unpacked + kernel + initrd + page structs
    wider = minimum_ram(image.kernel, [big], "console=ttyS0 initramfs_options=size=95%")
    assert wider["tmpfs_cap"] == 0.95 and wider["limited_by"] == "unpack"
    assert minimum_ram(image.kernel, [big], "root=/dev/ram0")["tmpfs_cap"] == 1.0


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


def test_direct_cmdline_matches_what_boot_ipxe_gives() -> None:
    nodes = [{"name": "n100-01", "mac": "AA-BB-CC-00-00-01", "hostname": "alpha", "role": "db",
              "kernel_args": "quiet"}]
    assert node_cmdline("console=ttyS0", "aabb.cc00.0001", nodes, "worker") == (
        "console=ttyS0 netboot.hostname=alpha netboot.role=db quiet")
    assert node_cmdline("console=ttyS0", "aa:bb:cc:00:00:02", nodes, "edge") == (
        "console=ttyS0 netboot.hostname=node-aabbcc000002 netboot.role=edge")
