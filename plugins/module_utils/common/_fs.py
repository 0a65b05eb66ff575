# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Generic filesystem helpers: hashing, atomic writes (temp name + fsync + rename) and paths kept inside a root.

Every writer in the collection goes through ``atomic_path``/``atomic_output`` so that a crash or a failed step
leaves the previous good file in place, never a half-written one.

Paths inside a root come in two flavours, both refusing to leave it (``PathEscapeError``):

* ``inside`` — lexical: ``root/rel`` normalised, no symlink looked at (names in an archive, paths of a tree
  already walked);
* ``resolve_in_root`` — the way the image itself will see the path: symlinks followed, absolute targets re-rooted
  at the root, so ``/bin/sh -> /bin/busybox`` resolves inside the tree instead of on the build host.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import NetbootError, PathEscapeError

MAX_LINKS = 40

# Files a stage creates inside the image (by Python or by apk/depmod it runs) get Alpine's modes (0644/0755), not
# whatever umask the builder has: the modules that write into the image set it (make repro checks).
IMAGE_UMASK = 0o022


def sha256_file(path: str | os.PathLike[str]) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    except FileNotFoundError:
        return None
    return h.hexdigest()


def _set_meta(path: str, mode: int, like: os.stat_result | None) -> None:
    if os.path.islink(path):
        return
    if like is None:
        os.chmod(path, mode)
        return
    if os.geteuid() == 0:  # before chmod: chown clears setuid/setgid bits
        os.chown(path, like.st_uid, like.st_gid)
    os.chmod(path, stat.S_IMODE(like.st_mode))
    os.utime(path, ns=(like.st_atime_ns, like.st_mtime_ns))


def _alive(pid: str) -> bool:
    """Whether process ``pid`` can still write: it exists and is not a zombie (a killed writer whose parent died
    too stays a zombie until init reaps it, which can take a while on a loaded machine)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat.rpartition(b")")[2].split()[:1] not in ([b"Z"], [b"X"])  # the state follows "(comm)"


# atomic_path's temp names: ".<dest name>.<writer pid>.<mkstemp's random part>.tmp"
_ATOMIC_TEMP = re.compile(r"\..+\.(\d+)\.[^./]+\.tmp")
_swept: set[str] = set()


def _sweep_atomic_temps(directory: str) -> None:
    """Remove the atomic_path temps in ``directory`` whose writer is gone (what a killed run left; an initramfs temp
    can be large). Once per directory and process: the per-file loops (decompressing, stripping) write hundreds of
    files into one directory, and listing it for each would cost the square of its size."""
    if directory in _swept:
        return
    _swept.add(directory)
    for name in os.listdir(directory):
        m = _ATOMIC_TEMP.fullmatch(name)
        path = os.path.join(directory, name)
        if m and not _alive(m.group(1)) and os.path.isfile(path) and not os.path.islink(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def remove_dead_temps(directory: str | os.PathLike[str], prefix: str) -> list[Path]:
    """Remove the entries ``<prefix><pid>[.-]...`` of ``directory`` (files or trees) whose writer, process ``pid``,
    is gone: what a killed run left behind. A live writer's temp (another build) is kept."""
    removed: list[Path] = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return removed
    for name in names:
        if not name.startswith(prefix):
            continue
        pid = re.match(r"(\d+)(?:[.]|$)", name[len(prefix):])
        if pid is None or _alive(pid.group(1)):
            continue
        path = Path(directory, name)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(
    dest: str | os.PathLike[str],
    mode: int = 0o644,
    *,
    like: os.stat_result | None = None,
    only_if_changed: bool = False,
) -> Iterator[Path]:
    """A temp name beside ``dest`` to put its new content at (write it, or have a command write it).

    When the block ends normally the temp file gets ``mode`` — or, with ``like``, that stat's mode, times and (as
    root) owner — and is renamed over ``dest``; with ``only_if_changed`` it is dropped instead when its bytes equal
    ``dest``'s (``dest`` keeps its inode and times). When the block raises, the temp file is removed and ``dest``
    is untouched."""
    directory = os.path.dirname(os.path.abspath(dest))
    os.makedirs(directory, exist_ok=True)
    _sweep_atomic_temps(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(dest)}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        if not (only_if_changed and sha256_file(tmp) == sha256_file(dest)):
            _set_meta(tmp, mode, like)
            os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_output(
    dest: str | os.PathLike[str],
    mode: int = 0o644,
    *,
    like: os.stat_result | None = None,
    only_if_changed: bool = False,
) -> Iterator[BinaryIO]:
    """A file to write ``dest``'s new content to (``atomic_path`` opened for writing, synced before the rename)."""
    with atomic_path(dest, mode, like=like, only_if_changed=only_if_changed) as tmp, open(tmp, "wb") as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


@contextlib.contextmanager
def replacing_dir(dest: Path) -> Iterator[Path]:
    """``.<dest name>.new-<pid>`` beside ``dest`` (absent: the block makes it) to build ``dest``'s new tree in. When
    the block ends normally it takes ``dest``'s place, the old tree being removed only then; either way no temp is
    left. The temps of killed runs are removed first (a live build's stay)."""
    new, old = (dest.with_name(f".{dest.name}.{kind}-{os.getpid()}") for kind in ("new", "old"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(new, ignore_errors=True)
    for leftover in (f".{dest.name}.new-", f".{dest.name}.old-"):
        remove_dead_temps(dest.parent, leftover)
    try:
        yield new
        if dest.exists():
            dest.rename(old)
        new.rename(dest)
    finally:
        shutil.rmtree(new, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def atomic_symlink(target: str, dest: str | os.PathLike[str]) -> None:
    """Make ``dest`` a symlink to ``target``, replacing whatever ``dest`` was in one rename."""
    with atomic_path(dest) as tmp:
        tmp.unlink()
        os.symlink(target, tmp)


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> bool:
    """Write ``data`` to ``dest`` through a temp file + rename; False (nothing written) when already identical."""
    try:
        with open(dest, "rb") as fh:
            if fh.read(len(data) + 1) == data:
                if (os.stat(dest).st_mode & 0o7777) != mode:
                    os.chmod(dest, mode)
                return False
    except FileNotFoundError:
        pass
    with atomic_output(dest, mode) as out:
        out.write(data)
    return True


def write_if_changed(dest: str | os.PathLike[str], data: bytes, mode: int = 0o644, *,
                     check_mode: bool = False) -> bool:
    """``atomic_write_bytes``; in check mode only whether it would write (nothing written)."""
    return read_or_none(dest) != data if check_mode else atomic_write_bytes(dest, data, mode)


def read_or_none(path: str | os.PathLike[str]) -> bytes | None:
    """``path``'s bytes, or None when it does not exist."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def read_json_object(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when it is absent, unreadable, not JSON or not an object (a record that is
    simply rewritten)."""
    with contextlib.suppress(NetbootError):
        return load_json_object(path, "", "")
    return None


def parse_json_object(raw: bytes | str) -> dict[str, Any] | None:
    """``read_json_object`` for bytes or text already read (a file inside an image, a router's script)."""
    with contextlib.suppress(NetbootError):
        return strict_json_object(raw, "")
    return None


def load_json_object(path: str | os.PathLike[str], what: str, fix: str, *,
                     error: type[NetbootError] = NetbootError) -> dict[str, Any] | None:
    """The JSON object in ``path`` (None: no such file); unreadable, not JSON or not an object raises ``error``."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(f"cannot read {what} {os.fspath(path)}: {exc.strerror}; {fix}") from exc
    return strict_json_object(raw, f"{what} {os.fspath(path)}", fix, error=error)


def strict_json_object(raw: bytes | str, name: str, fix: str = "", *,
                       error: type[NetbootError] = NetbootError) -> dict[str, Any]:
    """``load_json_object`` for bytes or text already read, ``name`` naming where they came from."""
    try:
        data = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError both are
        raise error(f"{name} is not valid JSON ({exc}){fix and '; '}{fix}") from exc
    if not isinstance(data, dict):
        raise error(f"{name} is not a JSON object{fix and '; '}{fix}")
    return data


def dump_json(data: Mapping[str, Any], *, indent: int = 2, ensure_ascii: bool = False) -> bytes:
    """``data`` as sorted, indented JSON plus a newline: the files the collection writes."""
    return (json.dumps(data, indent=indent, sort_keys=True, ensure_ascii=ensure_ascii) + "\n").encode()


def swap_dir(new: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Put the finished directory ``new`` at ``dest``: one rename(2) (renameat2's RENAME_EXCHANGE when ``dest``
    exists, so no moment without a ``dest``), then remove the tree that was there. ``new`` is beside ``dest``."""
    old = f"{os.fspath(new)}.old"
    if not os.path.lexists(dest):
        os.rename(new, dest)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    at_fdcwd, rename_exchange = -100, 2
    if renameat2 is not None and renameat2(at_fdcwd, os.fsencode(new), at_fdcwd, os.fsencode(dest),
                                           rename_exchange) == 0:
        os.rename(new, old)  # now the previous tree
    else:  # no exchange on this system/filesystem: two renames
        os.rename(dest, old)
        os.rename(new, dest)
    shutil.rmtree(old, ignore_errors=True)


def inside(root: str | os.PathLike[str], rel: str | os.PathLike[str]) -> Path:
    """``root/rel`` normalised lexically (a leading ``/`` means the root; no symlink is looked at), refusing a
    ``..`` that climbs above ``root``."""
    base = os.path.normpath(os.path.abspath(root))
    target = os.path.normpath(os.path.join(base, os.fspath(rel).lstrip("/")))
    if target != base and not target.startswith(base.rstrip(os.sep) + os.sep):
        raise PathEscapeError(f"{os.fspath(rel)!r} climbs above the root {base}; give a path inside it")
    return Path(target)


def resolve_in_root(
    root: Path,
    rel: str | PurePosixPath,
    *,
    follow_last: bool = True,
    clamp: bool = False,
    links: list[str] | None = None,
) -> Path:
    """Resolve ``rel`` inside ``root`` as the image sees it: symlinks followed, absolute targets re-rooted at
    ``root``. A ``..`` above the root raises ``PathEscapeError`` (or, with ``clamp``, stays at the root as a chroot
    would); so does a symlink loop. ``links`` collects the symlinks traversed (paths relative to the root)."""
    parts = list(PurePosixPath(rel).parts)
    if parts and parts[0] == "/":
        parts = parts[1:]
    resolved: list[str] = []
    hops = 0
    while parts:
        name = parts.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            if resolved:
                resolved.pop()
            elif not clamp:
                raise PathEscapeError(f"{rel!s} climbs above the root {root}")
            continue
        candidate = root.joinpath(*resolved, name)
        if candidate.is_symlink() and (parts or follow_last):
            hops += 1
            if hops > MAX_LINKS:
                raise PathEscapeError(f"{rel!s}: too many levels of symbolic links under {root}")
            if links is not None:
                links.append("/".join([*resolved, name]))
            target = PurePosixPath(os.readlink(candidate))
            if target.is_absolute():
                resolved = []
                parts = list(target.parts[1:]) + parts
            else:
                parts = list(target.parts) + parts
            continue
        resolved.append(name)
    return root.joinpath(*resolved)
