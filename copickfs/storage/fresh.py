"""A remote overlay's directory listings kept for a short time (`FreshLayer`).

The union asks the overlay about several names per path component (the entry, the opaque
marker ``.wh..wh..opq``, the whiteout ``.wh.NAME``): on an object store each is a HEAD
(plus a listing for a miss). `FreshLayer` answers them from one listing of the parent
directory, taken with attributes (`scan`: one delimiter listing on S3) and kept ``ttl``
seconds: a name in it is its `Stat`, a name missing from it is absent, at no request.

Freshness rules:

- Overlay metadata on an object store has a short time-to-live: another machine may write
  it. A change made elsewhere is seen within ``ttl`` seconds (a listing is never served
  older than that), not necessarily before.
- This process's own changes are seen at once: every changing call through the layer
  (create, touch, mkdir, remove, rmdir, rename, truncate, symlink, link, mknod, chmod,
  chown, utime, opening for writing, and the close of a file opened for writing) drops the
  affected directories' listings before it returns: the parent of each path named, both
  parents for a rename and, when a directory is renamed or removed, every listing below it.
  A listing taken while a change was being made is not kept (a generation counter).
- Files staged locally by a `StagedLayer` (their size changes as they are written) are
  never answered from a listing: their stat is always the inner layer's.
- ``ttl=0`` turns the cache off: every call goes to the inner layer.

Bounds: at most ``max_dirs`` listings (least recently used dropped first); a directory of
more than `MAX_ENTRIES` entries is not kept (only the fact that it is big, so its children
are stat-ed by the inner layer, one request each, as without this layer). Directories are
stat-ed with the listing's attributes: on S3 a directory's time is then the layer's fixed
epoch rather than its marker object's time. Concurrent misses of one directory may each
list it once. Thread-safe.

A change made beneath this layer (on ``inner`` or its filesystem directly) is seen after
``ttl`` at the latest, or at once after `invalidate`.
"""

from __future__ import annotations

import os
import posixpath
import stat as S
import threading
import time
from collections import OrderedDict
from typing import IO, Any

from ..union import markers
from ..union.layers import Layer
from ..union.openfile import OpenFile
from ..union.stat import Stat

#: Directories with more entries than this are not kept (memory bound): see the module doc.
MAX_ENTRIES = 5000

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class _Listing:
    """One directory as listed: ``entries`` None when it is not a directory; ``big`` when it
    had too many entries to keep (``entries`` then empty in the cache); ``volatile`` the
    names staged locally when it was listed (never answered from here)."""

    __slots__ = ("expires", "entries", "big", "volatile")

    def __init__(self, expires: float, entries: dict[str, Stat] | None, big: bool = False,
                 volatile: frozenset[str] = frozenset()) -> None:
        self.expires = expires
        self.entries = entries
        self.big = big
        self.volatile = volatile


class FreshLayer(Layer):
    """``inner`` (a remote overlay: `FsspecLayer` or `StagedLayer`) with its directory
    listings kept ``ttl`` seconds (at most ``max_dirs`` of them); see the module doc."""

    def __init__(self, inner: Layer, ttl: float = 1.0, max_dirs: int = 10_000) -> None:
        super().__init__(inner.fs, inner.root)
        self.inner = inner
        self.ttl = float(ttl)
        self.max_dirs = max(1, int(max_dirs))
        self._lock = threading.Lock()
        self._dirs: OrderedDict[str, _Listing] = OrderedDict()
        self._generation = 0

    def __repr__(self) -> str:
        return f"FreshLayer({self.inner!r}, ttl={self.ttl})"

    # ------------------------------------------------------------ what the union reads

    @property
    def is_local(self) -> bool:  # type: ignore[override]
        return self.inner.is_local

    @property
    def serves_descriptors(self) -> bool:
        return bool(getattr(self.inner, "serves_descriptors", False))

    @property
    def object_store(self) -> bool:
        return bool(getattr(self.inner, "object_store", False))

    @property
    def area(self) -> Any:
        """The inner layer's `StagingArea` (`close_union` flushes it), None if it has none."""
        return getattr(self.inner, "area", None)

    def url(self, path: str = "") -> str:
        return self.inner.url(path)

    # ------------------------------------------------------------ the cache

    def invalidate(self, path: str | None = None, below: bool = False) -> None:
        """Drop the listing of directory ``path`` (every listing when None; with ``below``,
        also those of every directory under it)."""
        with self._lock:
            self._generation += 1
            if path is None:
                self._dirs.clear()
                return
            self._dirs.pop(path, None)
            if below:
                prefix = path + "/" if path else ""
                for key in [k for k in self._dirs if k.startswith(prefix)]:
                    del self._dirs[key]

    def _changed(self, *paths: str, below: bool = False) -> None:
        """``paths`` were made, changed or removed: drop their parents' listings (and, with
        ``below``, every listing under the paths themselves)."""
        with self._lock:
            self._generation += 1
            for path in paths:
                self._dirs.pop(posixpath.dirname(path), None)
                self._dirs.pop(path, None)  # "not a directory" may be kept for it
                if below:
                    prefix = path + "/" if path else ""
                    for key in [k for k in self._dirs if k.startswith(prefix)]:
                        del self._dirs[key]

    def _scan(self, path: str) -> dict[str, Stat] | None:
        scan = getattr(self.inner, "scan", None)
        if scan is not None:
            return scan(path)
        names = self.inner.listdir(path)
        if names is None:
            return None
        entries: dict[str, Stat] = {}
        for name in names:
            st = self.inner.stat(posixpath.join(path, name) if path else name)
            if st is not None:
                entries[name] = st
        return entries

    def _staged_names(self, path: str) -> frozenset[str]:
        """Names in directory ``path`` with something staged at or below them."""
        area = self.area
        if area is None:
            return frozenset()
        base = self.inner.url(path).rstrip("/") + "/"
        return frozenset(u[len(base):].partition("/")[0] for u in area.staged_urls(base.rstrip("/"))
                         if u.startswith(base))

    def _staged(self, path: str) -> bool:
        area = self.area
        return area is not None and area.staged_stat(self.inner.url(path)) is not None

    def _listing(self, path: str) -> _Listing:
        """Directory ``path`` as listed at most ``ttl`` seconds ago (listing it now if need be)."""
        now = time.monotonic()
        with self._lock:
            found = self._dirs.get(path)
            if found is not None:
                if found.expires > now:
                    self._dirs.move_to_end(path)
                    return found
                del self._dirs[path]
            generation = self._generation
        entries = self._scan(path)
        big = entries is not None and len(entries) > MAX_ENTRIES
        listing = _Listing(now + self.ttl, entries, big, self._staged_names(path) if entries else frozenset())
        kept = _Listing(listing.expires, {}, True) if big else listing
        with self._lock:
            if self._generation == generation:  # nothing changed while it was listed
                self._dirs[path] = kept
                self._dirs.move_to_end(path)
                while len(self._dirs) > self.max_dirs:
                    self._dirs.popitem(last=False)
        return listing

    # ------------------------------------------------------------ reading

    def stat(self, path: str) -> Stat | None:
        if not path or self.ttl <= 0 or self._staged(path):
            return self.inner.stat(path)
        parent, _, name = path.rpartition("/")
        listing = self._listing(parent)
        if listing.entries is None:
            return None  # the parent is no directory: nothing is below it
        if name in listing.volatile or (listing.big and name not in listing.entries):
            return self.inner.stat(path)
        st = listing.entries.get(name)
        if st is not None and st.is_dir and markers.is_reserved(name):
            return None  # as the inner layer: a reserved name is a marker file or nothing
        return st

    def scan(self, path: str) -> dict[str, Stat] | None:
        if self.ttl <= 0:
            return self._scan(path)
        listing = self._listing(path)
        if listing.big and not listing.entries:
            return self._scan(path)
        if listing.entries is None:
            return None
        if not listing.volatile:
            return dict(listing.entries)
        return {name: (self.inner.stat(posixpath.join(path, name) if path else name) or st)
                if name in listing.volatile else st for name, st in listing.entries.items()}

    def listdir(self, path: str) -> dict[str, int] | None:
        if self.ttl <= 0:
            return self.inner.listdir(path)
        listing = self._listing(path)
        if listing.big and not listing.entries:
            return self.inner.listdir(path)
        if listing.entries is None:
            return None
        return {name: S.S_IFMT(st.mode) for name, st in listing.entries.items()}

    def readlink(self, path: str) -> str:
        return self.inner.readlink(path)

    def statfs(self) -> dict[str, int]:
        return self.inner.statfs()

    def open_dir(self, path: str) -> int | None:
        return self.inner.open_dir(path)

    def listdir_at(self, fd: int) -> dict[str, int]:
        return self.inner.listdir_at(fd)

    def stat_at(self, fd: int, name: str) -> Stat | None:
        return self.inner.stat_at(fd, name)

    def temp_path(self, path: str) -> str:
        return self.inner.temp_path(path)

    # ------------------------------------------------------------ opening

    def open(self, path: str, mode: str) -> IO[bytes]:
        how = mode.replace("b", "").replace("t", "")
        if how == "r":
            return self.inner.open(path, mode)
        try:
            f = self.inner.open(path, mode)
        finally:
            self._changed(path)
        return _ChangedOnClose(f, lambda: self._changed(path))  # type: ignore[return-value]

    def open_fd(self, path: str, flags: int, mode: int = 0) -> int | None:
        if not flags & _WRITE_FLAGS:
            return self.inner.open_fd(path, flags, mode)
        try:
            return self.inner.open_fd(path, flags, mode)
        finally:
            self._changed(path)

    def open_file(self, path: str, flags: int) -> OpenFile | None:
        if not flags & _WRITE_FLAGS:
            return self.inner.open_file(path, flags)
        try:
            return self.inner.open_file(path, flags)
        finally:
            self._changed(path)

    def open_staged(self, path: str, flags: int) -> Any:
        """The inner `StagedLayer`'s `open_staged` (its copies are never answered from listings)."""
        try:
            return self.inner.open_staged(path, flags)  # type: ignore[attr-defined]
        finally:
            self._changed(path)

    # ------------------------------------------------------------ changing

    def create(self, path: str, mode: int = 0o666, flags: int | None = None) -> int | None:
        try:
            return self.inner.create(path, mode, flags)
        finally:
            self._changed(path)

    def touch(self, path: str) -> None:
        try:
            self.inner.touch(path)
        finally:
            self._changed(path)

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        try:
            self.inner.mkdir(path, mode)
        finally:
            self._changed(path, below=True)

    def remove(self, path: str) -> None:
        try:
            self.inner.remove(path)
        finally:
            self._changed(path, posixpath.dirname(path))  # its parent may have got a marker

    def rmdir(self, path: str) -> None:
        try:
            self.inner.rmdir(path)
        finally:
            self._changed(path, posixpath.dirname(path), below=True)

    def rename(self, src: str, dst: str) -> None:
        try:
            self.inner.rename(src, dst)
        finally:
            self._changed(src, dst, posixpath.dirname(src), below=True)

    def truncate(self, path: str, length: int) -> None:
        try:
            self.inner.truncate(path, length)
        finally:
            self._changed(path)

    def symlink(self, target: str, path: str) -> None:
        try:
            self.inner.symlink(target, path)
        finally:
            self._changed(path)

    def link(self, src: str, dst: str) -> None:
        try:
            self.inner.link(src, dst)
        finally:
            self._changed(src, dst)

    def mknod(self, path: str, mode: int, device: int = 0) -> None:
        try:
            self.inner.mknod(path, mode, device)
        finally:
            self._changed(path)

    def chmod(self, path: str, mode: int) -> None:
        try:
            self.inner.chmod(path, mode)
        finally:
            self._changed(path)

    def chown(self, path: str, uid: int, gid: int) -> None:
        try:
            self.inner.chown(path, uid, gid)
        finally:
            self._changed(path)

    def utime(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        try:
            self.inner.utime(path, atime_ns, mtime_ns)
        finally:
            self._changed(path)

    def clear_work_area(self) -> int:
        try:
            return self.inner.clear_work_area()
        finally:
            self.invalidate()

    def remove_leftovers(self) -> int:
        try:
            return self.inner.remove_leftovers()
        finally:
            self.invalidate()


class _ChangedOnClose:
    """A file opened for writing whose close (when an object store makes the object) drops
    the listings that could miss it."""

    def __init__(self, f: IO[bytes], changed: Any) -> None:
        self._f = f
        self._changed = changed

    def write(self, data: Any) -> int:
        return self._f.write(data)

    def read(self, size: int = -1) -> bytes:
        return self._f.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def flush(self) -> None:
        try:
            self._f.flush()
        finally:
            self._changed()

    def close(self) -> None:
        try:
            self._f.close()
        finally:
            self._changed()

    @property
    def closed(self) -> bool:
        return self._f.closed

    def __enter__(self) -> _ChangedOnClose:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Any:
        return iter(self._f)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)
