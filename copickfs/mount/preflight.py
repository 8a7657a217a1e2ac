"""Checks that run before anything is mounted; each failure is one line naming the problem."""

from __future__ import annotations

import os

from ..config import CopickConfig, local_root
from .mountinfo import is_mounted


class MountError(RuntimeError):
    """The mount cannot be made or removed; the message is one line."""


def check_mountpoint(mountpoint: str, config: CopickConfig) -> str:
    """The absolute mount point, if it is an empty, unmounted directory outside both roots."""
    path = os.path.abspath(mountpoint)
    if is_mounted(path):
        raise MountError(f"mount point {mountpoint} is already mounted (copickfs unmount {mountpoint})")
    if not os.path.lexists(path):
        raise MountError(f"mount point {mountpoint} does not exist")
    if not os.path.isdir(path):
        raise MountError(f"mount point {mountpoint} is not a directory")
    if os.listdir(path):
        raise MountError(f"mount point {mountpoint} is not empty")
    real = os.path.realpath(path)
    for field in ("overlay_root", "static_root"):
        url = getattr(config, field)
        root = local_root(url) if url else None
        if root is not None and os.path.commonpath([real, root]) == root:
            raise MountError(f"mount point {mountpoint} lies inside {field} {url}")
    return path
