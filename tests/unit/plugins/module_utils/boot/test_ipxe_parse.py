"""boot.ipxe read the way iPXE reads it: every inventory value stays one literal word of the command it belongs to.

``ipxe_commands`` is a small faithful model of iPXE's script parser: ``src/image/script.c`` process_script (lines
split at ``\\n``, one trailing ``\\r`` stripped, a line ending in ``\\`` continued by the next, ``:label`` prefix) and
``src/core/exec.c`` system/split_command/command_terminator (words split at C ``isspace()``; a word starting with
``#`` comments out the rest; the words ``||``, ``&&`` and ``;`` end a command and start the next). iPXE has no
quoting: ``"``, ``'`` and ``\\`` are ordinary characters inside a word. ``${...}`` in a word is expanded later
(settings.c expand_settings); the model keeps it literal and tests check where it appears.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot._ipxe import ScriptSpec, render
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError

_ISSPACE = " \t\n\v\f\r"  # C isspace() in the "C" locale, which iPXE's ctype.h implements
# the commands the shipped template uses; anything else in a parsed script was injected
TEMPLATE_COMMANDS = {"isset", "goto", "echo", "dhcp", "sleep", "set", "clear", "imgfree", "kernel", "initrd", "boot",
                     "menu", "item", "choose", "shell", "reboot"}


@dataclass(frozen=True)
class Command:
    line: int  # 1-based number of the script line the command starts on
    label: str | None
    argv: tuple[str, ...]
    terminator: str  # "||", "&&", ";" or "" (end of line)


def ipxe_commands(script: str) -> list[Command]:
    """Every command iPXE would see in ``script``, in order (labels of label-only lines as empty commands)."""
    out: list[Command] = []
    raw = script.split("\n")
    if script.endswith("\n"):
        raw.pop()  # process_script stops at the end of the image: no empty line after the last newline
    i = 0
    while i < len(raw):
        start = i
        line = ""
        while True:
            frag = raw[i]
            i += 1
            line += frag
            if line.endswith("\r"):
                line = line[:-1]
            if line.endswith("\\") and i < len(raw):
                line = line[:-1]
                continue
            break
        command = line.lstrip(_ISSPACE)
        label = None
        if command.startswith(":"):
            m = re.match(rf"([^{re.escape(_ISSPACE)}]*)[{re.escape(_ISSPACE)}]?", command[1:])
            assert m is not None
            label = m.group(1)
            command = command[1 + m.end():]
        words = [w for w in re.split(f"[{re.escape(_ISSPACE)}]+", command) if w]
        argv: list[str] = []
        for word in words:
            if word.startswith("#"):
                break
            if word in ("||", "&&", ";"):
                out.append(Command(start + 1, label, tuple(argv), word))
                argv, label = [], None
                continue
            argv.append(word)
        out.append(Command(start + 1, label, tuple(argv), ""))
    return out


def test_model_sees_the_injections_of_issue_17() -> None:
    """The model is strict enough to catch what issue 17 reported (so the checks below can fail)."""
    injected = "#!ipxe\nset node_args quiet && shell\n# inventory host x\nshell\n# inventory host y\\\nset a b\n"
    cmds = ipxe_commands(injected)
    assert [c.argv for c in cmds if c.argv] == [("set", "node_args", "quiet"), ("shell",), ("shell",)]
    assert ("set", "a", "b") not in [c.argv for c in cmds]  # swallowed into the comment by the backslash


GOOD_NODES = [
    # every character the validation lets through, in each value
    {"name": "n100_a.lab:1@x+y-z", "mac": "AA-BB-CC-00-11-22", "hostname": "n100-a.lab", "role": "storage_1.x-y",
     "kernel_args": "zfs.zfs_arc_max=1073741824 x=a,b:c/d%e(f)[g]<h>*?!~`^=@+- quiet", "initrd": "extra/zfs+1.img"},
    {"name": "web1", "mac": "aabb.cc00.1123"},
]


def _spec(**kw: object) -> ScriptSpec:
    base: dict[str, object] = {
        "boot_server_url": ["http://10.0.2.2:8080/netboot", "https://boot.lab:8443"],
        "nodes": GOOD_NODES,
        "microcode": "intel-ucode.img",
        "extra_kernel_args": ["ip=dhcp", "modules=loop,squashfs"],
    }
    base.update(kw)
    return ScriptSpec(**base)  # type: ignore[arg-type]


def test_every_line_is_exactly_the_intended_command() -> None:
    text = render(_spec())
    cmds = ipxe_commands(text)
    assert not any(ln.endswith("\\") for ln in text.splitlines()), "no line may continue into the next"
    assert {c.argv[0] for c in cmds if c.argv} <= TEMPLATE_COMMANDS
    by_label: dict[str, list[tuple[str, ...]]] = {}
    current = ""
    for c in cmds:
        if c.label is not None:
            current = c.label
        if c.argv:
            by_label.setdefault(current, []).append(c.argv)
    assert by_label["mac_aabbcc001122"] == [
        ("set", "node_hostname", "n100-a.lab"),
        ("set", "node_role", "storage_1.x-y"),
        ("set", "node_args", "zfs.zfs_arc_max=1073741824", "x=a,b:c/d%e(f)[g]<h>*?!~`^=@+-", "quiet"),
        ("set", "node_initrd", "extra/zfs+1.img"),
        ("set", "node_initrd_arg", "initrd=zfs+1.img"),
        ("goto", "boot"),
    ]
    assert by_label["mac_aabbcc001123"] == [
        ("set", "node_hostname", "web1"), ("set", "node_role", "worker"), ("clear", "node_args"),
        ("clear", "node_initrd"), ("clear", "node_initrd_arg"), ("goto", "boot"),
    ]
    assert by_label["s0"][0] == ("set", "base", "http://10.0.2.2:8080/netboot")
    assert by_label["s1"][0] == ("set", "base", "https://boot.lab:8443")
    kernel = [c for c in cmds if c.argv and c.argv[0] == "kernel"]
    assert kernel and all(c.terminator == "&&" for c in kernel)
    assert kernel[0].argv == (
        "kernel", "${base}/vmlinuz", "initrd=intel-ucode.img", "initrd=initramfs", "${node_initrd_arg}", "console=tty0",
        "console=ttyS0,115200", "ip=dhcp", "modules=loop,squashfs", "netboot.hostname=${node_hostname}",
        "netboot.role=${node_role}", "netboot.generation=${netboot_generation}", "${node_args}",
    )
    # the host name only ever appears inside its comment line, which holds no command
    lines = [i + 1 for i, ln in enumerate(text.splitlines()) if "n100_a.lab:1@x+y-z" in ln]
    assert [text.splitlines()[n - 1] for n in lines] == ["# inventory host n100_a.lab:1@x+y-z"]
    assert not [c for c in cmds if c.line in lines and c.argv]
    # "${" appears only where the template expands iPXE's own settings, never from an inventory value
    expanded = {m for c in cmds for w in c.argv for m in re.findall(r"\$\{([^}]*)\}", w)}
    assert expanded <= {"base", "netX/ip", "netX/mac", "netX/mac:hexraw", "node_hostname", "node_role", "node_args",
                        "node_initrd", "node_initrd_arg", "reason", "failsafe_action", "netboot_generation"}


HOSTILE_NODES = [
    ({"kernel_args": "quiet && shell"}, "'&'"),
    ({"kernel_args": "quiet || shell"}, "'|'"),
    ({"kernel_args": "quiet ; shell"}, "';'"),
    ({"kernel_args": ["quiet", ";", "reboot"]}, "';'"),
    ({"kernel_args": "quiet&&shell"}, "'&'"),
    ({"kernel_args": "a=\\"}, "'\\\\\\\\'"),
    ({"kernel_args": "a=${net0/ip}"}, "'\\$'"),
    ({"kernel_args": "a=\x1b[2Jshell"}, "kernel arguments"),
    ({"kernel_args": "a=\x00"}, "kernel arguments"),
    ({"kernel_args": "a=\u00e9"}, "kernel arguments"),
    ({"name": "evil\nshell"}, "inventory host 'evil\\\\nshell'"),
    ({"name": "evil\\"}, "inventory host 'evil\\\\\\\\'"),
    ({"name": "evil\r"}, "inventory host"),
    ({"name": "a b"}, "inventory host 'a b'"),
    ({"name": "x ; shell"}, "inventory host"),
    ({"hostname": "h;shell"}, "hostname 'h;shell'"),
    ({"hostname": "h\nshell"}, "hostname"),
    ({"role": "r\nshell"}, "role"),
    ({"role": "r&&shell"}, "role"),
    ({"initrd": "a\nshell"}, "initrd"),
    ({"initrd": "a;b"}, "initrd"),
    ({"mac": "aa:bb:cc:00:11:22\nshell"}, "mac"),
]


@pytest.mark.parametrize(("override", "message"), HOSTILE_NODES)
def test_hostile_node_values_are_refused_naming_the_problem(override: dict[str, object], message: str) -> None:
    node = {"name": "n1", "mac": "aa:bb:cc:00:00:01", **override}
    with pytest.raises(ConfigError, match=message):
        render(_spec(nodes=[node]))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"kernel_args": "console=ttyS0 && shell"}, "ipxe_kernel_args"),
        ({"extra_kernel_args": ["quiet", "||", "shell"]}, "extra kernel args"),
        ({"boot_server_url": "http://h/x;shell"}, "boot_server_url"),
        ({"boot_server_url": "http://h/x\x0bshell"}, "boot_server_url"),
        ({"boot_server_url": ["http://ok", "http://h/\\"]}, r"boot_server_url\[1\]"),
        ({"default_role": "w\nshell"}, "ipxe_default_role"),
        ({"kernel": "vmlinuz\nshell"}, "kernel"),
        ({"initramfs": "i;shell"}, "initramfs"),
        ({"microcode": "u&&shell"}, "microcode"),
    ],
)
def test_hostile_script_values_are_refused(override: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        render(_spec(**override))
