"""Loading libfuse3 through mfusepy, and the few libfuse structures mfusepy lacks.

mfusepy picks libfuse2 when both are installed; we always want libfuse3 (1 MiB
requests, readdir/rename flags), so the library name is fixed before import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from types import ModuleType
from typing import Any


class FuseUnavailable(RuntimeError):
    """FUSE cannot be used on this machine; the message says what to install."""


def check_fuse_available() -> None:
    if not os.path.exists("/dev/fuse"):
        raise FuseUnavailable("/dev/fuse is missing: load the fuse kernel module (modprobe fuse) "
                              "or give the container --device /dev/fuse")
    if ctypes.util.find_library("fuse3") is None:
        raise FuseUnavailable("libfuse3 is not installed: apt-get install fuse3 libfuse3-3")
    if not any(os.access(os.path.join(d, "fusermount3"), os.X_OK)
               for d in os.environ.get("PATH", "/usr/bin:/bin").split(":")):
        raise FuseUnavailable("fusermount3 is not installed: apt-get install fuse3")


def load_mfusepy() -> ModuleType:
    """Import mfusepy bound to libfuse3."""
    check_fuse_available()
    os.environ["FUSE_LIBRARY_NAME"] = "fuse3"
    import mfusepy

    if mfusepy.fuse_version_major != 3:
        raise FuseUnavailable(f"mfusepy loaded libfuse {mfusepy.fuse_version_major}, "
                              "copickfs needs libfuse3: apt-get install libfuse3-3")
    return mfusepy


# libfuse3's struct fuse_buf / fuse_bufvec (fuse_common.h). mfusepy declares the
# vector's buffers as a pointer; in C they are an inline array.
FUSE_BUF_IS_FD = 1 << 1
FUSE_BUF_FD_SEEK = 1 << 2


class FuseBuf(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("flags", ctypes.c_int),
        ("mem", ctypes.c_void_p),
        ("fd", ctypes.c_int),
        ("pos", ctypes.c_int64),
    ]


class FuseBufvec(ctypes.Structure):
    _fields_ = [
        ("count", ctypes.c_size_t),
        ("idx", ctypes.c_size_t),
        ("off", ctypes.c_size_t),
        ("buf", FuseBuf * 1),
    ]


# Later libfuse releases append fields to struct fuse_buf; zeroed spare bytes keep them empty.
_SPARE = 64
_libc = ctypes.CDLL(None)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]


def malloc_bufvec() -> tuple[int, FuseBufvec]:
    """A zeroed one-buffer vector in C memory that libfuse will free() after replying."""
    size = ctypes.sizeof(FuseBufvec) + _SPARE
    address = _libc.malloc(size)
    if not address:
        raise MemoryError("malloc failed")
    ctypes.memset(address, 0, size)
    return address, FuseBufvec.from_address(address)


def malloc_bytes(data: bytes) -> int:
    address = _libc.malloc(max(len(data), 1))
    if not address:
        raise MemoryError("malloc failed")
    ctypes.memmove(address, data, len(data))
    return address


def bind_buf_functions(libfuse: ctypes.CDLL) -> tuple[Any, Any]:
    """libfuse's ``fuse_buf_copy(dst, src, flags)`` and ``fuse_buf_size(bufv)``.

    ctypes drops the GIL while they run, so writes from several threads proceed at once.
    """
    copy = libfuse.fuse_buf_copy
    copy.restype = ctypes.c_ssize_t
    copy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    size = libfuse.fuse_buf_size
    size.restype = ctypes.c_size_t
    size.argtypes = [ctypes.c_void_p]
    return copy, size
