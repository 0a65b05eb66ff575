# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""apk-tools: bootstrapping a trusted ``apk.static``, building argv, resolving and installing.

The argv builders are pure (testable without running anything); ``Apk`` runs them through the one ``Runner``.
Paths handed to apk are always absolute: apk resolves a relative ``--keys-dir`` inside ``--root`` and then silently
treats every index as untrusted.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import (
    CommandError,
    ConfigError,
    NetbootError,
    PathEscapeError,
    SignatureError,
    UnpackError,
)
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import resolve_in_root
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._apkformat import (
    IndexEntry,
    Keyring,
    iter_data,
    verify_detached,
    verify_package,
)

_INSTALLING = re.compile(r"^\(\s*\d+/\d+\)\s+(?:Installing|Upgrading|Replacing)\s+(\S+)\s+\((\S+?)(?:\s+->\s+(\S+))?\)")
_NO_SUCH = re.compile(r"^\s+(\S+?)(?:[<>=~].*)? \(no such package\):", re.M)


@dataclass(frozen=True)
class ApkContext:
    """Everything apk needs besides the command: all absolute paths."""

    root: Path
    keys_dir: Path
    repositories_file: Path
    arch: str

    def __post_init__(self) -> None:
        for name in ("root", "keys_dir", "repositories_file"):
            if not getattr(self, name).is_absolute():
                raise ConfigError(f"apk {name} must be an absolute path, got {getattr(self, name)}")

    def argv(self, apk: list[str], *args: str) -> list[str]:
        return [
            *apk,
            "--root", str(self.root),
            "--keys-dir", str(self.keys_dir),
            "--repositories-file", str(self.repositories_file),
            "--arch", self.arch,
            "--no-network",
            "--no-progress",
            "--no-interactive",
            *args,
        ]


def parse_installing(output: str) -> list[tuple[str, str]]:
    """``(n/m) Installing name (version)`` lines of ``apk add [--simulate]`` -> [(name, version)]."""
    return [(m.group(1), m.group(3) or m.group(2)) for line in output.splitlines() if (m := _INSTALLING.match(line))]


def unknown_packages(output: str) -> list[str]:
    return sorted(set(_NO_SUCH.findall(output)))


_APK_ERROR = re.compile(r"^ERROR: (\S+): (.+)$", re.M)
# apk errors that say nothing about the package itself (it stays in the cache)
_NOT_THE_PACKAGE = ("No space left", "Permission denied", "Read-only file system", "script exited")


def apk_refusals(output: str, packages: list[str]) -> dict[str, str]:
    """``ERROR: <name>-<version>: <why>`` lines of ``apk add`` for the given ``name-version`` strings -> why."""
    wanted = set(packages)
    return {
        m.group(1): m.group(2).strip()
        for m in _APK_ERROR.finditer(output)
        if m.group(1) in wanted and not any(s in m.group(2) for s in _NOT_THE_PACKAGE)
    }


def suspect_members(path: Path, keyring: Keyring, expected: IndexEntry) -> list[str]:
    """Members of a package's data apk refuses without naming them: absolute names, ``..``, special files."""
    out = []
    pkg = verify_package(path, keyring, expected)
    for member, _tf in iter_data(path, pkg):
        parts = PurePosixPath(member.name).parts
        if member.name.startswith("/") or ".." in parts:
            out.append(f"{member.name!r} (a path leaving the root)")
        elif member.islnk() and (member.linkname.startswith("/") or ".." in PurePosixPath(member.linkname).parts):
            out.append(f"{member.name!r} (a hardlink to {member.linkname!r})")
        elif member.ischr() or member.isblk() or member.isfifo():
            out.append(f"{member.name!r} (a device node or fifo)")
    return out


@dataclass
class Apk:
    argv0: list[str]
    version: str
    runner: Runner

    def resolve(self, ctx: ApkContext, packages: list[str]) -> list[tuple[str, str]]:
        """The package set a fresh install of ``packages`` selects (apk's own solver, ``--simulate``)."""
        ctx.root.mkdir(parents=True, exist_ok=True)
        self.runner.run(ctx.argv(self.argv0, "add", "--initdb", "--no-scripts"), what="apk (empty database)")
        proc = self.runner.run(ctx.argv(self.argv0, "add", "--simulate", *packages), check=False)
        text = proc.stdout + proc.stderr
        if proc.returncode != 0:
            missing = unknown_packages(text)
            if missing:
                raise ConfigError(
                    f"unknown package(s) in alpine_packages: {', '.join(missing)} — not in any configured repository "
                    f"(check the spelling, alpine_release and alpine_repositories)"
                )
            raise CommandError(
                "apk could not resolve alpine_packages:\n" + text.strip()[-2000:], proc.args, proc.returncode,
                proc.stdout, proc.stderr,
            )
        return parse_installing(proc.stdout)

    def install(self, ctx: ApkContext, targets: list[str]) -> str:
        proc = self.runner.run(ctx.argv(self.argv0, "add", "--initdb", *targets), check=False, what="apk add")
        if proc.returncode != 0:
            errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR" in ln]
            raise CommandError(
                f"apk add into {ctx.root} failed (exit {proc.returncode}):\n" + "\n".join(errors[-20:]),
                proc.args, proc.returncode, proc.stdout, proc.stderr,
            )
        return proc.stdout


def apk_version(runner: Runner, argv0: list[str], what: str) -> str:
    proc = runner.run([*argv0, "--version"], what=f"{what} --version")
    m = re.match(r"apk-tools (\S+?),?(\s|$)", proc.stdout.strip())
    if not m:
        raise NetbootError(f"{what} does not look like apk-tools: --version printed {proc.stdout.strip()!r}")
    return m.group(1)


def user_apk(runner: Runner, path: str) -> Apk:
    p = Path(path)
    if not p.is_file() or not os.access(p, os.X_OK):
        raise ConfigError(f"alpine_apk_binary {path!r} is not an executable file")
    argv0 = [str(p.resolve())]
    return Apk(argv0, apk_version(runner, argv0, f"alpine_apk_binary {path}"), runner)


def _check_link(dest: Path, link_dir: Path, linkname: str, what: str) -> None:
    """A symlink member is written only when it points inside ``dest`` as the host kernel would follow it (the
    tree is used on the build host, where an absolute target means the host's own files)."""
    if linkname.startswith("/"):
        raise PathEscapeError(f"{what}: its target {linkname!r} is absolute and would point outside {dest}")
    try:
        resolve_in_root(dest, str(PurePosixPath(link_dir.relative_to(dest).as_posix()) / linkname))
    except PathEscapeError as exc:
        raise PathEscapeError(f"{what}: its target {linkname!r} leaves {dest} ({exc})") from exc


def extract_package(path: Path, keyring: Keyring, expected: IndexEntry, dest: Path) -> None:
    """Verify and unpack a package's files (regular files, dirs, symlinks and hardlinks that stay inside ``dest``)
    under ``dest``. Anything else (device nodes, fifos, a link leaving ``dest``) raises ``UnpackError`` or
    ``PathEscapeError`` naming the member; set-id bits are dropped."""
    pkg = verify_package(path, keyring, expected)
    what = f"package {path.name}"
    for member, tf in iter_data(path, pkg):
        here = f"{what}: member {member.name!r}"
        try:  # through the symlinks already unpacked (all checked to stay inside dest)
            target = resolve_in_root(dest, member.name, follow_last=False)
        except PathEscapeError as exc:
            raise PathEscapeError(f"{here} would be written outside {dest} ({exc})") from exc
        if target == dest:
            if member.isdir():
                continue
            raise UnpackError(f"{here} would replace the unpack root {dest}")
        if not (member.isdir() or member.issym() or member.islnk() or member.isfile()):
            raise UnpackError(f"{here} is a device node, fifo or other special file; refusing to unpack it")
        if target.is_symlink() and not member.isdir():
            target.unlink()
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
        elif member.issym():
            _check_link(dest, target.parent, member.linkname, f"{here} is a symlink and")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(member.linkname)
        elif member.islnk():
            try:
                source = resolve_in_root(dest, member.linkname, follow_last=False)
            except PathEscapeError as exc:
                raise PathEscapeError(f"{here} is a hardlink to {member.linkname!r} outside {dest} ({exc})") from exc
            if source.is_symlink() or not source.is_file():
                raise UnpackError(f"{here} is a hardlink to {member.linkname!r}, which is not a file unpacked before")
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            os.link(source, target, follow_symlinks=False)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(member)
            if src is None:
                continue
            with target.open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            target.chmod(stat.S_IMODE(member.mode) & 0o755)
    # a later member can change what an earlier link means: check every link of the finished tree once more
    for top, dirs, files in os.walk(dest):
        for name in dirs + files:
            link = Path(top) / name
            if link.is_symlink():
                _check_link(dest, link.parent, os.readlink(link), f"{what}: symlink {link.relative_to(dest)}")


VERIFIED_MARKER = ".verified"  # written by us (never through a link) into a checked apk-tools unpack


def _is_verified(dest: Path) -> bool:
    marker = dest / VERIFIED_MARKER
    return not dest.is_symlink() and not marker.is_symlink() and marker.is_file()


def _write_marker(tmp: Path, text: str, what: str) -> None:
    """Create the marker as a new file; a package that brought its own (a link to a host file, say) is refused."""
    try:
        fd = os.open(tmp / VERIFIED_MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError as exc:
        raise UnpackError(f"{what} ships its own {VERIFIED_MARKER}; refusing it") from exc
    with os.fdopen(fd, "w") as out:
        out.write(text)


def bootstrap_static(
    runner: Runner, keyring: Keyring, entry: IndexEntry, apk_file: Path, tools_dir: Path
) -> Apk:
    """Unpack ``apk-tools-static`` (already fetched and verified into the cache) under ``tools_dir/<version>``,
    check ``sbin/apk.static``'s own detached signature and its ``--version``; reuse a previous good unpack.

    A package refused while unpacking or checking is removed from the cache (``apk_file``), so the next online run
    fetches it again; the error says so."""
    dest = tools_dir / f"{entry.version}-{entry.checksum[2:10].replace('/', '_').replace('+', '-')}"
    apk_static = dest / "sbin" / "apk.static"
    if not _is_verified(dest):
        tmp = dest.with_name(dest.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            _unpack_static(runner, keyring, entry, apk_file, tmp)
            _write_marker(tmp, f"{entry.name} {entry.version} {entry.checksum}\n", f"package {apk_file.name}")
            shutil.rmtree(dest, ignore_errors=True)
            tmp.rename(dest)
        except (PathEscapeError, UnpackError, SignatureError) as exc:
            evicted = _evict(apk_file)
            raise type(exc)(f"{exc}{evicted}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    argv0 = [str(apk_static)]
    return Apk(argv0, apk_version(runner, argv0, "cached apk.static"), runner)


def _evict(apk_file: Path) -> str:
    """Remove a refused package from the cache; the sentence to append to the error."""
    try:
        apk_file.unlink()
    except FileNotFoundError:
        return ""
    return f"; {apk_file} was removed from the cache, the next online run fetches it again"


def _unpack_static(runner: Runner, keyring: Keyring, entry: IndexEntry, apk_file: Path, tmp: Path) -> None:
    extract_package(apk_file, keyring, entry, tmp)
    if os.path.lexists(tmp / VERIFIED_MARKER):
        raise UnpackError(f"package {apk_file.name} ships its own {VERIFIED_MARKER}; refusing it")
    binary = tmp / "sbin" / "apk.static"
    sigs = sorted((tmp / "sbin").glob("apk.static.SIGN.RSA.*"))
    if not binary.is_file() or not sigs:
        raise SignatureError(f"{apk_file.name} has no sbin/apk.static with a .SIGN.RSA signature beside it")
    # the newest signature form first (sha256), older releases sign with SHA-1
    sig = next((s for s in sigs if ".SIGN.RSA.sha256." in s.name), sigs[0])
    verify_detached(keyring, f"{apk_file.name}: sbin/apk.static", binary, sig.name, sig.read_bytes())
    got = apk_version(runner, [str(binary)], f"apk.static from {apk_file.name}")
    upstream = entry.version.rsplit("-r", 1)[0]
    if got not in (entry.version, upstream):
        raise SignatureError(
            f"apk.static from {apk_file.name} reports version {got}, expected {entry.version}: refusing it"
        )


def world_entries(packages: list[str]) -> str:
    return "".join(f"{p}\n" for p in sorted(set(packages)))
