"""What the kernel says is mounted, read without touching the mount (a dead one would hang or fail)."""

from __future__ import annotations

import os
import re

COPICKFS_TYPE = "fuse.copickfs"  # libfuse's "fuse." + the subtype run_foreground mounts with

_OCTAL = re.compile(rb"\\([0-7]{3})")


def _unescape(field: bytes) -> str:
    """A mountinfo path field (space, tab, newline, backslash escaped as ``\\ooo``) as an OS path.

    Paths need not be UTF-8; they come back as `os.fsdecode` gives them (surrogate escapes),
    so they compare equal to what `os.path` makes of the same bytes.
    """
    return os.fsdecode(_OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), field))


def mount_entry(mountpoint: str) -> tuple[str, str] | None:
    """(``major:minor``, fs type) of the visible mount at exactly ``mountpoint``, or None.

    ``mountpoint`` is made absolute but not resolved: pass a resolved path (the kernel
    lists mount points with symlinks resolved).
    """
    target = os.path.abspath(mountpoint)
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):  # the last mount on a point is the visible one
        fields = line.split()
        try:
            separator = fields.index(b"-")
            if _unescape(fields[4]) == target:
                return os.fsdecode(fields[2]), os.fsdecode(fields[separator + 1])
        except (ValueError, IndexError):
            continue  # not a mountinfo line as documented in proc(5)
    return None


def is_mounted(mountpoint: str) -> bool:
    return mount_entry(mountpoint) is not None


def mount_type(mountpoint: str) -> str | None:
    """The fs type of the visible mount at ``mountpoint`` (``fuse.copickfs`` for ours), or None."""
    entry = mount_entry(mountpoint)
    return entry[1] if entry else None


def set_read_ahead(mountpoint: str, kilobytes: int) -> bool:
    """Raise the kernel read-ahead of a mount (sequential reads of large files benefit)."""
    entry = mount_entry(mountpoint)
    if entry is None or kilobytes <= 0:
        return False
    try:
        with open(f"/sys/class/bdi/{entry[0]}/read_ahead_kb", "w") as f:
            f.write(str(kilobytes))
        return True
    except OSError:
        return False
