"""_binaries: pinned extra binaries over real HTTP: fetched, cached, stripped, offline rebuild identical."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, FetchError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fetch import Fetcher
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _binaries, _elf
from tests.fixtures.apkrepo import serve

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build a program with debug info")


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d = tmp_path_factory.mktemp("prog")
    (d / "hello.c").write_text('#include <stdio.h>\nint main(void){puts("hello");return 0;}\n')
    subprocess.run(["gcc", "-g", "-O0", "-o", str(d / "hello"), str(d / "hello.c")], check=True)
    return (d / "hello").read_bytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def archives(srv: Path, program: bytes) -> dict[str, bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("hello-1.0/hello")
        info.size, info.mode = len(program), 0o755
        tf.addfile(info, io.BytesIO(program))
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("hello", program)
    out = {"hello-1.0.tar.gz": buf.getvalue(), "hello.zip": zbuf.getvalue(), "hello": program}
    for name, data in out.items():
        (srv / name).write_bytes(data)
    return out


def test_fetched_cached_stripped_and_offline_rebuild_identical(tmp_path: Path, program: bytes) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    files = archives(srv, program)
    root, cache = tmp_path / "root", tmp_path / "cache"
    root.mkdir()
    with serve(srv) as http:
        spec = _binaries.parse_binaries([
            {"name": "hello", "url": f"{http.url}/hello-1.0.tar.gz", "sha256": sha(files["hello-1.0.tar.gz"]),
             "dest": "/usr/bin/hello", "runtime": "none"},
            {"name": "hello", "url": f"{http.url}/hello.zip", "sha256": sha(files["hello.zip"]),
             "dest": "/usr/local/bin/hello-zip", "runtime": "none"},
            {"name": "hello", "url": f"{http.url}/hello", "sha256": sha(files["hello"]), "dest": "/opt/hello",
             "strip": False, "runtime": "none"},
        ])  # the host's glibc program, run on the host below: no private runtime (tests/.../test_glibc.py)
        first = _binaries.install(root, spec, cache, Fetcher(), Runner())
        assert len(first.fetched) == 3 and first.changed
        assert sorted(p.name.split("-", 1)[1] for p in (cache / "binaries").iterdir()) == \
            ["hello", "hello-1.0.tar.gz", "hello.zip"]
        again = _binaries.install(root, spec, cache, Fetcher(), Runner())
        assert not again.changed and again.fetched == [] and len(http.requests) == 3
    installed = (root / "usr/bin/hello").read_bytes()
    assert len(installed) < len(program) and not _elf.strippable(root / "usr/bin/hello")
    assert _elf.strippable(root / "opt/hello")  # strip: false keeps the debug info
    assert (root / "usr/bin/hello").stat().st_mode & 0o777 == 0o755
    assert subprocess.run([str(root / "usr/bin/hello")], capture_output=True, text=True, check=True).stdout == "hello\n"
    record = _binaries.read_record(root)
    assert record is not None and record[0]["url"].endswith("hello-1.0.tar.gz")
    assert record[0]["sha256"] == sha(files["hello-1.0.tar.gz"]) and record[0]["installed_sha256"] == sha(installed)
    # offline, from the cache alone, into a fresh tree: the same bytes
    root2 = tmp_path / "root2"
    root2.mkdir()
    offline = _binaries.install(root2, spec, cache, Fetcher(offline=True), Runner())
    assert offline.fetched == []
    for rel in ("usr/bin/hello", "usr/local/bin/hello-zip", "opt/hello", _binaries.RECORD):
        assert (root2 / rel).read_bytes() == (root / rel).read_bytes(), rel


def test_wrong_sha256_fails_naming_the_file_and_both_digests(tmp_path: Path, program: bytes) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    files = archives(srv, program)
    wrong = "0" * 64
    root, cache = tmp_path / "root", tmp_path / "cache"
    root.mkdir()
    with serve(srv) as http:
        spec = _binaries.parse_binaries([{"name": "hello", "url": f"{http.url}/hello.zip", "sha256": wrong,
                                          "dest": "/usr/bin/hello"}])
        with pytest.raises(FetchError) as err:
            _binaries.install(root, spec, cache, Fetcher(), Runner())
    msg = str(err.value)
    assert "hello.zip" in msg and wrong in msg and sha(files["hello.zip"]) in msg
    assert list((cache / "binaries").iterdir()) == [] and not (root / "usr/bin/hello").exists()


@pytest.mark.parametrize(("item", "words"), [
    ({"name": "x", "url": "ftp://h/x", "sha256": "0" * 64, "dest": "/usr/bin/x"}, ["url"]),
    ({"name": "x", "url": "http://h/x", "sha256": "abc", "dest": "/usr/bin/x"}, ["sha256", "64 hex"]),
    ({"name": "x", "url": "http://h/x", "sha256": "0" * 64, "dest": "usr/bin/x"}, ["dest", "absolute"]),
    ({"name": "x", "url": "http://h/x", "sha256": "0" * 64, "dest": "/x", "mode": 1}, ["unknown key", "mode"]),
])
def test_bad_entries_name_the_binary_and_key(item: dict[str, object], words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        _binaries.parse_binaries([item])
    for w in words:
        assert w in str(err.value)
