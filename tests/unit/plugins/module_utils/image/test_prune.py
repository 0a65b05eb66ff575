"""_prune: a whole plan on a small tree, its report, diff and apply (the phases alone: test_pruneselect.py; real
Debian and Alpine trees: tests/integration/test_prune.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _prune
from tests.fixtures.prune import rules_of

KVER = "6.1.0-test"


def small_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "lib/modules" / KVER).mkdir(parents=True)
    (root / "usr/share/doc/pkg").mkdir(parents=True)
    (root / "usr/share/doc/pkg/README").write_text("read me\n")
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("node\n")
    return root


def test_plan_report_diff_and_apply_of_a_files_rule(tmp_path: Path) -> None:
    root = small_root(tmp_path)
    rules_of(tmp_path, "files:\n  remove: [usr/share/doc/*]\n")
    plan = _prune.make_plan(_prune.Options(root, profiles=[str(tmp_path / "t.yml")]))
    assert plan.kver == KVER and plan.remove == {"usr/share/doc/pkg/README": "t:files.remove:usr/share/doc/*"}
    assert plan.changes and not plan.depmod_needed
    assert plan.report["files"]["removed"] == {"count": 1, "bytes": 8}
    assert plan.report["by_top_dir"]["usr/share"] == {"removed": {"count": 1, "bytes": 8}, "kept": {"count": 0, "bytes": 0}}
    assert any("no kernel config" in w for w in plan.warnings)
    assert _prune.diff(plan) == {"before": "usr/share/doc/pkg/README  [t:files.remove:usr/share/doc/*]\n",
                                 "after": ""}
    assert _prune.apply_plan(plan, Runner()) == []
    assert not (root / "usr/share").exists() and (root / "etc/hostname").is_file()


def test_plan_refuses_two_kernels_and_a_bad_option(tmp_path: Path) -> None:
    root = small_root(tmp_path)
    (root / "lib/modules/6.2.0-test").mkdir()
    with pytest.raises(ConfigError, match=r"several kernels \(6\.1\.0-test, 6\.2\.0-test\); set kernel_version"):
        _prune.make_plan(_prune.Options(root))
    assert _prune.make_plan(_prune.Options(root, kernel_version="6.2.0-test")).kver == "6.2.0-test"
    with pytest.raises(ConfigError, match=r"hardware_mode must be one of select, audit, not 'all'"):
        _prune.make_plan(_prune.Options(root, hardware_mode="all"))


def test_the_report_names_no_builder_path_and_reads_back(tmp_path: Path) -> None:
    rules_of(tmp_path, "files:\n  remove: [usr/share/doc/*, nowhere/*]\n")
    (tmp_path / "one/deep").mkdir(parents=True)
    written = []
    for where in (tmp_path / "one/deep", tmp_path / "two"):
        plan = _prune.make_plan(_prune.Options(small_root(where), profiles=[str(tmp_path / "t.yml")]))
        assert "root" not in plan.report and any("nothing in <image>" in w for w in plan.report["warnings"])
        written.append(_prune.PRUNE_REPORT.dump(plan.report))
        (where / "prune-report.json").write_bytes(written[-1])
        assert _prune.read_report(where / "prune-report.json") == {**plan.report, "format": _prune.PRUNE_REPORT.format}
    assert written[0] == written[1] and str(tmp_path / "one") not in written[0].decode()
    assert _prune.read_report(tmp_path / "none.json") is None and _prune.read_report(None) is None


def test_a_report_of_another_format_is_refused_naming_the_file_and_stage(tmp_path: Path) -> None:
    path = tmp_path / "prune-report.json"
    path.write_text('{"modules": {}}')
    with pytest.raises(ConfigError, match=rf"{path} has no format, .*--tags kernel"):
        _prune.read_report(path)


def test_collection_paths_become_a_placeholder() -> None:
    report = {"profiles": ["/srv/x/.collections/ansible_collections/homelab/alpine_netboot/roles/kernel/files/o.yml"],
              "warnings": ["absent from /b/image/lib/firmware", "in /b/image"], "root": "/b/image", "n": 1}
    assert _prune._publishable(report, "/b/image") == {
        "profiles": ["<collection>/roles/kernel/files/o.yml"], "n": 1, "root": "<image>",
        "warnings": ["absent from <image>/lib/firmware", "in <image>"]}
