"""A remote static layer read through the local block cache.

Why: the static root never changes, so one answer per path is enough for the life of a
mount: attributes and listings are memoized (hits and misses alike, in bounded LRU maps)
and file bytes come from a `BlockCache`, served from local descriptors like a local
layer's. A listing also memoizes the attributes of its entries (an object store's listing
carries them), so a walk costs one request per directory, not one per file. On S3 a lookup
the memo cannot answer lists the parent instead, when one page (1,000 keys) holds all of
it: reading every chunk of a zarr array then costs one request per directory and one GET
per chunk, not a HEAD per chunk too. Larger directories are asked name by name.

Everything that would change the layer fails with EROFS.
"""

from __future__ import annotations

import errno
import io
import os
import posixpath
import stat as S
import threading
from collections import OrderedDict
from typing import IO, Any, NoReturn

from ..union.layers import FsspecLayer, Layer, _stat_from_info
from ..union.openfile import OpenFile
from ..union.reader import PositionalReader
from ..union.stat import Stat
from .blockcache import BlockCache, CachedFile
from .files import protocols

#: A path's memoized lookup: its attributes and content version, or None (nothing there).
Found = tuple[Stat, str] | None

_MISSING = object()
_WRITE_MODES = set("wax+")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
#: Keys one S3 listing request returns at most.
LISTING_PAGE = 1000


class _Memo:
    """A least-recently-used map bounded by total weight (1 per path, or names per listing)."""

    def __init__(self, max_weight: int) -> None:
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._max = max_weight
        self._weight = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return _MISSING
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: str, value: Any, weight: int = 1, replace: bool = True) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None and not replace:
                self._items[key] = old
                return
            self._weight += weight - (old[1] if old else 0)
            self._items[key] = (value, weight)
            while self._weight > self._max and len(self._items) > 1:
                _, (_, dropped) = self._items.popitem(last=False)
                self._weight -= dropped

    def __len__(self) -> int:
        return len(self._items)


def version_of(info: dict[str, Any]) -> str:
    """What names an object's content: its ETag where the storage gives one, else size+mtime."""
    etag = info.get("ETag") or info.get("etag") or info.get("e_tag")
    if etag:
        return "etag:" + str(etag).strip('"')
    st = _stat_from_info(info)
    return f"size-mtime:{st.size}:{st.mtime_ns}"


class _CachedOpenFile(OpenFile):
    """A `CachedFile` as the union's `OpenFile`: `ensure` fetches, nothing to sync or flush."""

    def __init__(self, cached: CachedFile) -> None:
        super().__init__(cached.fd)
        self.cached = cached

    def ensure(self, offset: int, length: int) -> None:
        self.cached.ensure(offset, length)

    def sync(self, data_only: bool = False) -> None:
        """Read-only: nothing to make durable."""

    def close(self) -> None:
        self.cached.close()


class _CachedReader(PositionalReader):
    """File-object reads through a `CachedFile`: ensure the range, then read its descriptor."""

    def __init__(self, cached: CachedFile) -> None:
        super().__init__()
        self._file = cached

    @property
    def size(self) -> int:
        return self._file.size

    def pread(self, size: int, offset: int) -> bytes:
        self._file.ensure(offset, size)
        return os.pread(self._file.fd, size, offset)

    def readinto(self, buffer: Any) -> int:
        """Straight into the caller's buffer (no copy)."""
        view = memoryview(buffer).cast("B")
        n = min(len(view), self._file.size - self._pos)
        if n <= 0:
            return 0
        self._file.ensure(self._pos, n)
        got = os.preadv(self._file.fd, [view[:n]], self._pos)
        self._pos += got
        return got

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class CachedLayer(Layer):
    """A remote layer (`FsspecLayer`) as the read-only static root, through a `BlockCache`."""

    #: No POSIX modes, owners or links: the union treats it as an object store...
    is_local = False
    #: ...whose reads can nonetheless be served from local descriptors (`open_file`).
    serves_descriptors = True

    def __init__(self, inner: FsspecLayer, cache: BlockCache, max_paths: int = 100_000,
                 max_listed_names: int = 1_000_000) -> None:
        super().__init__(inner.fs, inner.root)
        self.inner = inner
        self.cache = cache
        self._found = _Memo(max_paths)
        self._listings = _Memo(max_listed_names)
        self._large = _Memo(10_000)  # directories more than one listing page long
        self._by_page = "s3" in protocols(inner.fs)

    # ------------------------------------------------------------ lookups

    def lookup(self, path: str) -> Found:
        """(attributes, version) of ``path``, or None; asked of the storage once."""
        found = self._found.get(path)
        if found is _MISSING:
            found = self._from_parent(path) if self._by_page and path else _MISSING
            if found is _MISSING:
                found = self._info(path)
            self._found.put(path, found)
        return found

    def _from_parent(self, path: str) -> Found | object:
        """``path``'s lookup answered by its parent's listing (one page listed now if not
        yet), or _MISSING where that cannot tell (a large or evicted directory)."""
        parent, _, name = path.rpartition("/")
        names = self._listings.get(parent)
        if names is _MISSING:
            if self._large.get(parent) is not _MISSING:
                return _MISSING
            names = self._list_page(parent)
            if names is _MISSING:
                self._large.put(parent, True)
                return _MISSING
            if not names:
                return None  # no key below the parent: it is no directory, and has no child
            self._listings.put(parent, names, 1 + len(names))
        if names is None or name not in names:
            return None
        return self._found.get(path)

    def _list_page(self, path: str) -> dict[str, int] | object:
        """Directory ``path`` from one S3 listing request, memoizing its entries' lookups;
        _MISSING if it is longer than a page."""
        bucket, key, _ = self.fs.split_path(self.url(path))
        prefix = f"{key.rstrip('/')}/" if key else ""
        page = self.fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=prefix, Delimiter="/",
                               MaxKeys=LISTING_PAGE)
        if page.get("IsTruncated"):
            return _MISSING
        names: dict[str, int] = {}
        entries = [(c["Key"], {"size": c.get("Size", 0), "type": "file", "ETag": c.get("ETag"),
                               "LastModified": c.get("LastModified")}) for c in page.get("Contents", [])]
        entries += [(p["Prefix"], {"size": 0, "type": "directory"}) for p in page.get("CommonPrefixes", [])]
        for full, info in entries:
            name = full[len(prefix):].rstrip("/")
            if not name or "/" in name:
                continue  # the directory's own marker object
            info["name"] = f"{bucket}/{full}"
            st = _stat_from_info(info)
            names[name] = S.S_IFMT(st.mode)
            child = posixpath.join(path, name) if path else name
            self._found.put(child, (st, version_of(info)), replace=False)
        return names

    def _info(self, path: str) -> Found:
        try:
            info = self.fs.info(self.url(path))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return _stat_from_info(info), version_of(info)

    def stat(self, path: str) -> Stat | None:
        found = self.lookup(path)
        return None if found is None else found[0]

    def listdir(self, path: str) -> dict[str, int] | None:
        names = self._listings.get(path)
        if names is _MISSING:
            names = self._list(path)
            self._listings.put(path, names, 1 + len(names or ()))
        return None if names is None else dict(names)

    def _list(self, path: str) -> dict[str, int] | None:
        st = self.stat(path)
        if st is None or not st.is_dir:
            return None
        url = self.url(path)
        try:
            entries = self.fs.ls(url, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return None
        base = self.fs._strip_protocol(url).rstrip("/")
        names = {}
        for info in entries:
            name = self.fs._strip_protocol(info["name"]).rstrip("/")
            if name == base:
                continue
            name = posixpath.basename(name)
            st = _stat_from_info(info)
            names[name] = st.mode & 0o170000
            child = posixpath.join(path, name) if path else name
            self._found.put(child, (st, version_of(info)), replace=False)
        return names

    # ------------------------------------------------------------ reading

    def open_cached(self, path: str) -> CachedFile:
        """The cached copy of a file: serve reads from ``.fd`` after ``.ensure(offset, size)``."""
        found = self.lookup(path)
        if found is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", self.url(path))
        st, version = found
        if st.is_dir:
            raise IsADirectoryError(errno.EISDIR, "is a directory", self.url(path))
        return self.cache.open(self.fs, self.url(path), st.size, version)

    def open(self, path: str, mode: str) -> IO[bytes]:
        if _WRITE_MODES & set(mode):
            self._read_only(path)
        reader = io.BufferedReader(_CachedReader(self.open_cached(path)), 256 * 1024)
        return reader if "b" in mode else io.TextIOWrapper(reader)  # type: ignore[return-value]

    def open_file(self, path: str, flags: int) -> OpenFile:
        """Reads served from the cache's descriptor, fetched on demand by ``ensure``."""
        if flags & _WRITE_FLAGS:
            self._read_only(path)
        return _CachedOpenFile(self.open_cached(path))

    def open_fd(self, path: str, flags: int, mode: int = 0) -> int:
        """A descriptor of the whole file, fetched first (fine for small files and copy-up;
        large reads should use `open_file`). It stays valid even if the entry is evicted."""
        if flags & _WRITE_FLAGS:
            self._read_only(path)
        with self.open_cached(path) as cached:
            cached.ensure(0, cached.size)
            return os.dup(cached.fd)

    def readlink(self, path: str) -> str:
        return self.inner.readlink(path)

    def statfs(self) -> dict[str, int]:
        return self.inner.statfs()

    # ------------------------------------------------------------ writing: never

    def _read_only(self, path: str) -> NoReturn:
        raise PermissionError(errno.EROFS, "the static layer is read-only", self.url(path))

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        self._read_only(path)

    def remove(self, path: str) -> None:
        self._read_only(path)

    def rmdir(self, path: str) -> None:
        self._read_only(path)

    def rename(self, src: str, dst: str) -> None:
        self._read_only(src)

    def touch(self, path: str) -> None:
        self._read_only(path)

    def create(self, path: str, mode: int = 0o666, flags: int | None = None) -> int | None:
        self._read_only(path)

    def chmod(self, path: str, mode: int) -> None:
        self._read_only(path)

    def chown(self, path: str, uid: int, gid: int) -> None:
        self._read_only(path)

    def utime(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        self._read_only(path)

    def symlink(self, target: str, path: str) -> None:
        self._read_only(path)

    def truncate(self, path: str, length: int) -> None:
        self._read_only(path)

    def link(self, src: str, dst: str) -> None:
        self._read_only(dst)

    def mknod(self, path: str, mode: int, device: int = 0) -> None:
        self._read_only(path)
