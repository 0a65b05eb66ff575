"""playbooks/deploy_rb4011.yml against the RouterOS peer (real API wire protocol, SFTP, TFTP) with synthetic dists.

The e2e image (build.yml's output) and the netboot from the peer are in test_deploy_rb4011_e2e.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.playbook import run_playbook
from tests.fixtures.routeros.deploy import HOST, deploy, result
from tests.fixtures.routeros.dist import make_dist
from tests.fixtures.routeros.peer import Peer, PeerConfig
from tests.fixtures.routeros.tftp import TftpError, tftp_get


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Peer]:
    with Peer(tmp_path / "peer") as p:
        yield p


def url(peer: Peer) -> str:
    return f"tftp://10.0.2.2:{peer.tftp_port}"


def gen_of(dist: Path) -> str:
    return "g-" + hashlib.sha256((dist / "SHA256SUMS").read_bytes()).hexdigest()[:12]


def owned_rules(peer: Peer) -> list[dict[str, str]]:
    return [r for r in peer.rows("/ip/tftp") if r.get("comment", "").startswith("homelab.alpine_netboot")]


def fetch(peer: Peer, name: str) -> bytes:
    return tftp_get("127.0.0.1", peer.tftp_port, name)


def script_paths(script: bytes) -> list[str]:
    """The TFTP request names a node derives from a boot.ipxe (base + kernel/initrd)."""
    text = script.decode()
    base = re.search(r"^set base (\S+)$", text, re.M)
    assert base, text
    path = re.sub(r"^tftp://[^/]+/?", "", base.group(1))
    return [f"{path}/{n}".lstrip("/") for n in re.findall(r"^(?:kernel|initrd) \$\{base\}/(\S+)", text, re.M)]


def test_deploy_verifies_every_file_then_rerun_sends_nothing(peer: Peer, tmp_path: Path) -> None:
    dist = make_dist(tmp_path / "dist", url(peer))
    gen = gen_of(dist)
    res = deploy(tmp_path / "w", peer, dist)
    assert res.rc == 0, res.stdout
    out = result(res)
    assert out["changed"] and out["generation"] == gen
    sums = dict(reversed(line.split("  ")) for line in (dist / "SHA256SUMS").read_text().splitlines())
    for name, digest in sums.items():
        assert peer.store.sha256(f"netboot/{gen}/{name}") == digest, name
    assert out["bytes_sent"] == out["generation_bytes"] > 1_500_000
    assert {u["name"] for u in out["uploads"]} >= {"vmlinuz", "initramfs", "manifest.json", "SHA256SUMS"}
    assert all(u["MBps"] > 0 and u["seconds"] >= 0 for u in out["uploads"])
    log = (tmp_path / "w/build" / f"deploy-{HOST}.log").read_text()
    assert re.search(r"initramfs: .*MB/s ETA", log) and "verified by sha256" in log, log
    # the rules: one stable anchored boot.ipxe rule, anchored read-only per-file rules, nothing for user rules
    rules = owned_rules(peer)
    stable = [r for r in rules if r["req-filename"] == r"^boot\.ipxe$"]
    assert len(stable) == 1 and stable[0]["real-filename"] == f"netboot/{gen}/generation.ipxe"
    assert all(r["read-only"] == "true" and r["allow"] == "true" for r in rules)
    assert {r["req-filename"] for r in rules} >= {f"^{gen}/vmlinuz$", f"^{gen}/initramfs$"}
    assert all(r["allow-rollover"] == "false" for r in rules)  # all small
    # a node gets the generation's script and, through it, the very kernel and initramfs
    script = fetch(peer, "boot.ipxe")
    assert f"set base {url(peer)}/{gen}" in script.decode()
    for path in script_paths(script):
        assert fetch(peer, path) == (dist / path.split("/")[-1]).read_bytes()
    with pytest.raises(TftpError):
        fetch(peer, f"x/{gen}/vmlinuz")  # anchored: no other name reaches the file
    before = peer.snapshot()
    again = deploy(tmp_path / "w", peer, dist)
    assert again.rc == 0 and again.changed(HOST) == 0, again.stdout
    assert result(again)["bytes_sent"] == 0 and result(again)["uploads"] == []
    assert peer.snapshot() == before


def test_check_mode_writes_nothing_and_lists_the_plan_and_diff(peer: Peer, tmp_path: Path) -> None:
    user_rule = peer.add_row("/ip/tftp", **{"req-filename": "^pxelinux\\.0$", "real-filename": "pxelinux.0"})
    dist = make_dist(tmp_path / "dist", url(peer))
    before = peer.snapshot()
    res = deploy(tmp_path / "w", peer, dist, check=True, diff=True)
    assert res.rc == 0, res.stdout
    out = result(res)
    assert out["changed"] and peer.snapshot() == before
    assert set(out["planned_uploads"]) >= {"vmlinuz", "initramfs", "generation.ipxe"}
    assert any("req-filename=\"^boot\\.ipxe$\"" in c for c in out["rule_changes"]), out["rule_changes"]
    assert out["commands"][:len(out["planned_uploads"])] == [f"sftp put {n}" for n in out["planned_uploads"]]
    assert set(out["rule_changes"]) <= set(out["commands"])  # what would run, in one list
    assert "^boot\\.ipxe$ -> netboot/" in res.stdout  # the diff's after side
    assert not (tmp_path / "w/build" / f"deploy-{HOST}.log").exists()
    assert deploy(tmp_path / "w", peer, dist).rc == 0
    assert any(r[".id"] == user_rule and "comment" not in r for r in peer.rows("/ip/tftp"))  # left alone


def test_no_mixed_boot_switch_rollback_forward_and_pruning(peer: Peer, tmp_path: Path) -> None:
    dists = [make_dist(tmp_path / f"dist{i}", url(peer), seed=str(i)) for i in range(3)]
    gens = [gen_of(d) for d in dists]
    assert deploy(tmp_path / "w", peer, dists[0]).rc == 0
    # a node fetches generation 0's script ... the router switches to generation 1 ... the node continues
    script0 = fetch(peer, "boot.ipxe")
    res = deploy(tmp_path / "w", peer, dists[1])
    assert res.rc == 0 and result(res)["live_before"] == gens[0], res.stdout
    for path in script_paths(script0):
        assert fetch(peer, path) == (dists[0] / path.split("/")[-1]).read_bytes()  # N's bytes, not N+1's
    script1 = fetch(peer, "boot.ipxe")
    assert gens[1] in script1.decode() and gens[0] not in script1.decode()
    # rollback, then forward again by id: no uploads, one switch each
    back = deploy(tmp_path / "w", peer, dists[1], extravars={"rb4011_rollback": True})
    assert back.rc == 0 and result(back)["generation"] == gens[0] and result(back)["bytes_sent"] == 0, back.stdout
    assert gens[0] in fetch(peer, "boot.ipxe").decode()
    fwd = deploy(tmp_path / "w", peer, dists[1], extravars={"rb4011_generation": gens[1]})
    assert fwd.rc == 0 and result(fwd)["generation"] == gens[1], fwd.stdout
    assert fetch(peer, "boot.ipxe") == script1
    # a third generation with keep=1: generation 0 goes (files and rules), 1 (live before) stays
    third = deploy(tmp_path / "w", peer, dists[2])
    assert third.rc == 0 and result(third)["removed_generations"] == [gens[0]], third.stdout
    names = {n for n, _unused in peer.store.snapshot().items()}
    assert not any(gens[0] in n for n in names) and any(gens[1] in n for n in names)
    assert not any(gens[0] in r["comment"] for r in owned_rules(peer))
    with pytest.raises(TftpError):
        fetch(peer, f"{gens[0]}/vmlinuz")
    # pinning a generation that is gone names what is kept
    gone = deploy(tmp_path / "w", peer, dists[2], extravars={"rb4011_generation": gens[0]})
    assert gone.rc != 0 and any(gens[1] in m and gens[2] in m for m in gone.failure_messages())


def test_dropped_upload_keeps_previous_generation_and_rerun_resumes(peer: Peer, tmp_path: Path) -> None:
    old = make_dist(tmp_path / "old", url(peer), seed="old")
    new = make_dist(tmp_path / "new", url(peer), seed="new", sizes={"vmlinuz": 300_000, "initramfs": 3_000_000})
    assert deploy(tmp_path / "w", peer, old).rc == 0
    before_rules = peer.rows("/ip/tftp")
    old_script = fetch(peer, "boot.ipxe")
    peer.uploads.clear()
    peer.faults.drop_after = 1_800_000  # boot.ipxe is sent, then the connection dies inside initramfs
    res = deploy(tmp_path / "w", peer, new)
    assert res.rc != 0 and peer.faults.drops == 1, res.stdout
    assert any("initramfs" in m for m in res.failure_messages()), res.failure_messages()
    assert peer.rows("/ip/tftp") == before_rules and fetch(peer, "boot.ipxe") == old_script
    for path in script_paths(old_script):
        assert fetch(peer, path) == (old / path.split("/")[-1]).read_bytes()
    assert {n.split("/")[-1] for n, _unused in peer.uploads} == {"boot.ipxe", "boot.ipxe.json", "initramfs"}
    # what reached the router before the drop stays there, cut short
    partial = [size for name, _kind, size in peer.store.entries() if name.endswith(f"{gen_of(new)}/initramfs")]
    assert len(partial) == 1 and partial[0] < 3_000_000, partial
    peer.uploads.clear()
    again = deploy(tmp_path / "w", peer, new)
    assert again.rc == 0, again.stdout
    out = result(again)
    resent = {n.split("/")[-1] for n, _unused in peer.uploads}
    assert resent == {"initramfs", "manifest.json", "vmlinuz", "SHA256SUMS", "generation.ipxe"}  # not boot.ipxe(.json)
    assert out["planned_verifications"] == ["boot.ipxe", "boot.ipxe.json"]  # read back, found whole, kept
    assert out["bytes_sent"] < out["generation_bytes"]
    assert gen_of(new) in fetch(peer, "boot.ipxe").decode()


def test_disk_too_small_is_refused_before_any_upload(tmp_path: Path) -> None:
    with Peer(tmp_path / "peer", PeerConfig(capacity=5 << 20)) as peer:
        dist = make_dist(tmp_path / "dist", url(peer), sizes={"vmlinuz": 300_000, "initramfs": 3_000_000})
        before = peer.snapshot()
        res = deploy(tmp_path / "w", peer, dist)
        assert res.rc != 0
        msg = " ".join(res.failure_messages())
        needed = re.search(r"needs (\d+) bytes", msg)
        assert "not enough space" in msg and needed and int(needed.group(1)) > 3_300_000, msg
        assert f"free-hdd-space is {peer.store.free()} bytes" in msg, msg
        assert "Nothing was changed" in msg and peer.snapshot() == before and peer.uploads == []


def test_wrong_password_is_clear_and_never_shown(peer: Peer, tmp_path: Path) -> None:
    dist = make_dist(tmp_path / "dist", url(peer))
    secret = "Wr0ng-Pa55-zebra"
    res = deploy(tmp_path / "w", peer, dist, rb4011_password=secret)
    assert res.rc != 0
    msg = " ".join(res.failure_messages())
    assert "refused the login" in msg and "rb4011_password" in msg, msg
    everything = res.stdout + json.dumps(res.events) + "".join(
        p.read_text(errors="replace") for p in (tmp_path / "w").rglob("*") if p.is_file() and "hosts-" not in p.name
        and "inventory" not in p.parts and "env" not in p.parts
    )
    assert secret not in everything


def test_host_key_mismatch_names_both_fingerprints(peer: Peer, tmp_path: Path) -> None:
    dist = make_dist(tmp_path / "dist", url(peer))
    pinned = "SHA256:" + "A" * 43
    res = deploy(tmp_path / "w", peer, dist, rb4011_host_key_fingerprint=pinned)
    assert res.rc != 0
    msg = " ".join(res.failure_messages())
    assert pinned in msg and peer.fingerprint in msg, msg
    assert peer.uploads == [] and owned_rules(peer) == []
    # the same key through a known_hosts file works
    kh = tmp_path / "known_hosts"
    kh.write_text(peer.known_hosts_line())
    ok = deploy(tmp_path / "w", peer, dist, rb4011_host_key_fingerprint="", rb4011_known_hosts=str(kh))
    assert ok.rc == 0, ok.stdout


@pytest.mark.parametrize("version", ["7.12 (stable)", "7.18 (stable)"])
def test_supported_versions(tmp_path: Path, version: str) -> None:
    with Peer(tmp_path / "peer", PeerConfig(version=version)) as peer:
        dist = make_dist(tmp_path / "dist", url(peer))
        assert deploy(tmp_path / "w", peer, dist).rc == 0
        again = deploy(tmp_path / "w", peer, dist)
        assert again.rc == 0 and again.changed(HOST) == 0, again.stdout
        if version.startswith("7.18"):
            assert any(s[0] == "/ip/tftp/print" for s in peer.sentences)


def test_routeros_6_is_refused_by_name(tmp_path: Path) -> None:
    with Peer(tmp_path / "peer", PeerConfig(version="6.49.10 (long-term)")) as peer:
        dist = make_dist(tmp_path / "dist", url(peer))
        before = peer.snapshot()
        res = deploy(tmp_path / "w", peer, dist)
        msg = " ".join(res.failure_messages())
        assert res.rc != 0 and "6.49.10" in msg and "7.1+" in msg, msg
        assert peer.snapshot() == before


def test_artefact_over_93_8_mb_needs_allow_rollover(peer: Peer, tmp_path: Path) -> None:
    size = 65535 * 1432 + 4096  # more blocks than the 16-bit counter holds at iPXE's block size
    dist = make_dist(tmp_path / "dist", url(peer), sizes={"vmlinuz": 300_000, "initramfs": size})
    res = deploy(tmp_path / "w", peer, dist, rb4011_verify="size")
    assert res.rc == 0, res.stdout
    gen = gen_of(dist)
    rules = {r["req-filename"]: r for r in owned_rules(peer)}
    assert rules[f"^{gen}/initramfs$"]["allow-rollover"] == "true"
    assert rules[f"^{gen}/vmlinuz$"]["allow-rollover"] == "false"
    assert fetch(peer, f"{gen}/initramfs") == (dist / "initramfs").read_bytes()
    # the same file behind a rule without allow-rollover stops at block 65,535
    peer.add_row("/ip/tftp", **{"req-filename": "^big$", "real-filename": f"netboot/{gen}/initramfs",
                                "allow-rollover": "false"})
    with pytest.raises(TftpError, match="allow-rollover"):
        fetch(peer, "big")


def test_flash_disk_router_keeps_the_generation_across_a_reboot(tmp_path: Path) -> None:
    # RouterOS on devices whose /file shows a "flash" disk keeps only flash/ across reboots (the rest is RAM)
    with Peer(tmp_path / "peer", PeerConfig(flash=True)) as peer:
        assert {"name": "flash", "type": "disk"}.items() <= peer._file_rows()[0].items()
        dist = make_dist(tmp_path / "dist", url(peer))
        gen = gen_of(dist)
        res = deploy(tmp_path / "w", peer, dist)
        assert res.rc == 0 and result(res)["dir"] == "flash/netboot", res.stdout
        assert peer.store.sha256(f"flash/netboot/{gen}/vmlinuz") == hashlib.sha256(
            (dist / "vmlinuz").read_bytes()).hexdigest()
        assert not peer.store.path("netboot").exists()
        assert all(r["real-filename"].startswith("flash/netboot/") for r in owned_rules(peer))
        peer.reboot()
        script = fetch(peer, "boot.ipxe")
        for path in script_paths(script):
            assert fetch(peer, path) == (dist / path.split("/")[-1]).read_bytes()
        again = deploy(tmp_path / "w", peer, dist)
        assert again.rc == 0 and again.changed(HOST) == 0 and result(again)["bytes_sent"] == 0, again.stdout


def test_a_staged_generation_is_uploaded_kept_and_given_to_nobody(peer: Peer, tmp_path: Path) -> None:
    """Issue 21: rb4011_stage uploads a generation without making it live; cleanup keeps it; rb4011_generation
    makes it live; and each generation script passes its id to the kernel (netboot.generation=)."""
    a, b, c = (make_dist(tmp_path / n, url(peer), seed=n) for n in "abc")
    refused = deploy(tmp_path / "w", peer, b, rb4011_stage=True)
    assert refused.rc != 0 and "nothing to stage beside: deploy without rb4011_stage first" in refused.stdout
    assert deploy(tmp_path / "w", peer, a).rc == 0
    live_script = fetch(peer, "boot.ipxe")
    res = deploy(tmp_path / "w", peer, b, rb4011_stage=True)
    assert res.rc == 0, res.stdout
    out = result(res)
    assert (out["generation"], out["live"], out["staged_generations"]) == (gen_of(b), gen_of(a), [gen_of(b)])
    assert f"generation {gen_of(b)} staged (live: {gen_of(a)})" in res.stdout
    assert fetch(peer, "boot.ipxe") == live_script  # nodes keep booting the live one
    staged = fetch(peer, f"{gen_of(b)}/generation.ipxe").decode()  # served under its own directory
    assert f"set netboot_generation {gen_of(b)}\n" in staged
    want = [(b / "vmlinuz").read_bytes(), (b / "initramfs").read_bytes()]
    assert [fetch(peer, p) for p in script_paths(staged.encode())] == want
    assert all(r["comment"].endswith(" staged") for r in owned_rules(peer) if gen_of(b) in r["comment"])
    again = deploy(tmp_path / "w", peer, b, rb4011_stage=True)
    assert again.rc == 0 and again.changed(HOST) == 0, again.stdout
    # a later live deploy keeps it, beyond rb4011_keep_generations 1 (the previous live one is also kept)
    later = result(deploy(tmp_path / "w", peer, c))
    assert set(later["kept_generations"]) == {gen_of(c), gen_of(a), gen_of(b)} and later["removed_generations"] == []
    # made live by id: no longer staged, c kept as the previous one, a pruned
    live = result(deploy(tmp_path / "w", peer, c, rb4011_generation=gen_of(b)))
    assert live["live"] == gen_of(b) and live["staged_generations"] == [] and live["removed_generations"] == [gen_of(a)]
    assert f"set netboot_generation {gen_of(b)}\n" in fetch(peer, "boot.ipxe").decode()
    assert not any(r["comment"].endswith(" staged") for r in owned_rules(peer))


def test_called_directly_with_community_routeros_names_through_the_action_group(peer: Peer, tmp_path: Path) -> None:
    """`module_defaults: group/homelab.alpine_netboot.rb4011` with community.routeros's option names (hostname,
    username, port, tls) reaches the router for rb4011_deploy called without the roles."""
    dist = make_dist(tmp_path / "dist", url(peer))
    group = {"hostname": "127.0.0.1", "username": peer.config.user, "password": peer.config.password,
             "port": peer.api_port, "tls": False}
    play = [{"hosts": "localhost", "gather_facts": False,
             "module_defaults": {"group/homelab.alpine_netboot.rb4011": group},
             "tasks": [{"name": "Deploy", "homelab.alpine_netboot.rb4011_deploy": {
                 "dist_dir": str(dist), "ssh_port": peer.ssh_port, "host_key_fingerprint": peer.fingerprint,
                 "staging_dir": str(tmp_path / "staging")}, "register": "out"}]}]
    (tmp_path / "direct.yml").write_text(json.dumps(play))
    before = peer.snapshot()
    res = run_playbook(str(tmp_path / "direct.yml"), tmp_path / "w", {}, check=True)
    assert res.rc == 0, res.stdout
    (out,) = res.task_results("Deploy")
    assert set(out["planned_uploads"]) >= {"vmlinuz", "initramfs", "generation.ipxe"}
    assert peer.snapshot() == before and peer.config.password not in res.stdout
