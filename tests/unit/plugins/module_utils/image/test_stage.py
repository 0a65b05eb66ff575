"""stage_tree: the working copy is redone only when the source manifest or the key changes."""

from __future__ import annotations

import inspect
import os
import subprocess
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _stage
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._stage import apply_stage, plan_stage


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc/alpine-netboot").mkdir(parents=True)
    (root / "etc/alpine-netboot/manifest.json").write_text('{"inputs_sha256": "a"}')
    (root / "lib").mkdir()
    (root / "lib/a.ko").write_bytes(b"module")
    os.link(root / "lib/a.ko", root / "lib/hard.ko")
    os.symlink("a.ko", root / "lib/link.ko")
    (root / "lib/a.ko").chmod(0o640)
    return root


def test_copy_keeps_links_modes_and_is_stable(tmp_path: Path, src: Path) -> None:
    dest = tmp_path / "image"
    plan = plan_stage(src, dest, "rules-1")
    assert plan.changed
    apply_stage(plan, Runner())
    assert (dest / "lib/a.ko").stat().st_ino == (dest / "lib/hard.ko").stat().st_ino
    assert os.readlink(dest / "lib/link.ko") == "a.ko"
    assert (dest / "lib/a.ko").stat().st_mode & 0o777 == 0o640
    assert not plan_stage(src, dest, "rules-1").changed


def test_pruned_copy_is_redone_when_rules_or_rootfs_change(tmp_path: Path, src: Path) -> None:
    dest = tmp_path / "image"
    apply_stage(plan_stage(src, dest, "rules-1"), Runner())
    (dest / "lib/a.ko").unlink()  # what pruning does
    assert not plan_stage(src, dest, "rules-1").changed
    plan = plan_stage(src, dest, "rules-2")
    assert plan.changed
    apply_stage(plan, Runner())
    assert (dest / "lib/a.ko").is_file(), "new rules start from the full rootfs"
    (src / "etc/alpine-netboot/manifest.json").write_text('{"inputs_sha256": "b"}')
    assert plan_stage(src, dest, "rules-2").changed
    assert not list(tmp_path.glob(".image.*"))


def test_missing_source_and_nested_destination_are_refused(tmp_path: Path, src: Path) -> None:
    with pytest.raises(ConfigError, match="build the rootfs first"):
        plan_stage(tmp_path / "nope", tmp_path / "image", "")
    with pytest.raises(ConfigError, match="must not be"):
        plan_stage(src, src / "sub", "")


def test_bookkeeping_stays_outside_the_copy_that_ships(tmp_path: Path, src: Path) -> None:
    """Issue 12: the stamp (with the builder's absolute path) must not be in the image tree."""
    dest = tmp_path / "build" / "image"
    apply_stage(plan_stage(src, dest, "rules-1"), Runner())
    stamp = tmp_path / "build" / "image.stage.json"
    assert stamp.is_file() and str(src) in stamp.read_text()
    shipped = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    assert shipped == sorted(str(p.relative_to(src)) for p in src.rglob("*")), "the copy holds exactly the source"
    # two copies of the same source in two build directories are the same trees
    other = tmp_path / "elsewhere" / "tree"
    apply_stage(plan_stage(src, other, "rules-1"), Runner())
    assert sorted(str(p.relative_to(other)) for p in other.rglob("*")) == shipped


def test_an_interrupted_copy_is_redone_and_its_leftovers_removed(tmp_path: Path, src: Path) -> None:
    dest = tmp_path / "image"
    apply_stage(plan_stage(src, dest, "rules-1"), Runner())
    # a run killed while copying: its half copy beside dest, and no stamp (removed before the copy started)
    proc = subprocess.Popen(["true"])
    proc.wait()
    (tmp_path / f".image.new-{proc.pid}" / "lib").mkdir(parents=True)
    (tmp_path / "image.stage.json").unlink()
    plan = plan_stage(src, dest, "rules-1")
    assert plan.changed, "a copy without its stamp is not taken for a finished one"
    apply_stage(plan, Runner())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image", "image.stage.json", "rootfs"]


def test_the_code_digest_covers_every_module_utils_file_a_stage_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23: not only the stage's own files - a helper two imports away (the kernel finder, the JSON reader)."""
    names = [m.__name__.split("module_utils.")[1] for m in _stage.code_closure(_stage.STAGES["prune"][1])]
    assert names == sorted(names) and len(names) == len(set(names))
    assert {"image._prune", "image._prunerules", "image._kernel", "image._kmod", "common._fs"} <= set(names)
    assert not [n for n in names if not n.split(".")[1].startswith("_")]  # only the collection's own module_utils
    before = _stage.code_digest(_stage.STAGES["prune"][1])
    real = inspect.getsource

    def edited(obj: object) -> str:  # one changed line in a helper the stages reach only through others
        return real(obj) + ("# edited\n" if getattr(obj, "__name__", "").endswith("common._fs") else "")

    monkeypatch.setattr(_stage.inspect, "getsource", edited)
    assert _stage.code_digest(_stage.STAGES["prune"][1]) != before
    assert _stage.code_digest(_stage.STAGES["node"][1]) != before
