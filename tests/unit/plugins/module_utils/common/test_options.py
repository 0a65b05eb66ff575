"""_options: the shared option groups and the defaults they give a stage key."""

from __future__ import annotations

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._options import PRUNE, with_defaults


def test_with_defaults_fills_missing_and_none_options() -> None:
    a = with_defaults(PRUNE, {"hardware_mode": "select", "kernel_version": None, "extra": 1})
    assert a["hardware_mode"] == "select" and a["extra"] == 1
    assert a["kernel_version"] is None and a["strip"] is True and a["module_compression"] == "decompress"
