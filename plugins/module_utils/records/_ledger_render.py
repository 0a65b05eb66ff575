# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""What is made of a measured ledger (``_ledger.measure``): the delta against the previous one, the budget checks
and the two renderings, ``ledger.md`` and ``ledger.svg``. docsite "Size ledger and budgets"."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError

TOP = 5  # contributors named in a budget failure
CHART_BARS = 20
DEFAULT_SERVER_GENERATIONS = 2  # live + 1 kept (rb4011_keep_generations when the deploy role defines it)


def _index(rows: Sequence[Mapping[str, Any]], key: Sequence[str]) -> dict[str, Mapping[str, Any]]:
    return {"/".join(str(r.get(k, "")) for k in key): r for r in rows}


def delta(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> dict[str, Any]:
    """What grew, shrank, is new or left since ``previous`` (packages and groups, by compressed estimate)."""
    if not previous:
        return {"previous": None}
    out: dict[str, Any] = {
        "previous": {"image_sha256": previous.get("image_sha256"),
                     "total_compressed_bytes": previous.get("total_compressed_bytes")},
        "total_compressed_bytes": int(current["total_compressed_bytes"]) - int(previous.get("total_compressed_bytes") or 0),
    }
    for view, key in (("packages", ("name",)), ("groups", ("kind", "name"))):
        old = _index(previous.get(view) or [], key)
        new = _index(current.get(view) or [], key)
        est = "compressed_bytes_estimate"
        grew, shrank = [], []
        for name in sorted(set(old) & set(new)):
            d = int(new[name].get(est, 0)) - int(old[name].get(est, 0))
            row = {"name": name, "bytes": d, "before": int(old[name].get(est, 0)), "after": int(new[name].get(est, 0))}
            if "version" in new[name] and old[name].get("version") != new[name].get("version"):
                row["version"] = f"{old[name].get('version')} -> {new[name].get('version')}"
            if d > 0:
                grew.append(row)
            elif d < 0:
                shrank.append(row)
        out[view] = {
            "new": [{"name": n, "bytes": int(new[n].get(est, 0)), **({"version": new[n]["version"]}
                                                                     if "version" in new[n] else {})}
                    for n in sorted(set(new) - set(old))],
            "left": [{"name": n, "bytes": int(old[n].get(est, 0))} for n in sorted(set(old) - set(new))],
            "grew": sorted(grew, key=lambda r: (-r["bytes"], r["name"])),
            "shrank": sorted(shrank, key=lambda r: (r["bytes"], r["name"])),
        }
    return out


@dataclass(frozen=True)
class Budgets:
    image_bytes: int = 0
    node_ram_bytes: int = 0
    server_bytes: int = 0
    server_generations: int = DEFAULT_SERVER_GENERATIONS

    def __post_init__(self) -> None:
        for name in ("image_bytes", "node_ram_bytes", "server_bytes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"netboot_budget_{name} = {getattr(self, name)} is negative; use 0 for no budget")
        if self.server_generations < 1:
            raise ConfigError(f"server generations = {self.server_generations}: the server keeps at least the live one")


def _fmt(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def top_contributors(ledger: Mapping[str, Any], budget: str, count: int = TOP) -> list[tuple[str, int, float]]:
    """(name, bytes, share of the figure) of the largest parts behind a budget's figure."""
    if budget == "netboot_budget_node_ram_bytes":
        rows = [(f"{g['name']} (unpacked)", int(g["unpacked_bytes"])) for g in ledger["groups"]]
        total = int(ledger["node_ram"]["minimum_mib"]) * 1024 * 1024
    else:
        rows = [(str(g["name"]), int(g["compressed_bytes_estimate"])) for g in ledger["groups"]]
        rows += [(f"{name} (artefact)", int(size)) for name, size in ledger["artefacts"].items()
                 if name != ledger.get("image_name")]
        total = int(ledger["download_bytes"])
    rows.sort(key=lambda r: (-r[1], r[0]))
    return [(n, b, b / total if total else 0.0) for n, b in rows[:count]]


def check_budgets(ledger: Mapping[str, Any], budgets: Budgets) -> list[dict[str, Any]]:
    """One entry per budget: the limit (0 = none), the figure, ok, and the message for a failure."""
    download = int(ledger["download_bytes"])
    table = (  # budget, limit, figure, what the figure is
        ("netboot_budget_image_bytes", budgets.image_bytes, download, "the artefacts a node downloads"),
        ("netboot_budget_node_ram_bytes", budgets.node_ram_bytes, int(ledger["node_ram"]["minimum_mib"]) * 1024 * 1024,
         "the RAM a node needs to boot (minimum_ram)"),
        ("netboot_budget_server_bytes", budgets.server_bytes, download * budgets.server_generations,
         f"what the boot server stores ({budgets.server_generations} generations)"),
    )
    out = []
    for name, limit, figure, what in table:
        ok = limit == 0 or figure <= limit
        entry: dict[str, Any] = {"budget": name, "limit": limit, "figure": figure, "ok": ok}
        if not ok:
            tops = "; ".join(f"{n} {_fmt(b)} ({share:.1%})" for n, b, share in top_contributors(ledger, name))
            entry["message"] = (
                f"{name} = {limit} exceeded: {what} is {figure} bytes ({_fmt(figure)}, {figure - limit} over). "
                f"Top contributors: {tops}. Prune (kernel_prune_profiles, alpine_packages) or raise {name}; "
                "see ledger.md in the dist directory."
            )
        out.append(entry)
    return out


def render_markdown(ledger: Mapping[str, Any], top: int = 25) -> str:
    est = ledger["estimate"]
    lines = [
        "# Image size ledger",
        "",
        f"Initramfs **{_fmt(ledger['total_compressed_bytes'])}** compressed ({est['compression']}), "
        f"{_fmt(ledger['total_unpacked_bytes'])} unpacked, {ledger['files']} entries. A node downloads "
        f"**{_fmt(ledger['download_bytes'])}** ("
        + ", ".join(f"{n} {_fmt(s)}" for n, s in sorted(ledger["artefacts"].items())) + "); "
        f"it needs at least **{ledger['node_ram']['minimum_mib']} MiB** of RAM to boot.",
        "",
        f"Estimate: {est['method']}. Groups compressed alone sum to {_fmt(est['compressed_alone_sum'])} against "
        f"{_fmt(est['real_compressed_bytes'])} real ({est['deviation']:+.1%}; tolerance ±{est['tolerance']:.0%}: "
        f"{'within' if est['within_tolerance'] else 'OUTSIDE'}).",
        "",
        f"## Top {top} contributors (compressed estimate)",
        "",
        "| # | group | kind | compressed | share | unpacked | files |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    total = max(1, int(ledger["total_compressed_bytes"]))
    for i, g in enumerate(ledger["groups"][:top], start=1):
        lines.append(f"| {i} | {g['name']} | {g['kind']} | {_fmt(g['compressed_bytes_estimate'])} | "
                     f"{g['compressed_bytes_estimate'] / total:.1%} | {_fmt(g['unpacked_bytes'])} | {g['files']} |")
    lines += ["", "## Packages (all their files, kernel modules and firmware included)", "",
              "| package | version | compressed | share | unpacked |", "|---|---|---:|---:|---:|"]
    for p in ledger["packages"]:
        lines.append(f"| {p['name']} | {p['version']} | {_fmt(p['compressed_bytes_estimate'])} | "
                     f"{p['compressed_bytes_estimate'] / total:.1%} | {_fmt(p['unpacked_bytes'])} |")
    for kind, title in (("modules", "Kernel-module directories"), ("firmware", "Firmware directories")):
        rows = [g for g in ledger["groups"] if g["kind"] == kind]
        if rows:
            lines += ["", f"## {title}", "", "| directory | compressed | unpacked | files |", "|---|---:|---:|---:|"]
            lines += [f"| {g['name']} | {_fmt(g['compressed_bytes_estimate'])} | {_fmt(g['unpacked_bytes'])} | "
                      f"{g['files']} |" for g in rows[:top]]
    if ledger.get("unowned"):
        lines += ["", "## Not from a package (overlay, /init, generated)", "", "| part | compressed | unpacked |",
                  "|---|---:|---:|"]
        lines += [f"| {u['name']} | {_fmt(u['compressed_bytes_estimate'])} | {_fmt(u['unpacked_bytes'])} |"
                  for u in ledger["unowned"][:top]]
    d = ledger.get("delta") or {}
    lines += ["", "## Since the previous build", ""]
    if not d.get("previous"):
        lines.append("No previous ledger.")
    else:
        lines.append(f"Total: {d['total_compressed_bytes']:+d} bytes.")
        for view, shown in (("packages", None), ("groups", 10)):
            for what in ("new", "left", "grew", "shrank"):
                rows = d[view][what][:shown]
                if rows:
                    lines.append(f"- {view} {what}: " + ", ".join(
                        f"{r['name']} ({r['bytes']:+d} B{', ' + r['version'] if 'version' in r else ''})" for r in rows))
    pruned = ledger.get("pruned")
    if pruned:
        lines += ["", "## Removed by prune_kernel (unpacked)", "", "| rule | bytes | files |", "|---|---:|---:|"]
        lines += [f"| {r['rule']} | {_fmt(r['bytes'])} | {r['count']} |" for r in pruned[:top]]
    return "\n".join(lines) + "\n"


COLORS = {"package": "#4c72b0", "modules": "#dd8452", "firmware": "#55a868", "overlay": "#8172b3",
          "other": "#937860", "microcode": "#da8bc3"}


ROW, LABEL_W, BAR_W, WIDTH = 18, 300, 520, 1000  # px: a bar's row, the name column, the longest bar, the picture


def _chart(rows: Sequence[Mapping[str, Any]], total: int, title: str, y: int) -> tuple[list[str], int]:
    """One titled bar chart from ``y`` down: (SVG elements, the y below it)."""
    out = [f'<text x="8" y="{y + 14}" class="t">{escape(title)}</text>']
    y += 24
    largest = max((int(r["compressed_bytes_estimate"]) for r in rows), default=1) or 1
    for r in rows:
        size = int(r["compressed_bytes_estimate"])
        width = round(BAR_W * size / largest, 1)
        out += [f'<text x="{LABEL_W - 6}" y="{y + 13}" text-anchor="end">{escape(str(r["name"]))}</text>',
                f'<rect x="{LABEL_W}" y="{y + 2}" width="{width}" height="{ROW - 4}" '
                f'fill="{COLORS.get(str(r.get("kind", "package")), "#999999")}"/>',
                f'<text x="{LABEL_W + width + 4}" y="{y + 13}">{size / 1e6:.2f} MB ({size / total:.1%})</text>']
        y += ROW
    return out, y + 12


def render_svg(ledger: Mapping[str, Any], bars: int = CHART_BARS) -> bytes:
    """Two sorted bar charts - the largest packages and the largest groups (kernel-module and firmware directories
    split out) - as a plain SVG document; the same ledger gives the same bytes."""
    total = max(1, int(ledger["total_compressed_bytes"]))
    packages = [p for p in ledger["packages"] if int(p["compressed_bytes_estimate"]) > 0][: bars // 2]
    groups = list(ledger["groups"][:bars])
    top, y = _chart(packages, total, f"Largest packages (all their files) - initramfs {total / 1e6:.2f} MB, "
                                     f"{ledger['estimate']['compression']}", 0)
    bottom, y = _chart(groups, total, "Largest groups (kernel-module and firmware directories split out)", y)
    legend = []
    for i, kind in enumerate(sorted({str(r["kind"]) for r in groups})):
        legend += [f'<rect x="{LABEL_W + 110 * i}" y="{y}" width="12" height="12" fill="{COLORS.get(kind, "#999999")}"/>',
                   f'<text x="{LABEL_W + 110 * i + 16}" y="{y + 11}">{escape(kind)}</text>']
    height = y + 24
    head = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, sans-serif" font-size="11">\n'
            '<style>.t { font-size: 13px; font-weight: bold }</style>\n'
            f'<rect width="{WIDTH}" height="{height}" fill="white"/>\n')
    return (head + "\n".join(top + bottom + legend) + "\n</svg>\n").encode()
