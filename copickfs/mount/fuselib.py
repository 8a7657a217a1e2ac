"""Whether FUSE 3 can be used here (one-line reasons), and libfuse3's buffer structures."""

from __future__ import annotations

import ctypes
import ctypes.util
import os


class FuseUnavailable(RuntimeError):
    """FUSE cannot be used on this machine; the message says what to install."""


def check_fuse_available() -> None:
    if not os.path.exists("/dev/fuse"):
        raise FuseUnavailable("/dev/fuse is missing: load the fuse kernel module (modprobe fuse) "
                              "or give the container --device /dev/fuse")
    if os.geteuid() != 0 and not os.access("/dev/fuse", os.R_OK | os.W_OK):
        raise FuseUnavailable("/dev/fuse is not open to this user (libfuse opens it before it can use "
                              "fusermount3): mount as root, or make it mode 0666 as distributions do")
    if ctypes.util.find_library("fuse3") is None:
        raise FuseUnavailable("libfuse3 is not installed: apt-get install fuse3 libfuse3-3")
    if not any(os.access(os.path.join(d, "fusermount3"), os.X_OK)
               for d in os.environ.get("PATH", "/usr/bin:/bin").split(":")):
        raise FuseUnavailable("fusermount3 is not installed: apt-get install fuse3")


# libfuse3's struct fuse_buf / fuse_bufvec (fuse_common.h); the vector's buffers are an inline array.
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
