"""_glibc and the glibc path of _binaries, on real bytes: Debian bookworm's libc6 .deb (the pinned one) and a glibc
program built by the host's gcc with Nomad's library needs. The installed program runs, chrooted into the image
tree, on nothing but the private runtime; so does it after the strip step that runs after the binaries stage."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _debpkg
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fetch import Fetcher
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _audit, _binaries, _elf, _glibc
from tests.fixtures.glibc import PROBE_MARKER, Probe, deb_urls, glibc_probe, pin

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")


@pytest.fixture(scope="module")
def libc6() -> _debpkg.Pin:
    return _debpkg.parse_pin({**pin(), "url": deb_urls()["libc6"]})


@pytest.fixture(scope="module")
def probe() -> Probe:
    return glibc_probe()


def install(root: Path, cache: Path, entries: list[dict[str, object]], libc6: _debpkg.Pin | None,
            runner: Runner | None = None) -> _binaries.InstallResult:
    root.mkdir(parents=True, exist_ok=True)
    return _binaries.install(root, _binaries.parse_binaries(entries), cache, Fetcher(), runner or Runner(),
                             glibc_pin=libc6)


def run_in(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True, check=False, timeout=60)


def test_a_glibc_program_runs_on_the_private_runtime_alone(tmp_path: Path, libc6: _debpkg.Pin,
                                                           probe: Probe) -> None:
    root = tmp_path / "image"
    res = install(root, tmp_path / "cache", [probe.entry()], libc6)
    installed = root / "usr/local/bin/glibc-probe"
    dyn = _elf.dynamic(installed.read_bytes())
    assert dyn is not None and dyn.interp == _glibc.LOADER and dyn.rpath == (_glibc.LIBDIR,)
    assert {"libresolv.so.2", "libm.so.6", "libc.so.6"} <= set(dyn.needed)
    # the runtime: the closure plus glibc's split libraries, byte for byte from the .deb; nothing in /lib or /usr/lib
    libs = {p.name for p in (root / _glibc.LIBDIR.lstrip("/")).iterdir()}
    assert {"ld-linux-x86-64.so.2", "libc.so.6", "libpthread.so.0", "libdl.so.2", "libresolv.so.2", "libm.so.6",
            "librt.so.1"} <= libs, libs
    members = _debpkg.extract(_debpkg.cache_path(libc6, tmp_path / "cache"), ["lib/x86_64-linux-gnu/libc.so.6"])
    assert (root / _glibc.LIBDIR.lstrip("/") / "libc.so.6").read_bytes() == next(iter(members.values()))
    assert not (root / "lib").exists() and not (root / "usr/lib").exists()
    # the record, for the ledger and the SBOM
    rec = res.runtime
    assert rec is not None and rec["purl"] == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64", rec
    assert rec["glibc"] == "2.36" and f"{_glibc.LIBDIR}/libresolv.so.2" in rec["files"]
    assert res.records[0]["runtime"] == "glibc"
    # it runs with nothing but the image tree: the loader, RUNPATH and a dlopen all resolve in the prefix
    out = run_in(root, "/usr/local/bin/glibc-probe")
    assert out.returncode == 0 and PROBE_MARKER in out.stdout, out.stdout + out.stderr
    assert "dlopen libm.so.6 ok" in out.stdout and "glibc 2.36" in out.stdout
    # the audit resolves the binary and the runtime's own libraries against the prefix
    report = _audit.audit(root)
    assert [f for f in report.errors if f.check == "elf_links"] == [], report.errors
    # a rerun changes nothing
    assert not install(root, tmp_path / "cache", [probe.entry()], libc6).changed


def test_the_strip_step_after_the_binaries_stage_leaves_it_working(tmp_path: Path, libc6: _debpkg.Pin,
                                                                   probe: Probe) -> None:
    """strip: false keeps the debug info through the binaries stage; the kernel stage's strip (``--strip-unneeded``
    on every strippable ELF, not the runtime's) then strips the edited binary, which must still run."""
    root = tmp_path / "image"
    install(root, tmp_path / "cache", [probe.entry(strip=False)], libc6)
    binary = root / "usr/local/bin/glibc-probe"
    assert _elf.strippable(binary)
    runtime_before = {p.name: p.read_bytes() for p in (root / _glibc.LIBDIR.lstrip("/")).iterdir()}
    subprocess.run(["strip", "--strip-unneeded", "-p", str(binary)], check=True)
    assert not _elf.strippable(binary)
    out = run_in(root, "/usr/local/bin/glibc-probe")
    assert out.returncode == 0 and PROBE_MARKER in out.stdout, out.stdout + out.stderr
    assert runtime_before == {p.name: p.read_bytes() for p in (root / _glibc.LIBDIR.lstrip("/")).iterdir()}


def test_without_the_runtime_the_audit_names_the_binary_and_its_libraries(tmp_path: Path, libc6: _debpkg.Pin,
                                                                          probe: Probe) -> None:
    root = tmp_path / "image"
    res = install(root, tmp_path / "cache", [probe.entry(runtime="none")], libc6)
    assert res.runtime is None and not (root / _glibc.PREFIX.lstrip("/")).exists()
    errors = [f for f in _audit.audit(root).errors if f.check == "elf_links"]
    assert {f.path for f in errors} == {"/usr/local/bin/glibc-probe"}, errors
    text = " ".join(f.detail for f in errors)
    assert "interpreter /lib64/ld-linux-x86-64.so.2 is not in the image" in text
    assert "needs libresolv.so.2" in text and "needs libm.so.6" in text


def test_no_pin_and_a_too_old_runtime_are_refused_naming_both(tmp_path: Path, libc6: _debpkg.Pin,
                                                              probe: Probe) -> None:
    with pytest.raises(ConfigError, match=r"glibc-probe is linked against glibc.*netboot_deb_pins\.libc6"):
        install(tmp_path / "a", tmp_path / "cache", [probe.entry()], None)
    runtime, _new = _glibc.load(libc6, tmp_path / "cache", ["libc.so.6"], offline=False)
    newer = _elf.Dynamic(_elf.ET_DYN, _elf.EM_X86_64, "/lib64/ld-linux-x86-64.so.2", ("libc.so.6",), (),
                         (("libc.so.6", "GLIBC_2.2.5"), ("libc.so.6", "GLIBC_2.41")))
    with pytest.raises(ConfigError, match=r"nomad: needs glibc 2\.41 \(GLIBC_2\.41\).*is glibc 2\.36"):
        runtime.check("nomad", newer)


def test_offline_uses_the_cache_only(tmp_path: Path, libc6: _debpkg.Pin, probe: Probe) -> None:
    cache = tmp_path / "cache"
    install(tmp_path / "a", cache, [probe.entry()], libc6)
    offline = _binaries.install(tmp_path / "b", _binaries.parse_binaries([probe.entry()]), cache,
                                Fetcher(offline=True), Runner(), glibc_pin=libc6)
    assert offline.fetched == []
    for rel in ("usr/local/bin/glibc-probe", f"{_glibc.LIBDIR.lstrip('/')}/libc.so.6"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_detection_and_runtime_modes(probe: Probe) -> None:
    dyn = _elf.dynamic(probe.path.read_bytes())
    assert _glibc.is_glibc(dyn) and _glibc.required_versions(dyn or _elf.Dynamic(0, 0, None, (), ())) >= {
        "GLIBC_2.2.5", "GLIBC_2.34"}
    musl = _elf.Dynamic(_elf.ET_DYN, _elf.EM_X86_64, "/lib/ld-musl-x86_64.so.1", ("libc.musl-x86_64.so.1",), ())
    assert not _glibc.is_glibc(musl)
    assert _glibc.needs_runtime("glibc", musl, "x") and not _glibc.needs_runtime("none", dyn, "x")
    with pytest.raises(ConfigError, match="runtime 'musl'"):
        _binaries.parse_binaries([{**probe.entry(), "runtime": "musl"}])
    assert _glibc.newest(["GLIBC_2.9", "GLIBC_2.34", "GLIBC_PRIVATE"]) == "GLIBC_2.34"
