"""Checks that run before anything is mounted; each failure is one line naming the problem.

Two `copickfs mount` racing for one mount point must not both go ahead: the checks run under
an exclusive `flock` on the mount point directory (see `claim_mountpoint`), held until the
mount answers. Once mounted, opening the path gives the FUSE root (another inode, another
lock), so the "already mounted" check made after taking the lock turns late-comers away.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from ..config import CopickConfig, local_root
from .mountinfo import is_mounted, mount_type


class MountError(RuntimeError):
    """The mount cannot be made or removed; the message is one line."""


class MountPointClaim:
    """An exclusive lock on a mount point directory: while held, no other copickfs mounts there.

    ``path`` is the resolved mount point; ``fd`` an ``O_RDONLY | O_DIRECTORY`` descriptor of
    it carrying the lock (the lock lives as long as any process holds a copy of ``fd``).
    """

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> MountPointClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_mountpoint(mountpoint: str, config: CopickConfig, lock_fd: int | None = None) -> MountPointClaim:
    """Lock the mount point, then check it is an empty, unmounted directory outside both roots.

    ``lock_fd`` is a descriptor inherited from the `copickfs mount` that started this daemon
    and holds the lock already; it must be a descriptor of this very directory.
    """
    path = os.path.realpath(os.path.abspath(mountpoint))  # the kernel lists resolved mount points
    if mount_type(path) == "autofs":
        # systemd's .automount (fstab x-systemd.automount) mounts us on its autofs trigger,
        # and serialises the mounts itself. Opening or listing the trigger would ask for
        # this very mount and wait for it: check what needs no access, take no lock.
        _check_outside_roots(mountpoint, path, config)
        return MountPointClaim(path, -1)
    if is_mounted(path):
        raise MountError(f"mount point {mountpoint} is already mounted (copickfs unmount {mountpoint})")
    fd = _inherited(lock_fd, mountpoint, path) if lock_fd is not None else _open_directory(mountpoint, path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise MountError(f"mount point {mountpoint}: cannot lock: {e.strerror}") from None
            if is_mounted(path):
                raise MountError(f"mount point {mountpoint} is already mounted") from None
            raise MountError(f"mount point {mountpoint} is being mounted by another copickfs") from None
        # Under the lock: whoever held it before may have mounted by now.
        if is_mounted(path):
            raise MountError(f"mount point {mountpoint} is already mounted (copickfs unmount {mountpoint})")
        try:
            if os.listdir(fd):
                raise MountError(f"mount point {mountpoint} is not empty")
        except OSError as e:
            raise MountError(f"mount point {mountpoint}: cannot list: {e.strerror}") from None
        _check_outside_roots(mountpoint, path, config)
    except BaseException:
        os.close(fd)
        raise
    return MountPointClaim(path, fd)


def _check_outside_roots(mountpoint: str, path: str, config: CopickConfig) -> None:
    for field in ("overlay_root", "static_root"):
        url = getattr(config, field)
        root = local_root(url) if url else None
        if root is not None and os.path.commonpath([path, root]) == root:
            raise MountError(f"mount point {mountpoint} lies inside {field} {url}")


def check_mountpoint(mountpoint: str, config: CopickConfig) -> str:
    """The resolved mount point, if it is an empty, unmounted directory outside both roots.

    Checks only: the lock is let go at once (`claim_mountpoint` keeps it).
    """
    with claim_mountpoint(mountpoint, config) as claim:
        return claim.path


def _open_directory(mountpoint: str, path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ENOENT or (e.errno == errno.ENOTDIR and not os.path.lexists(path)):
            raise MountError(f"mount point {mountpoint} does not exist") from None
        if e.errno in (errno.ENOTDIR, errno.ELOOP):
            raise MountError(f"mount point {mountpoint} is not a directory") from None
        raise MountError(f"mount point {mountpoint}: {e.strerror}") from None


def _inherited(fd: int, mountpoint: str, path: str) -> int:
    """Adopt the lock descriptor passed down by the starter, after making sure it is the mount point's."""
    try:
        held = os.fstat(fd)
        there = os.stat(path)
    except (OSError, OverflowError):
        raise MountError(f"--lock-fd {fd}: not an open descriptor of mount point {mountpoint}") from None
    if not stat.S_ISDIR(held.st_mode) or (held.st_dev, held.st_ino) != (there.st_dev, there.st_ino):
        raise MountError(f"--lock-fd {fd}: not an open descriptor of mount point {mountpoint}")
    os.set_inheritable(fd, False)
    return fd
