"""boot.ipxe rendering: MAC normalisation, inventory validation, URLs, script structure, atomic writes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._ipxe import (
    FAILED_MARKER,
    MISMATCH_MARKER,
    UNCHECKED_MARKER,
    ScriptSpec,
    apply_write,
    boot_record,
    build_context,
    cattle_hostname,
    normalise_mac,
    parse_nodes,
    plan_write,
    read_record,
    record_path,
    render,
    validate_urls,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError


@pytest.mark.parametrize(
    "text",
    ["aa:bb:cc:0d:0e:0f", "AA-BB-CC-0D-0E-0F", "aabb.cc0d.0e0f", "AABBCC0D0E0F", " aa:bb:cc:d:e:f ", "Aa.bB.cC.0d.0E.0f"],
)
def test_mac_notations_normalise(text: str) -> None:
    assert normalise_mac(text) == "aa:bb:cc:0d:0e:0f"


@pytest.mark.parametrize("text", ["aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00", "gg:bb:cc:dd:ee:ff", "aabbccddeef",
                                  "aa:bb-cc:dd:ee:ff:1", "", "aabb.ccdd", 12])
def test_malformed_mac_names_the_host(text: object) -> None:
    with pytest.raises(ConfigError, match=r"host n100-07: (malformed )?mac"):
        normalise_mac(text, host="n100-07")


def test_nodes_defaults_and_errors_name_the_host() -> None:
    nodes = parse_nodes([{"name": "a", "mac": "AA-BB-CC-00-00-01"}, {"name": "b", "mac": "aabbcc000002",
                         "hostname": "bee", "role": "db", "kernel_args": ["quiet", "zfs.arc=1"]}],
                        default_role="worker")
    assert [(n.hostname, n.role, n.mac, n.kernel_args) for n in nodes] == [
        ("a", "worker", "aa:bb:cc:00:00:01", ""), ("bee", "db", "aa:bb:cc:00:00:02", "quiet zfs.arc=1")]
    cases = [
        ([{"name": "a", "mac": "aa:bb:cc:00:00:01"}, {"name": "b", "mac": "AABB.CC00.0001"}],
         "host b: mac aa:bb:cc:00:00:01 is already used by host a"),
        ([{"name": "a", "mac": "aa:bb:cc:00:00:01", "hostname": "x"}, {"name": "b", "mac": "aa:bb:cc:00:00:02",
                                                                       "hostname": "X"}],
         "host b: hostname 'X' is already used by host a"),
        ([{"name": "c", "mac": "zz"}], "host c: malformed mac 'zz'"),
        ([{"name": "d"}], "host d: no mac set"),
        ([{"name": "e", "mac": "01:00:5e:00:00:01"}], "host e: mac 01:00:5e:00:00:01 is a multicast address"),
        ([{"name": "f", "mac": "aa:bb:cc:00:00:03", "hostname": "bad_name"}], "host f: hostname 'bad_name'"),
        ([{"name": "g", "mac": "aa:bb:cc:00:00:04", "kernel_args": "init=${evil}"}], "host g: kernel arguments"),
        ([{"name": "h", "mac": "aa:bb:cc:00:00:05", "role": "a b"}], "host h: role 'a b'"),
    ]
    for raw, message in cases:
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_nodes(raw, default_role="worker")


def test_urls_schemes_and_fallback_lists() -> None:
    assert validate_urls("http://10.0.0.1:8080/boot/") == ["http://10.0.0.1:8080/boot"]
    assert validate_urls(["tftp://192.168.88.1", "https://x.example/a"]) == ["tftp://192.168.88.1",
                                                                             "https://x.example/a"]
    for bad, message in [("ftp://x/", "unsupported URL scheme in 'ftp://x/'"), ("nfs://x", "unsupported URL scheme"),
                         ([], "non-empty list"), (["http://a", "http://a"], "more than once"),
                         ("http:///x", "has no host"), ("http://a/x?y=1", "plain base URL")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            validate_urls(bad)


def spec(**kw: object) -> ScriptSpec:
    base: dict[str, object] = {
        "boot_server_url": ["http://10.0.2.2:8080", "tftp://10.0.2.2"],
        "nodes": [{"name": "n100-01", "mac": "AA-BB-CC-00-00-01", "hostname": "alpha", "role": "storage",
                   "kernel_args": "zfs.zfs_arc_max=1073741824", "initrd": "alpha.cpio"}],
        "retries": 2,
    }
    base.update(kw)
    return ScriptSpec(**base)  # type: ignore[arg-type]


def test_script_dispatches_on_the_booting_nic_and_falls_back_to_cattle() -> None:
    text = render(spec(default_role="edge"))
    assert text.startswith("#!ipxe\n")
    assert "goto mac_${netX/mac:hexraw} || goto cattle" in text
    block = text.split(":mac_aabbcc000001\n", 1)[1].split("goto boot", 1)[0]
    assert "set node_hostname alpha" in block and "set node_role storage" in block
    assert "set node_args zfs.zfs_arc_max=1073741824" in block and "set node_initrd alpha.cpio" in block
    assert "set node_initrd_arg initrd=alpha.cpio" in block
    cattle = text.split(":cattle\n", 1)[1].split(":boot", 1)[0]
    assert "set node_hostname node-${netX/mac:hexraw}" in cattle and "set node_role edge" in cattle
    assert cattle_hostname("AA-BB-CC-00-00-09") == "node-aabbcc000009"
    assert "${net0" not in text  # never assumes the first NIC


def test_script_retries_every_download_then_next_server_then_failsafe() -> None:
    text = render(spec(retries=3, retry_delay=4, failsafe_timeout=45))
    kernel_cmd = ("kernel ${base}/vmlinuz initrd=initramfs ${node_initrd_arg} console=tty0 console=ttyS0,115200 "
                  "netboot.hostname=${node_hostname} netboot.role=${node_role} netboot.generation=${netboot_generation} ${node_args} && goto s0_initrd0 ||")
    assert text.count(kernel_cmd) == 3
    s0 = text.split(":s0\n", 1)[1].split(":s1\n", 1)[0]
    assert "set base http://10.0.2.2:8080" in s0 and s0.count("goto s1\n") == 4  # kernel, initramfs, node initrd, boot
    assert s0.count("sleep 4") == 2 * 3
    s1 = text.split(":s1\n", 1)[1].split(":failed\n", 1)[0]
    assert "set base tftp://10.0.2.2" in s1 and "goto failed" in s1
    assert text.count("dhcp && goto net_ok ||") == 3
    failsafe = text.split(":failed\n", 1)[1]
    assert f"echo {FAILED_MARKER}: ${{reason}}" in failsafe
    assert "choose --timeout 45000 --default retry failsafe_action || goto retry" in failsafe
    for label in (":shell", ":reboot", ":retry"):
        assert label in failsafe
    # every goto target exists
    labels = set(re.findall(r"^:(\S+)$", text, re.M))
    targets = set(re.findall(r"goto (\w+)", text)) - {"mac_"}
    assert targets <= labels | {"mac_"}, targets - labels


def test_microcode_is_loaded_first_and_args_are_checked() -> None:
    text = render(spec(microcode="intel-ucode.img", extra_kernel_args=["quiet"]))
    assert text.index("initrd ${base}/intel-ucode.img") < text.index("initrd ${base}/initramfs")
    assert "vmlinuz initrd=intel-ucode.img initrd=initramfs ${node_initrd_arg} console=tty0" in text
    assert "console=ttyS0,115200 quiet netboot.hostname=" in text
    with pytest.raises(ConfigError, match="ipxe_kernel_args"):
        render(spec(kernel_args="console=ttyS0 # oops"))
    with pytest.raises(ConfigError, match="ipxe_retries"):
        render(spec(retries=0))
    with pytest.raises(ConfigError, match=re.escape("initramfs: '../x'")):
        render(spec(initramfs="../x"))


def test_user_template_strict_undefined(tmp_path: Path) -> None:
    good = tmp_path / "mine.j2"
    good.write_text("#!ipxe\necho {{ extra.site }} {{ nodes[0].hostname }} {{ urls[0] }}\n")
    assert render(spec(extra={"site": "lab"}), good) == "#!ipxe\necho lab alpha http://10.0.2.2:8080\n"
    bad = tmp_path / "bad.j2"
    bad.write_text("#!ipxe\necho {{ no_such_variable }}\n")
    with pytest.raises(ConfigError, match=r"bad.j2: 'no_such_variable' is undefined"):
        render(spec(), bad)
    with pytest.raises(ConfigError, match="cannot read iPXE template"):
        render(spec(), tmp_path / "missing.j2")


def test_write_is_atomic_and_idempotent(tmp_path: Path) -> None:
    dest = tmp_path / "dist" / "boot.ipxe"
    plan = plan_write(dest, render(spec()))
    assert plan.changed and plan.before is None
    apply_write(plan)
    assert dest.read_text() == plan.after
    again = plan_write(dest, render(spec()))
    assert not again.changed
    assert sorted(p.name for p in dest.parent.iterdir()) == ["boot.ipxe"]  # no temp file left behind


def test_context_lists_every_fetched_artefact_with_what_names_it() -> None:
    with_ucode = build_context(spec(microcode="intel-ucode.img"))["artefacts"]
    assert with_ucode == {"vmlinuz": "kernel", "intel-ucode.img": "microcode", "initramfs": "initramfs",
                          "alpha.cpio": "initrd of host n100-01"}
    text = render(spec(microcode="intel-ucode.img"))
    assert all(name in text for name in with_ucode)
    without = build_context(spec(microcode=""))["artefacts"]
    assert "intel-ucode.img" not in without and "intel-ucode" not in render(spec(microcode=""))


DIGESTS = {"vmlinuz": "1" * 64, "initramfs": "2" * 64, "intel-ucode.img": "3" * 64, "nodes/alpha.cpio": "4" * 64}


def test_digests_are_checked_before_boot_then_refetch_next_server_failsafe() -> None:
    nodes = [{"name": "n100-01", "mac": "AA-BB-CC-00-00-01", "initrd": "nodes/alpha.cpio"}]
    text = render(spec(nodes=nodes, microcode="intel-ucode.img", digests=DIGESTS))
    # the per-node initrd's digest is set in its MAC dispatch, cleared for cattle
    mac = text.split(":mac_aabbcc000001\n", 1)[1].split("goto boot", 1)[0]
    assert f"set node_initrd_image alpha.cpio\nset node_initrd_sha256 {'4' * 64}\n" in mac
    for i, url in enumerate(["http://10.0.2.2:8080", "tftp://10.0.2.2"]):
        assert f"set base {url}\n" in text.split(f":s{i}\n", 1)[1]
        s = text.split(f":s{i}\n", 1)[1].split(f":s{i + 1}\n" if i == 0 else ":failed\n", 1)[0]
        check = s.split(f":s{i}_check\n", 1)[1].split(f":s{i}_boot\n", 1)[0]
        # every image is hashed by iPXE's own name for it, against this build's value, before boot
        for image, digest in (("vmlinuz", "1"), ("intel-ucode.img", "3"), ("initramfs", "2")):
            assert (f"set check_file {image}\nset check_want {digest * 64}\nclear check_got\n"
                    f"sha256sum --set check_got {image} ||\nisset ${{check_got}} || goto s{i}_unchecked\n"
                    f"iseq ${{check_got}} ${{check_want}} || goto s{i}_mismatch\n") in check
        assert "sha256sum --set check_got ${node_initrd_image} ||" in check
        assert s.index(f":s{i}_check") < s.index("boot ||")  # the check comes before boot
        # a mismatch: the line with both digests, imgfree, this server once more, then the next one
        mismatch = check.split(f":s{i}_mismatch\n", 1)[1]
        assert mismatch.startswith(f"echo netboot: ${{check_file}} from ${{base}} {MISMATCH_MARKER}: got "
                                   "${check_got} expected ${check_want}\nimgfree\n")
        assert f"iseq x${{refetched}} xs{i} && goto s{i}_give_up ||\nset refetched s{i}\n" in mismatch
        assert f"goto s{i}\n" in mismatch
        nxt = f"s{i + 1}" if i == 0 else "failed"
        assert mismatch.split(f":s{i}_give_up\n", 1)[1].startswith(
            f"set reason ${{check_file}} from ${{base}} {MISMATCH_MARKER} twice\ngoto {nxt}\n")
        # no sha256sum command (an old iPXE, undionly.kpxe, a NIC ROM): one clear line, then boot
        assert f":s{i}_unchecked\necho {UNCHECKED_MARKER}\ngoto s{i}_boot\n" in check
        # every path to boot goes through the check: the fetch chain ends at _check, not _boot
        assert f"&& goto s{i}_check ||" in s and f"&& goto s{i}_boot" not in s
    assert "clear refetched" in text.split(":boot\n", 1)[1].split(":s0\n", 1)[0]
    assert "\ninc " not in text  # old iPXE builds have no inc
    labels = set(re.findall(r"^:(\S+)$", text, re.M))
    assert set(re.findall(r"goto (\w+)", text)) - {"mac_"} <= labels


def test_digests_refused_when_missing_or_malformed_or_names_clash() -> None:
    with pytest.raises(ConfigError, match=r"no sha256 for initramfs \(initramfs\)"):
        build_context(spec(nodes=[], digests={"vmlinuz": "1" * 64}))
    with pytest.raises(ConfigError, match=r"no sha256 for vmlinuz"):
        build_context(spec(nodes=[], digests={"vmlinuz": "xyz", "initramfs": "2" * 64}))
    with pytest.raises(ConfigError, match=r"fetches initramfs \(initramfs\) and x/initramfs \(initrd of host a\), "
                                          r"which iPXE would both name initramfs"):
        build_context(spec(nodes=[{"name": "a", "mac": "AA-BB-CC-00-00-01", "initrd": "x/initramfs"}],
                           digests={"vmlinuz": "1" * 64, "initramfs": "2" * 64, "x/initramfs": "4" * 64}))
    # without digests (a caller without the files) the script has no check at all
    assert "sha256sum" not in render(spec())


def test_secure_boot_script_boots_the_signed_uki_by_its_generation_name_with_no_command_line() -> None:
    """netboot_secure_boot: one image, the UKI, fetched under netboot-<generation>.efi, checked, booted; no initrd, no
    kernel arguments (the UKI's are fixed and signed), a failed boot says the firmware may have refused it."""
    nodes = [{"name": "n100-01", "mac": "AA-BB-CC-00-00-01", "hostname": "alpha", "role": "storage"}]
    uki_digest = "9" * 64
    text = render(spec(nodes=nodes, uki="netboot.efi", digests={"netboot.efi": uki_digest}))
    s0 = text.split(":s0\n", 1)[1].split(":s1\n", 1)[0]
    name = "netboot-${netboot_generation}.efi"
    assert f"kernel --name {name} ${{base}}/netboot.efi && goto s0_check ||" in s0
    assert "initrd " not in text and "netboot.hostname=" not in text and "console=" not in text
    check = s0.split(":s0_check\n", 1)[1].split(":s0_boot\n", 1)[0]
    assert f"set check_want {uki_digest}\nclear check_got\nsha256sum --set check_got {name} ||" in check
    assert "node_initrd_image" not in check
    assert "refused by the firmware's Secure Boot check" in s0.split(":s0_boot\n", 1)[1]
    # the MAC dispatch still names the node in the console; the image finds its identity itself
    assert "set node_hostname alpha\nset node_role storage\n" in text
    labels = set(re.findall(r"^:(\S+)$", text, re.M))
    assert set(re.findall(r"goto (\w+)", text)) - {"mac_"} <= labels
    kind = "UKI (signed kernel, initramfs and command line)"
    assert build_context(spec(nodes=nodes, uki="netboot.efi"))["artefacts"] == {"netboot.efi": kind}


@pytest.mark.parametrize(("extra", "match"), [
    ({"initrd": "nodes/alpha.cpio"}, r"host n100-01: initrd nodes/alpha.cpio cannot be booted with "
                                     r"netboot_secure_boot"),
    ({"kernel_args": "quiet"}, r"host n100-01: kernel_args 'quiet' cannot reach the kernel with netboot_secure_boot"),
])
def test_secure_boot_refuses_what_a_signed_uki_cannot_carry(extra: dict[str, str], match: str) -> None:
    nodes = [{"name": "n100-01", "mac": "AA-BB-CC-00-00-01", **extra}]
    with pytest.raises(ConfigError, match=match):
        build_context(spec(nodes=nodes, uki="netboot.efi"))


def test_boot_record_round_trip_renders_the_script_again(tmp_path: Path) -> None:
    digests = {n: f"{i:064x}" for i, n in enumerate(("vmlinuz", "initramfs", "alpha.cpio"))}
    built = spec(digests=digests, extra={"site": "lab"})
    path = record_path(tmp_path / "boot.ipxe")
    path.write_bytes(boot_record(built))
    record = read_record(path)
    assert path.name == "boot.ipxe.json" and record["format"] == "homelab.alpine_netboot/boot/1"
    assert record["artefacts"] == {"vmlinuz": "kernel", "initramfs": "initramfs", "alpha.cpio": "initrd of host n100-01"}
    assert record["spec"]["digests"] == digests and record["spec"]["boot_server_url"] == built.boot_server_url
    assert render(record) == render(built)
    assert boot_record(ScriptSpec(**record["spec"])) == path.read_bytes()


def test_generation_script_from_the_record_equals_the_set_base_rewrite(tmp_path: Path) -> None:
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploydist import generation_script

    gen = "g-0123456789ab"
    built = spec(boot_server_url=["tftp://192.168.88.1/", "http://192.168.88.10:8080", "tftp://10.0.0.1"])
    path = record_path(tmp_path / "boot.ipxe")
    path.write_bytes(boot_record(built))
    # the deploy's former regex over the built boot.ipxe's 'set base tftp://' lines
    rewrite = re.sub(r"^(?P<head>[ \t]*set[ \t]+base[ \t]+)(?P<url>tftp://\S+?)/?[ \t]*$", rf"\g<head>\g<url>/{gen}",
                     render(built), flags=re.M)
    first, _unused, rest = rewrite.partition("\n")
    assert generation_script(read_record(path), gen) == (
        f"{first}\n# homelab.alpine_netboot generation {gen}: artefact URLs point into the generation directory.\n"
        f"set netboot_generation {gen}\n{rest}")


@pytest.mark.parametrize("raw", ['{"initramfs": "initramfs"}', '{"format": "homelab.alpine_netboot/boot/0"}',
                                 '{"format": "homelab.alpine_netboot/boot/1", "spec": {}}'])
def test_an_old_boot_record_is_refused_naming_the_file_and_the_stage(tmp_path: Path, raw: str) -> None:
    path = tmp_path / "boot.ipxe.json"
    path.write_text(raw)
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))} .*--tags ipxe"):
        read_record(path)
