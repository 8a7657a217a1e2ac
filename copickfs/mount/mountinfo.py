"""What the kernel says is mounted, read without touching the mount (a dead one would hang or fail)."""

from __future__ import annotations

import os


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "surrogateescape")


def mount_entry(mountpoint: str) -> tuple[str, str] | None:
    """(``major:minor``, fs type) of the mount at ``mountpoint``, or None."""
    target = os.path.abspath(mountpoint)
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.readlines()
    except OSError:
        return None
    for line in reversed(lines):  # the last mount on a point is the visible one
        fields = line.split()
        separator = fields.index("-")
        if _unescape(fields[4]) == target:
            return fields[2], fields[separator + 1]
    return None


def is_mounted(mountpoint: str) -> bool:
    return mount_entry(mountpoint) is not None


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
