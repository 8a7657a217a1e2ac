"""ctypes binding of libfuse 3.14's low-level API (``fuse_lowlevel.h``).

Why the low-level API: libfuse 3.14's high-level API drops ``cache_readdir`` and
``keep_cache`` from the OPENDIR reply, so the kernel never caches directory listings.
The low-level API also gives per-entry timeouts and names every request by inode.

Every layout here was checked against libfuse 3.14's headers with a compiled C program
(``sizeof``/``offsetof`` of each struct, the bit positions of ``fuse_file_info``); the
results are the ``*_SIZE`` constants, asserted at import. The dispatch layer that turns
requests into calls on a Python handler is `copickfs.mount.session`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .fuselib import FuseBuf, FuseBufvec, FuseUnavailable, check_fuse_available

if TYPE_CHECKING:
    from .session import FuseSession, caller, caller_umask

__all__ = [
    "ROOT_ID", "ConnInfo", "Entry", "EntryParam", "FileInfo", "ForgetData", "FuseArgs", "FuseBuf",
    "FuseBufvec", "FuseCtx", "FuseSession", "LowlevelOps", "Opened", "Stat", "StatVfs", "caller",
    "caller_umask", "libfuse", "pack_entry",
]

ROOT_ID = 1  # FUSE_ROOT_ID: the node id of the mount's root

# ----------------------------------------------------------------- capabilities (fuse_common.h 3.14)
# For fuse_conn_info.capable / .want. 3.14 has no FUSE_CAP_SETXATTR_EXT (added in 3.15).
FUSE_CAP_ASYNC_READ = 1 << 0
FUSE_CAP_POSIX_LOCKS = 1 << 1
FUSE_CAP_ATOMIC_O_TRUNC = 1 << 3
FUSE_CAP_EXPORT_SUPPORT = 1 << 4
FUSE_CAP_DONT_MASK = 1 << 6
FUSE_CAP_SPLICE_WRITE = 1 << 7
FUSE_CAP_SPLICE_MOVE = 1 << 8
FUSE_CAP_SPLICE_READ = 1 << 9
FUSE_CAP_FLOCK_LOCKS = 1 << 10
FUSE_CAP_IOCTL_DIR = 1 << 11
FUSE_CAP_AUTO_INVAL_DATA = 1 << 12
FUSE_CAP_READDIRPLUS = 1 << 13
FUSE_CAP_READDIRPLUS_AUTO = 1 << 14
FUSE_CAP_ASYNC_DIO = 1 << 15
FUSE_CAP_WRITEBACK_CACHE = 1 << 16
FUSE_CAP_NO_OPEN_SUPPORT = 1 << 17
FUSE_CAP_PARALLEL_DIROPS = 1 << 18
FUSE_CAP_POSIX_ACL = 1 << 19
FUSE_CAP_HANDLE_KILLPRIV = 1 << 20
FUSE_CAP_CACHE_SYMLINKS = 1 << 23
FUSE_CAP_NO_OPENDIR_SUPPORT = 1 << 24
FUSE_CAP_EXPLICIT_INVAL_DATA = 1 << 25
FUSE_CAP_EXPIRE_ONLY = 1 << 26

# ----------------------------------------------------------------- setattr's to_set (fuse_lowlevel.h)
FUSE_SET_ATTR_MODE = 1 << 0
FUSE_SET_ATTR_UID = 1 << 1
FUSE_SET_ATTR_GID = 1 << 2
FUSE_SET_ATTR_SIZE = 1 << 3
FUSE_SET_ATTR_ATIME = 1 << 4
FUSE_SET_ATTR_MTIME = 1 << 5
FUSE_SET_ATTR_ATIME_NOW = 1 << 7
FUSE_SET_ATTR_MTIME_NOW = 1 << 8
FUSE_SET_ATTR_CTIME = 1 << 10

# ----------------------------------------------------------------- buffers (fuse_common.h)
FUSE_BUF_IS_FD = 1 << 1
FUSE_BUF_FD_SEEK = 1 << 2
FUSE_BUF_FD_RETRY = 1 << 3
FUSE_BUF_NO_SPLICE = 1 << 1
FUSE_BUF_FORCE_SPLICE = 1 << 2
FUSE_BUF_SPLICE_MOVE = 1 << 3
FUSE_BUF_SPLICE_NONBLOCK = 1 << 4

# Bits of the word after fuse_file_info.flags (GCC allocates bitfields from bit 0 up).
FI_WRITEPAGE = 1 << 0
FI_DIRECT_IO = 1 << 1
FI_KEEP_CACHE = 1 << 2
FI_FLUSH = 1 << 3
FI_NONSEEKABLE = 1 << 4
FI_FLOCK_RELEASE = 1 << 5
FI_CACHE_READDIR = 1 << 6
FI_NOFLUSH = 1 << 7

# Sizes measured with gcc against /usr/include/fuse3 (3.14, x86_64); asserted below.
LOWLEVEL_OPS_SIZE = 352  # 44 function pointers, init .. lseek
FILE_INFO_SIZE = 40
CTX_SIZE = 16
CONN_INFO_SIZE = 128
BUF_SIZE = 40
BUFVEC_SIZE = 64
ARGS_SIZE = 24
FORGET_DATA_SIZE = 16
STATVFS_SIZE = 112
STAT_SIZE = {"x86_64": 144, "aarch64": 128}
# Space fuse_add_direntry / fuse_add_direntry_plus take: a header (fuse_dirent: 24 bytes;
# fuse_entry_out + fuse_dirent: 152) plus the name, padded to 8 bytes (fuse_kernel.h).
DIRENT_HEADER = 24
DIRENTPLUS_HEADER = 152


def dirent_size(name: bytes) -> int:
    return (DIRENT_HEADER + len(name) + 7) & ~7


def direntplus_size(name: bytes) -> int:
    return (DIRENTPLUS_HEADER + len(name) + 7) & ~7


# ----------------------------------------------------------------- structures
c_ino = ctypes.c_uint64


class FileInfo(ctypes.Structure):
    """struct fuse_file_info, 3.14 (no parallel_direct_writes bit yet: that is 3.15)."""

    _fields_ = [
        ("flags", ctypes.c_int),
        ("writepage", ctypes.c_uint, 1),
        ("direct_io", ctypes.c_uint, 1),
        ("keep_cache", ctypes.c_uint, 1),
        ("flush", ctypes.c_uint, 1),
        ("nonseekable", ctypes.c_uint, 1),
        ("flock_release", ctypes.c_uint, 1),
        ("cache_readdir", ctypes.c_uint, 1),
        ("noflush", ctypes.c_uint, 1),
        ("padding", ctypes.c_uint, 24),
        ("padding2", ctypes.c_uint, 32),
        ("fh", ctypes.c_uint64),
        ("lock_owner", ctypes.c_uint64),
        ("poll_events", ctypes.c_uint32),
    ]


class FileInfoRaw(ctypes.Structure):
    """The same memory with the bitfields as one word (``FI_*``): one store sets all open flags."""

    _fields_ = [
        ("flags", ctypes.c_int),
        ("bits", ctypes.c_uint),
        ("padding2", ctypes.c_uint),
        ("fh", ctypes.c_uint64),
        ("lock_owner", ctypes.c_uint64),
        ("poll_events", ctypes.c_uint32),
    ]


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]


MACHINE = platform.machine()

if MACHINE == "x86_64":
    _stat_fields: list[tuple[str, Any]] = [
        ("st_dev", ctypes.c_uint64), ("st_ino", ctypes.c_uint64), ("st_nlink", ctypes.c_uint64),
        ("st_mode", ctypes.c_uint32), ("st_uid", ctypes.c_uint32), ("st_gid", ctypes.c_uint32),
        ("__pad0", ctypes.c_int32), ("st_rdev", ctypes.c_uint64), ("st_size", ctypes.c_int64),
        ("st_blksize", ctypes.c_int64), ("st_blocks", ctypes.c_int64),
        ("st_atim", Timespec), ("st_mtim", Timespec), ("st_ctim", Timespec),
        ("__reserved", ctypes.c_int64 * 3),
    ]
    # dev ino nlink mode uid gid [pad] rdev size blksize blocks atime mtime ctime [reserved]
    _STAT_FMT = "QQQIII4xQqqqqqqqqq24x"
elif MACHINE == "aarch64":  # glibc's generic struct stat (asm-generic/stat.h)
    _stat_fields = [
        ("st_dev", ctypes.c_uint64), ("st_ino", ctypes.c_uint64), ("st_mode", ctypes.c_uint32),
        ("st_nlink", ctypes.c_uint32), ("st_uid", ctypes.c_uint32), ("st_gid", ctypes.c_uint32),
        ("st_rdev", ctypes.c_uint64), ("__pad1", ctypes.c_uint64), ("st_size", ctypes.c_int64),
        ("st_blksize", ctypes.c_int32), ("__pad2", ctypes.c_int32), ("st_blocks", ctypes.c_int64),
        ("st_atim", Timespec), ("st_mtim", Timespec), ("st_ctim", Timespec),
        ("__reserved", ctypes.c_int32 * 2),
    ]
    # dev ino mode nlink uid gid rdev [pad] size blksize [pad] blocks atime mtime ctime [reserved]
    _STAT_FMT = "QQIIIIQ8xqi4xqqqqqqq8x"
else:
    raise FuseUnavailable(f"copickfs's low-level FUSE binding knows struct stat only on x86_64 and "
                          f"aarch64, not {MACHINE}")


class Stat(ctypes.Structure):
    """struct stat of glibc on this machine."""

    _fields_ = _stat_fields


class EntryParam(ctypes.Structure):
    """struct fuse_entry_param."""

    _fields_ = [
        ("ino", c_ino),
        ("generation", ctypes.c_uint64),
        ("attr", Stat),
        ("attr_timeout", ctypes.c_double),
        ("entry_timeout", ctypes.c_double),
    ]


class FuseCtx(ctypes.Structure):
    """struct fuse_ctx: who made the request."""

    _fields_ = [("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32), ("pid", ctypes.c_int32),
                ("umask", ctypes.c_uint32)]


class StatVfs(ctypes.Structure):
    """struct statvfs (LP64 glibc)."""

    _fields_ = [
        ("f_bsize", ctypes.c_ulong), ("f_frsize", ctypes.c_ulong), ("f_blocks", ctypes.c_uint64),
        ("f_bfree", ctypes.c_uint64), ("f_bavail", ctypes.c_uint64), ("f_files", ctypes.c_uint64),
        ("f_ffree", ctypes.c_uint64), ("f_favail", ctypes.c_uint64), ("f_fsid", ctypes.c_ulong),
        ("f_flag", ctypes.c_ulong), ("f_namemax", ctypes.c_ulong), ("__f_spare", ctypes.c_int * 6),
    ]


class ConnInfo(ctypes.Structure):
    """struct fuse_conn_info: what ``init`` may change (want, max_write, max_readahead, ...)."""

    _fields_ = [
        ("proto_major", ctypes.c_uint), ("proto_minor", ctypes.c_uint), ("max_write", ctypes.c_uint),
        ("max_read", ctypes.c_uint), ("max_readahead", ctypes.c_uint), ("capable", ctypes.c_uint),
        ("want", ctypes.c_uint), ("max_background", ctypes.c_uint),
        ("congestion_threshold", ctypes.c_uint), ("time_gran", ctypes.c_uint),
        ("reserved", ctypes.c_uint * 22),
    ]


class FuseArgs(ctypes.Structure):
    """struct fuse_args (fuse_opt.h)."""

    _fields_ = [("argc", ctypes.c_int), ("argv", ctypes.POINTER(ctypes.c_char_p)),
                ("allocated", ctypes.c_int)]


class ForgetData(ctypes.Structure):
    """struct fuse_forget_data: one item of a BATCH_FORGET."""

    _fields_ = [("ino", c_ino), ("nlookup", ctypes.c_uint64)]


# Member order of struct fuse_lowlevel_ops in fuse_lowlevel.h 3.14. All are function
# pointers; a NULL one makes libfuse answer the request itself (ENOSYS for most).
LOWLEVEL_OPS = (
    "init", "destroy", "lookup", "forget", "getattr", "setattr", "readlink", "mknod", "mkdir",
    "unlink", "rmdir", "symlink", "rename", "link", "open", "read", "write", "flush", "release",
    "fsync", "opendir", "readdir", "releasedir", "fsyncdir", "statfs", "setxattr", "getxattr",
    "listxattr", "removexattr", "access", "create", "getlk", "setlk", "bmap", "ioctl", "poll",
    "write_buf", "retrieve_reply", "forget_multi", "flock", "fallocate", "readdirplus",
    "copy_file_range", "lseek",
)


class LowlevelOps(ctypes.Structure):
    """struct fuse_lowlevel_ops: assign ``ctypes.cast(cfunc, c_void_p).value`` to a member."""

    _fields_ = [(name, ctypes.c_void_p) for name in LOWLEVEL_OPS]


# CFUNCTYPEs of the members the dispatcher implements (argument types as in the header;
# fuse_req_t, struct pointers and fuse_file_info* arrive as int addresses or None).
_req, _ptr, _name, _off = ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64
_mode, _size = ctypes.c_uint32, ctypes.c_size_t
OP_TYPES: dict[str, Any] = {
    "init": ctypes.CFUNCTYPE(None, _ptr, _ptr),
    "destroy": ctypes.CFUNCTYPE(None, _ptr),
    "lookup": ctypes.CFUNCTYPE(None, _req, c_ino, _name),
    "forget": ctypes.CFUNCTYPE(None, _req, c_ino, ctypes.c_uint64),
    "getattr": ctypes.CFUNCTYPE(None, _req, c_ino, _ptr),
    "setattr": ctypes.CFUNCTYPE(None, _req, c_ino, _ptr, ctypes.c_int, _ptr),
    "readlink": ctypes.CFUNCTYPE(None, _req, c_ino),
    "mknod": ctypes.CFUNCTYPE(None, _req, c_ino, _name, _mode, ctypes.c_uint64),
    "mkdir": ctypes.CFUNCTYPE(None, _req, c_ino, _name, _mode),
    "unlink": ctypes.CFUNCTYPE(None, _req, c_ino, _name),
    "rmdir": ctypes.CFUNCTYPE(None, _req, c_ino, _name),
    "symlink": ctypes.CFUNCTYPE(None, _req, _name, c_ino, _name),
    "rename": ctypes.CFUNCTYPE(None, _req, c_ino, _name, c_ino, _name, ctypes.c_uint),
    "link": ctypes.CFUNCTYPE(None, _req, c_ino, c_ino, _name),
    "open": ctypes.CFUNCTYPE(None, _req, c_ino, _ptr),
    "read": ctypes.CFUNCTYPE(None, _req, c_ino, _size, _off, _ptr),
    "flush": ctypes.CFUNCTYPE(None, _req, c_ino, _ptr),
    "release": ctypes.CFUNCTYPE(None, _req, c_ino, _ptr),
    "fsync": ctypes.CFUNCTYPE(None, _req, c_ino, ctypes.c_int, _ptr),
    "opendir": ctypes.CFUNCTYPE(None, _req, c_ino, _ptr),
    "readdir": ctypes.CFUNCTYPE(None, _req, c_ino, _size, _off, _ptr),
    "releasedir": ctypes.CFUNCTYPE(None, _req, c_ino, _ptr),
    "fsyncdir": ctypes.CFUNCTYPE(None, _req, c_ino, ctypes.c_int, _ptr),
    "statfs": ctypes.CFUNCTYPE(None, _req, c_ino),
    "access": ctypes.CFUNCTYPE(None, _req, c_ino, ctypes.c_int),
    "create": ctypes.CFUNCTYPE(None, _req, c_ino, _name, _mode, _ptr),
    "write_buf": ctypes.CFUNCTYPE(None, _req, c_ino, _ptr, _off, _ptr),
    "forget_multi": ctypes.CFUNCTYPE(None, _req, _size, _ptr),
    "fallocate": ctypes.CFUNCTYPE(None, _req, c_ino, ctypes.c_int, _off, _off, _ptr),
    "readdirplus": ctypes.CFUNCTYPE(None, _req, c_ino, _size, _off, _ptr),
    "lseek": ctypes.CFUNCTYPE(None, _req, c_ino, _off, ctypes.c_int, _ptr),
}

# ----------------------------------------------------------------- the library


def _load() -> ctypes.CDLL:
    check_fuse_available()
    name = ctypes.util.find_library("fuse3")
    lib = ctypes.CDLL(name)
    lib.fuse_version.restype = ctypes.c_int
    if lib.fuse_version() < 312:  # fuse_session_loop_mt_312 and fuse_loop_cfg_* are 3.12+
        raise FuseUnavailable(f"{name} is libfuse {lib.fuse_version()}; copickfs needs 3.12 or newer")
    return lib


libfuse = _load()


def _proto(name: str, restype: Any, *argtypes: Any) -> Any:
    fn = getattr(libfuse, name)
    fn.restype, fn.argtypes = restype, list(argtypes)
    return fn


_vp, _int, _uint, _i64, _u64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint, ctypes.c_int64, ctypes.c_uint64
fuse_session_new = _proto("fuse_session_new", _vp, _vp, _vp, _size, _vp)
fuse_session_mount = _proto("fuse_session_mount", _int, _vp, ctypes.c_char_p)
fuse_session_unmount = _proto("fuse_session_unmount", None, _vp)
fuse_session_destroy = _proto("fuse_session_destroy", None, _vp)
fuse_session_exit = _proto("fuse_session_exit", None, _vp)
fuse_session_exited = _proto("fuse_session_exited", _int, _vp)
fuse_session_loop = _proto("fuse_session_loop", _int, _vp)
# fuse_session_loop_mt has three symbol versions in 3.14 (FUSE_3.0 -> _31, FUSE_3.2 -> _32,
# default FUSE_3.12 -> _312); the 3.12 one, taking an opaque fuse_loop_config, is named
# explicitly so dlsym cannot pick an older ABI.
fuse_session_loop_mt = _proto("fuse_session_loop_mt_312", _int, _vp, _vp)
fuse_loop_cfg_create = _proto("fuse_loop_cfg_create", _vp)
fuse_loop_cfg_destroy = _proto("fuse_loop_cfg_destroy", None, _vp)
fuse_loop_cfg_set_clone_fd = _proto("fuse_loop_cfg_set_clone_fd", None, _vp, _uint)
fuse_loop_cfg_set_max_threads = _proto("fuse_loop_cfg_set_max_threads", None, _vp, _uint)
fuse_loop_cfg_set_idle_threads = _proto("fuse_loop_cfg_set_idle_threads", None, _vp, _uint)
fuse_set_signal_handlers = _proto("fuse_set_signal_handlers", _int, _vp)
fuse_remove_signal_handlers = _proto("fuse_remove_signal_handlers", None, _vp)
fuse_opt_free_args = _proto("fuse_opt_free_args", None, _vp)

fuse_reply_err = _proto("fuse_reply_err", _int, _vp, _int)
fuse_reply_none = _proto("fuse_reply_none", None, _vp)
fuse_reply_entry = _proto("fuse_reply_entry", _int, _vp, _vp)
fuse_reply_create = _proto("fuse_reply_create", _int, _vp, _vp, _vp)
fuse_reply_attr = _proto("fuse_reply_attr", _int, _vp, _vp, ctypes.c_double)
fuse_reply_readlink = _proto("fuse_reply_readlink", _int, _vp, ctypes.c_char_p)
fuse_reply_open = _proto("fuse_reply_open", _int, _vp, _vp)
fuse_reply_write = _proto("fuse_reply_write", _int, _vp, _size)
fuse_reply_buf = _proto("fuse_reply_buf", _int, _vp, _vp, _size)  # buf: an address or bytes
fuse_reply_data = _proto("fuse_reply_data", _int, _vp, _vp, _int)
fuse_reply_statfs = _proto("fuse_reply_statfs", _int, _vp, _vp)
fuse_reply_lseek = _proto("fuse_reply_lseek", _int, _vp, _i64)
fuse_add_direntry = _proto("fuse_add_direntry", _size, _vp, _vp, _size, ctypes.c_char_p, _vp, _i64)
fuse_add_direntry_plus = _proto("fuse_add_direntry_plus", _size, _vp, _vp, _size, ctypes.c_char_p, _vp, _i64)
fuse_req_ctx = _proto("fuse_req_ctx", _vp, _vp)
fuse_buf_size = _proto("fuse_buf_size", _size, _vp)
fuse_buf_copy = _proto("fuse_buf_copy", ctypes.c_ssize_t, _vp, _vp, _int)
fuse_lowlevel_notify_inval_inode = _proto("fuse_lowlevel_notify_inval_inode", _int, _vp, _u64, _i64, _i64)
fuse_lowlevel_notify_inval_entry = _proto("fuse_lowlevel_notify_inval_entry", _int, _vp, _u64,
                                          ctypes.c_char_p, _size)
fuse_lowlevel_notify_delete = _proto("fuse_lowlevel_notify_delete", _int, _vp, _u64, _u64,
                                     ctypes.c_char_p, _size)

# ----------------------------------------------------------------- what handlers return


@dataclass(slots=True)
class Entry:
    """A reply to LOOKUP (and mknod, mkdir, symlink, link, create, readdirplus items).

    ``attr`` is any object with ``st_ino st_mode st_nlink st_uid st_gid st_size st_atime_ns
    st_mtime_ns st_ctime_ns`` and optionally ``st_rdev st_blksize st_blocks`` (an
    `os.stat_result` as is); the kernel shows its ``st_ino``, so give the node id there unless
    the backing file's inode is wanted. ``ino == 0`` with ``attr=None`` is a negative entry:
    the kernel caches "no such name" for ``entry_timeout`` seconds.
    """

    ino: int
    attr: Any
    entry_timeout: float
    attr_timeout: float
    generation: int = 0


@dataclass(slots=True)
class Opened:
    """A reply to OPEN/OPENDIR/CREATE: the handle and the kernel cache flags.

    On a directory, ``cache_readdir`` makes the kernel keep the listing and ``keep_cache``
    keeps it across opens; on a file, ``keep_cache`` keeps its pages across opens.
    """

    fh: int
    keep_cache: bool = False
    direct_io: bool = False
    cache_readdir: bool = False
    nonseekable: bool = False
    noflush: bool = False

    def bits(self) -> int:
        """The FI_* word libfuse turns into FOPEN_* flags."""
        return ((FI_KEEP_CACHE if self.keep_cache else 0) | (FI_DIRECT_IO if self.direct_io else 0)
                | (FI_CACHE_READDIR if self.cache_readdir else 0)
                | (FI_NONSEEKABLE if self.nonseekable else 0) | (FI_NOFLUSH if self.noflush else 0))


# ----------------------------------------------------------------- packing (hot path)
# One struct.pack_into per reply instead of a ctypes attribute store per field.
ENTRY_STRUCT = struct.Struct("=QQ" + _STAT_FMT + "dd")  # struct fuse_entry_param
ENTRY_ATTR_OFFSET = 16  # &e.attr: a struct stat for fuse_reply_attr
STATVFS_STRUCT = struct.Struct("=QQQQQQQQQQQ24x")
BUFVEC_STRUCT = struct.Struct("=QQQQi4xQi4xq")  # count idx off | size flags mem fd pos
CTX_STRUCT = struct.Struct("=IIiI")
FORGET_STRUCT = struct.Struct("=QQ")
STAT_STRUCT = struct.Struct("=" + _STAT_FMT)
if MACHINE == "x86_64":
    DIRENT_STAT = struct.Struct("=Q8xI")  # st_ino at 8, st_mode at 24: all fuse_add_direntry reads
    # Indices into STAT_STRUCT.unpack(): mode uid gid size atime(s, ns) mtime ctime.
    ST_MODE, ST_UID, ST_GID, ST_SIZE, ST_ATIM, ST_MTIM, ST_CTIM = 3, 4, 5, 7, 10, 12, 14
else:
    DIRENT_STAT = struct.Struct("=QI")  # st_ino at 8, st_mode at 16
    ST_MODE, ST_UID, ST_GID, ST_SIZE, ST_ATIM, ST_MTIM, ST_CTIM = 2, 4, 5, 7, 10, 12, 14
DIRENT_STAT_OFFSET = 8
NS = 1_000_000_000


def _attr_tail(st: Any) -> tuple[int, int, int]:
    """(rdev, blksize, blocks) of an attribute object lacking some of them."""
    size = st.st_size
    return (getattr(st, "st_rdev", 0), getattr(st, "st_blksize", 0),
            getattr(st, "st_blocks", (size + 511) // 512))


_NLINK_FIRST = MACHINE == "x86_64"  # x86_64's struct stat has st_nlink before st_mode; others after


def pack_entry(buf: Any, ino: int, generation: int, st: Any, attr_timeout: float,
               entry_timeout: float) -> None:
    """Fill a struct fuse_entry_param (its stat at offset 16) in ``buf`` from ``st``."""
    if st is None:
        ENTRY_STRUCT.pack_into(buf, 0, ino, generation, *_ZERO_STAT, attr_timeout, entry_timeout)
        return
    try:
        rdev, blksize, blocks = st.st_rdev, st.st_blksize, st.st_blocks
    except AttributeError:
        rdev, blksize, blocks = _attr_tail(st)
    a, m, c = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
    first, second = (st.st_nlink, st.st_mode) if _NLINK_FIRST else (st.st_mode, st.st_nlink)
    ENTRY_STRUCT.pack_into(buf, 0, ino, generation, 0, st.st_ino, first, second, st.st_uid,
                           st.st_gid, rdev, st.st_size, blksize, blocks, a // NS, a % NS,
                           m // NS, m % NS, c // NS, c % NS, attr_timeout, entry_timeout)


_ZERO_STAT = (0,) * 16


def pack_statvfs(buf: Any, sv: Any) -> None:
    """Fill a struct statvfs from an os.statvfs_result-like object."""
    STATVFS_STRUCT.pack_into(buf, 0, sv.f_bsize, sv.f_frsize, sv.f_blocks, sv.f_bfree, sv.f_bavail,
                             sv.f_files, sv.f_ffree, sv.f_favail, getattr(sv, "f_fsid", 0) or 0,
                             getattr(sv, "f_flag", 0) or 0, sv.f_namemax)


# ----------------------------------------------------------------- self-check


def _self_check() -> None:
    """Layouts against what gcc said of libfuse 3.14's headers; wrong layouts corrupt memory."""
    sizes = {
        "fuse_lowlevel_ops": (ctypes.sizeof(LowlevelOps), LOWLEVEL_OPS_SIZE),
        "fuse_lowlevel_ops.lseek": (LowlevelOps.lseek.offset, 344),
        "fuse_lowlevel_ops.readdirplus": (LowlevelOps.readdirplus.offset, 328),
        "fuse_file_info": (ctypes.sizeof(FileInfo), FILE_INFO_SIZE),
        "fuse_file_info.fh": (FileInfo.fh.offset, 16),
        "fuse_file_info raw": (ctypes.sizeof(FileInfoRaw), FILE_INFO_SIZE),
        "fuse_ctx": (ctypes.sizeof(FuseCtx), CTX_SIZE),
        "fuse_conn_info": (ctypes.sizeof(ConnInfo), CONN_INFO_SIZE),
        "fuse_conn_info.want": (ConnInfo.want.offset, 24),
        "fuse_buf": (ctypes.sizeof(FuseBuf), BUF_SIZE),
        "fuse_bufvec": (ctypes.sizeof(FuseBufvec), BUFVEC_SIZE),
        "fuse_bufvec packed": (BUFVEC_STRUCT.size, BUFVEC_SIZE),
        "fuse_args": (ctypes.sizeof(FuseArgs), ARGS_SIZE),
        "fuse_forget_data": (ctypes.sizeof(ForgetData), FORGET_DATA_SIZE),
        "statvfs": (ctypes.sizeof(StatVfs), STATVFS_SIZE),
        "statvfs packed": (STATVFS_STRUCT.size, STATVFS_SIZE),
        "stat": (ctypes.sizeof(Stat), STAT_SIZE[MACHINE]),
        "stat packed": (STAT_STRUCT.size, STAT_SIZE[MACHINE]),
        "fuse_entry_param": (ctypes.sizeof(EntryParam), 32 + STAT_SIZE[MACHINE]),
        "fuse_entry_param packed": (ENTRY_STRUCT.size, 32 + STAT_SIZE[MACHINE]),
        "fuse_add_direntry('abc')": (fuse_add_direntry(None, None, 0, b"abc", None, 1), dirent_size(b"abc")),
        "fuse_add_direntry_plus('abc')": (fuse_add_direntry_plus(None, None, 0, b"abc", None, 1),
                                          direntplus_size(b"abc")),
    }
    wrong = [f"{k}: {got} != {want}" for k, (got, want) in sizes.items() if got != want]
    fi = FileInfo(cache_readdir=1, keep_cache=1, noflush=1)
    if FileInfoRaw.from_buffer(fi).bits != FI_CACHE_READDIR | FI_KEEP_CACHE | FI_NOFLUSH:
        wrong.append("fuse_file_info bitfield order")
    e, st = EntryParam(), os.stat("/")
    pack_entry(e, 7, 1, st, 1.5, 2.5)
    a = e.attr
    if ((e.ino, e.generation, a.st_ino, a.st_mode, a.st_nlink, a.st_uid, a.st_gid, a.st_size, a.st_blocks,
         a.st_atim.tv_sec * NS + a.st_atim.tv_nsec, a.st_mtim.tv_sec * NS + a.st_mtim.tv_nsec,
         a.st_ctim.tv_sec * NS + a.st_ctim.tv_nsec, e.attr_timeout, e.entry_timeout)
            != (7, 1, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_size, st.st_blocks,
                st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns, 1.5, 2.5)):
        wrong.append("pack_entry")
    if wrong:
        raise FuseUnavailable("libfuse structure layouts do not match: " + "; ".join(wrong))


_self_check()


def __getattr__(name: str) -> Any:
    """`FuseSession`, `caller` and `caller_umask` are defined in `session` (which imports this
    module), and reachable from here too: ``lowlevel.FuseSession``."""
    if name in ("FuseSession", "caller", "caller_umask"):
        from . import session
        return getattr(session, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
