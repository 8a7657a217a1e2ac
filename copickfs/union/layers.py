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
import stat as S
import time
from abc import ABC, abstractmethod
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from .stat import Stat


#: open(2) flags passed through to a layer's descriptors; creation flags are the union's.
OPEN_FLAGS = os.O_ACCMODE | os.O_APPEND | os.O_TRUNC | os.O_NONBLOCK | os.O_SYNC | os.O_DSYNC


class Layer(ABC):
    """A root on a storage; paths given to methods are relative to it ("" is the root)."""

    #: Whether `os_path` gives real OS paths (the mount's file-descriptor fast path).
    is_local: bool = False

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str) -> None:
        self.fs = fs
        self.root = root

    def url(self, path: str = "") -> str:
        return posixpath.join(self.root, path) if path else self.root

    def os_path(self, path: str) -> str | None:
        """The real OS path of ``path``, for local layers only."""
        return None

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

    @abstractmethod
    def rename(self, src: str, dst: str) -> None:
        """Rename, replacing ``dst`` where the storage allows it atomically."""

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

    def statfs(self) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}


class LocalLayer(Layer):
    """A directory on this machine, served with plain syscalls."""

    is_local = True

    def __init__(self, root: str) -> None:
        super().__init__(LocalFileSystem(), os.path.abspath(root))

    def os_path(self, path: str) -> str:
        return os.path.join(self.root, path) if path else self.root

    def stat(self, path: str) -> Stat | None:
        try:
            return Stat.from_os(os.lstat(self.os_path(path)))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def listdir(self, path: str) -> dict[str, int] | None:
        try:
            with os.scandir(self.os_path(path)) as entries:
                return {e.name: _kind_of(e) for e in entries}
        except (FileNotFoundError, NotADirectoryError):
            return None

    def open(self, path: str, mode: str) -> IO[bytes]:
        return open(self.os_path(path), mode)  # noqa: SIM115 - the caller closes it

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        os.mkdir(self.os_path(path), mode)

    def remove(self, path: str) -> None:
        os.unlink(self.os_path(path))

    def rmdir(self, path: str) -> None:
        os.rmdir(self.os_path(path))

    def rename(self, src: str, dst: str) -> None:
        os.replace(self.os_path(src), self.os_path(dst))

    def touch(self, path: str) -> None:
        os.close(os.open(self.os_path(path), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))

    def create(self, path: str, mode: int = 0o666, flags: int | None = None) -> int | None:
        how = os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(self.os_path(path), how | (os.O_WRONLY if flags is None else flags & OPEN_FLAGS), mode)
        if flags is not None:
            return fd
        os.close(fd)
        return None

    def chmod(self, path: str, mode: int) -> None:
        real = self.os_path(path)
        if not os.path.islink(real):  # Linux symlinks have no mode of their own
            os.chmod(real, S.S_IMODE(mode))

    def chown(self, path: str, uid: int, gid: int) -> None:
        os.lchown(self.os_path(path), uid, gid)

    def utime(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        os.utime(self.os_path(path), ns=(atime_ns, mtime_ns), follow_symlinks=False)

    def symlink(self, target: str, path: str) -> None:
        os.symlink(target, self.os_path(path))

    def readlink(self, path: str) -> str:
        return os.readlink(self.os_path(path))

    def truncate(self, path: str, length: int) -> None:
        os.truncate(self.os_path(path), length)

    def statfs(self) -> dict[str, int]:
        st = os.statvfs(self.root)
        return {key: getattr(st, key) for key in (
            "f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
            "f_files", "f_ffree", "f_favail", "f_namemax")}


class FsspecLayer(Layer):
    """Any fsspec filesystem. Object stores have no real directories, modes or links."""

    def stat(self, path: str) -> Stat | None:
        try:
            info = self.fs.info(self.url(path))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return _stat_from_info(info)

    def listdir(self, path: str) -> dict[str, int] | None:
        url = self.url(path)
        try:
            if not self.fs.isdir(url):
                return None
            entries = self.fs.ls(url, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return None
        base = self.fs._strip_protocol(url).rstrip("/")
        names = {}
        for info in entries:
            name = self.fs._strip_protocol(info["name"]).rstrip("/")
            if name != base:
                names[posixpath.basename(name)] = S.S_IFDIR if info.get("type") == "directory" else S.S_IFREG
        return names

    def open(self, path: str, mode: str) -> IO[bytes]:
        return self.fs.open(self.url(path), mode)

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        url = self.url(path)
        if self.fs.exists(url):
            raise FileExistsError(errno.EEXIST, "exists", url)
        self.fs.mkdir(url, create_parents=False)

    def remove(self, path: str) -> None:
        self.fs.rm_file(self.url(path))

    def rmdir(self, path: str) -> None:
        self.fs.rmdir(self.url(path))

    def rename(self, src: str, dst: str) -> None:
        self.fs.mv(self.url(src), self.url(dst), recursive=True)


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


def _stat_from_info(info: dict[str, Any]) -> Stat:
    is_dir = info.get("type") == "directory"
    mode = info.get("mode")
    if not isinstance(mode, int) or not S.S_IFMT(mode):
        mode = (S.S_IFDIR | 0o755) if is_dir else (S.S_IFREG | 0o644)
    mtime = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    if hasattr(mtime, "timestamp"):
        mtime = mtime.timestamp()
    mtime_ns = int(float(mtime) * 1e9) if mtime else time.time_ns()
    return Stat(mode=mode, size=int(info.get("size") or 0), mtime_ns=mtime_ns,
                atime_ns=mtime_ns, ctime_ns=mtime_ns, nlink=2 if is_dir else 1)


def open_layer(url: str, storage_options: dict[str, Any] | None = None) -> Layer:
    """The layer for an fsspec URL: plain paths, file:// and local:// become `LocalLayer`."""
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    if isinstance(fs, LocalFileSystem):
        return LocalLayer(root)
    return FsspecLayer(fs, root.rstrip("/"))

