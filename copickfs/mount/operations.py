"""FUSE requests over a `UnionFileSystem` (or the precomputed view over it), on libfuse's
low-level API: inode numbers in, union calls out.

Owns only what is FUSE's: inode numbers and lookup counts (`inodes`), open handles,
errnos, cache times and flags, ownership of new entries. Local layers are served from
plain descriptors opened beneath their roots: libfuse splices reads from them and copies
writes into them, so file data never passes through Python. A file unlinked while open
is answered through its descriptor.

Cache times: entries whose winning layer is static never change, so the kernel keeps
their names, attributes and listings for ``static_timeout`` seconds; overlay entries for
``entry_timeout``/``attr_timeout`` (short where other machines write the overlay).
"""

from __future__ import annotations

import errno
import io
import logging
import os
import stat as S
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

from ..options import MountOptions
from ..precomputed import PrecomputedView
from ..union import UnionFileSystem
from ..union.openfile import OpenFile
from ..union.stat import Stat
from . import lowlevel
from .session import caller
from .errnos import translated
from .failures import FailureLog
from .handles import Handle, HandleTable
from .inodes import InodeTable
from .mountinfo import set_read_ahead
from .status import STATUS_INO, STATUS_NAME, StatusReport

log = logging.getLogger("copickfs.mount")

MiB = 1 << 20
RENAME_NOREPLACE = 1
UNKNOWN_INO = 0xFFFFFFFF  # d_ino of a plain READDIR entry the kernel has not looked up
ROOT_INO = 1


class Attr:
    """`struct stat` fields for libfuse, from a layer's `Stat` and our inode number."""

    __slots__ = ("st_ino", "st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size",
                 "st_blksize", "st_blocks", "st_atime_ns", "st_mtime_ns", "st_ctime_ns")

    def __init__(self, ino: int, st: Stat) -> None:
        self.st_ino, self.st_mode, self.st_nlink = ino, st.mode, st.nlink
        self.st_uid, self.st_gid, self.st_rdev = st.uid, st.gid, st.rdev
        self.st_size, self.st_blksize, self.st_blocks = st.size, 128 * 1024, (st.size + 511) // 512
        self.st_atime_ns, self.st_mtime_ns, self.st_ctime_ns = st.atime_ns, st.mtime_ns, st.ctime_ns


def _name(raw: bytes) -> str:
    return os.fsdecode(raw)


_STATUS_NAME = os.fsencode(STATUS_NAME)
_TIMES = {"atime_ns", "mtime_ns", "ctime_ns"}
#: Requests whose first arguments are (parent inode, name).
_PARENT_AND_NAME = frozenset({"lookup", "mknod", "mkdir", "unlink", "rmdir", "rename", "create"})


def _not_status(parent: int, name: bytes) -> None:
    """The control file's name is the daemon's: it is neither removed nor replaced."""
    if parent == ROOT_INO and name == _STATUS_NAME:
        raise OSError(errno.EPERM, "the status file is the daemon's")


class UnionHandler:
    """The low-level request handler (see `lowlevel.FuseSession` for the contract)."""

    def __init__(self, union: UnionFileSystem | PrecomputedView, options: MountOptions, mountpoint: str,
                 status: StatusReport | None = None) -> None:
        self.union = union  # the union, or the precomputed view over it: the same methods
        self.options = options
        self.mountpoint = mountpoint
        self.handles = HandleTable()
        self.inodes = InodeTable(options.max_inodes)
        self.status = status or StatusReport(mountpoint, None, options)
        self.status.open_files = self.handles.counts
        self.status.inodes = lambda: len(self.inodes)
        self.counters = self.status.counters  # counted by the session's dispatcher
        self.failures = FailureLog()
        self._status_attr = self._make_status_attr()
        self._aliases: Callable[[str], list[str]] | None = getattr(union, "aliases", None)
        self.session: Any = None  # set by the runner; used for cache invalidations
        self._as_root = os.geteuid() == 0
        self._stop = threading.Event()

    # ------------------------------------------------------------ lifecycle

    def init(self, conn: Any) -> None:
        conn.max_write = MiB
        conn.max_readahead = MiB
        # Move file data between descriptors and /dev/fuse with splice(2), never via Python.
        wanted = lowlevel.FUSE_CAP_SPLICE_WRITE | lowlevel.FUSE_CAP_SPLICE_MOVE | lowlevel.FUSE_CAP_SPLICE_READ
        if self.options.writeback_cache:
            wanted |= lowlevel.FUSE_CAP_WRITEBACK_CACHE
        conn.want |= conn.capable & wanted
        set_read_ahead(self.mountpoint, self.options.read_ahead_kb)  # mounted by now; no request sent
        threading.Thread(target=self._trim_inodes, name="copickfs-inode-trim", daemon=True).start()

    def destroy(self) -> None:
        self._stop.set()
        self.handles.close_all()

    def _trim_inodes(self) -> None:
        """Ask the kernel to drop the least recently used entries once the table is past
        its limit; its FORGETs then shrink the table (memory bounded by recent lookups)."""
        while not self._stop.wait(0.5):
            for parent, name in self.inodes.stale(20_000):
                if self._stop.is_set() or self.session is None:
                    return
                try:
                    self.session.notify_inval_entry(parent, os.fsencode(name))
                except OSError:
                    pass  # already gone

    def _changed(self, path: str) -> None:
        """The file at ``path`` changed through the mount: a precomputed chunk's other names
        must not show what the kernel cached under them. Each loses its inode number before
        this request is answered. Chunk names are given with no entry time-out (`_entry`),
        so the next open looks the name up, gets a new number and the kernel a new inode:
        it never takes a size from us for an inode it caches (with the writeback cache it
        trusts its own), and telling it to drop a name from inside a request could deadlock."""
        if self._aliases is not None:
            for alias in self._aliases(path):
                self.inodes.removed(alias)

    # ------------------------------------------------------------ entries

    def _timeout(self, layer: str) -> tuple[float, float]:
        if layer == "static":
            return self.options.static_timeout, self.options.static_timeout
        return self.options.entry_timeout, self.options.attr_timeout

    def _entry(self, path: str, st: Stat, layer: str) -> lowlevel.Entry:
        ino = self.inodes.lookup(path, st)
        entry_timeout, attr_timeout = self._timeout(layer)
        if self._aliases is not None and st.is_file and self._aliases(path):
            entry_timeout = 0.0  # a precomputed chunk name: see `_changed`
        return lowlevel.Entry(ino, Attr(ino, st), entry_timeout, attr_timeout)

    def _new_entry(self, path: str) -> lowlevel.Entry:
        """The entry of something just made through the mount, given to the caller first."""
        self._give_to_caller(path)
        st, layer = self.union.stat_entry(path)
        return self._entry(path, st, layer)

    @translated
    def lookup(self, parent: int, name: bytes) -> lowlevel.Entry:
        if parent == ROOT_INO and name == _STATUS_NAME:
            return lowlevel.Entry(STATUS_INO, self._status_attr, 0.0, 0.0)
        path = self.inodes.child(parent, _name(name))
        st, layer = self.union.stat_entry(path)
        return self._entry(path, st, layer)

    def forget(self, ino: int, nlookup: int) -> None:
        if ino != STATUS_INO:
            self.inodes.forget(ino, nlookup)

    def _stat(self, ino: int) -> tuple[Stat, str]:
        node = self.inodes.node(ino)
        if node.path is not None:
            try:
                return self.union.stat_entry(node.path)
            except FileNotFoundError:
                if not node.fds:
                    raise
        fd = self.inodes.open_fd(ino)
        if fd is None:
            raise OSError(errno.ENOENT, "no name and no open file")
        return Stat.from_os(os.fstat(fd)), "overlay"

    @translated
    def getattr(self, ino: int, fh: int | None) -> tuple[Attr, float]:
        if ino == STATUS_INO:
            return self._status_attr, 0.0
        st, layer = self._stat(ino)
        return Attr(ino, st), self._timeout(layer)[1]

    @translated
    def setattr(self, ino: int, changes: dict[str, Any], fh: int | None) -> tuple[Attr, float]:
        if ino == STATUS_INO:
            raise OSError(errno.EPERM, "the status file cannot be changed")
        if fh is None and changes.keys() <= _TIMES:
            gone = self._gone(ino, changes)
            if gone is not None:
                return gone, 0.0
        path, fd = self._target(ino, fh)
        if "size" in changes:
            if fd is not None:
                os.ftruncate(fd, changes["size"])
            else:
                self.union.truncate(path, changes["size"])
            self._changed(path)
        if "mode" in changes:
            mode = S.S_IMODE(changes["mode"])
            os.fchmod(fd, mode) if fd is not None else self.union.chmod(path, mode)
        if "uid" in changes or "gid" in changes:
            uid, gid = changes.get("uid", -1), changes.get("gid", -1)
            os.fchown(fd, uid, gid) if fd is not None else self.union.chown(path, uid, gid)
        if "atime_ns" in changes or "mtime_ns" in changes:
            self._set_times(ino, path, fd, changes.get("atime_ns"), changes.get("mtime_ns"))
        return self.getattr(ino, fh)

    def _gone(self, ino: int, changes: dict[str, Any]) -> Attr | None:
        """Attributes for the times the kernel writes back (writeback cache) for a file
        that was unlinked and closed meanwhile: nothing holds it any more, so there is
        nothing to change, and no reason to fail."""
        node = self.inodes.node(ino)
        if node.path is not None or self.inodes.open_fd(ino) is not None:
            return None
        now = time.time_ns()
        times = {k: (now if v == "now" else v) for k, v in changes.items()}
        mtime = times.get("mtime_ns", now)
        return Attr(ino, Stat(mode=node.kind or S.S_IFREG, size=0, mtime_ns=mtime,
                              atime_ns=times.get("atime_ns", mtime), ctime_ns=times.get("ctime_ns", now), nlink=0))

    def _target(self, ino: int, fh: int | None) -> tuple[str, int | None]:
        """(path, descriptor) a change applies to: an open handle's own descriptor when the
        request names one opened for writing, or when the file has no name left."""
        if fh is not None:
            handle = self.handles.get(fh)
            if handle.fd is not None and handle.writable:
                return handle.path, handle.fd
        node = self.inodes.node(ino)
        if node.path is None:
            fd = self.inodes.open_fd(ino)
            if fd is None:
                raise OSError(errno.ENOENT, "no name and no open file")
            return "", fd
        return node.path, None

    def _set_times(self, ino: int, path: str, fd: int | None, atime: Any, mtime: Any) -> None:
        now = time.time_ns()
        if atime is None or mtime is None:
            st, _ = self._stat(ino)
            atime = st.atime_ns if atime is None else atime
            mtime = st.mtime_ns if mtime is None else mtime
        atime, mtime = (now if atime == "now" else atime), (now if mtime == "now" else mtime)
        if fd is not None:
            os.utime(fd, ns=(atime, mtime))
        else:
            self.union.utime(path, atime, mtime)

    @translated
    def readlink(self, ino: int) -> bytes:
        return os.fsencode(self.union.readlink(self.inodes.path(ino)))

    @translated
    def statfs(self, ino: int) -> SimpleNamespace:
        return SimpleNamespace(**{"f_bsize": 4096, "f_frsize": 4096, "f_blocks": 0, "f_bfree": 0,
                                  "f_bavail": 0, "f_files": 0, "f_ffree": 0, "f_favail": 0,
                                  "f_namemax": 255, **self.union.statfs()})

    # ------------------------------------------------------------ making and removing names

    @translated
    def mknod(self, parent: int, name: bytes, mode: int, rdev: int) -> lowlevel.Entry:
        path = self.inodes.child(parent, _name(name))
        if S.S_ISREG(mode):
            self.union.create(path, S.S_IMODE(mode))
        else:
            self.union.mknod(path, mode, rdev)
        return self._new_entry(path)

    @translated
    def mkdir(self, parent: int, name: bytes, mode: int) -> lowlevel.Entry:
        path = self.inodes.child(parent, _name(name))
        self.union.mkdir(path, create_parents=False, mode=S.S_IMODE(mode))
        return self._new_entry(path)

    @translated
    def symlink(self, target: bytes, parent: int, name: bytes) -> lowlevel.Entry:
        path = self.inodes.child(parent, _name(name))
        self.union.symlink(os.fsdecode(target), path)
        return self._new_entry(path)

    @translated
    def link(self, ino: int, newparent: int, newname: bytes) -> lowlevel.Entry:
        src, dst = self.inodes.path(ino), self.inodes.child(newparent, _name(newname))
        self.union.link(src, dst)
        st, layer = self.union.stat_entry(dst)
        self.inodes.linked(ino, dst, st)
        entry_timeout, attr_timeout = self._timeout(layer)
        return lowlevel.Entry(ino, Attr(ino, st), entry_timeout, attr_timeout)

    @translated
    def unlink(self, parent: int, name: bytes) -> None:
        _not_status(parent, name)
        path = self.inodes.child(parent, _name(name))
        self.union.unlink(path)
        self.inodes.removed(path)
        self._changed(path)

    @translated
    def rmdir(self, parent: int, name: bytes) -> None:
        _not_status(parent, name)
        path = self.inodes.child(parent, _name(name))
        self.union.rmdir(path)
        self.inodes.removed(path)

    @translated
    def rename(self, parent: int, name: bytes, newparent: int, newname: bytes, flags: int) -> None:
        if flags & ~RENAME_NOREPLACE:
            raise OSError(errno.EINVAL, "RENAME_EXCHANGE and RENAME_WHITEOUT are not supported")
        _not_status(parent, name)
        _not_status(newparent, newname)
        src = self.inodes.child(parent, _name(name))
        dst = self.inodes.child(newparent, _name(newname))
        self.union.posix_rename(src, dst, replace=not flags & RENAME_NOREPLACE)
        self.inodes.moved(src, dst)
        self._changed(src)
        self._changed(dst)

    # ------------------------------------------------------------ directories

    @translated
    def opendir(self, ino: int, flags: int) -> lowlevel.Opened:
        path = self.inodes.path(ino)
        if not self.union.stat_entry(path)[0].is_dir:
            raise OSError(errno.ENOTDIR, "not a directory")
        cache = self.options.static_timeout > 0 and self.union.cacheable(path)
        handle = Handle(path, ino=ino, directory=self.union.open_directory(path))
        return lowlevel.Opened(self.handles.add(handle), keep_cache=cache, cache_readdir=cache)

    @translated
    def releasedir(self, ino: int, fh: int) -> None:
        handle = self.handles.pop(fh)
        if handle is not None:
            handle.close()

    def _listing(self, ino: int, fh: int, offset: int) -> list[Any]:
        """The directory's entries, made at offset 0 and kept on the handle while the kernel
        pages through it: (name, type bits, stat call or Stat, layer)."""
        handle = self.handles.get(fh)
        if offset == 0 or handle.entries is None:
            # Listed through the descriptors the directory was opened with; its current path
            # (renames through the mount follow it) names the children for lookups.
            handle.path = path = self.inodes.path(ino)
            parent = self.inodes.peek(path.rpartition("/")[0]) or ino
            handle.entries = [[".", S.S_IFDIR, ino, ""], ["..", S.S_IFDIR, parent, ""],
                              *(list(child) for child in handle.directory.children(path))]
        return handle.entries

    @translated
    def readdir(self, ino: int, size: int, offset: int, fh: int) -> Iterator[tuple[bytes, int, int, int]]:
        """Names, types and known inode numbers: all a plain READDIR (`find`) carries."""
        entries = self._listing(ino, fh, offset)
        prefix = self.handles.get(fh).path
        prefix = f"{prefix}/" if prefix else ""
        peek = self.inodes.peek
        return ((os.fsencode(name), kind, st if not layer else peek(prefix + name) or UNKNOWN_INO, index + 1)
                for index, (name, kind, st, layer) in enumerate(entries) if index >= offset)

    @translated
    def readdirplus(self, ino: int, size: int, offset: int,
                    fh: int) -> Iterator[tuple[bytes, int, Callable[[], lowlevel.Entry]]]:
        """Names with full entries (`ls -l` then needs no lookup per name); each stat is
        made when a page asks for it and kept on the handle."""
        entries = self._listing(ino, fh, offset)
        prefix = self.handles.get(fh).path
        prefix = f"{prefix}/" if prefix else ""
        return self._plus(entries, prefix, offset)

    def _plus(self, entries: list[Any], prefix: str, offset: int) -> Iterator[tuple[bytes, int, Callable[[], lowlevel.Entry]]]:
        for index in range(offset, len(entries)):
            item = entries[index]
            name, _, st, layer = item
            if not layer:  # "." and "..": the dispatcher counts no lookup for them
                yield os.fsencode(name), index + 1, (lambda ino=st: self._dot(ino))
                continue
            if callable(st):
                st = item[2] = st()
                if st is None:  # removed since the listing was made
                    continue
            path = prefix + name
            yield os.fsencode(name), index + 1, (lambda p=path, s=st, lay=layer: self._entry(p, s, lay))

    def _dot(self, ino: int) -> lowlevel.Entry | None:
        try:
            st, layer = self._stat(ino)
        except OSError:
            return None
        return lowlevel.Entry(ino, Attr(ino, st), *self._timeout(layer))

    # ------------------------------------------------------------ files

    def _descriptor_flags(self, flags: int) -> int:
        """With the writeback cache the kernel reads pages of files open for writing only
        and computes append offsets itself: open O_RDWR, without O_APPEND."""
        if self.options.writeback_cache and flags & os.O_ACCMODE != os.O_RDONLY:
            return (flags & ~(os.O_ACCMODE | os.O_APPEND)) | os.O_RDWR
        return flags

    def _opened(self, ino: int, handle: Handle, reading_static: bool) -> lowlevel.Opened:
        self.inodes.opened(ino, handle.fd)
        keep = reading_static and self.options.static_page_cache
        return lowlevel.Opened(self.handles.add(handle), keep_cache=keep)

    @translated
    def open(self, ino: int, flags: int) -> lowlevel.Opened:
        if ino == STATUS_INO:
            return self._open_status(flags)
        path = self.inodes.path(ino)
        writable = flags & os.O_ACCMODE != os.O_RDONLY
        opened = self.union.open_file(path, self._descriptor_flags(flags))
        if opened is not None:
            handle = Handle(path, opened=opened, writable=writable, ino=ino)
        elif writable or flags & os.O_TRUNC:
            raise OSError(errno.ENOTSUP, "this overlay cannot be written through the mount")
        else:
            handle = Handle(path, file=self.union.open(path, "rb"), ino=ino)
        return self._opened(ino, handle, not writable and self.union.layer_of(path) == "static")

    @translated
    def create(self, parent: int, name: bytes, mode: int, flags: int) -> tuple[lowlevel.Entry, lowlevel.Opened]:
        path = self.inodes.child(parent, _name(name))
        flags &= ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC)
        fd = self.union.create(path, S.S_IMODE(mode), self._descriptor_flags(flags))
        opened = OpenFile(fd) if fd is not None else self.union.open_file(path, self._descriptor_flags(flags))
        if opened is None:
            raise OSError(errno.ENOTSUP, "this overlay cannot be written through the mount")
        try:
            owner = self._caller()
            if owner is not None and fd is not None:
                os.fchown(fd, *owner)
            st = Stat.from_os(os.fstat(opened.fd)) if fd is not None else self.union.stat_entry(path)[0]
        except BaseException:
            opened.close()
            raise
        entry = self._entry(path, st, "overlay")
        handle = Handle(path, opened=opened, writable=True, ino=entry.ino)
        self._changed(path)
        return entry, self._opened(entry.ino, handle, False)

    @translated
    def read(self, ino: int, size: int, offset: int, fh: int) -> int | bytes:
        handle = self.handles.get(fh)
        if handle.opened is not None:
            handle.opened.ensure(offset, size)  # a remote layer's cache fetches the bytes
            return handle.opened.fd  # libfuse splices from it
        return handle.read(size, offset)

    def write_fd(self, ino: int, fh: int) -> int | None:
        """The descriptor writes are copied into; None (the dispatcher answers EBADF) for a
        handle not opened for writing."""
        handle = self.handles.get(fh)
        return handle.fd if handle.writable else None

    @translated
    def flush(self, ino: int, fh: int) -> None:
        """close(2): a staged copy of a remote overlay uploads here, and reports EIO if it cannot."""
        handle = self.handles.get(fh)
        if handle.opened is not None and handle.writable:
            handle.opened.flush()
            self._changed(handle.path)

    @translated
    def fsync(self, ino: int, datasync: int, fh: int) -> None:
        handle = self.handles.get(fh)
        if handle.opened is not None:
            handle.opened.sync(bool(datasync))
            if handle.writable:
                self._changed(handle.path)

    @translated
    def release(self, ino: int, fh: int, flags: int = 0) -> None:
        handle = self.handles.pop(fh)
        if handle is not None:
            self.inodes.closed(ino, handle.fd)
            handle.close()

    # ------------------------------------------------------------ failures

    def report_failure(self, op: str, args: tuple[Any, ...], code: int) -> None:
        """Called by `translated` for each failed request: one rate-limited log line (the
        path is worked out only for a line that goes out)."""
        self.failures.failed(op, lambda: self._path_of(op, args), code)

    def _path_of(self, op: str, args: tuple[Any, ...]) -> str | None:
        try:
            if op == "symlink":
                return self.inodes.child(args[1], _name(args[2]))
            if op in _PARENT_AND_NAME:
                return self.inodes.child(args[0], _name(args[1]))
            return self.inodes.path(args[0])
        except (OSError, IndexError, TypeError):
            return None

    # ------------------------------------------------------------ the status file

    def _make_status_attr(self) -> Attr:
        """Owned by the daemon's user, readable by it alone; size 0, read with direct I/O
        (like /proc files: the content is made at open)."""
        now = int(self.status.started * 1e9)
        st = Stat(mode=S.S_IFREG | 0o400, size=0, mtime_ns=now, atime_ns=now, ctime_ns=now,
                  uid=os.geteuid(), gid=os.getegid())
        return Attr(STATUS_INO, st)

    def _open_status(self, flags: int) -> lowlevel.Opened:
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            raise OSError(errno.EACCES, "the status file is read-only")
        uid = caller()[0]
        if uid not in (0, os.geteuid()):  # default_permissions checks too; this holds without it
            raise OSError(errno.EACCES, "the status is for the mount's owner")
        handle = Handle(STATUS_NAME, file=io.BytesIO(self.status.render()), ino=STATUS_INO)
        return lowlevel.Opened(self.handles.add(handle), direct_io=True)

    # ------------------------------------------------------------ ownership

    def _caller(self) -> tuple[int, int] | None:
        """(uid, gid) new entries must get, when that is not the daemon's own (root) identity."""
        if not self._as_root:
            return None
        uid, gid = caller()[:2]
        return (uid, gid) if uid or gid else None

    def _give_to_caller(self, path: str) -> None:
        """New entries belong to the user who made them, not to the daemon."""
        owner = self._caller()
        if owner is not None:
            self.union.chown(path, *owner)
