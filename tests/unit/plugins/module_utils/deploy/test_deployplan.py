"""_deployplan: the plan (pure) on synthetic router states."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploydist import (
    GENERATION_SCRIPT,
    DeployError,
    dispatch_macs,
    dispatch_script,
    read_dist,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deployplan import (
    Options,
    RouterFile,
    RouterState,
    chainload_comment,
    chainloaded,
    generations,
    make_plan,
    rule_comment,
    stable_target,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._dhcp import DhcpOptions, DhcpState
from tests.fixtures.routeros.dist import make_dist

MB = 1_000_000


def state(files: list[tuple[str, int]] = (), rules: list[dict[str, str]] = (), free: int = 500 * MB) -> RouterState:
    rf = [RouterFile(f"*{i:X}", n, "directory" if s < 0 else "file", max(s, 0)) for i, (n, s) in enumerate(files, 1)]
    return RouterState("r1", "7.16 (stable)", "rb", free, 512 << 20, tuple(rf), tuple(rules))


def installed(gen: str, seq: int, live: bool, sizes: dict[str, int]) -> tuple[list[tuple[str, int]], list[dict[str, str]]]:
    files = [(f"netboot/{gen}", -1)] + [(f"netboot/{gen}/{n}", s) for n, s in sizes.items()]
    flags = {"allow": "true", "read-only": "true", "allow-rollover": "false", "disabled": "false"}
    rules = [{".id": f"*{gen}{n}", "comment": rule_comment("netboot", gen, n, seq),
              "req-filename": f"^{gen}/{n.replace('.', chr(92) + '.')}$", "real-filename": f"netboot/{gen}/{n}",
              **flags} for n in sizes if n != "boot.ipxe"]
    if live:
        rules.append({".id": "*s", "comment": rule_comment("netboot"), "req-filename": r"^boot\.ipxe$",
                      "real-filename": f"netboot/{gen}/{GENERATION_SCRIPT}", **flags})
    return files, rules


def test_fresh_router_plan_uploads_everything_and_switches(tmp_path: Path) -> None:
    d = read_dist(make_dist(tmp_path / "d", "tftp://r"), tmp_path / "s")
    plan = make_plan(state(), Options(), d)
    assert {a.name for a in plan.uploads} == {a.name for a in d.artefacts}
    assert plan.needed == d.total and plan.kept == [d.generation]
    assert plan.rule_changes[-1].key == "boot.ipxe"  # the switch comes after the generation's rules


def test_rerun_plan_is_empty_and_partial_upload_is_verified(tmp_path: Path) -> None:
    d = read_dist(make_dist(tmp_path / "d", "tftp://r"), tmp_path / "s")
    sizes = {a.name: a.size for a in d.artefacts}
    files, rules = installed(d.generation, 1, True, sizes)
    plan = make_plan(state(files, rules), Options(), d)
    assert not plan.changes and plan.needed == 0
    # same files without rules = an interrupted upload: right-size files are read back, not trusted
    partial = dict(sizes, initramfs=10)
    files, _unused = installed(d.generation, 0, False, partial)
    plan = make_plan(state(files), Options(), d)
    assert [a.name for a in plan.uploads] == ["initramfs"]
    assert {a.name for a in plan.verify} == set(sizes) - {"initramfs"}
    assert plan.needed == sizes["initramfs"] - 10
    assert not make_plan(state(files), Options(verify="size"), d).verify


def test_space_refusal_names_needed_and_free(tmp_path: Path) -> None:
    d = read_dist(make_dist(tmp_path / "d", "tftp://r"), tmp_path / "s")
    with pytest.raises(DeployError, match=rf"needs {d.total} bytes.*free-hdd-space is 1000 bytes"):
        make_plan(state(free=1000), Options(), d)


def test_keep_rollback_and_pin(tmp_path: Path) -> None:
    gens = ["g-000000000001", "g-000000000002", "g-000000000003"]
    files: list[tuple[str, int]] = []
    rules: list[dict[str, str]] = []
    for i, g in enumerate(gens, 1):
        f, r = installed(g, i, i == 3, {"vmlinuz": 100, GENERATION_SCRIPT: 10})
        files += f
        rules += r
    s = state(files, rules)
    back = make_plan(s, Options(rollback=True), None)
    assert back.target == gens[1] and back.live_before == gens[2] and not back.uploads
    assert back.kept == [gens[1], gens[2]] and back.remove_generations == [gens[0]]
    switch = [c for c in back.rule_changes if c.key == "boot.ipxe"]
    assert switch and switch[0].values == {"real-filename": f"netboot/{gens[1]}/{GENERATION_SCRIPT}"}
    pin = make_plan(s, Options(generation=gens[0], keep=2), None)
    assert pin.target == gens[0] and pin.remove_generations == []
    with pytest.raises(DeployError, match="not kept"):
        make_plan(s, Options(generation="g-00000000000f"), None)
    with pytest.raises(ConfigError):
        Options(keep=0)
    with pytest.raises(ConfigError):
        Options(rollback=True, generation=gens[0])


def test_cleanup_never_removes_a_generation_a_live_lock_is_writing(tmp_path: Path) -> None:
    gens = ["g-000000000001", "g-000000000002", "g-000000000003"]
    files: list[tuple[str, int]] = [(f"netboot/{gens[0]}", -1), (f"netboot/{gens[0]}/vmlinuz", 50)]  # no rules yet
    rules: list[dict[str, str]] = []
    for i, g in enumerate(gens[1:], 2):
        f, r = installed(g, i, i == 3, {"vmlinuz": 100, GENERATION_SCRIPT: 10})
        files += f
        rules += r
    d = make_dist(tmp_path / "dist", "tftp://10.0.0.1")
    plain = make_plan(state(files, rules), Options(), read_dist(d, tmp_path / "stage"))
    assert gens[0] in plain.remove_generations  # an incomplete upload nobody is writing goes
    held = make_plan(state(files, rules), Options(), read_dist(d, tmp_path / "stage"), protect={gens[0]})
    assert gens[0] not in held.remove_generations and not any(gens[0] in str(i) for i in held.remove_ids)
    assert "*1" not in held.remove_ids and "*2" not in held.remove_ids  # its directory and file ids


def test_chainload_binaries_content_addressed_rules_and_stale_removal(tmp_path: Path) -> None:
    dist = make_dist(tmp_path / "d", "tftp://r")
    d = read_dist(dist, tmp_path / "s")
    bios, efi, snp = tmp_path / "undionly.kpxe", tmp_path / "ipxe.efi", tmp_path / "snponly.efi"
    bios.write_bytes(b"B" * 1000)
    efi.write_bytes(b"E" * 3000)
    snp.write_bytes(b"S" * 2000)
    dhcp = DhcpOptions("192.168.88.0/24", ipxe_bios=bios, ipxe_efi=efi, ipxe_snp=snp)
    arts = dhcp.binaries()
    net = {".id": "*n", "address": "192.168.88.0/24", "gateway": "192.168.88.1"}
    dstate = DhcpState((net,), {})
    old = "netboot/ipxe/0123456789ab"
    st = state([(old, -1), (f"{old}/undionly.kpxe", 999)])
    plan = make_plan(st, Options(dhcp=dhcp), d, chainload=arts, dhcp_state=dstate)
    assert [(w.split("/")[-1], a.name) for w, a in plan.chainload_uploads] == [
        (a.sha256[:12], a.name) for a in arts]
    assert plan.needed == d.total + 6000
    assert sorted(c.values["req-filename"] for c in plan.chainload_changes) == [
        r"^ipxe\.efi$", r"^snponly\.efi$", r"^undionly\.kpxe$"]
    assert {c.values["real-filename"] for c in plan.chainload_changes} == {
        f"netboot/ipxe/{a.sha256[:12]}/{a.name}" for a in arts}
    assert {"*1", "*2"} <= set(plan.remove_ids)  # the old binary and its directory go after the switch
    assert plan.dhcp is not None and len(plan.dhcp.changes) == 10
    # without rb4011_manage_dhcp nothing DHCP-related is planned, owned chainload rules and files stay
    plain = make_plan(st, Options(), d)
    assert plain.chainload_changes == [] and plain.dhcp is None and "*1" not in plain.remove_ids


def apply_rules(st: RouterState, plan_rules: list, files: list[tuple[str, int]]) -> RouterState:
    """The router after a plan's rule changes (added/changed rows by key, removals dropped) and its new files."""
    rows = {r[".id"]: dict(r) for r in st.tftp}
    for n, c in enumerate(plan_rules):
        if c.action == "remove":
            rows.pop(c.id, None)
        elif c.action == "add":
            rows[f"*new{n}"] = {".id": f"*new{n}", **c.values}
        else:
            rows[c.id].update(c.values)
    names = {f.name for f in st.files}
    extra = [RouterFile(f"*f{i}", n, "file", s) for i, (n, s) in enumerate(files) if n not in names]
    return RouterState(st.host, st.version, st.identity, st.free, st.total, st.files + tuple(extra),
                       tuple(rows.values()))


def test_a_staged_generation_is_kept_and_only_dispatched_macs_get_it(tmp_path: Path) -> None:
    a = read_dist(make_dist(tmp_path / "a", "tftp://r"), tmp_path / "s")
    b = read_dist(make_dist(tmp_path / "b", "tftp://r", kernel_args="console=ttyS0 b=1"), tmp_path / "s2")
    files, rules = installed(a.generation, 1, True, {x.name: x.size for x in a.artefacts})
    st = state(files, rules)
    with pytest.raises(DeployError, match="nothing to stage beside"):
        make_plan(state(), Options(stage=True), b)
    plan = make_plan(st, Options(stage=True), b)
    assert plan.live_after == a.generation and plan.staged == [b.generation] and plan.seq == 0
    assert [c.key for c in plan.rule_changes if c.key == "boot.ipxe"] == []  # nobody boots it yet
    st = apply_rules(st, plan.rule_changes, [(f"netboot/{b.generation}/{x.name}", x.size) for x in b.artefacts])
    assert generations(st, "netboot")[b.generation].staged and stable_target(st, "netboot").live == a.generation
    assert not make_plan(st, Options(stage=True), b).changes  # a rerun stages nothing more
    # a later deploy of another generation (live) keeps the staged one, whatever rb4011_keep_generations says
    c = read_dist(make_dist(tmp_path / "c", "tftp://r", kernel_args="console=ttyS0 c=1"), tmp_path / "s3")
    later = make_plan(st, Options(keep=1), c)
    assert b.generation in later.kept and b.generation not in later.remove_generations
    assert set(later.kept) == {c.generation, b.generation, a.generation}
    dropped = make_plan(st, Options(keep=1, unstage=(b.generation,)), c)
    assert b.generation in dropped.remove_generations  # rb4011_unstage lets cleanup take it
    # the roll: two MACs get the staged generation through a dispatcher; everyone else the live one
    with pytest.raises(DeployError, match="is live"):
        make_plan(st, Options(dispatch=(a.generation, ("52:54:00:00:00:01",))), None)
    d = make_plan(st, Options(dispatch=(b.generation, ("52-54-00-00-00-02", "52:54:00:00:00:01"))), None)
    assert d.dispatch_upload is not None and d.live_after == a.generation
    path, text = d.dispatch_upload
    assert path.startswith(f"netboot/dispatch/{a.generation}.{b.generation}.")
    assert text.decode() == dispatch_script(a.generation, b.generation, ["52:54:00:00:00:01", "52:54:00:00:00:02"])
    assert dispatch_macs(text.decode()) == ["52:54:00:00:00:01", "52:54:00:00:00:02"]
    assert f"chain --autofree {b.generation}/{GENERATION_SCRIPT}" in text.decode()
    switch = [c for c in d.rule_changes if c.key == "boot.ipxe"]
    assert len(switch) == 1 and switch[0].values["real-filename"] == path
    st = apply_rules(st, d.rule_changes, [(path, len(text))])
    now = stable_target(st, "netboot")
    assert (now.live, now.staged, now.dispatcher) == (a.generation, b.generation, path)
    assert not make_plan(st, Options(dispatch=(b.generation, ("52:54:00:00:00:01", "52:54:00:00:00:02"))),
                         None).changes
    # back to nobody: the stable rule serves the live script again and the dispatcher goes
    back = make_plan(st, Options(dispatch=(b.generation, ())), None)
    assert [c.values["real-filename"] for c in back.rule_changes if c.key == "boot.ipxe"] == \
        [f"netboot/{a.generation}/{GENERATION_SCRIPT}"]
    assert any(f.name == path and f.id in back.remove_ids for f in st.files)
    # the roll done: rb4011_generation makes it live for all, no longer staged, the old live one kept
    live = make_plan(st, Options(generation=b.generation), None)
    assert live.live_after == b.generation and live.staged == [] and a.generation in live.kept
    assert all(" staged" not in c.values.get("comment", "") for c in live.rule_changes if c.action != "remove")
    assert any(f.name == path and f.id in live.remove_ids for f in st.files)


def test_owned_chainload_rules_are_read_back_for_their_directory_only() -> None:
    assert chainloaded({"comment": chainload_comment("netboot", "ipxe.efi")}, "netboot") == "ipxe.efi"
    assert chainloaded({"comment": chainload_comment("other", "ipxe.efi")}, "netboot") is None
    assert chainloaded({"comment": rule_comment("netboot")}, "netboot") is None and chainloaded({}, "netboot") is None
