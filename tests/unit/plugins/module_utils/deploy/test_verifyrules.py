"""_verifyrules: rules as RouterOS applies them, the diagnosis of a failed read, the generation script check and what
the script fetches."""

from __future__ import annotations

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _ipxe
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy import _tftp
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._deploydist import generation_script
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.deploy._verifyrules import (
    check_generation_script,
    diagnose,
    in_addresses,
    pick_rule,
    script_files,
)

GEN = "g-0123456789ab"
RULES = [
    {".id": "*1", "req-filename": "^user$", "real-filename": "u", "disabled": "true"},
    {".id": "*2", "req-filename": rf"^{GEN}/vmlinuz$", "real-filename": f"netboot/{GEN}/vmlinuz",
     "ip-addresses": "192.168.88.128/25,10.0.0.5", "allow-rollover": "false"},
    {".id": "*3", "req-filename": r"^boot\.ipxe$", "real-filename": f"netboot/{GEN}/generation.ipxe"},
]
SCRIPT = """#!ipxe
# boot.ipxe
:mac_525400000001
set node_initrd nodes/n1.cpio
goto boot
:s0
set base tftp://192.168.88.1
kernel ${base}/vmlinuz initrd=intel-ucode.img initrd=initramfs ${node_initrd_arg}
initrd ${base}/intel-ucode.img && goto x ||
initrd ${base}/initramfs && goto y ||
initrd ${base}/${node_initrd} && goto z ||
:s1
set base http://10.0.0.9/dist
kernel ${base}/vmlinuz
"""


def test_addresses_and_the_first_matching_rule() -> None:
    assert in_addresses("10.0.0.5", "192.168.88.128/25,10.0.0.5") and in_addresses("1.2.3.4", "")
    assert not in_addresses("192.168.88.2", "192.168.88.128/25")
    assert pick_rule(RULES, "user", "1.2.3.4") is None  # disabled
    assert pick_rule(RULES, f"{GEN}/vmlinuz", "192.168.88.200") == RULES[1]
    assert pick_rule(RULES, f"{GEN}/vmlinuz", "192.168.88.2") is None
    assert pick_rule(RULES, "xboot.ipxe", "1.2.3.4") is None  # anchored


def test_diagnosis_names_the_cause() -> None:
    assert diagnose(RULES, f"{GEN}/initramfs", "192.168.88.2", None) == (
        f"no rule: no enabled /ip/tftp rule's req-filename matches {GEN}/initramfs")
    out = diagnose(RULES, f"{GEN}/vmlinuz", "192.168.88.2", _tftp.TftpRefused("x", 2, "Access violation"))
    assert out.startswith("outside ip-addresses: the controller's address 192.168.88.2 is outside")
    assert "Add 192.168.88.2 (or its network) to rb4011_tftp_allow_addresses" in out and "10.0.0.5" in out
    silent = diagnose(RULES, "boot.ipxe", "192.168.88.2", _tftp.TftpTimeout("boot.ipxe", 2, 0, False))
    assert silent.startswith("timeout: the router did not answer") and "firewall" in silent and "UDP 69" in silent
    later = diagnose(RULES, "boot.ipxe", "192.168.88.2", _tftp.TftpTimeout("boot.ipxe", 2, 40, True))
    assert "stopped after 40 blocks" in later
    gone = diagnose(RULES, "boot.ipxe", "192.168.88.2", _tftp.TftpRefused("boot.ipxe", 1, "File not found"))
    assert gone == f"file not found: the rule for boot.ipxe names netboot/{GEN}/generation.ipxe, which the router " \
                   "does not have"
    big = diagnose(RULES, f"{GEN}/vmlinuz", "192.168.88.200", _tftp.TftpRefused("v", 0, "too big", 65535))
    assert big.startswith("too big without rollover") and "allow-rollover=no" in big


def test_generation_script_checked_against_the_render_of_the_boot_record() -> None:
    raw = _ipxe.boot_record(_ipxe.ScriptSpec(["tftp://192.168.88.1", "http://10.0.0.9/dist"]))
    gen_text = generation_script(_ipxe.read_record("r", raw), GEN).encode()
    assert check_generation_script(gen_text, GEN, raw) == ""
    other = gen_text.replace(b"initramfs", b"initramfz")
    assert check_generation_script(other, GEN, raw).startswith("wrong bytes: boot.ipxe has sha256 ")
    elsewhere = check_generation_script(gen_text, "g-ffffffffffff", raw)
    assert "the deploy's render of generation g-ffffffffffff" in elsewhere
    assert "has no format" in check_generation_script(gen_text, GEN, b'{"initramfs": "initramfs"}')


def test_what_the_script_fetches() -> None:
    f = script_files(SCRIPT)
    assert f.kernel == ("vmlinuz",) and f.initrds == ("intel-ucode.img", "initramfs")
    assert f.node_initrds == ("nodes/n1.cpio",)


def test_the_roles_template_is_read() -> None:
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._ipxe import ScriptSpec, render

    spec = ScriptSpec("tftp://192.168.88.1", microcode="intel-ucode.img",
                      nodes=[{"name": "n1", "mac": "52:54:00:00:00:01", "hostname": "n1", "role": "worker",
                              "initrd": "n1.cpio"}])
    f = script_files(render(spec))
    assert f.kernel == ("vmlinuz",) and f.initrds == ("intel-ucode.img", "initramfs")
    assert f.node_initrds == ("n1.cpio",)
    # Secure Boot: the one signed UKI, fetched under the generation's name, is what every node loads
    uki = ScriptSpec("tftp://192.168.88.1", uki="netboot.efi",
                     nodes=[{"name": "n1", "mac": "52:54:00:00:00:01", "hostname": "n1", "role": "worker"}])
    f = script_files(render(uki))
    assert f.kernel == ("netboot.efi",) and f.initrds == () and f.node_initrds == ()
