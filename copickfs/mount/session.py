"""A FUSE session on libfuse's low-level API, dispatching requests to a Python handler.

The handler is any object; for each request libfuse gets, the method of the same name is
called if the handler has it (otherwise the op pointer stays NULL and libfuse answers
ENOSYS, or its documented default, without entering Python). Names are bytes, inodes
ints, ``fh`` the integer a handler put in `Opened`. A method may raise OSError (its errno
is replied; an errno-less one is mapped by class, `errnos.errno_of`); any other exception
is logged and replied as EIO. Methods and what they return:

=============================================  ===============================================
init(conn: ConnInfo)                            None; may change conn.want, max_write, ...
destroy()                                       None
lookup(parent, name)                            Entry (ino 0 = negative entry, cached)
forget(ino, nlookup) / forget_multi(items)      None (no reply); items: list of (ino, nlookup)
getattr(ino, fh | None)                         (attr, attr_timeout)
setattr(ino, changes, fh | None)                (attr, attr_timeout); changes: keys 'mode' 'uid'
                                                'gid' 'size' 'atime_ns' 'mtime_ns' 'ctime_ns',
                                                only those to set; atime/mtime may be 'now'
readlink(ino)                                   bytes
mknod(parent, name, mode, rdev)                 Entry
mkdir(parent, name, mode)                       Entry
symlink(target, parent, name)                   Entry
link(ino, newparent, newname)                   Entry
unlink(parent, name), rmdir(parent, name)       None
rename(parent, name, newparent, newname, flags) None
open(ino, flags), opendir(ino, flags)           Opened (or a bare int fh)
create(parent, name, mode, flags)               (Entry, Opened)
read(ino, size, off, fh)                        int fd (libfuse reads ``size`` bytes at ``off``
                                                from it, by splice if enabled) or bytes
write_fd(ino, fh)                               int fd to copy the written data into, at the
                                                request's offset, in C; or None, then
write(ino, fh, off, data: bytes)                int bytes written
flush(ino, fh), release(ino, fh, flags),        None
releasedir(ino, fh), fsync(ino, datasync, fh),
fsyncdir(ino, datasync, fh)
readdir(ino, size, off, fh)                     iterable of (name, mode, ino, next_off)
readdirplus(ino, size, off, fh)                 iterable of (name, next_off, make_entry)
statfs(ino)                                     os.statvfs_result-like
fallocate(ino, mode, offset, length, fh)        None
lseek(ino, off, whence, fh)                     int
access(ino, mask)                               None
=============================================  ===============================================

Directory listings: both readdir iterables start after ``off`` (0: from the start) and give
each entry the offset of the entry after it. The dispatcher stops at the first entry that
does not fit in ``size``; that entry is not sent, and the kernel asks again from the
previous entry's ``next_off``. In readdirplus, ``make_entry()`` is called only for entries
that fit: every Entry with a non-zero ino it returns is a lookup the kernel will forget
later, so count it there. It may return None, or raise FileNotFoundError, for a name gone
since the listing was made: the entry is skipped. For ``b"."`` and ``b".."`` the dispatcher
sends node id 0 with ``make_entry()``'s ``attr.st_ino`` and mode (as libfuse's
passthrough_ll does; the kernel ignores dots in READDIRPLUS anyway), so no lookup is
counted for them. A handler with readdirplus and no readdir gets FUSE_CAP_READDIRPLUS_AUTO
cleared after its init, so the kernel never sends a plain READDIR.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from .errnos import errno_of
from .lowlevel import (
    BUFVEC_SIZE, BUFVEC_STRUCT, CTX_SIZE, CTX_STRUCT, DIRENT_HEADER, DIRENT_STAT, DIRENT_STAT_OFFSET,
    DIRENTPLUS_HEADER, ENTRY_ATTR_OFFSET, ENTRY_STRUCT, FORGET_STRUCT, FUSE_BUF_FD_SEEK, FUSE_BUF_IS_FD,
    FUSE_BUF_SPLICE_MOVE, FUSE_CAP_READDIRPLUS_AUTO, FUSE_SET_ATTR_ATIME, FUSE_SET_ATTR_ATIME_NOW,
    FUSE_SET_ATTR_CTIME, FUSE_SET_ATTR_GID, FUSE_SET_ATTR_MODE, FUSE_SET_ATTR_MTIME, FUSE_SET_ATTR_MTIME_NOW,
    FUSE_SET_ATTR_SIZE, FUSE_SET_ATTR_UID, NS, OP_TYPES, ST_ATIM, ST_CTIM, ST_GID, ST_MODE, ST_MTIM, ST_SIZE,
    ST_UID, STAT_STRUCT, STATVFS_STRUCT, ConnInfo, Entry, FileInfoRaw, FuseArgs, LowlevelOps, Opened,
    fuse_add_direntry, fuse_add_direntry_plus, fuse_buf_copy, fuse_buf_size, fuse_loop_cfg_create,
    fuse_loop_cfg_destroy, fuse_loop_cfg_set_clone_fd, fuse_loop_cfg_set_max_threads,
    fuse_lowlevel_notify_delete, fuse_lowlevel_notify_inval_entry, fuse_lowlevel_notify_inval_inode,
    fuse_opt_free_args, fuse_remove_signal_handlers, fuse_reply_attr, fuse_reply_buf, fuse_reply_create,
    fuse_reply_data, fuse_reply_entry, fuse_reply_err, fuse_reply_lseek, fuse_reply_none, fuse_reply_open,
    fuse_reply_readlink, fuse_reply_statfs, fuse_reply_write, fuse_req_ctx, fuse_session_destroy,
    fuse_session_exit, fuse_session_loop, fuse_session_loop_mt, fuse_session_mount, fuse_session_new,
    fuse_session_unmount, fuse_set_signal_handlers, pack_entry, pack_statvfs,
)

__all__ = ["ConnInfo", "Entry", "FuseSession", "Opened", "caller", "caller_umask"]

log = logging.getLogger("copickfs.mount")

_FD_BUF = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK
_ENOENT = -errno.ENOENT  # what fuse_reply_* returns when the request was interrupted meanwhile


def _pin_thread_state() -> None:
    """Keep this thread's Python thread state for the thread's lifetime.

    ctypes runs a callback on a thread Python did not create (libfuse's workers) under
    PyGILState_Ensure/Release, which creates and destroys a thread state on every call:
    that costs time and empties every threading.local. One unmatched Ensure keeps it.
    """
    ctypes.pythonapi.PyGILState_Ensure()


class _Local(threading.local):
    """Per-thread reply buffers (a request is answered on the thread that got it) and the
    request being served, for `caller`."""

    def __init__(self) -> None:
        _pin_thread_state()
        self.req: int | None = None
        self.ebuf = ctypes.create_string_buffer(ENTRY_STRUCT.size)  # fuse_entry_param / stat
        self.eaddr = ctypes.addressof(self.ebuf)
        self.sbuf = ctypes.create_string_buffer(max(STAT_STRUCT.size, STATVFS_STRUCT.size))
        self.saddr = ctypes.addressof(self.sbuf)
        self.bvbuf = ctypes.create_string_buffer(BUFVEC_SIZE)
        self.bvaddr = ctypes.addressof(self.bvbuf)
        self.dbuf = ctypes.create_string_buffer(4096)  # directory pages; grown on demand
        self.daddr = ctypes.addressof(self.dbuf)


_tls = _Local()


def caller() -> tuple[int, int, int]:
    """(uid, gid, pid) of the process whose request the current handler call serves.

    Valid only on the thread running a handler method, while it runs.
    """
    req = _tls.req
    if not req:
        raise RuntimeError("caller() is only valid inside a FUSE request handler")
    uid, gid, pid, _ = CTX_STRUCT.unpack(ctypes.string_at(fuse_req_ctx(req), CTX_SIZE))
    return uid, gid, pid


def caller_umask() -> int:
    """The umask of the calling process (0 when the kernel does not send it)."""
    req = _tls.req
    if not req:
        raise RuntimeError("caller_umask() is only valid inside a FUSE request handler")
    return CTX_STRUCT.unpack(ctypes.string_at(fuse_req_ctx(req), CTX_SIZE))[3]


def _errno(exc: BaseException, op: str) -> int:
    if isinstance(exc, OSError):
        code = exc.errno
        if type(code) is int and code > 0:
            return code
        code = errno_of(exc)
        if code != errno.EIO:
            return code
    log.error("FUSE %s failed", op, exc_info=exc)
    return errno.EIO


def _quietly(fn: Callable[..., Any] | None, *args: Any) -> None:
    """Undo work for a reply the kernel did not take (interrupted request): release, forget."""
    if fn is None:
        return
    try:
        fn(*args)
    except BaseException:
        log.exception("FUSE %s%r after an interrupted reply failed", getattr(fn, "__name__", fn), args)


def _fh(fi: int | None) -> int | None:
    return FileInfoRaw.from_address(fi).fh if fi else None


def _set_opened(f: FileInfoRaw, o: Opened | int) -> int:
    if type(o) is int:
        f.fh = o
        return o
    f.fh = o.fh  # type: ignore[union-attr]
    bits = o.bits()  # type: ignore[union-attr]
    if bits:
        f.bits |= bits
    return o.fh  # type: ignore[union-attr]


def _changes(attr: int, to_set: int) -> dict[str, Any]:
    """setattr's ``to_set`` bits and struct stat as a dict of what to change."""
    v = STAT_STRUCT.unpack(ctypes.string_at(attr, STAT_STRUCT.size))
    changes: dict[str, Any] = {}
    if to_set & FUSE_SET_ATTR_MODE:
        changes["mode"] = v[ST_MODE]
    if to_set & FUSE_SET_ATTR_UID:
        changes["uid"] = v[ST_UID]
    if to_set & FUSE_SET_ATTR_GID:
        changes["gid"] = v[ST_GID]
    if to_set & FUSE_SET_ATTR_SIZE:
        changes["size"] = v[ST_SIZE]
    if to_set & FUSE_SET_ATTR_ATIME_NOW:
        changes["atime_ns"] = "now"
    elif to_set & FUSE_SET_ATTR_ATIME:
        changes["atime_ns"] = v[ST_ATIM] * NS + v[ST_ATIM + 1]
    if to_set & FUSE_SET_ATTR_MTIME_NOW:
        changes["mtime_ns"] = "now"
    elif to_set & FUSE_SET_ATTR_MTIME:
        changes["mtime_ns"] = v[ST_MTIM] * NS + v[ST_MTIM + 1]
    if to_set & FUSE_SET_ATTR_CTIME:
        changes["ctime_ns"] = v[ST_CTIM] * NS + v[ST_CTIM + 1]
    return changes


HANDLER_METHODS = (
    "init", "destroy", "lookup", "forget", "forget_multi", "getattr", "setattr", "readlink", "mknod",
    "mkdir", "symlink", "link", "unlink", "rmdir", "rename", "open", "opendir", "create", "read",
    "write_fd", "write", "flush", "release", "releasedir", "fsync", "fsyncdir", "readdir", "readdirplus",
    "statfs", "fallocate", "lseek", "access",
)


def build_callbacks(handler: Any, session: FuseSession | None = None) -> dict[str, Callable[..., None]]:
    """Python callbacks, by fuse_lowlevel_ops member name, for the methods ``handler`` has.

    Each callback answers its request exactly once, whatever the handler does.
    """
    h = {name: getattr(handler, name) for name in HANDLER_METHODS if callable(getattr(handler, name, None))}
    t = _tls
    cbs: dict[str, Callable[..., None]] = {}
    h_forget, h_forget_multi = h.get("forget"), h.get("forget_multi")
    h_release, h_releasedir = h.get("release"), h.get("releasedir")
    forget_one = h_forget
    if forget_one is None and h_forget_multi is not None:
        forget_one = lambda ino, n: h_forget_multi([(ino, n)])

    counters = getattr(handler, "counters", None)  # request(op), failure(op, errno): for status

    def fail(req: int, exc: BaseException, op: str) -> None:
        t.req = None
        code = _errno(exc, op)
        if counters is not None:
            counters.failure(op, code)
        fuse_reply_err(req, code)

    # ------------------------------------------------------------ lifecycle
    h_init, plus_only = h.get("init"), "readdirplus" in h and "readdir" not in h

    def init(userdata: int, conn: int) -> None:
        try:
            c = ConnInfo.from_address(conn)
            if h_init:
                h_init(c)
            if plus_only:
                c.want &= ~FUSE_CAP_READDIRPLUS_AUTO
        except BaseException as exc:
            log.error("FUSE init failed; stopping", exc_info=exc)
            if session is not None:
                session._init_error = exc
                if session._se:
                    fuse_session_exit(session._se)
    cbs["init"] = init

    if "destroy" in h:
        h_destroy = h["destroy"]

        def destroy(userdata: int) -> None:
            try:
                h_destroy()
            except BaseException:
                log.exception("FUSE destroy failed")
        cbs["destroy"] = destroy

    # ------------------------------------------------------------ names -> entries
    if "lookup" in h:
        m_lookup = h["lookup"]

        def lookup(req: int, parent: int, name: bytes) -> None:
            t.req = req
            try:
                e = m_lookup(parent, name)
                pack_entry(t.ebuf, e.ino, e.generation, e.attr, e.attr_timeout, e.entry_timeout)
            except BaseException as exc:
                return fail(req, exc, "lookup")
            t.req = None
            if fuse_reply_entry(req, t.eaddr) == _ENOENT and e.ino:
                _quietly(forget_one, e.ino, 1)
        cbs["lookup"] = lookup

    def entry_op(op: str, meth: Callable[..., Entry]) -> Callable[..., None]:
        def cb(req: int, *args: Any) -> None:
            t.req = req
            try:
                e = meth(*args)
                pack_entry(t.ebuf, e.ino, e.generation, e.attr, e.attr_timeout, e.entry_timeout)
            except BaseException as exc:
                return fail(req, exc, op)
            t.req = None
            if fuse_reply_entry(req, t.eaddr) == _ENOENT and e.ino:
                _quietly(forget_one, e.ino, 1)
        return cb

    for op in ("mknod", "mkdir", "symlink", "link"):
        if op in h:
            cbs[op] = entry_op(op, h[op])

    if h_forget or h_forget_multi:
        def forget(req: int, ino: int, nlookup: int) -> None:
            _quietly(forget_one, ino, nlookup)
            fuse_reply_none(req)
        cbs["forget"] = forget

        def forget_multi(req: int, count: int, forgets: int) -> None:
            items = list(FORGET_STRUCT.iter_unpack(ctypes.string_at(forgets, FORGET_STRUCT.size * count)))
            if h_forget_multi:
                _quietly(h_forget_multi, items)
            else:
                for ino, nlookup in items:
                    try:
                        h_forget(ino, nlookup)  # type: ignore[misc]
                    except BaseException:
                        log.exception("FUSE forget(%d, %d) failed", ino, nlookup)
            fuse_reply_none(req)
        cbs["forget_multi"] = forget_multi

    # ------------------------------------------------------------ attributes
    if "getattr" in h:
        m_getattr = h["getattr"]

        def getattr_(req: int, ino: int, fi: int | None) -> None:
            t.req = req
            try:
                attr, timeout = m_getattr(ino, FileInfoRaw.from_address(fi).fh if fi else None)
                pack_entry(t.ebuf, 0, 0, attr, 0.0, 0.0)
            except BaseException as exc:
                return fail(req, exc, "getattr")
            t.req = None
            fuse_reply_attr(req, t.eaddr + ENTRY_ATTR_OFFSET, timeout)
        cbs["getattr"] = getattr_

    if "setattr" in h:
        m_setattr = h["setattr"]

        def setattr_(req: int, ino: int, attr: int, to_set: int, fi: int | None) -> None:
            t.req = req
            try:
                new, timeout = m_setattr(ino, _changes(attr, to_set), _fh(fi))
                pack_entry(t.ebuf, 0, 0, new, 0.0, 0.0)
            except BaseException as exc:
                return fail(req, exc, "setattr")
            t.req = None
            fuse_reply_attr(req, t.eaddr + ENTRY_ATTR_OFFSET, timeout)
        cbs["setattr"] = setattr_

    if "readlink" in h:
        m_readlink = h["readlink"]

        def readlink(req: int, ino: int) -> None:
            t.req = req
            try:
                target = bytes(m_readlink(ino))
            except BaseException as exc:
                return fail(req, exc, "readlink")
            t.req = None
            fuse_reply_readlink(req, target)
        cbs["readlink"] = readlink

    if "statfs" in h:
        m_statfs = h["statfs"]

        def statfs(req: int, ino: int) -> None:
            t.req = req
            try:
                pack_statvfs(t.sbuf, m_statfs(ino))
            except BaseException as exc:
                return fail(req, exc, "statfs")
            t.req = None
            fuse_reply_statfs(req, t.saddr)
        cbs["statfs"] = statfs

    # ------------------------------------------------------------ requests answered by errno only
    def status_op(op: str, meth: Callable[..., Any], call: Callable[..., Any]) -> Callable[..., None]:
        def cb(req: int, *args: Any) -> None:
            t.req = req
            try:
                call(meth, *args)
            except BaseException as exc:
                return fail(req, exc, op)
            t.req = None
            fuse_reply_err(req, 0)
        return cb

    plain = lambda m, *a: m(*a)
    status_calls: dict[str, Callable[..., Any]] = {
        "unlink": plain, "rmdir": plain, "rename": plain, "access": plain,
        "flush": lambda m, ino, fi: m(ino, _fh(fi)),
        "release": lambda m, ino, fi: m(ino, _fh(fi), FileInfoRaw.from_address(fi).flags),
        "releasedir": lambda m, ino, fi: m(ino, _fh(fi)),
        "fsync": lambda m, ino, datasync, fi: m(ino, datasync, _fh(fi)),
        "fsyncdir": lambda m, ino, datasync, fi: m(ino, datasync, _fh(fi)),
        "fallocate": lambda m, ino, mode, offset, length, fi: m(ino, mode, offset, length, _fh(fi)),
    }
    for op, call in status_calls.items():
        if op in h:
            cbs[op] = status_op(op, h[op], call)

    # ------------------------------------------------------------ opening
    def open_op(op: str, meth: Callable[..., Any], undo: Callable[..., Any] | None,
                with_flags: bool) -> Callable[..., None]:
        def cb(req: int, ino: int, fi: int) -> None:
            t.req = req
            try:
                f = FileInfoRaw.from_address(fi)
                fh = _set_opened(f, meth(ino, f.flags))
            except BaseException as exc:
                return fail(req, exc, op)
            t.req = None
            if fuse_reply_open(req, fi) == _ENOENT and undo is not None:
                _quietly(undo, ino, fh, f.flags) if with_flags else _quietly(undo, ino, fh)
        return cb

    if "open" in h:
        cbs["open"] = open_op("open", h["open"], h_release, True)
    if "opendir" in h:
        cbs["opendir"] = open_op("opendir", h["opendir"], h_releasedir, False)

    if "create" in h:
        m_create = h["create"]

        def create(req: int, parent: int, name: bytes, mode: int, fi: int) -> None:
            t.req = req
            try:
                f = FileInfoRaw.from_address(fi)
                e, o = m_create(parent, name, mode, f.flags)
                fh = _set_opened(f, o)
                pack_entry(t.ebuf, e.ino, e.generation, e.attr, e.attr_timeout, e.entry_timeout)
            except BaseException as exc:
                return fail(req, exc, "create")
            t.req = None
            if fuse_reply_create(req, t.eaddr, fi) == _ENOENT:
                _quietly(h_release, e.ino, fh, f.flags)
                _quietly(forget_one, e.ino, 1)
        cbs["create"] = create

    # ------------------------------------------------------------ data
    if "read" in h:
        m_read = h["read"]

        def read(req: int, ino: int, size: int, off: int, fi: int) -> None:
            t.req = req
            try:
                r = m_read(ino, size, off, FileInfoRaw.from_address(fi).fh)
                if isinstance(r, int):  # a descriptor: libfuse reads or splices it; no data in Python
                    BUFVEC_STRUCT.pack_into(t.bvbuf, 0, 1, 0, 0, size, _FD_BUF, 0, r, off)
                elif type(r) is not bytes:
                    r = bytes(r)
            except BaseException as exc:
                return fail(req, exc, "read")
            t.req = None
            if type(r) is bytes:
                fuse_reply_buf(req, r, min(len(r), size))
            else:
                fuse_reply_data(req, t.bvaddr, FUSE_BUF_SPLICE_MOVE)
        cbs["read"] = read

    if "write_fd" in h or "write" in h:
        m_write_fd, m_write = h.get("write_fd"), h.get("write")

        def write_buf(req: int, ino: int, bufv: int, off: int, fi: int) -> None:
            t.req = req
            try:
                fh = FileInfoRaw.from_address(fi).fh
                fd = m_write_fd(ino, fh) if m_write_fd else None
                if fd is not None:  # copied in C, without the GIL
                    BUFVEC_STRUCT.pack_into(t.bvbuf, 0, 1, 0, 0, fuse_buf_size(bufv), _FD_BUF, 0, fd, off)
                    n = fuse_buf_copy(t.bvaddr, bufv, 0)
                    if n < 0:
                        raise OSError(-n, os.strerror(-n))
                elif m_write is None:
                    raise OSError(errno.EBADF, "no descriptor to write to")
                else:
                    n = m_write(ino, fh, off, _gather(bufv))
            except BaseException as exc:
                return fail(req, exc, "write")
            t.req = None
            fuse_reply_write(req, n)
        cbs["write_buf"] = write_buf

    if "lseek" in h:
        m_lseek = h["lseek"]

        def lseek(req: int, ino: int, off: int, whence: int, fi: int) -> None:
            t.req = req
            try:
                pos = m_lseek(ino, off, whence, _fh(fi))
            except BaseException as exc:
                return fail(req, exc, "lseek")
            t.req = None
            fuse_reply_lseek(req, pos)
        cbs["lseek"] = lseek

    # ------------------------------------------------------------ directories
    if "readdir" in h:
        m_readdir = h["readdir"]
        add_stat = DIRENT_STAT.pack_into

        def readdir(req: int, ino: int, size: int, off: int, fi: int) -> None:
            t.req = req
            pos = 0
            try:
                daddr, sbuf, saddr = _dirbuf(size), t.sbuf, t.saddr
                for name, mode, child, next_off in m_readdir(ino, size, off, FileInfoRaw.from_address(fi).fh):
                    need = (DIRENT_HEADER + len(name) + 7) & ~7
                    if pos + need > size:
                        break
                    add_stat(sbuf, DIRENT_STAT_OFFSET, child, mode)
                    fuse_add_direntry(req, daddr + pos, need, name, saddr, next_off)
                    pos += need
            except BaseException as exc:
                if pos == 0:
                    return fail(req, exc, "readdir")
                # What fits is sent; the next request starts at the failing entry and reports it.
            t.req = None
            fuse_reply_buf(req, t.daddr, pos)
        cbs["readdir"] = readdir

    if "readdirplus" in h:
        m_readdirplus = h["readdirplus"]

        def readdirplus(req: int, ino: int, size: int, off: int, fi: int) -> None:
            t.req = req
            pos = 0
            try:
                daddr, ebuf, eaddr = _dirbuf(size), t.ebuf, t.eaddr
                for name, next_off, make in m_readdirplus(ino, size, off, FileInfoRaw.from_address(fi).fh):
                    need = (DIRENTPLUS_HEADER + len(name) + 7) & ~7
                    if pos + need > size:
                        break  # not sent, so make() is not called: no lookup to count
                    if name == b"." or name == b"..":
                        pack_entry(ebuf, 0, 0, make().attr, 0.0, 0.0)
                    else:
                        try:
                            e = make()
                        except FileNotFoundError:
                            continue
                        if e is None:
                            continue
                        pack_entry(ebuf, e.ino, e.generation, e.attr, e.attr_timeout, e.entry_timeout)
                    fuse_add_direntry_plus(req, daddr + pos, need, name, eaddr, next_off)
                    pos += need
            except BaseException as exc:
                if pos == 0:
                    return fail(req, exc, "readdirplus")
            t.req = None
            fuse_reply_buf(req, t.daddr, pos)
        cbs["readdirplus"] = readdirplus

    if counters is not None:
        for op, fn in list(cbs.items()):
            if op not in ("init", "destroy"):
                cbs[op] = _counted(op, fn, counters.request)
    return cbs


def _counted(op: str, fn: Callable[..., None], count: Callable[[str], None]) -> Callable[..., None]:
    def cb(*args: Any) -> None:
        count(op)
        fn(*args)
    return cb


def _dirbuf(size: int) -> int:
    """Address of this thread's directory buffer, at least ``size`` bytes."""
    t = _tls
    if len(t.dbuf) < size:
        t.dbuf = ctypes.create_string_buffer(size)
        t.daddr = ctypes.addressof(t.dbuf)
    return t.daddr


def _gather(bufv: int) -> bytes:
    """The data of a write request's buffer vector, as bytes (only for handlers without write_fd)."""
    count, idx, off, size, flags, mem, _, _ = BUFVEC_STRUCT.unpack(ctypes.string_at(bufv, BUFVEC_SIZE))
    if count == 1 and idx == 0 and not flags & FUSE_BUF_IS_FD:
        return ctypes.string_at(mem + off, size - off)
    total = fuse_buf_size(bufv)
    dst = ctypes.create_string_buffer(max(total, 1))
    vec = ctypes.create_string_buffer(BUFVEC_SIZE)
    BUFVEC_STRUCT.pack_into(vec, 0, 1, 0, 0, total, 0, ctypes.addressof(dst), -1, 0)
    n = fuse_buf_copy(ctypes.addressof(vec), bufv, 0)
    if n < 0:
        raise OSError(-n, os.strerror(-n))
    return ctypes.string_at(dst, n)


def _escape(option: str) -> bytes:
    """One -o option, with the backslash escapes fuse_opt uses for commas."""
    return os.fsencode(option).replace(b"\\", b"\\\\").replace(b",", b"\\,")


class FuseSession:
    """A mount served by ``handler`` through libfuse's low-level API.

    ``options`` are fuse -o options (``fsname=x``, ``subtype=copickfs``, ``allow_other``,
    ``default_permissions``, ``ro``, ...); libfuse rejects unknown ones. ``run()`` blocks
    until the filesystem is unmounted or the process gets SIGINT/SIGTERM/SIGHUP.
    """

    def __init__(self, handler: Any, mountpoint: str, options: list[str] | tuple[str, ...] = (),
                 threads: bool = True, debug: bool = False, *, max_threads: int | None = None,
                 clone_fd: bool = False, on_loop_end: Callable[[], None] | None = None) -> None:
        self.handler = handler
        self.on_loop_end = on_loop_end  # called when serving ends, before the unmount
        self.mountpoint = os.path.abspath(mountpoint)
        self.options = list(options)
        self.threads, self.debug, self.max_threads, self.clone_fd = threads, debug, max_threads, clone_fd
        self._se: int | None = None
        self._init_error: BaseException | None = None
        self._ops = LowlevelOps()
        self._callbacks: dict[str, Any] = {}  # the CFUNCTYPE objects: libfuse holds raw pointers to them
        for name, fn in build_callbacks(handler, self).items():
            cfunc = OP_TYPES[name](fn)
            self._callbacks[name] = cfunc
            setattr(self._ops, name, ctypes.cast(cfunc, ctypes.c_void_p).value)

    def run(self) -> int:
        """Mount, serve, unmount. Returns 0 after an unmount or a stop by signal, else the
        loop's negative errno; raises RuntimeError if the session cannot start."""
        argv = [b"copickfs"]
        options = self.options + (["debug"] if self.debug else [])
        if options:
            argv += [b"-o", b",".join(_escape(o) for o in options)]
        c_argv = (ctypes.c_char_p * (len(argv) + 1))(*argv, None)
        args = FuseArgs(len(argv), c_argv, 0)
        try:
            se = fuse_session_new(ctypes.byref(args), ctypes.byref(self._ops), ctypes.sizeof(self._ops), None)
            if not se:
                raise RuntimeError(f"fuse_session_new failed for options {options!r} (libfuse said why)")
            self._se = se
            restore = _default_signals()
            try:
                if fuse_set_signal_handlers(se) != 0:
                    raise RuntimeError("fuse_set_signal_handlers failed")
                try:
                    if fuse_session_mount(se, os.fsencode(self.mountpoint)) != 0:
                        raise RuntimeError(f"cannot mount {self.mountpoint} (libfuse said why above)")
                    try:
                        result = self._loop(se)
                    finally:
                        _quietly(self.on_loop_end)
                        fuse_session_unmount(se)
                finally:
                    fuse_remove_signal_handlers(se)
            finally:
                restore()
                self._se = None
                fuse_session_destroy(se)  # calls the handler's destroy() if init happened
        finally:
            fuse_opt_free_args(ctypes.byref(args))
        if self._init_error is not None:
            raise RuntimeError(f"the filesystem's init failed: {self._init_error!r}")
        # libfuse returns the signal number after a stop by its SIGINT/SIGTERM/SIGHUP handler.
        return min(result, 0)

    def _loop(self, se: int) -> int:
        if not self.threads:
            return int(fuse_session_loop(se))
        config = fuse_loop_cfg_create()
        try:
            fuse_loop_cfg_set_clone_fd(config, int(self.clone_fd))
            if self.max_threads:
                fuse_loop_cfg_set_max_threads(config, self.max_threads)
            return int(fuse_session_loop_mt(se, config))
        finally:
            fuse_loop_cfg_destroy(config)

    # ------------------------------------------------------------ invalidation
    # The kernel may need locks held while a request on the same inode or directory is
    # being answered: call these from a thread that is not inside a handler method for
    # that inode/directory (e.g. a watcher thread), never from the handler itself.
    # They return 0 or -errno; -ENOENT means the kernel had nothing cached.

    def _session(self) -> int:
        if not self._se:
            raise RuntimeError("the FUSE session is not running")
        return self._se

    def notify_inval_entry(self, parent: int, name: bytes) -> int:
        """Drop the kernel's cached lookup of ``name`` in ``parent`` (and its listing cache)."""
        return int(fuse_lowlevel_notify_inval_entry(self._session(), parent, name, len(name)))

    def notify_inval_inode(self, ino: int, off: int = 0, length: int = 0) -> int:
        """Drop cached attributes and pages of ``ino`` (``length`` 0: to the end; ``off``
        negative: attributes only)."""
        return int(fuse_lowlevel_notify_inval_inode(self._session(), ino, off, length))

    def notify_delete(self, parent: int, child: int, name: bytes) -> int:
        """Tell the kernel ``name`` (inode ``child``) was removed from ``parent``."""
        return int(fuse_lowlevel_notify_delete(self._session(), parent, child, name, len(name)))


def _default_signals() -> Callable[[], None]:
    """Give SIGINT/SIGTERM/SIGHUP back to the default disposition, so that
    fuse_set_signal_handlers (which only replaces SIG_DFL) installs its clean-exit handler;
    returns how to restore Python's handlers. Only the main thread may change them."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        old = signal.getsignal(sig)
        if old not in (signal.SIG_DFL, signal.SIG_IGN, None):
            saved[sig] = old
            signal.signal(sig, signal.SIG_DFL)

    def restore() -> None:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    return restore
