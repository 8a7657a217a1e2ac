"""The storage primitives under `FsspecLayer`: one class for S3 (s3fs), one for any other
fsspec filesystem (memory://, ...).

`FsspecLayer` builds the union's layer semantics (POSIX errors, exclusive create, parents
that must exist, renames) on these few calls; this module knows how each storage answers
them and what each costs. Nothing here caches: the overlay is shared with other machines,
and a static root on an object store is wrapped by its own caching layer.

S3 conventions (docs/SEMANTICS.md, "Object stores"):

- a directory made through the union is a zero-byte object ``DIR/`` (content type
  ``application/x-directory``), as the S3 console, s3fs, s3fs-fuse, mountpoint-s3 and
  rclone make and read them; a directory also exists while any key lies below it;
- ``stat`` is one HEAD of ``KEY`` and, when that misses, one delimiter listing of
  ``KEY/`` capped at one key; a listing is one delimiter listing of ``DIR/`` (a page per
  1,000 entries). No call lists more than the directory asked about, except renaming a
  directory, which copies its whole prefix;
- exclusive creation is a PUT with ``If-None-Match: *``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import posixpath
import stat as S
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import fsspec
from fsspec.asyn import sync

from .stat import Stat

#: Modes reported by storages that keep none.
FILE_MODE = S.S_IFREG | 0o644
DIR_MODE = S.S_IFDIR | 0o755
#: The content type of a directory marker object (as s3fs-fuse and Hadoop's S3A write it).
DIR_CONTENT_TYPE = "application/x-directory"
#: Protocols whose fsspec filesystems keep directory listings in a dircache.
LISTING_CACHE_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
#: The largest object one CopyObject request copies.
_COPY_LIMIT = 5 * 2**30
_DELETE_BATCH = 1000
_CONCURRENCY = 16


def error(code: int, path: str) -> OSError:
    """An OSError of the errno's own subclass, naming ``path`` (layer- and union-relative)."""
    return OSError(code, os.strerror(code), path)


_CODE_OF_CLASS: tuple[tuple[type[BaseException], int], ...] = (
    (FileNotFoundError, errno.ENOENT),
    (FileExistsError, errno.EEXIST),
    (IsADirectoryError, errno.EISDIR),
    (NotADirectoryError, errno.ENOTDIR),
    (PermissionError, errno.EACCES),
    (TimeoutError, errno.ETIMEDOUT),
    (ConnectionRefusedError, errno.ECONNREFUSED),
    (ConnectionError, errno.ECONNRESET),
)


def errno_of(exc: BaseException) -> int:
    """The errno an exception of a storage client stands for (EIO when it names none)."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        return code
    for cls, code in _CODE_OF_CLASS:
        if isinstance(exc, cls):
            return code
    if isinstance(exc, (ValueError, TypeError)):
        return errno.EINVAL
    if "Credential" in type(exc).__name__:  # botocore's NoCredentialsError and kin
        return errno.EACCES
    return errno.EIO


def _is_client_error(exc: BaseException) -> bool:
    """Errors of the storage clients, which are no OSError (botocore's, fsspec's timeout)."""
    module = type(exc).__module__ or ""
    return module.startswith(("botocore", "aiobotocore", "aiohttp", "fsspec", "s3fs")) or isinstance(
        exc, (asyncio.TimeoutError, ValueError))


@contextmanager
def translated(path: str) -> Iterator[None]:
    """Turn what a storage client raises into an OSError with errno set that names ``path``.

    Messages never carry the client's own text (which may name endpoints or keys); the
    original stays chained as ``__cause__`` for debugging. Errors the layer made for
    ``path`` itself pass unchanged.
    """
    try:
        yield
    except OSError as e:
        if e.errno is not None and e.filename == path:
            raise
        raise error(errno_of(e), path) from e
    except Exception as e:
        if not _is_client_error(e):
            raise
        raise error(errno_of(e), path) from e


def _timestamp_ns(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if hasattr(value, "timestamp"):  # datetime
        return int(value.timestamp() * 1e9)
    try:
        return int(float(value) * 1e9) or None
    except (TypeError, ValueError):
        return None


def file_stat(size: int, mtime_ns: int) -> Stat:
    return Stat(mode=FILE_MODE, size=size, mtime_ns=mtime_ns, atime_ns=mtime_ns, ctime_ns=mtime_ns)


def dir_stat(mtime_ns: int) -> Stat:
    return Stat(mode=DIR_MODE, size=0, mtime_ns=mtime_ns, atime_ns=mtime_ns, ctime_ns=mtime_ns, nlink=2)


def stat_from_info(info: dict[str, Any], default_mtime_ns: int) -> Stat:
    """A `Stat` from an fsspec ``info`` dict; ``default_mtime_ns`` where it gives no time
    (object-store directories): a fixed value, so repeated stats agree."""
    is_dir = info.get("type") == "directory"
    mode = info.get("mode")
    if not isinstance(mode, int) or not S.S_IFMT(mode):
        mode = DIR_MODE if is_dir else FILE_MODE
    mtime_ns = None
    for key in ("mtime", "LastModified", "last_modified", "created"):
        mtime_ns = _timestamp_ns(info.get(key))
        if mtime_ns:
            break
    mtime_ns = mtime_ns or default_mtime_ns
    return Stat(mode=mode, size=int(info.get("size") or 0), mtime_ns=mtime_ns,
                atime_ns=mtime_ns, ctime_ns=mtime_ns, nlink=2 if is_dir else 1)


class Store:
    """The calls `FsspecLayer` needs of a storage; paths are relative to the layer's root.

    Methods raise whatever the client raises; `FsspecLayer` translates.
    """

    #: True where directories are only key prefixes (plus marker objects).
    object_store = False

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str) -> None:
        self.fs = fs
        self.root = root
        #: The time reported for entries that carry none (the layer's creation).
        self.epoch_ns = time.time_ns()

    def url(self, rel: str) -> str:
        return posixpath.join(self.root, rel) if rel else self.root

    def stat(self, rel: str, files_only: bool = False) -> Stat | None:
        """The entry at ``rel`` (files only: skip the directory check), or None."""
        raise NotImplementedError

    def scan(self, rel: str, limit: int | None = None) -> dict[str, Stat] | None:
        """Directory ``rel``'s entries (``limit``: enough to tell whether it has that many),
        or None when it is no directory."""
        raise NotImplementedError

    def is_dir(self, rel: str) -> bool:
        raise NotImplementedError

    def put(self, rel: str, data: bytes, exclusive: bool = False) -> None:
        """Write a whole file; ``exclusive``: FileExistsError if a file is there."""
        raise NotImplementedError

    def make_dir(self, rel: str) -> None:
        raise NotImplementedError

    def remove_dir(self, rel: str) -> None:
        """Remove an empty directory (its marker)."""
        raise NotImplementedError

    def delete(self, rel: str) -> None:
        raise NotImplementedError

    def copy(self, src: str, dst: str, size: int) -> None:
        """Copy the file ``src`` (of ``size`` bytes) to ``dst``, replacing it."""
        raise NotImplementedError

    def copy_tree(self, src: str, dst: str) -> None:
        """Copy directory ``src`` and all below it to the free name ``dst``; on failure,
        remove what was copied."""
        raise NotImplementedError

    def delete_tree(self, rel: str) -> None:
        raise NotImplementedError

    def open(self, rel: str, mode: str) -> IO[bytes]:
        url = self.url(rel)
        self.fs.invalidate_cache(url)  # a shared fs instance may hold an old listing
        return self.fs.open(url, mode)


class FsspecStore(Store):
    """Any fsspec filesystem with directories of its own (memory://, ...), through its API."""

    def stat(self, rel: str, files_only: bool = False) -> Stat | None:
        if not rel:
            return dir_stat(self.epoch_ns)
        url = self.url(rel)
        self.fs.invalidate_cache(url)
        try:
            info = self.fs.info(url)
        except (FileNotFoundError, NotADirectoryError):
            return None
        st = stat_from_info(info, self.epoch_ns)
        return None if files_only and st.is_dir else st

    def is_dir(self, rel: str) -> bool:
        st = self.stat(rel)
        return st is not None and st.is_dir

    def scan(self, rel: str, limit: int | None = None) -> dict[str, Stat] | None:
        if not self.is_dir(rel):
            return None
        url = self.url(rel)
        try:
            entries = self.fs.ls(url, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return None
        base = self.fs._strip_protocol(url).rstrip("/")
        names: dict[str, Stat] = {}
        for info in entries:
            name = self.fs._strip_protocol(info["name"]).rstrip("/")
            if name != base:
                names[posixpath.basename(name)] = stat_from_info(info, self.epoch_ns)
        return names

    def put(self, rel: str, data: bytes, exclusive: bool = False) -> None:
        self.fs.pipe_file(self.url(rel), data, mode="create" if exclusive else "overwrite")

    def make_dir(self, rel: str) -> None:
        self.fs.mkdir(self.url(rel), create_parents=False)

    def remove_dir(self, rel: str) -> None:
        self.fs.rmdir(self.url(rel))

    def delete(self, rel: str) -> None:
        self.fs.rm_file(self.url(rel))

    def copy(self, src: str, dst: str, size: int) -> None:
        self.fs.cp_file(self.url(src), self.url(dst))

    def copy_tree(self, src: str, dst: str) -> None:
        src_url, dst_url = self.url(src), self.url(dst)
        base = self.fs._strip_protocol(src_url).rstrip("/")
        entries = self.fs.find(src_url, withdirs=True, detail=True)
        try:
            self.fs.mkdir(dst_url, create_parents=False)
            for name, info in sorted(entries.items()):
                name = self.fs._strip_protocol(name).rstrip("/")
                if name == base or not name.startswith(base + "/"):
                    continue
                target = posixpath.join(dst_url, name[len(base) + 1:])
                if info.get("type") == "directory":
                    self.fs.makedirs(target, exist_ok=True)
                else:
                    self.fs.cp_file(name, target)
        except BaseException:
            try:
                self.fs.rm(dst_url, recursive=True)
            except OSError:
                pass
            raise

    def delete_tree(self, rel: str) -> None:
        self.fs.rm(self.url(rel), recursive=True)


class S3Store(Store):
    """An S3 bucket/prefix through s3fs, one request per call where S3 allows it.

    Requests go through ``fs._call_s3`` (s3fs's async API: retries, error translation,
    credentials) and never through s3fs's listing cache.
    """

    object_store = True

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str) -> None:
        super().__init__(fs, root)
        self.s3: Any = fs  # an s3fs.S3FileSystem: its async API (_call_s3, _cp_file) and loop
        bucket, key, _ = self.s3.split_path(root)
        self.bucket = bucket
        self.prefix = key.strip("/")
        self._request = dict(getattr(fs, "req_kw", None) or {})  # requester-pays buckets
        self._conditional = True  # If-None-Match on PUT, until the server says it has none

    # ------------------------------------------------------------ keys and requests

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def dir_prefix(self, rel: str) -> str:
        """The key prefix of directory ``rel`` (its marker object's key), "" for a bucket root."""
        key = self.key(rel) if rel else self.prefix
        return key + "/" if key else ""

    def _call(self, method: str, **kwargs: Any) -> Any:
        return sync(self.s3.loop, self.s3._call_s3, method, Bucket=self.bucket, **kwargs)

    def _pages(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """The pages of one ListObjectsV2."""
        while True:
            page = self._call("list_objects_v2", **self._request, **kwargs)
            yield page
            if not page.get("IsTruncated") or not page.get("NextContinuationToken"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def _file(self, obj: dict[str, Any], size_key: str) -> Stat:
        return file_stat(int(obj.get(size_key) or 0), _timestamp_ns(obj.get("LastModified")) or self.epoch_ns)

    # ------------------------------------------------------------ reading

    def stat(self, rel: str, files_only: bool = False) -> Stat | None:
        if not rel:
            return dir_stat(self.epoch_ns)  # a prefix always exists (empty or not)
        try:
            head = self._call("head_object", Key=self.key(rel), **self._request)
        except FileNotFoundError:
            pass
        else:
            return self._file(head, "ContentLength")
        return None if files_only else self._dir_stat(rel)

    def _dir_stat(self, rel: str) -> Stat | None:
        """One listing of ``DIR/`` capped at one key: the marker sorts first where it exists."""
        prefix = self.dir_prefix(rel)
        page = self._call("list_objects_v2", Prefix=prefix, Delimiter="/", MaxKeys=1, **self._request)
        contents = page.get("Contents") or []
        if not contents and not page.get("CommonPrefixes"):
            return None
        marker = contents[0] if contents and contents[0]["Key"] == prefix else None
        mtime = _timestamp_ns(marker.get("LastModified")) if marker else None
        return dir_stat(mtime or self.epoch_ns)

    def is_dir(self, rel: str) -> bool:
        return not rel or self._dir_stat(rel) is not None

    def scan(self, rel: str, limit: int | None = None) -> dict[str, Stat] | None:
        """One delimiter listing of ``DIR/``: files with their sizes and times, subdirectories
        (common prefixes), the marker skipped. A file wins over a directory of the same name
        (as `stat`, which asks HEAD first)."""
        prefix = self.dir_prefix(rel)
        kwargs: dict[str, Any] = {"Prefix": prefix, "Delimiter": "/"}
        if limit is not None:
            kwargs["MaxKeys"] = limit + 1  # room for the marker
        names: dict[str, Stat] = {}
        found = not rel
        for page in self._pages(**kwargs):
            for common in page.get("CommonPrefixes") or ():
                found = True
                name = common["Prefix"][len(prefix):].rstrip("/")
                if name and "/" not in name and name not in names:
                    names[name] = dir_stat(self.epoch_ns)
            for obj in page.get("Contents") or ():
                found = True
                name = obj["Key"][len(prefix):]
                if name and "/" not in name:
                    names[name] = self._file(obj, "Size")
            if limit is not None and len(names) >= limit:
                break
        return names if found else None

    # ------------------------------------------------------------ writing

    def put(self, rel: str, data: bytes, exclusive: bool = False) -> None:
        kwargs: dict[str, Any] = {"Key": self.key(rel), "Body": data}
        if exclusive and self._conditional:
            try:
                self._call("put_object", IfNoneMatch="*", **kwargs)
                return
            except OSError as e:
                if e.errno not in (errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                self._conditional = False  # NotImplemented: the caller checked beforehand
        self._call("put_object", **kwargs)

    def make_dir(self, rel: str) -> None:
        self._call("put_object", Key=self.dir_prefix(rel), Body=b"", ContentType=DIR_CONTENT_TYPE)

    def remove_dir(self, rel: str) -> None:
        self._call("delete_object", Key=self.dir_prefix(rel))

    def delete(self, rel: str) -> None:
        self._call("delete_object", Key=self.key(rel))

    def copy(self, src: str, dst: str, size: int) -> None:
        if size <= _COPY_LIMIT:
            self._call("copy_object", Key=self.key(dst),
                       CopySource={"Bucket": self.bucket, "Key": self.key(src)}, **self._request)
        else:  # multipart copy (s3fs looks the source up first: never in an old listing)
            self.s3.invalidate_cache(f"{self.bucket}/{self.key(src)}")
            sync(self.s3.loop, self.s3._cp_file,
                 f"{self.bucket}/{self.key(src)}", f"{self.bucket}/{self.key(dst)}")

    def _keys_below(self, prefix: str) -> list[tuple[str, int]]:
        """Every key under ``prefix`` with its size: a listing of that prefix only."""
        return [(obj["Key"], int(obj.get("Size") or 0))
                for page in self._pages(Prefix=prefix) for obj in page.get("Contents") or ()]

    def copy_tree(self, src: str, dst: str) -> None:
        """Copy every key under ``SRC/`` to ``DST/`` (concurrently); ``DST/`` gets a marker
        even where ``SRC/`` had none, so the copy persists when emptied. On failure the
        copies made are removed again."""
        src_prefix, dst_prefix = self.dir_prefix(src), self.dir_prefix(dst)
        keys = self._keys_below(src_prefix)
        pairs = [(key, dst_prefix + key[len(src_prefix):], size) for key, size in keys]
        try:
            if not any(key == src_prefix for key, _ in keys):
                self.make_dir(dst)
            sync(self.s3.loop, self._copy_all, pairs)
        except BaseException:
            try:
                self._delete_keys([dst_prefix] + [target for _, target, _ in pairs])
            except Exception:
                pass
            raise

    async def _copy_all(self, pairs: list[tuple[str, str, int]]) -> None:
        gate = asyncio.Semaphore(_CONCURRENCY)

        async def one(source: str, target: str, size: int) -> None:
            async with gate:
                if size <= _COPY_LIMIT:
                    await self.s3._call_s3("copy_object", Bucket=self.bucket, Key=target,
                                           CopySource={"Bucket": self.bucket, "Key": source},
                                           **self._request)
                else:
                    self.s3.invalidate_cache(f"{self.bucket}/{source}")
                    await self.s3._cp_file(f"{self.bucket}/{source}", f"{self.bucket}/{target}")

        await asyncio.gather(*(one(*pair) for pair in pairs))

    def delete_tree(self, rel: str) -> None:
        self._delete_keys([key for key, _ in self._keys_below(self.dir_prefix(rel))])

    def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start:start + _DELETE_BATCH]
            out = self._call("delete_objects", Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                             **self._request)
            if out.get("Errors"):
                raise OSError(errno.EIO, "some objects could not be deleted")

    def open(self, rel: str, mode: str) -> IO[bytes]:
        url = f"{self.bucket}/{self.key(rel)}"
        self.fs.invalidate_cache(url)
        return self.fs.open(url, mode)


def store_for(fs: fsspec.AbstractFileSystem, root: str) -> Store:
    """`S3Store` for s3fs, else `FsspecStore`."""
    try:
        from s3fs import S3FileSystem
    except ImportError:  # pragma: no cover - s3fs is a dependency
        S3FileSystem = None
    if S3FileSystem is not None and isinstance(fs, S3FileSystem):
        return S3Store(fs, root)
    return FsspecStore(fs, root)
