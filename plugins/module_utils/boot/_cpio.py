# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Reproducible newc (``070701``) cpio archives, streamed.

``plan_tree`` walks a root filesystem tree (plus extra entries from a spec: ``/init``, device nodes, config files)
into an ordered list of ``Entry`` objects; ``write_newc`` streams that plan into any binary writer (a compressor)
without ever holding the image in memory.

Reproducibility rules (same inputs -> same bytes, whatever the mtimes on disk, the order ``readdir`` returns, the
umask or the time zone):

* paths are sorted bytewise (like ``LC_ALL=C sort``), which also puts every directory before its children;
* inode numbers are assigned 1, 2, 3 ... in that order; hardlinks share the inode of their first name, carry the
  number of names *inside the archive* as nlink, and the data is stored once, on the last name (GNU cpio's
  convention; the kernel and both cpio implementations accept it);
* owners are numeric; with ``owner="auto"`` the unprivileged builder's uid/gid (the owner of the tree's root, when
  not 0) become 0, with ``owner="root"`` everything is 0:0, with ``owner="keep"`` ids are copied;
* mtimes: with ``mtime="epoch"`` (default) every entry gets ``SOURCE_DATE_EPOCH``, so the bytes do not depend on
  file mtimes at all; with ``mtime="clamp"`` newer mtimes become it and older ones are kept (``tar --clamp-mtime``);
  entries from the spec always get exactly it;
* ``c_devmajor``/``c_devminor`` (the host filesystem's device) are always 0; device nodes keep their own
  major:minor (``c_rdevmajor``/``c_rdevminor``), which is what they are, not where they came from.

Nothing here imports Ansible.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import io
import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError, NetbootError

MAGIC = b"070701"
MAGICS = (MAGIC, b"070702")  # newc, and newc with checksums (read only)
TRAILER = b"TRAILER!!!"
MAX_FIELD = 0xFFFFFFFF
# the newc header after the magic: these 32-bit fields in this order, 8 hex digits each (writer and reader)
FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "size", "devmajor", "devminor", "rdevmajor", "rdevminor",
          "namesize", "check")
CHUNK = 1 << 20  # bytes read / flushed at a time

#: The device nodes the kernel needs before devtmpfs is mounted (it opens /dev/console for init's stdio).
DEFAULT_DEVICES: tuple[dict[str, object], ...] = (
    {"path": "dev/console", "type": "char", "major": 5, "minor": 1, "mode": 0o600},
    {"path": "dev/null", "type": "char", "major": 1, "minor": 3, "mode": 0o666},
)

_TYPES = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "char": stat.S_IFCHR,
    "block": stat.S_IFBLK,
    "fifo": stat.S_IFIFO,
}
_DEFAULT_MODES = {"file": 0o644, "dir": 0o755, "symlink": 0o777, "char": 0o600, "block": 0o600, "fifo": 0o644}


@dataclass
class Entry:
    """One archive member. ``source`` (a file to read) or ``data`` (inline bytes) supply the body."""

    path: bytes  # relative, no leading slash; b"." is the root directory itself
    mode: int  # file type bits | permission bits
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    size: int = 0  # body length written for this entry
    nlink: int = 1
    ino: int = 0
    rdevmajor: int = 0
    rdevminor: int = 0
    source: bytes | None = None
    data: bytes | None = None
    identity: tuple[int, ...] = ()  # (dev, ino, size, mtime_ns, ctime_ns) of the source, for change detection
    link_key: tuple[int, int] | None = None  # hardlink group (st_dev, st_ino) while planning

    @property
    def name(self) -> str:
        return os.fsdecode(self.path)


@dataclass
class Plan:
    """The ordered members of one archive and what produced them."""

    entries: list[Entry] = field(default_factory=list)
    source_date_epoch: int = 0

    @property
    def file_count(self) -> int:
        return sum(1 for e in self.entries if stat.S_ISREG(e.mode))

    def archive_size(self) -> int:
        """Exact size of the uncompressed archive ``write_newc`` will produce."""
        return sum(pad4(110 + len(e.path) + 1) + pad4(e.size) for e in self.entries) + pad4(110 + len(TRAILER) + 1)

    def digest(self, extra: Mapping[str, object] | None = None) -> str:
        """A digest of everything that decides the archive bytes (metadata + identity of every source file).

        Equal digests mean the archive would be identical unless a file's content changed without its size, mtime
        and ctime changing, which a rebuild from packages does not do.
        """
        h = hashlib.sha256()
        h.update(repr(sorted((extra or {}).items())).encode())
        for e in self.entries:
            h.update(
                b"%s\0%d %d %d %d %d %d %d %d %d\0"
                % (e.path, e.mode, e.uid, e.gid, e.mtime, e.size, e.nlink, e.ino, e.rdevmajor, e.rdevminor)
            )
            if e.data is not None:
                h.update(hashlib.sha256(e.data).digest())
            elif e.source is not None:
                h.update(b"%s %r" % (e.source, e.identity))
        return h.hexdigest()


def pad4(n: int) -> int:
    return (n + 3) & ~3


def _field(value: int, what: str, path: bytes) -> int:
    if not 0 <= value <= MAX_FIELD:
        raise NetbootError(
            f"{os.fsdecode(path)}: {what} {value} does not fit the newc cpio format (32-bit field); "
            "files must be smaller than 4 GiB"
        )
    return value


def header(e: Entry) -> bytes:
    """The 110-byte newc header plus NUL-terminated, 4-byte padded name."""
    # devmajor/devminor are never the host's; check is only for 070702
    values = {**vars(e), "devmajor": 0, "devminor": 0, "namesize": len(e.path) + 1, "check": 0}
    hdr = MAGIC + b"".join(b"%08X" % _field(values[n], n, e.path) for n in FIELDS)
    name = e.path + b"\0"
    return hdr + name + b"\0" * (pad4(len(hdr) + len(name)) - len(hdr) - len(name))


def trailer() -> bytes:
    return header(Entry(path=TRAILER, mode=0, nlink=1))


# --------------------------------------------------------------------------------------------------- planning


def _norm_rel(path: str) -> bytes:
    """``/etc//x/`` -> ``etc/x``; refuses ``..`` and empty paths (they would escape the archive root)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise ConfigError(f"extra entry path {path!r} is empty; give a path inside the image such as 'etc/x'")
    if ".." in parts:
        raise ConfigError(f"extra entry path {path!r} contains '..'; paths must stay inside the image")
    return os.fsencode("/".join(parts))


def _excluded(rel: bytes, patterns: Sequence[str]) -> bool:
    name = os.fsdecode(rel)
    return any(fnmatch.fnmatchcase(name, p.strip("/")) for p in patterns)


def scan_tree(root: str | os.PathLike[str], *, source_date_epoch: int, owner: str = "auto", exclude: Sequence[str] = (),
              mtime: str = "epoch") -> list[Entry]:
    """Entries for every path under ``root`` (``root`` itself as ``.``), unsorted and not yet numbered."""
    root_b = os.fsencode(os.fspath(root))
    try:
        top = os.lstat(root_b)
    except OSError as exc:
        raise NetbootError(f"cannot read the image tree {os.fsdecode(root_b)}: {exc.strerror}") from exc
    if not stat.S_ISDIR(top.st_mode):
        raise NetbootError(f"the image tree {os.fsdecode(root_b)} is not a directory")
    if owner not in ("auto", "keep", "root"):
        raise ConfigError(f"owner={owner!r} is not one of auto, keep, root")
    if mtime not in ("epoch", "clamp"):
        raise ConfigError(f"mtime={mtime!r} is not one of epoch, clamp")
    # owner="auto": the builder's own ids (the tree root's) become 0; "keep": none do
    squash = (top.st_uid, top.st_gid) if owner == "auto" else (-1, -1)

    def add(rel: bytes, full: bytes, st: os.stat_result) -> Entry:
        when = max(0, min(int(st.st_mtime), source_date_epoch)) if mtime == "clamp" else source_date_epoch
        ids = (0 if st.st_uid == squash[0] else st.st_uid, 0 if st.st_gid == squash[1] else st.st_gid)
        return _tree_entry(rel, full, st, *((0, 0) if owner == "root" else ids), mtime=when)

    # the image's / is always root-owned 0755, whatever umask or user created the build directory
    out = [dataclasses.replace(add(b".", root_b, top), mode=stat.S_IFDIR | 0o755, uid=0, gid=0)]
    stack = [(b"", root_b)]
    while stack:
        rel_dir, full_dir = stack.pop()
        try:
            with os.scandir(full_dir) as it:
                children = list(it)
        except OSError as exc:
            raise NetbootError(f"cannot list {os.fsdecode(full_dir)}: {exc.strerror}") from exc
        for child in children:
            rel = rel_dir + b"/" + child.name if rel_dir else child.name
            if exclude and _excluded(rel, exclude):
                continue
            st = child.stat(follow_symlinks=False)
            out.append(add(rel, child.path, st))
            if stat.S_ISDIR(st.st_mode):
                stack.append((rel, child.path))
    return out


def _tree_entry(rel: bytes, full: bytes, st: os.stat_result, uid: int, gid: int, *, mtime: int) -> Entry:
    """The entry of one path of the tree: a file's source and identity, a symlink's target, a device's numbers."""
    e = Entry(path=rel, mode=st.st_mode, uid=uid, gid=gid, mtime=mtime)
    if stat.S_ISREG(st.st_mode):
        e.size = st.st_size
        e.source = full
        e.identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if st.st_nlink > 1:
            e.link_key = (st.st_dev, st.st_ino)
    elif stat.S_ISLNK(st.st_mode):
        try:
            e.data = os.readlink(full)
        except OSError as exc:
            raise NetbootError(f"cannot read symlink {os.fsdecode(full)}: {exc.strerror}") from exc
        e.size = len(e.data)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        e.rdevmajor, e.rdevminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return e


def spec_entries(specs: Iterable[Mapping[str, object]], *, source_date_epoch: int) -> list[Entry]:
    """Entries from a spec: ``{path, type, mode, uid, gid, src|content|target, major, minor}``.

    ``type`` is one of file (default), dir, symlink, char, block, fifo. A file takes its bytes from ``src`` (a file
    on the controller) or ``content`` (text); a symlink points at ``target``; char/block need ``major``/``minor``.
    """
    out: list[Entry] = []
    for spec in specs:
        raw_path = spec.get("path")
        if not isinstance(raw_path, str):
            raise ConfigError(f"extra entry {dict(spec)!r} has no 'path'")
        rel = _norm_rel(raw_path)
        kind = str(spec.get("type") or "file")
        if kind not in _TYPES:
            raise ConfigError(f"extra entry {raw_path}: type {kind!r} is not one of {', '.join(_TYPES)}")
        mode = _parse_mode(spec.get("mode"), _DEFAULT_MODES[kind], raw_path)
        e = Entry(
            path=rel,
            mode=_TYPES[kind] | mode,
            uid=_int(spec.get("uid", 0), "uid", raw_path),
            gid=_int(spec.get("gid", 0), "gid", raw_path),
            mtime=source_date_epoch,
        )
        if kind == "file":
            src, content = spec.get("src"), spec.get("content")
            if (src is None) == (content is None):
                raise ConfigError(f"extra entry {raw_path}: give exactly one of 'src' or 'content'")
            if content is not None:
                if not isinstance(content, str | bytes):
                    raise ConfigError(f"extra entry {raw_path}: 'content' must be text")
                e.data = content.encode() if isinstance(content, str) else content
                e.size = len(e.data)
            else:
                full = os.fsencode(os.fspath(str(src)))
                try:
                    st = os.stat(full)
                except OSError as exc:
                    raise NetbootError(f"extra entry {raw_path}: cannot read {src}: {exc.strerror}") from exc
                if not stat.S_ISREG(st.st_mode):
                    raise ConfigError(f"extra entry {raw_path}: src {src} is not a regular file")
                e.source, e.size = full, st.st_size
                e.identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        elif kind == "symlink":
            target = spec.get("target")
            if not isinstance(target, str) or not target:
                raise ConfigError(f"extra entry {raw_path}: a symlink needs a 'target'")
            e.data = os.fsencode(target)
            e.size = len(e.data)
        elif kind in ("char", "block"):
            if spec.get("major") is None or spec.get("minor") is None:
                raise ConfigError(f"extra entry {raw_path}: a {kind} device needs 'major' and 'minor'")
            e.rdevmajor = _int(spec.get("major"), "major", raw_path)
            e.rdevminor = _int(spec.get("minor"), "minor", raw_path)
        out.append(e)
    return out


def _int(value: object, what: str, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"extra entry {path}: {what} {value!r} is not an integer")
    try:
        n = int(value)
    except ValueError as exc:
        raise ConfigError(f"extra entry {path}: {what} {value!r} is not an integer") from exc
    if n < 0:
        raise ConfigError(f"extra entry {path}: {what} {n} is negative")
    return n


def _parse_mode(value: object, default: int, path: str) -> int:
    if value is None:
        return default
    if isinstance(value, int):
        mode = value
    else:
        try:
            mode = int(str(value), 8)
        except ValueError as exc:
            raise ConfigError(f"extra entry {path}: mode {value!r} is not an octal mode like '0755'") from exc
    if not 0 <= mode <= 0o7777:
        raise ConfigError(f"extra entry {path}: mode {value!r} is out of range (0000-7777)")
    return mode


def finalize(entries: Iterable[Entry], *, source_date_epoch: int, implicit_dirs: bool = True) -> Plan:
    """Sort, merge (later entries with the same path win), add missing parents, number inodes, pair hardlinks."""
    by_path: dict[bytes, Entry] = {}
    for e in entries:
        old = by_path.get(e.path)
        if old is not None and stat.S_ISDIR(old.mode) and not stat.S_ISDIR(e.mode):
            prefix = e.path + b"/"
            if any(p.startswith(prefix) for p in by_path):
                raise ConfigError(
                    f"extra entry {e.name} would replace a non-empty directory of the image; remove it from the "
                    "tree or pick another path"
                )
        by_path[e.path] = e
    if implicit_dirs:
        for path in list(by_path):
            if path == b".":
                continue
            parent = os.path.dirname(path)
            while parent and parent not in by_path:
                by_path[parent] = Entry(path=parent, mode=stat.S_IFDIR | 0o755, mtime=source_date_epoch)
                parent = os.path.dirname(parent)
            if parent and not stat.S_ISDIR(by_path[parent].mode):
                raise ConfigError(f"{os.fsdecode(path)}: its parent {os.fsdecode(parent)} is not a directory")
    ordered = sorted(by_path.values(), key=lambda x: (x.path != b".", x.path))
    groups: dict[object, list[Entry]] = {}  # the names of one inode (a hardlink group), numbered in path order
    for e in ordered:
        groups.setdefault(e.link_key or e.path, []).append(e)
    for ino, group in enumerate(groups.values(), 1):
        for member in group:
            member.ino = ino
            member.nlink = 2 if stat.S_ISDIR(member.mode) else len(group)
        for member in group[:-1]:  # data goes on the last name, like GNU cpio
            member.size = 0
    return Plan(entries=ordered, source_date_epoch=source_date_epoch)


def plan_tree(root: str | os.PathLike[str] | None, *, source_date_epoch: int,
              extras: Sequence[Mapping[str, object]] = (), owner: str = "auto", exclude: Sequence[str] = (),
              mtime: str = "epoch") -> Plan:
    """The full plan: the tree (if any), then spec entries overriding same paths."""
    entries = [] if root is None else scan_tree(root, source_date_epoch=source_date_epoch, owner=owner,
                                                exclude=exclude, mtime=mtime)
    return finalize([*entries, *spec_entries(extras, source_date_epoch=source_date_epoch)],
                    source_date_epoch=source_date_epoch)


# ---------------------------------------------------------------------------------------------------- writing


def write_newc(plan: Plan | Sequence[Entry], out: IO[bytes], *, progress: Callable[[int], None] | None = None) -> int:
    """Stream the archive into ``out``; returns the number of bytes written (uncompressed)."""
    entries = plan.entries if isinstance(plan, Plan) else plan
    buf = bytearray()
    written = 0

    def flush() -> None:
        nonlocal written
        if buf:
            out.write(buf)
            written += len(buf)
            buf.clear()
            if progress is not None:
                progress(written)

    for e in entries:
        buf += header(e)
        if e.size:
            if e.data is not None:
                buf += e.data
            elif e.source is not None:
                _copy_body(e, buf, out, flush)
            buf += b"\0" * (pad4(e.size) - e.size)
        if len(buf) >= CHUNK:
            flush()
    buf += trailer()
    flush()
    return written


def _copy_body(e: Entry, buf: bytearray, out: IO[bytes], flush: Callable[[], None]) -> None:
    if e.source is None:
        raise NetbootError(f"cpio entry {e.path.decode(errors='replace')} has neither a source file nor inline data")
    remaining = e.size
    try:
        with open(e.source, "rb", buffering=0) as fh:
            while remaining:
                if len(buf) >= CHUNK:
                    flush()
                chunk = fh.read(min(remaining, CHUNK))
                if not chunk:
                    break
                buf += chunk
                remaining -= len(chunk)
            extra = fh.read(1)
    except OSError as exc:
        raise NetbootError(f"cannot read {os.fsdecode(e.source)}: {exc.strerror}") from exc
    if remaining or extra:
        raise NetbootError(
            f"{os.fsdecode(e.source)} changed size while the archive was written; make sure nothing modifies the "
            "image tree during the build and run it again"
        )


def archive_bytes(plan: Plan | Sequence[Entry]) -> bytes:
    """The whole archive in memory: only for small archives (microcode, test hooks)."""
    bio = io.BytesIO()
    write_newc(plan, bio)
    return bio.getvalue()
