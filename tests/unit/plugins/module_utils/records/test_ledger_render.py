"""_ledger_render: the delta, the budget checks and ledger.md/ledger.svg of a measured ledger (the values below were
rendered by the code before it moved out of _ledger.py, byte for byte)."""

from __future__ import annotations

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records import _ledger_render as render

LED = {
    "total_compressed_bytes": 3_000_000, "total_unpacked_bytes": 9_000_000, "files": 42, "download_bytes": 8_000_000,
    "image_name": "initramfs", "artefacts": {"vmlinuz": 5_000_000, "initramfs": 3_000_000},
    "node_ram": {"minimum_mib": 96},
    "estimate": {"method": "each group compressed alone", "compression": "zstd -19", "compressed_alone_sum": 3_100_000,
                 "real_compressed_bytes": 3_000_000, "deviation": 0.033333, "tolerance": 0.1, "within_tolerance": True},
    "groups": [
        {"kind": "modules", "name": "kernel/drivers/net", "unpacked_bytes": 4_000_000, "files": 20,
         "compressed_bytes_estimate": 1_500_000},
        {"kind": "package", "name": "busybox", "unpacked_bytes": 3_000_000, "files": 10,
         "compressed_bytes_estimate": 1_000_000},
        {"kind": "firmware", "name": "firmware/rtl_nic", "unpacked_bytes": 2_000_000, "files": 12,
         "compressed_bytes_estimate": 500_000},
    ],
    "packages": [{"name": "linux-lts", "version": "6.12-r0", "unpacked_bytes": 6_000_000,
                  "compressed_bytes_estimate": 2_000_000},
                 {"name": "busybox", "version": "1.37-r30", "unpacked_bytes": 3_000_000,
                  "compressed_bytes_estimate": 1_000_000}],
    "unowned": [{"name": "(overlay)", "unpacked_bytes": 10, "compressed_bytes_estimate": 0}],
    "pruned": [{"rule": "drivers/gpu", "bytes": 7_000_000, "count": 300}],
}
PREV = {"image_sha256": "aa", "total_compressed_bytes": 3_100_000,
        "packages": [{"name": "busybox", "version": "1.37-r29", "compressed_bytes_estimate": 900_000},
                     {"name": "gone", "version": "1", "compressed_bytes_estimate": 5}],
        "groups": [{"kind": "modules", "name": "kernel/drivers/net", "compressed_bytes_estimate": 1_600_000}]}

MARKDOWN = "\n".join([
    "# Image size ledger",
    "",
    "Initramfs **3.00 MB** compressed (zstd -19), 9.00 MB unpacked, 42 entries. A node downloads "
    "**8.00 MB** (initramfs 3.00 MB, vmlinuz 5.00 MB); it needs at least **96 MiB** of RAM to boot.",
    "",
    "Estimate: each group compressed alone. Groups compressed alone sum to 3.10 MB against 3.00 MB "
    "real (+3.3%; tolerance ±10%: within).",
    "",
    "## Top 25 contributors (compressed estimate)",
    "",
    "| # | group | kind | compressed | share | unpacked | files |",
    "|---:|---|---|---:|---:|---:|---:|",
    "| 1 | kernel/drivers/net | modules | 1.50 MB | 50.0% | 4.00 MB | 20 |",
    "| 2 | busybox | package | 1.00 MB | 33.3% | 3.00 MB | 10 |",
    "| 3 | firmware/rtl_nic | firmware | 0.50 MB | 16.7% | 2.00 MB | 12 |",
    "",
    "## Packages (all their files, kernel modules and firmware included)",
    "",
    "| package | version | compressed | share | unpacked |",
    "|---|---|---:|---:|---:|",
    "| linux-lts | 6.12-r0 | 2.00 MB | 66.7% | 6.00 MB |",
    "| busybox | 1.37-r30 | 1.00 MB | 33.3% | 3.00 MB |",
    "",
    "## Kernel-module directories",
    "",
    "| directory | compressed | unpacked | files |",
    "|---|---:|---:|---:|",
    "| kernel/drivers/net | 1.50 MB | 4.00 MB | 20 |",
    "",
    "## Firmware directories",
    "",
    "| directory | compressed | unpacked | files |",
    "|---|---:|---:|---:|",
    "| firmware/rtl_nic | 0.50 MB | 2.00 MB | 12 |",
    "",
    "## Not from a package (overlay, /init, generated)",
    "",
    "| part | compressed | unpacked |",
    "|---|---:|---:|",
    "| (overlay) | 0.00 MB | 0.00 MB |",
    "",
    "## Since the previous build",
    "",
    "Total: -100000 bytes.",
    "- packages new: linux-lts (+2000000 B, 6.12-r0)",
    "- packages left: gone (+5 B)",
    "- packages grew: busybox (+100000 B, 1.37-r29 -> 1.37-r30)",
    "- groups new: firmware/firmware/rtl_nic (+500000 B), package/busybox (+1000000 B)",
    "- groups shrank: modules/kernel/drivers/net (-100000 B)",
    "",
    "## Removed by prune_kernel (unpacked)",
    "",
    "| rule | bytes | files |",
    "|---|---:|---:|",
    "| drivers/gpu | 7.00 MB | 300 |",
    "",
])


def ledger() -> dict[str, object]:
    return dict(LED, delta=render.delta(PREV, LED))


def test_the_delta_names_what_grew_shrank_is_new_or_left() -> None:
    assert render.delta(None, LED) == {"previous": None}
    d = render.delta(PREV, LED)
    assert d["previous"] == {"image_sha256": "aa", "total_compressed_bytes": 3_100_000}
    assert d["total_compressed_bytes"] == -100_000
    assert d["packages"] == {
        "new": [{"name": "linux-lts", "bytes": 2_000_000, "version": "6.12-r0"}],
        "left": [{"name": "gone", "bytes": 5}],
        "grew": [{"name": "busybox", "bytes": 100_000, "before": 900_000, "after": 1_000_000,
                  "version": "1.37-r29 -> 1.37-r30"}],
        "shrank": [],
    }
    assert d["groups"]["shrank"] == [{"name": "modules/kernel/drivers/net", "bytes": -100_000, "before": 1_600_000,
                                      "after": 1_500_000}]
    assert [r["name"] for r in d["groups"]["new"]] == ["firmware/firmware/rtl_nic", "package/busybox"]


def test_the_markdown_is_what_it_was() -> None:
    assert render.render_markdown(ledger()) == MARKDOWN


def test_budgets_name_the_figure_and_the_top_contributors() -> None:
    checks = render.check_budgets(ledger(), render.Budgets(image_bytes=7_000_000, node_ram_bytes=64 << 20,
                                                           server_bytes=1))
    assert [(c["budget"], c["figure"], c["ok"]) for c in checks] == [
        ("netboot_budget_image_bytes", 8_000_000, False),
        ("netboot_budget_node_ram_bytes", 96 << 20, False),
        ("netboot_budget_server_bytes", 16_000_000, False),
    ]
    assert checks[0]["message"] == (
        "netboot_budget_image_bytes = 7000000 exceeded: the artefacts a node downloads is 8000000 bytes (8.00 MB, "
        "1000000 over). Top contributors: vmlinuz (artefact) 5.00 MB (62.5%); kernel/drivers/net 1.50 MB (18.8%); "
        "busybox 1.00 MB (12.5%); firmware/rtl_nic 0.50 MB (6.2%). Prune (kernel_prune_profiles, alpine_packages) "
        "or raise netboot_budget_image_bytes; see ledger.md in the dist directory.")
    assert "what the boot server stores (2 generations)" in checks[2]["message"]
    assert all(c["ok"] and "message" not in c for c in render.check_budgets(ledger(), render.Budgets()))
    with pytest.raises(ConfigError, match="netboot_budget_image_bytes = -1 is negative"):
        render.Budgets(image_bytes=-1)


def test_the_chart_is_reproducible_and_names_the_largest_parts() -> None:
    svg = render.render_svg(ledger())
    assert svg == render.render_svg(ledger())
    assert svg.startswith(b"<?xml") and b"linux-lts" in svg and b"kernel/drivers/net" in svg
