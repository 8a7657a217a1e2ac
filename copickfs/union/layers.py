"""One storage under the union: a root on some fsspec filesystem.

Two implementations of one small interface: `LocalLayer` talks to the OS directly
(plain syscalls, real paths the mount can open as file descriptors), `FsspecLayer`
works on any fsspec filesystem (s3://, memory://, ...). A miss returns None; the
other methods raise plain built-in exceptions.
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import stat as S
import tempfile
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from . import markers
from .beneath import ESCAPES, open_beneath, open_dir
from .objectstore import LISTING_CACHE_PROTOCOLS, Store, stat_from_info, store_for
from .objectstore import error as _error
from .objectstore import translated as _translated
from .openfile import OpenFile
from .stat import Stat


#: open(2) flags passed through to a layer's descriptors; creation flags are the union's.
OPEN_FLAGS = os.O_ACCMODE | os.O_APPEND | os.O_TRUNC | os.O_NONBLOCK | os.O_SYNC | os.O_DSYNC


class Layer(ABC):
    """A root on a storage; paths given to methods are relative to it ("" is the root)."""

    #: Whether `open_fd` gives OS descriptors (the mount's fast path) and the storage
    #: keeps POSIX modes, owners, links and special files.
    is_local: bool = False

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str) -> None:
        self.fs = fs
        self.root = root

    def url(self, path: str = "") -> str:
        return posixpath.join(self.root, path) if path else self.root

    def open_fd(self, path: str, flags: int, mode: int = 0) -> int | None:
        """An OS descriptor of ``path`` opened with ``flags`` (local layers only), else None."""
        return None

    def open_dir(self, path: str) -> int | None:
        """A descriptor of directory ``path`` to list it by later (`listdir_at`, `stat_at`),
        where the storage has them; None if it is not a directory here or has no descriptors."""
        return None

    def listdir_at(self, fd: int) -> dict[str, int]:
        raise OSError(errno.ENOTSUP, "storage keeps no directory descriptors")

    def stat_at(self, fd: int, name: str) -> Stat | None:
        raise OSError(errno.ENOTSUP, "storage keeps no directory descriptors")

    def open_file(self, path: str, flags: int) -> OpenFile | None:
        """``path`` opened with ``flags`` and served from a local descriptor, where this layer
        can do that (local layers; caches and staging areas of remote ones), else None."""
        fd = self.open_fd(path, flags)
        return None if fd is None else OpenFile(fd)

    @abstractmethod
    def stat(self, path: str) -> Stat | None:
        """lstat(); None when nothing is there (or a parent is not a directory)."""

    @abstractmethod
    def listdir(self, path: str) -> dict[str, int] | None:
        """Names in a directory, each with its file type bits (``S_IFMT``; 0 if unknown).

        None when ``path`` is not a directory.
        """

    @abstractmethod
    def open(self, path: str, mode: str) -> IO[bytes]: ...

    @abstractmethod
    def mkdir(self, path: str, mode: int = 0o777) -> None: ...

    @abstractmethod
    def remove(self, path: str) -> None:
        """Remove a file or symlink."""

    @abstractmethod
    def rmdir(self, path: str) -> None: ...

    def remove_tree(self, path: str) -> None:
        """Remove ``path`` and everything below it, each step beneath the root as any other
        call (never through a symlink); nothing there is not an error."""
        st = self.stat(path)
        if st is None:
            return
        if not st.is_dir:
            self.remove(path)
            return
        for name in self.listdir(path) or {}:
            self.remove_tree(f"{path}/{name}" if path else name)
        self.rmdir(path)

    @abstractmethod
    def rename(self, src: str, dst: str) -> None:
        """Rename, replacing ``dst`` where the storage allows it atomically."""

    def temp_path(self, path: str) -> str:
        """Where a copy of ``path`` is made before it is renamed to ``path``."""
        parent = posixpath.dirname(path)
        return posixpath.join(parent, f"{markers.TEMP_PREFIX}{uuid.uuid4().hex}")

    def clear_work_area(self) -> int:
        """Remove the temporary files of copy-ups a crash interrupted; how many."""
        return 0

    def remove_leftovers(self) -> int:
        """Remove temporary files of older releases; how many."""
        return 0

    def touch(self, path: str) -> None:
        """Create an empty file (markers)."""
        with self.open(path, "wb"):
            pass

    def create(self, path: str, mode: int = 0o666, flags: int | None = None) -> int | None:
        """Create a new empty file; FileExistsError if something is there.

        Local layers given open ``flags`` return a descriptor from the creating open.
        """
        if self.stat(path) is not None:
            raise FileExistsError(errno.EEXIST, "exists", self.url(path))
        self.touch(path)
        return None

    def chmod(self, path: str, mode: int) -> None:
        raise OSError(errno.ENOTSUP, "storage keeps no modes", self.url(path))

    def chown(self, path: str, uid: int, gid: int) -> None:
        raise OSError(errno.ENOTSUP, "storage keeps no owners", self.url(path))

    def utime(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        raise OSError(errno.ENOTSUP, "storage keeps no times", self.url(path))

    def symlink(self, target: str, path: str) -> None:
        raise OSError(errno.ENOTSUP, "storage keeps no symlinks", self.url(path))

    def readlink(self, path: str) -> str:
        raise OSError(errno.EINVAL, "not a symlink", self.url(path))

    def truncate(self, path: str, length: int) -> None:
        raise OSError(errno.ENOTSUP, "storage cannot truncate in place", self.url(path))

    def link(self, src: str, dst: str) -> None:
        raise OSError(errno.EPERM, "storage keeps no hard links", self.url(dst))

    def mknod(self, path: str, mode: int, device: int = 0) -> None:
        raise OSError(errno.EPERM, "storage keeps no special files", self.url(path))

    def statfs(self) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}


class LocalLayer(Layer):
    """A directory on this machine, served with plain syscalls beneath a descriptor of its root.

    Every call resolves its path from the root's descriptor and follows no symlink in
    any component (`beneath`): a symlink inside the layer is an entry of its own, never
    a way out. Operations on a last component use ``*at`` calls that do not follow it.
    """

    is_local = True

    def __init__(self, root: str) -> None:
        super().__init__(LocalFileSystem(), os.path.abspath(root))
        self._fd: int | None = None
        self._fd_lock = threading.Lock()

    @property
    def _root_fd(self) -> int:
        """The root's descriptor, opened at first use (a copick root may name a directory
        made later); a root still missing reads as empty (`stat` gives None)."""
        fd = self._fd
        if fd is None:
            with self._fd_lock:
                if self._fd is None:
                    self._fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                fd = self._fd
        return fd

    def _make_root(self) -> None:
        """Create a missing root before the first write into it (as fsspec's auto_mkdir)."""
        if self._fd is None and not os.path.isdir(self.root):
            os.makedirs(self.root, exist_ok=True)

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"])  # type: ignore[misc]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalLayer) and other.root == self.root

    def __hash__(self) -> int:
        return hash(("local", self.root))

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    # -------------------------------------------------------------- resolving

    def _parent(self, path: str) -> tuple[int, str]:
        """(descriptor of ``path``'s parent, last name); the descriptor is the root's or must be closed."""
        parent, _, name = path.rpartition("/")
        if not name:
            raise OSError(errno.EBUSY, "the layer root itself", self.root)
        return (open_dir(self._root_fd, parent) if parent else self._root_fd), name

    def _release(self, fd: int) -> None:
        if fd != self._root_fd:
            os.close(fd)

    def _at(self, path: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``call(name, *args, dir_fd=parent, **kwargs)`` with ``path``'s parent resolved beneath the root."""
        fd, name = self._parent(path)
        try:
            return call(name, *args, dir_fd=fd, **kwargs)
        finally:
            self._release(fd)

    def open_fd(self, path: str, flags: int, mode: int = 0) -> int:
        if flags & os.O_CREAT:
            self._make_root()
        return open_beneath(self._root_fd, path, flags, mode)

    # -------------------------------------------------------------- work area

    def temp_path(self, path: str) -> str:
        """A name in the private work directory at the root (0700, the daemon's own)."""
        self._make_root()
        self._ensure_work_dir()
        return f"{markers.WORK_DIR}/{uuid.uuid4().hex}"

    def _ensure_work_dir(self) -> None:
        try:
            os.mkdir(markers.WORK_DIR, 0o700, dir_fd=self._root_fd)
            return
        except FileExistsError:
            pass
        fd = open_dir(self._root_fd, markers.WORK_DIR)  # never a symlink
        try:
            st = os.fstat(fd)
            if st.st_uid != os.geteuid() or S.S_IMODE(st.st_mode) != 0o700:
                raise PermissionError(errno.EACCES, "work directory not private to copickfs",
                                      os.path.join(self.root, markers.WORK_DIR))
        finally:
            os.close(fd)

    def clear_work_area(self) -> int:
        """Empty the work directory (before serving: a crash left its files half-made)."""
        try:
            fd = open_beneath(self._root_fd, markers.WORK_DIR, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            return 0
        try:
            names = os.listdir(fd)
            for name in names:
                os.unlink(name, dir_fd=fd)
            return len(names)
        finally:
            os.close(fd)

    def remove_leftovers(self) -> int:
        """Remove temporary files older releases made beside their targets
        (``.wh..wh.tmp.*``): a walk of the whole layer, so callers run it in the background."""
        removed = 0
        for top, dirs, files, dirfd in os.fwalk(".", dir_fd=self._root_fd):
            if top == ".":
                dirs[:] = [d for d in dirs if d != markers.WORK_DIR]
            for name in files:
                if name.startswith(markers.TEMP_PREFIX):
                    os.unlink(name, dir_fd=dirfd)
                    removed += 1
        return removed

    # -------------------------------------------------------------- reading

    def stat(self, path: str) -> Stat | None:
        if not path:
            root = _missing_is_none(lambda: os.stat(self._root_fd))
            return None if root is None else Stat.from_os(root)
        found = _missing_is_none(self._at, path, os.stat, follow_symlinks=False)
        return None if found is None else Stat.from_os(found)

    def listdir(self, path: str) -> dict[str, int] | None:
        fd = self.open_dir(path)
        if fd is None:
            return None
        try:
            with os.scandir(fd) as entries:
                return {e.name: _kind_of(e) for e in entries}
        finally:
            os.close(fd)

    def open_dir(self, path: str) -> int | None:
        return _missing_is_none(lambda: open_beneath(self._root_fd, path, os.O_RDONLY | os.O_DIRECTORY))

    def listdir_at(self, fd: int) -> dict[str, int]:
        with os.scandir(fd) as entries:  # a duplicate of fd, rewound: every listing is whole
            return {e.name: _kind_of(e) for e in entries}

    def stat_at(self, fd: int, name: str) -> Stat | None:
        try:
            return Stat.from_os(os.stat(name, dir_fd=fd, follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def open(self, path: str, mode: str) -> IO[bytes]:
        flags = MODE_FLAGS[mode.replace("b", "").replace("t", "")]
        fd = open_beneath(self._root_fd, path, flags | os.O_NONBLOCK, 0o666)
        try:
            os.set_blocking(fd, True)
            return os.fdopen(fd, mode)
        except BaseException:
            os.close(fd)
            raise

    def readlink(self, path: str) -> str:
        return self._at(path, os.readlink)

    def statfs(self) -> dict[str, int]:
        st = os.statvfs(self._root_fd)
        return {key: getattr(st, key) for key in (
            "f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
            "f_files", "f_ffree", "f_favail", "f_namemax")}

    # -------------------------------------------------------------- writing

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        self._make_root()
        self._at(path, os.mkdir, mode)

    def remove(self, path: str) -> None:
        self._at(path, os.unlink)

    def rmdir(self, path: str) -> None:
        self._at(path, os.rmdir)

    def rename(self, src: str, dst: str) -> None:
        src_fd, src_name = self._parent(src)
        try:
            dst_fd, dst_name = self._parent(dst)
            try:
                os.rename(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            finally:
                self._release(dst_fd)
        finally:
            self._release(src_fd)

    def link(self, src: str, dst: str) -> None:
        src_fd, src_name = self._parent(src)
        try:
            dst_fd, dst_name = self._parent(dst)
            try:
                os.link(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
            finally:
                self._release(dst_fd)
        finally:
            self._release(src_fd)

    def touch(self, path: str) -> None:
        os.close(self.open_fd(path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK, 0o644))

    def create(self, path: str, mode: int = 0o666, flags: int | None = None) -> int | None:
        how = os.O_CREAT | os.O_EXCL | (os.O_WRONLY if flags is None else flags & OPEN_FLAGS)
        fd = self.open_fd(path, how, mode)
        if flags is not None:
            return fd
        os.close(fd)
        return None

    def mknod(self, path: str, mode: int, device: int = 0) -> None:
        self._at(path, os.mknod, mode, device)

    def chmod(self, path: str, mode: int) -> None:
        try:
            self._at(path, os.chmod, S.S_IMODE(mode), follow_symlinks=False)
        except NotImplementedError:
            pass  # a symlink: Linux symlinks have no mode of their own

    def chown(self, path: str, uid: int, gid: int) -> None:
        self._at(path, os.chown, uid, gid, follow_symlinks=False)

    def utime(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        self._at(path, os.utime, ns=(atime_ns, mtime_ns), follow_symlinks=False)

    def symlink(self, target: str, path: str) -> None:
        self._make_root()
        fd, name = self._parent(path)
        try:
            os.symlink(target, name, dir_fd=fd)
        finally:
            self._release(fd)

    def truncate(self, path: str, length: int) -> None:
        fd = self.open_fd(path, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.ftruncate(fd, length)
        finally:
            os.close(fd)


#: open(2) flags of each Python file mode (binary and text alike).
MODE_FLAGS = {
    "r": os.O_RDONLY,
    "r+": os.O_RDWR,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "w+": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
    "x+": os.O_RDWR | os.O_CREAT | os.O_EXCL,
}


class FsspecLayer(Layer):
    """Any fsspec filesystem: S3 (s3fs) through `objectstore.S3Store`, others (memory://, ...)
    through their own fsspec calls. docs/SEMANTICS.md ("Object stores") has the conventions.

    Object stores have no real directories, modes, owners, times, links or special files:
    a directory made here is a marker object ``DIR/`` (it persists while empty); chmod,
    chown, utime and symlink fail with ENOTSUP, link and mknod with EPERM; opening for
    update in place (``r+``, ``w+``, ``a+``) fails with ENOTSUP. Every error is an OSError
    with errno set, naming the layer-relative (= union) path. Nothing is cached: each call
    asks the storage (the overlay may be shared with other machines).
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str) -> None:
        super().__init__(fs, root)
        self._store: Store = store_for(fs, root)

    @property
    def object_store(self) -> bool:
        """True where directories are key prefixes (S3): markers keep empty ones."""
        return self._store.object_store

    # -------------------------------------------------------------- reading

    def stat(self, path: str) -> Stat | None:
        """One HEAD, plus (unless it names a file or a marker) one listing capped at one key."""
        with _translated(path):
            return self._store.stat(path, files_only=markers.is_reserved(posixpath.basename(path)))

    def scan(self, path: str) -> dict[str, Stat] | None:
        """The entries of directory ``path`` with their attributes (one delimiter listing on
        an object store), or None when ``path`` is not a directory."""
        with _translated(path):
            return self._store.scan(path)

    def listdir(self, path: str) -> dict[str, int] | None:
        entries = self.scan(path)
        return None if entries is None else {name: S.S_IFMT(st.mode) for name, st in entries.items()}

    def open(self, path: str, mode: str) -> IO[bytes]:
        if "+" in mode and self.object_store:
            raise OSError(errno.ENOTSUP, "objects cannot be updated in place", path)
        with _translated(path):
            return self._store.open(path, mode)

    def readlink(self, path: str) -> str:
        raise _error(errno.EINVAL, path)

    # -------------------------------------------------------------- checks

    def _file_stat(self, path: str) -> Stat:
        """``path``'s stat as a regular file: ENOENT, or EISDIR for a directory."""
        if not path:
            raise _error(errno.EISDIR, path)
        with _translated(path):
            st = self._store.stat(path, files_only=True)
            if st is None:
                if not markers.is_reserved(posixpath.basename(path)) and self._store.is_dir(path):
                    raise _error(errno.EISDIR, path)
                raise _error(errno.ENOENT, path)
            return st

    def _need_parent(self, path: str) -> None:
        """POSIX: a new entry needs an existing parent directory (ENOENT, ENOTDIR)."""
        parent = posixpath.dirname(path)
        with _translated(path):
            if not parent or self._store.is_dir(parent):
                return
            raise _error(errno.ENOENT if self._store.stat(parent, files_only=True) is None
                         else errno.ENOTDIR, path)

    def _keep_parent(self, path: str) -> None:
        """Give ``path``'s parent a marker if removing ``path`` left it with nothing (a
        directory that existed only through its keys): POSIX directories outlive their files."""
        parent = posixpath.dirname(path)
        if parent and not self._store.is_dir(parent):
            self._store.make_dir(parent)

    # -------------------------------------------------------------- writing

    def touch(self, path: str) -> None:
        """An empty file (markers) unless one is there: like `LocalLayer.touch`, never
        truncating (one conditional PUT on S3)."""
        with _translated(path):
            try:
                self._store.put(path, b"", exclusive=True)
            except FileExistsError:
                pass

    def create(self, path: str, mode: int = 0o666, flags: int | None = None) -> int | None:
        """A new empty file (exclusive: If-None-Match on S3); FileExistsError if anything is there."""
        if not path or self.stat(path) is not None:
            raise _error(errno.EEXIST, path)
        self._need_parent(path)
        with _translated(path):
            self._store.put(path, b"", exclusive=True)
        return None

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        """A directory (the marker object ``DIR/`` on object stores); its parent must exist."""
        if not path or self.stat(path) is not None:
            raise _error(errno.EEXIST, path)
        self._need_parent(path)
        with _translated(path):
            self._store.make_dir(path)

    def remove(self, path: str) -> None:
        self._file_stat(path)
        with _translated(path):
            self._store.delete(path)
            self._keep_parent(path)

    def rmdir(self, path: str) -> None:
        if not path:
            raise _error(errno.EBUSY, path)
        with _translated(path):
            entries = self._store.scan(path, limit=1)
            if entries is None:
                raise _error(errno.ENOENT if self._store.stat(path) is None else errno.ENOTDIR, path)
            if entries:
                raise _error(errno.ENOTEMPTY, path)
            self._store.remove_dir(path)
            self._keep_parent(path)

    def rename(self, src: str, dst: str) -> None:
        """A file: copy, then delete the source (the target is replaced by the copy at once,
        but both names show the file meanwhile). A directory: every key of its prefix copied,
        then the source's deleted (not atomic; a failed copy removes what it copied)."""
        if not src or not dst:
            raise _error(errno.EBUSY, src or dst)
        st = self.stat(src)
        if st is None:
            raise _error(errno.ENOENT, src)
        if src == dst:
            return
        if st.is_dir:
            self._rename_dir(src, dst)
        else:
            self._rename_file(src, dst, st)

    def _rename_file(self, src: str, dst: str, st: Stat) -> None:
        same_parent = posixpath.dirname(src) == posixpath.dirname(dst)
        with _translated(dst):
            if self._store.is_dir(dst):
                raise _error(errno.EISDIR, dst)
        if not same_parent:
            self._need_parent(dst)
        with _translated(src):
            self._store.copy(src, dst, st.size)
            self._store.delete(src)
            if not same_parent:
                self._keep_parent(src)

    def _rename_dir(self, src: str, dst: str) -> None:
        if dst.startswith(src + "/"):
            raise _error(errno.EINVAL, dst)
        target = self.stat(dst)
        replaced = False
        if target is not None:
            if not target.is_dir:
                raise _error(errno.ENOTDIR, dst)
            with _translated(dst):
                if self._store.scan(dst, limit=1):
                    raise _error(errno.ENOTEMPTY, dst)
                self._store.remove_dir(dst)  # an empty directory is replaced
                replaced = True
        else:
            self._need_parent(dst)
        with _translated(src):
            try:
                self._store.copy_tree(src, dst)
            except BaseException:
                if replaced:
                    self._store.make_dir(dst)
                raise
            self._store.delete_tree(src)
            self._keep_parent(src)

    def truncate(self, path: str, length: int) -> None:
        """Rewrite the file with its first ``length`` bytes (zeros past its end): object
        stores change objects whole."""
        if length < 0:
            raise _error(errno.EINVAL, path)
        st = self._file_stat(path)
        if st.size == length:
            return
        with _translated(path):
            if length == 0:
                self._store.put(path, b"")
                return
            with tempfile.SpooledTemporaryFile(max_size=16 << 20) as spool:
                with self._store.open(path, "rb") as fin:
                    left = min(length, st.size)
                    while left > 0:
                        chunk = fin.read(min(left, 1 << 20))
                        if not chunk:
                            break
                        spool.write(chunk)
                        left -= len(chunk)
                while spool.tell() < length:
                    spool.write(bytes(min(length - spool.tell(), 1 << 20)))
                spool.seek(0)
                with self._store.open(path, "wb") as fout:
                    shutil.copyfileobj(spool, fout, 1 << 20)

    # -------------------------------------------------------------- what objects cannot hold

    def chmod(self, path: str, mode: int) -> None:
        raise OSError(errno.ENOTSUP, "storage keeps no modes", path)

    def chown(self, path: str, uid: int, gid: int) -> None:
        raise OSError(errno.ENOTSUP, "storage keeps no owners", path)

    def utime(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        raise OSError(errno.ENOTSUP, "storage keeps no times", path)

    def symlink(self, target: str, path: str) -> None:
        raise OSError(errno.ENOTSUP, "storage keeps no symlinks", path)

    def link(self, src: str, dst: str) -> None:
        raise OSError(errno.EPERM, "storage keeps no hard links", dst)

    def mknod(self, path: str, mode: int, device: int = 0) -> None:
        raise OSError(errno.EPERM, "storage keeps no special files", path)


def _missing_is_none(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(...)``, or None where nothing is there: missing, below a non-directory, or
    behind a symlink or ".." that resolving beneath the root refuses."""
    try:
        return call(*args, **kwargs)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno in ESCAPES:
            return None
        raise


def _kind_of(entry: os.DirEntry[str]) -> int:
    """File type bits from a directory entry, without a stat where the kernel gave d_type."""
    try:
        if entry.is_symlink():
            return S.S_IFLNK
        if entry.is_dir(follow_symlinks=False):
            return S.S_IFDIR
        if entry.is_file(follow_symlinks=False):
            return S.S_IFREG
        return S.S_IFMT(entry.stat(follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return 0


def _stat_from_info(info: dict[str, Any], default_mtime_ns: int | None = None) -> Stat:
    """A `Stat` from an fsspec ``info`` dict. Entries that carry no time (object-store
    directories) get ``default_mtime_ns``, else the time this module was loaded: a fixed
    value, so repeated stats of one entry agree."""
    return stat_from_info(info, _LOADED_NS if default_mtime_ns is None else default_mtime_ns)


_LOADED_NS = time.time_ns()


def open_layer(url: str, storage_options: dict[str, Any] | None = None) -> Layer:
    """The layer for an fsspec URL: plain paths, file:// and local:// become `LocalLayer`.

    Object stores get fsspec's listing cache turned off unless the options say otherwise:
    the overlay may be written by other machines, and a static root is cached by its own
    layer (copickfs.storage), not by stale listings.
    """
    options = dict(storage_options or {})
    protocol = fsspec.core.split_protocol(url)[0]
    if protocol in LISTING_CACHE_PROTOCOLS:
        options.setdefault("use_listings_cache", False)
    fs, root = fsspec.core.url_to_fs(url, **options)
    if isinstance(fs, LocalFileSystem):
        return LocalLayer(root)
    return FsspecLayer(fs, root.rstrip("/"))
