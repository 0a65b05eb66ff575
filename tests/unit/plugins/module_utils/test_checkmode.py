"""_checkmode: the message a stage gives in check mode when an earlier stage's output is not there yet."""

from __future__ import annotations

from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils._checkmode import missing_input


def test_existing_input_gives_no_message(tmp_path: Path) -> None:
    assert missing_input(tmp_path, "pack it", "image") is None


def test_missing_input_says_what_would_happen_and_why_no_more(tmp_path: Path) -> None:
    msg = missing_input(tmp_path / "image", "pack it into dist/initramfs", "image")
    assert msg is not None
    assert msg.startswith("would pack it into dist/initramfs; cannot say more: ")
    assert str(tmp_path / "image") in msg and "image stage" in msg
