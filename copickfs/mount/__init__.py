"""The FUSE mount: POSIX calls mapped onto the union. Imports libfuse3 lazily."""

from .preflight import MountError, check_mountpoint
from .runner import run_foreground, start_background, unmount

__all__ = ["MountError", "check_mountpoint", "run_foreground", "start_background", "unmount"]
