"""_rootfs_spec: the rootfs request is checked option by option, and the lockfile document pins what was resolved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._rootfs_spec import (
    Locked,
    RootfsSpec,
    lock_differs,
    lock_document,
    package_lines,
)

BUSYBOX = Locked("busybox", "1.37.0-r30", "Q1bb", "main", 100, 1_700_000_000)
MUSL = Locked("musl", "1.2.5-r10", "Q1mu", "main", 50, 1_700_000_001)


def make_spec(tmp_path: Path, **kw: object) -> RootfsSpec:
    args: dict[str, object] = {
        "release": "3.23", "arch": "x86_64", "mirrors": ("http://127.0.0.1:9/alpine",), "repositories": ("main",),
        "packages": ("busybox", "alpine-baselayout"), "root": tmp_path / "build" / "rootfs",
        "cache_dir": tmp_path / "cache", "offline": True, "lockfile": tmp_path / "inventory" / "rootfs.lock.json",
    }
    args.update(kw)
    return RootfsSpec(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("release", "expected"), [("3.23", "v3.23"), ("v3.23", "v3.23"), (" edge ", "edge")])
def test_release_dir(tmp_path: Path, release: str, expected: str) -> None:
    assert make_spec(tmp_path, release=release).release_dir == expected


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"release": "3"}, "alpine_release '3' is not an Alpine release: use a version like '3.23' or 'edge'"),
        ({"release": "latest-stable"}, "alpine_release 'latest-stable' is not an Alpine release"),
        ({"mirrors": ()}, "alpine_mirror is empty: give at least one mirror URL"),
        ({"mirrors": ("dl-cdn.alpinelinux.org/alpine",)},
         "alpine_mirror 'dl-cdn.alpinelinux.org/alpine' must be an http://, https:// or file:// URL"),
        ({"repositories": ()}, "alpine_repositories is empty: use at least [main]"),
        ({"repositories": ("main", "Community/x")},
         "alpine_repositories entry 'Community/x' is not a repository name (main, community, ...)"),
        ({"packages": ()}, "alpine_packages is empty: list the packages the image needs"),
        ({"packages": ("busybox", "open ssh", "musl>=1.2", "bad;rm")},
         "alpine_packages has invalid entries: open ssh, bad;rm"),
        ({"root": Path("build/rootfs")}, "root and cache_dir must be absolute paths"),
        ({"root": Path("/")}, "refusing to build a rootfs at /"),
    ],
)
def test_invalid_requests_name_the_option(tmp_path: Path, change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_spec(tmp_path, **change).validate()
    assert str(err.value).startswith(message)


def test_root_equal_to_the_cache_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="refusing to build a rootfs at"):
        make_spec(tmp_path, root=tmp_path / "cache").validate()


def test_repository_urls_and_cache_layout(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, mirrors=("https://a.example/alpine/", "http://b.example/alpine"))
    assert spec.repo_urls("community", "APKINDEX.tar.gz") == [
        "https://a.example/alpine/v3.23/community/x86_64/APKINDEX.tar.gz",
        "http://b.example/alpine/v3.23/community/x86_64/APKINDEX.tar.gz",
    ]
    assert spec.repo_dir("main") == tmp_path / "cache/alpine/v3.23/main/x86_64"


def test_lock_document_and_rewrite_decision(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, packages=("busybox", "alpine-baselayout", "busybox"))
    doc = lock_document(spec, [BUSYBOX])
    assert doc["requested"] == ["alpine-baselayout", "busybox"] and doc["release"] == "v3.23"
    path = tmp_path / "lock.json"
    assert lock_differs(path, doc)  # missing
    path.write_text(json.dumps(doc, indent=7))
    assert not lock_differs(path, doc)  # formatting is not a difference
    path.write_text("{broken")
    assert lock_differs(path, doc)
    assert package_lines([MUSL, BUSYBOX]) == ["busybox-1.37.0-r30", "musl-1.2.5-r10"]
    assert package_lines([{"name": "a", "version": "1-r0"}]) == ["a-1-r0"]
