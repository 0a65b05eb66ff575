"""Generic filesystem helpers: hashing, atomic writes (temp name + fsync + rename) and paths kept inside a root.

Every writer in the collection goes through ``atomic_output`` so that a crash or a failed step leaves the previous
good file in place, never a half-written one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ansible_collections.homelab.alpine_netboot.plugins.module_utils._errors import PathEscapeError


def sha256_file(path: str | os.PathLike[str]) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    except FileNotFoundError:
        return None
    return h.hexdigest()


def _same_mode(dest: str | os.PathLike[str], mode: int) -> None:
    if (os.stat(dest).st_mode & 0o7777) != mode:
        os.chmod(dest, mode)


@contextlib.contextmanager
def atomic_output(dest: str | os.PathLike[str], mode: int = 0o644) -> Iterator[BinaryIO]:
    """A file to write ``dest``'s new content to: a temp name beside it, synced and renamed over ``dest`` when the
    block ends normally; removed (``dest`` untouched) when it raises."""
    directory = os.path.dirname(os.path.abspath(dest))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(dest)}.", suffix=".tmp")
    done = False
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
        done = True
    finally:
        if not done:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> bool:
    """Write ``data`` to ``dest`` through a temp file + rename; False (nothing written) when already identical."""
    try:
        with open(dest, "rb") as fh:
            if fh.read(len(data) + 1) == data:
                _same_mode(dest, mode)
                return False
    except FileNotFoundError:
        pass
    with atomic_output(dest, mode) as out:
        out.write(data)
    return True


def atomic_copy(src: str | os.PathLike[str], dest: str | os.PathLike[str], mode: int = 0o644) -> bool:
    """Copy ``src`` to ``dest`` (temp + rename) unless the bytes are already the same."""
    if sha256_file(src) == sha256_file(dest):
        _same_mode(dest, mode)
        return False
    with atomic_output(dest, mode) as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)
    return True


def inside(root: str | os.PathLike[str], rel: str) -> Path:
    """``root/rel``, refusing anything that resolves outside ``root``."""
    base = Path(root).resolve()
    target = (base / rel.lstrip("/")).resolve()
    if target != base and base not in target.parents:
        raise PathEscapeError(f"{rel!r} resolves to {target}, outside {base}; give a path inside the image")
    return target
