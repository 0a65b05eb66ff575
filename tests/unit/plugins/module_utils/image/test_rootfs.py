"""_rootfs planning without apk or downloads: option checks, index loading (real HTTP on 127.0.0.1, the offline cache),
lockfile reading and drift, which locked package can still be installed and from where, the manifest's input digest,
check-mode ``changed``/``to_fetch``, OpenRC service links and the shadow clamp.

The repository is a small signed one built here by ``tests.fixtures.apkrepo`` (real .apk/APKINDEX format, a test key
trusted through ``extra_keys_dirs``); nothing is downloaded.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import (
    ConfigError,
    FetchError,
    NetbootError,
    SignatureError,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fetch import Fetcher
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._rootfs import Builder, build
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._rootfs_spec import (
    ROOTFS_MANIFEST,
    Locked,
    RootfsSpec,
    lock_document,
)
from tests.fixtures.apkrepo import ARCH, RELEASE, BuiltPackage, Package, SigningKey, build_package, serve, write_repo


@dataclass(frozen=True)
class Repo:
    mirror: Path  # <mirror>/v3.23/main/x86_64/
    keys: Path
    key: SigningKey
    built: dict[str, BuiltPackage]
    moved_index: Path  # the same repository after busybox moved on to -r31 (and -r30 left the index)

    @property
    def index(self) -> Path:
        return self.mirror / RELEASE / "main" / ARCH / "APKINDEX.tar.gz"


PACKAGES = [
    Package("musl", "1.2.5-r10", build_time=1_699_000_000),
    Package("busybox", "1.37.0-r30", build_time=1_700_000_500, depends=["so:libc.musl-x86_64.so.1"]),
    Package("alpine-baselayout", "3.7.0-r0", build_time=1_700_000_000),
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    base = tmp_path_factory.mktemp("apkrepo")
    key = SigningKey.create("rootfs-test")
    (base / "keys").mkdir()
    (base / "keys" / key.name).write_bytes(key.public_pem())
    built = [build_package(p, key) for p in PACKAGES]
    write_repo(base / "mirror" / RELEASE / "main" / ARCH, built, key)
    bumped = replace(PACKAGES[1], version="1.37.0-r31", build_time=1_700_100_000)
    moved = [b for b in built if b.package.name != "busybox"] + [build_package(bumped, key)]
    write_repo(base / "moved", moved, key)
    return Repo(base / "mirror", base / "keys", key, {b.package.name: b for b in built},
                base / "moved" / "APKINDEX.tar.gz")


def make_spec(tmp_path: Path, repo: Repo, **kw: object) -> RootfsSpec:
    args: dict[str, object] = {
        "release": "3.23", "arch": ARCH, "mirrors": ("http://127.0.0.1:9/alpine",), "repositories": ("main",),
        "packages": ("busybox", "alpine-baselayout"), "root": tmp_path / "build" / "rootfs",
        "cache_dir": tmp_path / "cache", "extra_keys_dirs": (repo.keys,), "offline": True,
        "lockfile": tmp_path / "inventory" / "rootfs.lock.json",
    }
    args.update(kw)
    return RootfsSpec(**args)  # type: ignore[arg-type]


def seed_index(spec: RootfsSpec, repo: Repo) -> None:
    """The local mirror after an earlier online run: the signed index, no packages yet."""
    spec.repo_dir("main").mkdir(parents=True, exist_ok=True)
    shutil.copy2(repo.index, spec.repo_dir("main") / "APKINDEX.tar.gz")


def locked(repo: Repo, name: str, **kw: object) -> Locked:
    b = repo.built[name]
    lk = Locked(name, b.package.version, b.checksum, "main", len(b.apk), b.package.build_time)
    return replace(lk, **kw)  # type: ignore[arg-type]


def write_lock(spec: RootfsSpec, pkgs: list[Locked]) -> None:
    assert spec.lockfile is not None
    spec.lockfile.parent.mkdir(parents=True, exist_ok=True)
    spec.lockfile.write_text(json.dumps(lock_document(spec, pkgs)))


@pytest.fixture
def builder(tmp_path: Path, repo: Repo) -> Iterator[Builder]:
    spec = make_spec(tmp_path, repo)
    seed_index(spec, repo)
    b = Builder(spec, Runner(), Fetcher(offline=True), check_mode=True)
    try:
        b.load_indexes()
        yield b
    finally:
        b.close()


# ---------------------------------------------------------------------------------------------- indexes


def test_offline_without_a_cached_index_says_how_to_fill_the_cache(tmp_path: Path, repo: Repo) -> None:
    spec = make_spec(tmp_path, repo)
    b = Builder(spec, Runner(), Fetcher(offline=True))
    with pytest.raises(FetchError) as err:
        b.load_indexes()
    b.close()
    assert str(err.value) == (
        f"no cached index for repository 'main' of Alpine 3.23 ({spec.repo_dir('main')}/APKINDEX.tar.gz) and "
        f"netboot_offline is true: run the build online once to fill {tmp_path / 'cache'}"
    )


def test_online_index_is_fetched_verified_and_cached(tmp_path: Path, repo: Repo) -> None:
    with serve(repo.mirror) as srv:
        spec = make_spec(tmp_path, repo, offline=False, mirrors=(srv.url,))
        fetcher = Fetcher()
        b = Builder(spec, Runner(), fetcher)
        b.load_indexes()
        b.close()
    cached = spec.repo_dir("main") / "APKINDEX.tar.gz"
    assert cached.read_bytes() == repo.index.read_bytes()
    assert fetcher.log == [f"{srv.url}/v3.23/main/x86_64/APKINDEX.tar.gz"]
    assert sorted(b.indexes["main"].by_name()) == ["alpine-baselayout", "busybox", "musl"]
    assert b.find("busybox", "1.37.0-r30") is not None and b.find("busybox", "1.36.0-r0") is None


def test_check_mode_fetches_the_index_outside_the_cache(tmp_path: Path, repo: Repo) -> None:
    with serve(repo.mirror) as srv:
        spec = make_spec(tmp_path, repo, offline=False, mirrors=(srv.url,))
        b = Builder(spec, Runner(), Fetcher(), check_mode=True)
        b.load_indexes()
        b.close()
    assert "busybox" in b.indexes["main"].by_name()
    assert not (tmp_path / "cache" / "alpine").exists()


def test_an_unreachable_mirror_falls_back_to_the_cached_index_with_a_warning(tmp_path: Path, repo: Repo) -> None:
    spec = make_spec(tmp_path, repo, offline=False, mirrors=("http://127.0.0.1:9/alpine",))
    seed_index(spec, repo)
    b = Builder(spec, Runner(), Fetcher(timeout=5))
    b.load_indexes()
    b.close()
    assert "busybox" in b.indexes["main"].by_name()
    assert len(b.warnings) == 1 and b.warnings[0].endswith(
        f"using the cached index {spec.repo_dir('main')}/APKINDEX.tar.gz instead")


def test_an_index_signed_by_an_untrusted_key_is_rejected_even_with_a_cache(tmp_path: Path, repo: Repo) -> None:
    other = tmp_path / "other-keys"
    other.mkdir()
    (other / "someone-else.rsa.pub").write_bytes(SigningKey.create("someone-else").public_pem())
    with serve(repo.mirror) as srv:
        spec = make_spec(tmp_path, repo, offline=False, mirrors=(srv.url,), extra_keys_dirs=(other,))
        seed_index(spec, repo)
        b = Builder(spec, Runner(), Fetcher())
        with pytest.raises(FetchError) as err:
            b.load_indexes()
        b.close()
    assert "the main index of Alpine 3.23 (x86_64)" in str(err.value)
    assert "rejected and nothing was added to the cache" in str(err.value)


def test_a_release_no_mirror_has_is_a_config_error(tmp_path: Path, repo: Repo) -> None:
    with serve(repo.mirror) as srv:
        spec = make_spec(tmp_path, repo, release="3.22", offline=False, mirrors=(srv.url,))
        b = Builder(spec, Runner(), Fetcher())
        with pytest.raises(ConfigError) as err:
            b.load_indexes()
        b.close()
    assert str(err.value).startswith(
        "no main repository for alpine_release '3.22' / alpine_arch 'x86_64' on any mirror (HTTP 404): check the "
        "release, arch and alpine_repositories.")


# --------------------------------------------------------------------------------------------- lockfile


def test_a_lock_that_fits_is_used_as_is_without_resolving(builder: Builder, repo: Repo) -> None:
    pkgs = [locked(repo, "alpine-baselayout"), locked(repo, "busybox"), locked(repo, "musl")]
    write_lock(builder.spec, pkgs)
    assert builder.packages() == (pkgs, False)
    assert builder.runner.log == []  # apk never ran


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"packages": ("busybox",)}, "requested changed (['alpine-baselayout', 'busybox'] -> ['busybox'])"),
        ({"release": "edge"}, "release changed ('v3.23' -> 'edge')"),
        ({"repositories": ("main", "community")}, "repositories changed (['main'] -> ['main', 'community'])"),
    ],
)
def test_lock_drift_says_what_changed(tmp_path: Path, repo: Repo, builder: Builder, change: dict[str, object],
                                      why: str) -> None:
    write_lock(builder.spec, [locked(repo, "busybox")])
    lock = builder.read_lock()
    assert lock is not None and builder.lock_matches(lock) is None
    drifted = Builder(replace(builder.spec, **change), Runner(), Fetcher(offline=True))  # type: ignore[arg-type]
    assert drifted.lock_matches(lock) == why
    drifted.close()


def test_duplicate_and_reordered_packages_are_not_drift(repo: Repo, builder: Builder) -> None:
    write_lock(builder.spec, [locked(repo, "busybox")])
    lock = builder.read_lock()
    assert lock is not None
    same = replace(builder.spec, packages=("busybox", "alpine-baselayout", "busybox"))
    b = Builder(same, Runner(), Fetcher(offline=True))
    assert b.lock_matches(lock) is None
    b.close()


def test_a_damaged_lockfile_names_the_file(builder: Builder) -> None:
    lf = builder.spec.lockfile
    assert lf is not None
    lf.parent.mkdir(parents=True)
    lf.write_text('{"format": 1, "packages": [')
    with pytest.raises(ConfigError, match=f"lockfile {lf} is not valid JSON .*fix it or delete it to re-resolve"):
        builder.read_lock()
    lf.write_text(json.dumps({"format": 99, "packages": []}))
    with pytest.raises(ConfigError, match=f"lockfile {lf} has an unknown format; delete it or set alpine_update_lock"):
        builder.read_lock()
    lf.unlink()
    assert builder.read_lock() is None


# ----------------------------------------------------------------------------------- where a package comes from


def test_a_locked_version_the_repository_dropped_names_the_package_and_the_fix(builder: Builder, repo: Repo) -> None:
    old = locked(repo, "busybox", version="1.36.1-r2")
    with pytest.raises(NetbootError) as err:
        builder.entry_for(old)
    cached = builder.spec.repo_dir("main") / "busybox-1.36.1-r2.apk"
    assert str(err.value) == (
        f"package busybox is locked at 1.36.1-r2 but the repositories offer 1.37.0-r30, and {cached} is not cached; "
        "set alpine_update_lock: true to re-resolve (or restore the cache)"
    )
    with pytest.raises(NetbootError, match=r"package nano is locked at 8\.0-r0 but the repositories offer no version "
                                           r"of it"):
        builder.entry_for(Locked("nano", "8.0-r0", "Q1xxx", "main", 1, 0))


def test_a_rebuilt_package_with_the_same_version_is_not_silently_taken(builder: Builder, repo: Repo) -> None:
    swapped = locked(repo, "busybox", checksum="Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    with pytest.raises(NetbootError) as err:
        builder.entry_for(swapped)
    assert (f"repository main now has 1.37.0-r30 with checksum {repo.built['busybox'].checksum}, not the locked "
            "Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=") in str(err.value)


def test_a_locked_package_only_the_cache_still_has_is_installed_from_the_cache(tmp_path: Path, repo: Repo) -> None:
    spec = make_spec(tmp_path, repo)
    spec.repo_dir("main").mkdir(parents=True)
    shutil.copy2(repo.moved_index, spec.repo_dir("main") / "APKINDEX.tar.gz")  # upstream moved busybox to -r31
    pkgs = [locked(repo, "alpine-baselayout"), locked(repo, "busybox"), locked(repo, "musl")]
    write_lock(spec, pkgs)
    cached = spec.repo_dir("main") / "busybox-1.37.0-r30.apk"
    b = Builder(spec, Runner(), Fetcher(offline=True), check_mode=True)
    try:
        b.load_indexes()
        with pytest.raises(NetbootError, match=re.escape("package busybox is locked at 1.37.0-r30 but the repositories "
                                                         "offer 1.37.0-r31")):
            b.entry_for(pkgs[1])
        cached.write_bytes(repo.built["busybox"].apk)  # the verified copy an earlier build left in the local mirror
        assert b.entry_for(pkgs[1]) == cached
        _pkgs, _dirty, _manifest, missing = b.plan()
        assert missing == ["alpine-baselayout-3.7.0-r0", "musl-1.2.5-r10"]  # busybox needs no download
        cached.write_bytes(repo.built["musl"].apk)  # a different (validly signed) package under that name
        with pytest.raises(SignatureError, match=f"cached {cached} does not match the lockfile"):
            b.entry_for(pkgs[1])
        assert not cached.exists()  # dropped from the cache
    finally:
        b.close()


def test_a_cached_package_that_fails_verification_offline_is_removed_and_explained(builder: Builder,
                                                                                   repo: Repo) -> None:
    entry = builder.indexes["main"].by_name()["busybox"][0]
    cached = builder.spec.repo_dir("main") / entry.filename
    data = bytearray(repo.built["busybox"].apk)
    data[-40] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match=r"cached .*busybox-1.37.0-r30.apk failed verification and was removed "
                                             r"from the cache: .*Run online \(netboot_offline: false\)"):
        builder.ensure_package("main", entry)
    assert not cached.exists()


def test_ensure_package_fetches_into_the_local_mirror_once(tmp_path: Path, repo: Repo) -> None:
    with serve(repo.mirror) as srv:
        spec = make_spec(tmp_path, repo, offline=False, mirrors=(srv.url,))
        fetcher = Fetcher()
        b = Builder(spec, Runner(), fetcher)
        b.load_indexes()
        entry = b.indexes["main"].by_name()["musl"][0]
        path = b.ensure_package("main", entry)
        again = b.ensure_package("main", entry)
        b.close()
    assert path == again == spec.repo_dir("main") / "musl-1.2.5-r10.apk"
    assert path.read_bytes() == repo.built["musl"].apk
    assert [u.rsplit("/", 1)[1] for u in fetcher.log] == ["APKINDEX.tar.gz", "musl-1.2.5-r10.apk"]


# -------------------------------------------------------------------------------------- plan and manifest


def test_plan_lists_what_must_be_fetched_and_the_build_time(builder: Builder, repo: Repo) -> None:
    pkgs = [locked(repo, "alpine-baselayout"), locked(repo, "busybox"), locked(repo, "musl")]
    write_lock(builder.spec, pkgs)
    shutil.copy2(repo.mirror / RELEASE / "main" / ARCH / "musl-1.2.5-r10.apk", builder.spec.repo_dir("main"))
    got, lock_dirty, manifest, missing = builder.plan()
    assert got == pkgs and lock_dirty is False
    assert missing == ["alpine-baselayout-3.7.0-r0", "busybox-1.37.0-r30"]
    assert manifest["source_date_epoch"] == manifest["build_time"] == 1_700_000_500
    assert manifest["requested"] == ["alpine-baselayout", "busybox"]
    assert manifest["packages"] == [p.as_dict() for p in pkgs]
    assert set(manifest["keys"]) >= {k.name for k in repo.keys.iterdir()}


def test_the_input_digest_moves_with_every_input(builder: Builder, repo: Repo, tmp_path: Path) -> None:
    pkgs = [locked(repo, "busybox")]
    base = builder.manifest(pkgs)["inputs_sha256"]
    assert builder.manifest(pkgs)["inputs_sha256"] == base  # deterministic
    overlay = tmp_path / "overlay"
    (overlay / "etc").mkdir(parents=True)
    (overlay / "etc/motd").write_text("hello\n")
    variants = [
        builder.manifest([locked(repo, "busybox", checksum="Q1other=")]),
        builder.manifest([locked(repo, "busybox"), locked(repo, "musl")]),
    ]
    for change in ({"overlay_dir": overlay}, {"services": (("default", "sshd"),)},
                   {"mirrors": ("http://other.example/alpine",)}):
        b = Builder(replace(builder.spec, **change), Runner(), Fetcher(offline=True))  # type: ignore[arg-type]
        variants.append(b.manifest(pkgs))
        b.close()
    digests = [v["inputs_sha256"] for v in variants]
    assert base not in digests and len(set(digests)) == len(digests)
    (overlay / "etc/motd").write_text("changed\n")
    b = Builder(replace(builder.spec, overlay_dir=overlay), Runner(), Fetcher(offline=True))
    assert b.manifest(pkgs)["inputs_sha256"] != variants[2]["inputs_sha256"]  # overlay content counts
    b.close()


def test_check_mode_build_reports_and_writes_nothing_then_no_change_once_built(tmp_path: Path, repo: Repo) -> None:
    spec = make_spec(tmp_path, repo)
    seed_index(spec, repo)
    pkgs = [locked(repo, "alpine-baselayout"), locked(repo, "busybox"), locked(repo, "musl")]
    write_lock(spec, pkgs)
    assert spec.lockfile is not None
    lock_text = spec.lockfile.read_text()
    out = build(spec, Runner(), Fetcher(offline=True), check_mode=True)
    assert out.changed is True and out.lock_changed is False
    assert out.before == [] and out.after == ["alpine-baselayout-3.7.0-r0", "busybox-1.37.0-r30", "musl-1.2.5-r10"]
    assert out.to_fetch == out.after
    assert not spec.root.exists() and spec.lockfile.read_text() == lock_text
    # the tree a real run would leave: its manifest records the same inputs -> nothing to do
    (spec.root / ROOTFS_MANIFEST).parent.mkdir(parents=True)
    (spec.root / ROOTFS_MANIFEST).write_text(json.dumps(out.manifest))
    again = build(spec, Runner(), Fetcher(offline=True), check_mode=True)
    assert again.changed is False and again.before == again.after
    # another service asked for: the tree must be rebuilt
    more = build(replace(spec, services=(("default", "crond"),)), Runner(), Fetcher(offline=True), check_mode=True)
    assert more.changed is True


def test_a_damaged_rootfs_manifest_stops_the_plan_naming_it(tmp_path: Path, repo: Repo) -> None:
    spec = make_spec(tmp_path, repo)
    seed_index(spec, repo)
    write_lock(spec, [locked(repo, "alpine-baselayout"), locked(repo, "busybox"), locked(repo, "musl")])
    (spec.root / ROOTFS_MANIFEST).parent.mkdir(parents=True)
    (spec.root / ROOTFS_MANIFEST).write_text("{")
    with pytest.raises(NetbootError, match=f"the rootfs manifest {spec.root / ROOTFS_MANIFEST} is not valid JSON"):
        build(spec, Runner(), Fetcher(offline=True), check_mode=True)


@pytest.mark.parametrize(
    "change",
    [{"repository": "../../../outside"}, {"name": "../../outside/x"}, {"version": "1/../../../x"}, {"bogus": 1}],
)
def test_a_lockfile_entry_that_would_be_a_path_outside_the_cache_is_refused(
    tmp_path: Path, builder: Builder, repo: Repo, change: dict[str, object]
) -> None:
    """Issue 17: a lock entry's name, version and repository become cache/ paths (and a failed verify deletes)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x-1.0.apk").write_text("canary\n")
    entry = {**locked(repo, "busybox").as_dict(), **change}
    write_lock(builder.spec, [locked(repo, "alpine-baselayout")])
    assert builder.spec.lockfile is not None
    doc = json.loads(builder.spec.lockfile.read_text())
    doc["packages"].append(entry)
    builder.spec.lockfile.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=f"lockfile {builder.spec.lockfile}: entry .* is not a package of "
                                          "alpine_repositories"):
        builder.plan()
    assert (outside / "x-1.0.apk").read_text() == "canary\n"


def test_an_index_entry_whose_name_is_a_path_is_refused() -> None:
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import SignatureError
    from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apkformat import parse_index_text

    good = "C:Q1abc=\nP:musl\nV:1.2.5-r10\nS:10\n\n"
    assert parse_index_text(good, "idx")[0].filename == "musl-1.2.5-r10.apk"
    for name, version in (("../../x", "1.0-r0"), ("x", "1/../../y"), (".hidden", "1"), ("a b", "1")):
        with pytest.raises(SignatureError, match=r"idx: entry with name .* cannot be a package file name"):
            parse_index_text(f"C:Q1abc=\nP:{name}\nV:{version}\nS:10\n\n", "idx")
