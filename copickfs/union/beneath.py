"""Resolving a relative path beneath an open directory, following no symlink on the way.

A root daemon must never be steered outside its roots: a user who can write a layer
directly could swap any directory on a path for a symlink between two calls. So every
layer call resolves its path from a descriptor of the layer's root with openat2(2)'s
``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`` (Linux 5.6+), or, where the kernel lacks it,
one ``openat(O_NOFOLLOW)`` per component. A symlink met on the way fails with ELOOP,
a ".." that would leave the root with EXDEV; callers treat both as "not a directory".
"""

from __future__ import annotations

import ctypes
import errno
import os

SYS_OPENAT2 = 437  # the same number on every Linux architecture (the generic syscall table)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS

#: errnos meaning "a component on the way was not a plain directory of this root"
#: (without openat2, a symlink on the way gives ENOTDIR).
ESCAPES = (errno.ELOOP, errno.EXDEV, errno.ENOTDIR)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_have_openat2 = True


def open_beneath(dirfd: int, path: str, flags: int, mode: int = 0) -> int:
    """A descriptor of ``path`` (relative, "" for ``dirfd`` itself) beneath ``dirfd``.

    No component may be a symlink; the last one is not followed either (``O_NOFOLLOW``,
    or with ``O_PATH`` the link itself is opened). Raises OSError with the errno of the
    failing step.
    """
    global _have_openat2
    flags |= os.O_CLOEXEC | os.O_NOFOLLOW
    if not flags & os.O_CREAT:
        mode = 0  # openat2 insists
    if _have_openat2:
        how = _OpenHow(flags, mode, _RESOLVE)
        fd = _syscall(SYS_OPENAT2, dirfd, os.fsencode(path or "."), ctypes.byref(how), ctypes.sizeof(how))
        if fd >= 0:
            return fd
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EPERM) or code == errno.EPERM and _openat2_works():
            raise OSError(code, os.strerror(code), path)
        _have_openat2 = False
    return _walk(dirfd, path, flags, mode)


def _openat2_works() -> bool:
    """EPERM from openat2 is a real answer unless a seccomp filter forbids the call itself."""
    how = _OpenHow(os.O_PATH | os.O_CLOEXEC, 0, _RESOLVE)
    fd = _syscall(SYS_OPENAT2, -100, b"/", ctypes.byref(how), ctypes.sizeof(how))  # AT_FDCWD
    if fd >= 0:
        os.close(fd)
        return True
    return False


def _walk(dirfd: int, path: str, flags: int, mode: int) -> int:
    """The same guarantee without openat2: one O_NOFOLLOW open per directory component."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise OSError(errno.EXDEV, "path leaves its root", path)
    current = dirfd
    try:
        for name in parts[:-1]:
            step = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=current)
            if current != dirfd:
                os.close(current)
            current = step
        return os.open(parts[-1] if parts else ".", flags, mode, dir_fd=current)
    finally:
        if current != dirfd:
            os.close(current)


def open_dir(dirfd: int, path: str) -> int:
    """An ``O_PATH`` descriptor of directory ``path`` beneath ``dirfd``, for ``*at`` calls."""
    return open_beneath(dirfd, path, os.O_PATH | os.O_DIRECTORY)
