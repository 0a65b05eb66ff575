"""_checkmode: what a stage reports in check mode when an earlier stage's output is not there yet; diff only in diff mode."""

from __future__ import annotations

from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._checkmode import (
    missing_input,
    stage_result,
    text_diff,
)
from tests.fixtures.module import run_module


def test_existing_input_gives_no_message(tmp_path: Path) -> None:
    assert missing_input(tmp_path, "pack it", "image") is None


def test_missing_input_says_what_would_happen_and_why_no_more(tmp_path: Path) -> None:
    msg = missing_input(tmp_path / "image", "pack it into dist/initramfs", "image")
    assert msg is not None
    assert msg.startswith("would pack it into dist/initramfs; cannot say more: ")
    assert str(tmp_path / "image") in msg and "image stage" in msg


def test_stage_result_passes_warnings_on_and_keeps_the_diff_only_in_diff_mode() -> None:
    warned: list[str] = []
    plain = stage_result({"changed": True, "warnings": ["w1", "w2"], "diff": {"before": "a", "after": "b"}},
                         diff=False, warn=warned.append)
    assert plain == {"changed": True} and warned == ["w1", "w2"]
    shown = stage_result({"changed": False, "diff": {"before": "a", "after": "a"}}, diff=True, warn=warned.append)
    assert shown == {"changed": False, "diff": {"before": "a", "after": "a"}} and warned == ["w1", "w2"]


def test_text_diff_is_one_text_before_and_after_under_its_header() -> None:
    assert text_diff("/x", "a\n", "b\n") == {"before": "a\n", "after": "b\n", "before_header": "/x", "after_header": "/x"}
    assert text_diff("rules", "", "r\n", after_header="after")["after_header"] == "after"


def test_a_stage_in_check_mode_without_its_input_reports_it_would_run(tmp_path: Path) -> None:
    args = {"src": str(tmp_path / "image"), "dest": str(tmp_path / "dist" / "initramfs")}
    rc, res = run_module("make_initramfs", tmp_path / "work", args, check=True)
    assert rc == 0 and res["changed"] is True and res["commands"] == [] and res["dest"] == args["dest"]
    assert res["msg"] == missing_input(args["src"], f"pack {args['src']} into {args['dest']}", "image")
    assert not (tmp_path / "dist").exists()


def test_without_check_mode_a_missing_input_is_the_stage_s_own_error(tmp_path: Path) -> None:
    args = {"src": str(tmp_path / "image"), "dest": str(tmp_path / "initramfs")}
    rc, res = run_module("make_initramfs", tmp_path / "work", args)
    assert rc == 1 and res["failed"] is True and str(tmp_path / "image") in res["msg"]
    assert "would pack" not in res["msg"] and not (tmp_path / "initramfs").exists()
