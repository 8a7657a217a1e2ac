"""FUSE operations over a `UnionFileSystem`: POSIX calls in, union calls out.

Owns only what is FUSE's: handles, inode numbers, errnos, cache flags, ownership of
new files. Local layers are served from plain descriptors: libfuse reads them itself
(``read_buf``) and copies writes into them (``write_buf``) without the data passing
through Python.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import stat as S
import time
from collections.abc import Iterator
from typing import Any

from ..options import MountOptions
from ..precomputed import PrecomputedView
from ..union import UnionFileSystem
from ..union.stat import Stat
from . import fuselib
from .errnos import translated
from .handles import Handle, HandleTable
from .inodes import InodeTable
from .mountinfo import set_read_ahead

mfusepy = fuselib.load_mfusepy()
Operations = mfusepy.Operations
overrides = mfusepy.overrides

log = logging.getLogger("copickfs.mount")

MiB = 1 << 20
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
RENAME_NOREPLACE = 1
SPLICE_CAPS = (1 << 7) | (1 << 8) | (1 << 9)  # FUSE_CAP_SPLICE_WRITE, _MOVE, _READ
WRITEBACK_CACHE = 1 << 16  # FUSE_CAP_WRITEBACK_CACHE


def _rel(path: str | None) -> str:
    if path is None:
        raise OSError(errno.ENOENT, "no path for an unlinked file")
    return path.strip("/")


class UnionOperations(Operations):  # type: ignore[misc]
    use_ns = True

    def __init__(self, union: UnionFileSystem | PrecomputedView, options: MountOptions, mountpoint: str) -> None:
        self.union = union  # the union, or the precomputed view over it: the same methods
        self.options = options
        self.mountpoint = mountpoint
        self.handles = HandleTable()
        self.inodes = InodeTable()
        self._buf_copy, self._buf_size = fuselib.bind_buf_functions(mfusepy._libfuse)
        self._as_root = os.geteuid() == 0

    # ------------------------------------------------------------ lifecycle

    @overrides(Operations)
    def init_with_config(self, conn: Any, config: Any) -> None:
        if config is not None:
            config.use_ino = 1
            config.hard_remove = 1  # open files of unlinked names keep working through their fd
            config.nullpath_ok = 1
            config.entry_timeout = self.options.entry_timeout
            config.attr_timeout = self.options.attr_timeout
            config.negative_timeout = self.options.negative_timeout
        if conn is not None:
            conn.max_write = MiB
            conn.max_readahead = MiB
            # Move file data between descriptors and /dev/fuse with splice(2), never via Python.
            conn.want |= conn.capable & SPLICE_CAPS
            if self.options.writeback_cache:
                conn.want |= conn.capable & WRITEBACK_CACHE
        set_read_ahead(self.mountpoint, self.options.read_ahead_kb)  # mounted by now; no request sent

    @overrides(Operations)
    def destroy(self, path: str) -> None:
        self.handles.close_all()

    # ------------------------------------------------------------ attributes

    def _attrs(self, path: str, st: Stat | os.stat_result) -> dict[str, Any]:
        if isinstance(st, os.stat_result):
            st = Stat.from_os(st)
        return {
            "st_ino": self.inodes(path),
            "st_mode": st.mode,
            "st_nlink": st.nlink,
            "st_uid": st.uid,
            "st_gid": st.gid,
            "st_size": st.size,
            "st_blocks": (st.size + 511) // 512,
            "st_blksize": 128 * 1024,
            "st_atime": st.atime_ns,
            "st_mtime": st.mtime_ns,
            "st_ctime": st.ctime_ns,
        }

    @overrides(Operations)
    @translated
    def getattr(self, path: str | None, fi: Any = None) -> dict[str, Any]:
        if path is None and fi is not None:  # fstat(2): libfuse sends the handle, not the path
            handle = self.handles.get(fi.fh)
            if handle.fd is not None:
                return self._attrs(handle.path, os.fstat(handle.fd))
            path = handle.path
        rel = _rel(path)
        st, _ = self.union.stat_entry(rel)
        return self._attrs(rel, st)

    @overrides(Operations)
    @translated
    def access(self, path: str, amode: int) -> int:
        self.union.stat_entry(_rel(path))  # permissions are the kernel's (default_permissions)
        return 0

    @overrides(Operations)
    @translated
    def readlink(self, path: str) -> str:
        return self.union.readlink(_rel(path))

    @overrides(Operations)
    @translated
    def statfs(self, path: str) -> dict[str, int]:
        return self.union.statfs()

    # ------------------------------------------------------------ directories

    @overrides(Operations)
    @translated
    def opendir(self, path: str) -> int:
        rel = _rel(path)
        if not self.union.stat_entry(rel)[0].is_dir:
            raise OSError(errno.ENOTDIR, "not a directory")
        return self.handles.add(Handle(rel))

    @overrides(Operations)
    @translated
    def releasedir(self, path: str | None, fh: int) -> int:
        self.handles.pop(fh)
        return 0

    @overrides(Operations)
    @translated
    def readdir(self, path: str | None, fh: int) -> list[tuple[str, int, int]]:
        """(name, file type bits, inode) of every entry: all a plain READDIR carries."""
        rel = self.handles.get(fh).path
        prefix, inodes = f"{rel}/" if rel else "", self.inodes
        return [(".", S.S_IFDIR, inodes(rel)), ("..", S.S_IFDIR, inodes(rel.rpartition("/")[0]))] + [
            (name, kind, inodes(prefix + name)) for name, kind in self.union.listdir_types(rel).items()]

    @translated
    def readdir_plus(self, path: str | None, fh: int, offset: int) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """(index, name, attributes) from ``offset`` on, for READDIRPLUS (`ls -l` then needs
        no lookup per name).

        The kernel pages through a directory with growing offsets: the listing is made at
        offset 0 and kept on the directory handle; each entry is stat'ed only when a page
        asks for it, and the result kept.
        """
        handle = self.handles.get(fh)
        if offset == 0 or handle.entries is None:
            rel = handle.path
            parent = rel.rpartition("/")[0]
            handle.entries = [  # a zero st_ino would make readdir(3) skip the dots
                (".", {"st_mode": S.S_IFDIR, "st_ino": self.inodes(rel)}),
                ("..", {"st_mode": S.S_IFDIR, "st_ino": self.inodes(parent)}),
                *((name, stat) for name, _, stat in self.union.children(rel))]
        return self._stat_entries(handle, offset)

    def _stat_entries(self, handle: Handle, offset: int) -> Iterator[tuple[int, str, dict[str, Any]]]:
        entries, prefix = handle.entries or [], f"{handle.path}/" if handle.path else ""
        for index in range(offset, len(entries)):
            name, attrs = entries[index]
            if callable(attrs):
                st = attrs()
                if st is None:  # removed since the listing was made
                    continue
                attrs = self._attrs(prefix + name, st)
                entries[index] = (name, attrs)
            yield index, name, attrs

    @overrides(Operations)
    @translated
    def mkdir(self, path: str, mode: int) -> int:
        rel = _rel(path)
        self.union.mkdir(rel, create_parents=False, mode=S.S_IMODE(mode))
        self._give_to_caller(rel)
        return 0

    @overrides(Operations)
    @translated
    def rmdir(self, path: str) -> int:
        rel = _rel(path)
        self.union.rmdir(rel)
        self.inodes.forget(rel)
        return 0

    # ------------------------------------------------------------ names

    @overrides(Operations)
    @translated
    def unlink(self, path: str) -> int:
        rel = _rel(path)
        self.union.unlink(rel)
        self.inodes.forget(rel)
        return 0

    @overrides(Operations)
    @translated
    def rename(self, old: str, new: str, flags: int = 0) -> int:
        src, dst = _rel(old), _rel(new)
        if flags & ~RENAME_NOREPLACE:
            raise OSError(errno.EINVAL, "RENAME_EXCHANGE and RENAME_WHITEOUT are not supported")
        is_dir = self.union.stat_entry(src)[0].is_dir
        self.union.posix_rename(src, dst, replace=not flags & RENAME_NOREPLACE)
        self.inodes.moved(src, dst, is_dir)
        return 0

    @overrides(Operations)
    @translated
    def link(self, target: str, source: str) -> int:
        self.union.link(_rel(source), _rel(target))
        return 0

    @overrides(Operations)
    @translated
    def symlink(self, target: str, source: str) -> int:
        rel = _rel(target)
        self.union.symlink(source, rel)
        self._give_to_caller(rel)
        return 0

    # ------------------------------------------------------------ metadata

    def _written_fd(self, path: str | None, fi: Any) -> tuple[str, int | None]:
        """(path, overlay descriptor) for a request that may come with an open handle.

        libfuse sends no path when the kernel names an open file (the writeback cache
        updates times that way); a handle opened for writing is the overlay's copy.
        """
        if path is not None or fi is None:
            return _rel(path), None
        handle = self.handles.get(fi.fh)
        return handle.path, handle.fd if handle.writable else None

    @overrides(Operations)
    @translated
    def chmod(self, path: str | None, mode: int, fi: Any = None) -> int:
        rel, fd = self._written_fd(path, fi)
        if fd is not None:
            os.fchmod(fd, S.S_IMODE(mode))
        else:
            self.union.chmod(rel, S.S_IMODE(mode))
        return 0

    @overrides(Operations)
    @translated
    def chown(self, path: str | None, uid: int, gid: int, fi: Any = None) -> int:
        rel, fd = self._written_fd(path, fi)
        if fd is not None:
            os.fchown(fd, uid, gid)
        else:
            self.union.chown(rel, uid, gid)
        return 0

    @overrides(Operations)
    @translated
    def utimens(self, path: str | None, times: tuple[int, int] | None = None, fi: Any = None) -> int:
        rel, fd = self._written_fd(path, fi)
        now = time.time_ns()
        atime, mtime = times if times is not None else (UTIME_NOW, UTIME_NOW)
        if UTIME_OMIT in (atime, mtime):
            st = Stat.from_os(os.fstat(fd)) if fd is not None else self.union.stat_entry(rel)[0]
            atime = st.atime_ns if atime == UTIME_OMIT else atime
            mtime = st.mtime_ns if mtime == UTIME_OMIT else mtime
        atime, mtime = (now if atime == UTIME_NOW else atime), (now if mtime == UTIME_NOW else mtime)
        if fd is not None:
            os.utime(fd, ns=(atime, mtime))
        else:
            self.union.utime(rel, atime, mtime)
        return 0

    @overrides(Operations)
    @translated
    def truncate(self, path: str | None, length: int, fi: Any = None) -> int:
        if path is None and fi is not None:  # ftruncate(2): the handle is open for writing
            handle = self.handles.get(fi.fh)
            if handle.fd is not None:
                os.ftruncate(handle.fd, length)
                return 0
            path = handle.path
        self.union.truncate(_rel(path), length)
        return 0

    # ------------------------------------------------------------ files

    def _descriptor_flags(self, flags: int) -> int:
        """With the writeback cache the kernel reads pages of files open for writing only
        and computes append offsets itself: open O_RDWR, without O_APPEND."""
        if self.options.writeback_cache and flags & os.O_ACCMODE != os.O_RDONLY:
            return (flags & ~(os.O_ACCMODE | os.O_APPEND)) | os.O_RDWR
        return flags

    def _open_handle(self, rel: str, flags: int) -> Handle:
        writable = flags & os.O_ACCMODE != os.O_RDONLY
        fd = self.union.open_fd(rel, self._descriptor_flags(flags))
        if fd is not None:
            return Handle(rel, fd=fd, writable=writable)
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC):
            raise OSError(errno.ENOTSUP, "writing through the mount needs a local overlay")
        return Handle(rel, file=self.union.open(rel, "rb"))

    def _register(self, rel: str, flags: int, fi: Any) -> int:
        handle = self._open_handle(rel, flags)
        fi.fh = self.handles.add(handle)
        writing = flags & (os.O_WRONLY | os.O_RDWR)
        if not writing and self.options.static_page_cache and self.union.layer_of(rel) == "static":
            fi.keep_cache = 1  # static never changes: keep its pages across opens
        return 0

    @overrides(Operations)
    @translated
    def open(self, path: str, fi: Any) -> int:
        return self._register(_rel(path), fi.flags, fi)

    @overrides(Operations)
    @translated
    def create(self, path: str, mode: int, fi: Any) -> int:
        rel = _rel(path)
        flags = fi.flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC)
        fd = self.union.create(rel, S.S_IMODE(mode), self._descriptor_flags(flags))
        if fd is None:
            self._give_to_caller(rel)
            return self._register(rel, flags, fi)
        owner = self._caller()
        if owner is not None:
            os.fchown(fd, *owner)
        fi.fh = self.handles.add(Handle(rel, fd=fd, writable=True))
        return 0

    @overrides(Operations)
    @translated
    def read_buf(self, path: str | None, bufpp: Any, size: int, offset: int, fi: Any) -> int:
        handle = self.handles.get(fi.fh)
        address, vec = fuselib.malloc_bufvec()
        vec.count = 1
        buf = vec.buf[0]
        if handle.fd is not None:  # libfuse reads the descriptor itself
            buf.flags = fuselib.FUSE_BUF_IS_FD | fuselib.FUSE_BUF_FD_SEEK
            buf.fd, buf.pos, buf.size = handle.fd, offset, size
        else:
            data = handle.read(size, offset)
            buf.mem, buf.size = fuselib.malloc_bytes(data), len(data)
        ctypes.cast(bufpp, ctypes.POINTER(ctypes.c_void_p))[0] = address
        return 0

    @overrides(Operations)
    @translated
    def write_buf(self, path: str | None, buf: Any, offset: int, fi: Any) -> int:
        handle = self.handles.get(fi.fh)
        if handle.fd is None:
            raise OSError(errno.EBADF, "not open for writing")
        dst = fuselib.FuseBufvec(count=1)
        dst.buf[0].flags = fuselib.FUSE_BUF_IS_FD | fuselib.FUSE_BUF_FD_SEEK
        dst.buf[0].fd, dst.buf[0].pos, dst.buf[0].size = handle.fd, offset, self._buf_size(buf)
        written = self._buf_copy(ctypes.byref(dst), buf, 0)
        if written < 0:
            raise OSError(-written, os.strerror(-written))
        return written

    @overrides(Operations)
    @translated
    def flush(self, path: str | None, fi: Any) -> int:
        return 0

    @overrides(Operations)
    @translated
    def fsync(self, path: str | None, datasync: int, fi: Any) -> int:
        handle = self.handles.get(fi.fh)
        if handle.fd is not None:
            (os.fdatasync if datasync else os.fsync)(handle.fd)
        return 0

    @overrides(Operations)
    @translated
    def release(self, path: str | None, fi: Any) -> int:
        handle = self.handles.pop(fi.fh)
        if handle is not None:
            handle.close()
        return 0

    # ------------------------------------------------------------ ownership

    def _caller(self) -> tuple[int, int] | None:
        """(uid, gid) new entries must get, when that is not the daemon's own (root) identity."""
        if not self._as_root:
            return None
        uid, gid, _ = mfusepy.fuse_get_context()
        return (uid, gid) if uid or gid else None

    def _give_to_caller(self, rel: str) -> None:
        """New entries belong to the user who made them, not to the daemon."""
        owner = self._caller()
        if owner is not None:
            self.union.chown(rel, *owner)

