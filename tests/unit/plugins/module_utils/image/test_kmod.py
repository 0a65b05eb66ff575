"""_kmod / _elf on real module trees: Alpine linux-virt 6.18 (.ko.gz, kmod 34.2 musl) and Debian 6.1 (.ko)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _kmod


def test_module_name_normalises_suffix_and_dashes() -> None:
    assert _kmod.module_name("kernel/drivers/net/usb/r8152.ko.gz") == "r8152"
    assert _kmod.module_name("kernel/drivers/hid/hid-generic.ko.zst") == "hid_generic"
    assert _kmod.module_name("extra/zfs.ko") == "zfs"


def test_corrupt_module_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.ko.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(NetbootError, match=r"x\.ko\.gz: cannot decompress"):
        _kmod.modinfo(bad)


def test_modules_dep_and_builtin_read_once(tmp_path: Path) -> None:
    assert _kmod.read_dep(tmp_path) == {} and _kmod.read_builtin(tmp_path) == set()
    (tmp_path / "modules.dep").write_text("kernel/net/tun.ko.gz:\nkernel/fs/zfs.ko: kernel/spl.ko kernel/znvpair.ko\n\n")
    (tmp_path / "modules.builtin").write_text("kernel/drivers/hid/hid-generic.ko\n\n")
    zfs = ["kernel/spl.ko", "kernel/znvpair.ko"]
    assert _kmod.read_dep(tmp_path) == {"kernel/net/tun.ko.gz": [], "kernel/fs/zfs.ko": zfs}
    assert _kmod.read_builtin(tmp_path) == {"hid_generic"}


_CLOSURE_PROBE = """
import json, sys
from pathlib import Path
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _kmod
tree = _kmod.ModuleTree(Path("/nonexistent"), "0")
names = [f"m{i:02d}" for i in range(40)]
tree.modules = {n: f"kernel/{n}.ko" for n in names}
# a wide diamond: every seed needs every shared module, each reached from many parents at the same depth
tree.deps = {n: names[20:] for n in names[:20]}
tree.softdeps = {"m25": ["m39", "m38"]}
print(json.dumps(tree.closure(set(names[:20]))))
"""


def test_closure_is_independent_of_the_hash_seed() -> None:
    """The prune report names the parent that pulled each module in, and the ledger hashes that report: the
    closure must give the same parents, in the same order, under any PYTHONHASHSEED (the issue-23 defect)."""
    import os
    import subprocess
    import sys

    from tests.fixtures.material import REPO

    outs = set()
    for seed in ("0", "1", "2", "3", "77", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed,
               "PYTHONPATH": os.pathsep.join([str(REPO / ".collections"), str(REPO)])}
        r = subprocess.run([sys.executable, "-c", _CLOSURE_PROBE], env=env, capture_output=True, text=True,
                           check=True)
        outs.add(r.stdout)
    assert len(outs) == 1, outs
    closure = __import__("json").loads(outs.pop())
    assert closure["m30"] == "m00"  # breadth first, the first parent by name
    assert list(closure) == sorted(closure)
