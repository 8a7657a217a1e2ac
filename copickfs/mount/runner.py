"""Running the FUSE loop, starting it in the background, and unmounting."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from ..config import CopickConfig
from ..options import MountOptions
from .mountinfo import COPICKFS_TYPE, mount_type
from .preflight import MountError
from .status import STATUS_NAME

log = logging.getLogger("copickfs.mount")

READY_TIMEOUT = 30.0


def run_foreground(config: CopickConfig, mountpoint: str, options: MountOptions) -> None:
    """Serve the mount until it is unmounted or the process gets SIGINT/SIGTERM."""
    from .daemon import run_foreground as serve

    serve(config, mountpoint, options)


def start_background(argv: list[str], mountpoint: str, timeout: float = READY_TIMEOUT,
                     pass_fds: tuple[int, ...] = ()) -> int:
    """Start ``copickfs mount -f ...`` detached and return its PID once the mount answers.

    ``pass_fds`` are handed to the daemon (the mount point lock, see `claim_mountpoint`). If
    the daemon exits first, its last error line becomes the `MountError`.
    """
    output = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "copickfs", *argv], stdin=subprocess.DEVNULL,
                            stdout=output, stderr=output, start_new_session=True, cwd="/",
                            pass_fds=pass_fds)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output.seek(0)
            lines = [ln for ln in output.read().decode(errors="replace").splitlines() if ln.strip()]
            raise MountError(lines[-1].removeprefix("Error: ") if lines else
                             f"the mount daemon exited with status {proc.returncode}")
        if _answers(mountpoint):
            return proc.pid
        time.sleep(0.02)
    proc.terminate()
    unmount(mountpoint, quiet=True)
    raise MountError(f"the mount at {mountpoint} did not answer within {timeout:.0f} s")


def _answers(mountpoint: str) -> bool:
    """A copickfs mount is at ``mountpoint`` and its daemon serves requests."""
    if mount_type(mountpoint) != COPICKFS_TYPE:
        return False
    try:
        os.stat(mountpoint)
        return True
    except OSError:
        return False


def unmount(mountpoint: str, quiet: bool = False) -> None:
    """Unmount a copickfs mount, also one whose daemon died ("Transport endpoint is not connected").

    Any other filesystem at ``mountpoint`` is left alone: a `MountError` names its type (with
    ``quiet``, nothing happens, as when nothing is mounted).
    """
    path = _resolved(mountpoint)
    kind = mount_type(path)
    if kind is None:
        if quiet:
            return
        raise MountError(f"{mountpoint} is not mounted")
    if kind != COPICKFS_TYPE:
        if quiet:
            return
        raise MountError(f"{mountpoint}: not a copickfs mount (its filesystem type is {kind}); left mounted")
    fusermount = shutil.which("fusermount3") or "fusermount3"
    result = subprocess.run([fusermount, "-u", path], capture_output=True, text=True, errors="replace")
    if result.returncode == 0:
        return
    if "not connected" in result.stderr or not _answers(path):
        lazy = subprocess.run([fusermount, "-uz", path], capture_output=True, text=True, errors="replace")
        if lazy.returncode == 0:
            return
        result = lazy
    message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "fusermount3 failed"
    raise MountError(f"cannot unmount {mountpoint}: {message.removeprefix('fusermount3: ')}")


def read_status(mountpoint: str) -> dict[str, Any]:
    """The running daemon's status report (see `status`), read from its control file."""
    path = _resolved(mountpoint)
    kind = mount_type(path)
    if kind is None:
        raise MountError(f"{mountpoint} is not mounted")
    if kind != COPICKFS_TYPE:
        raise MountError(f"{mountpoint}: not a copickfs mount (its filesystem type is {kind})")
    try:
        with open(os.path.join(path, STATUS_NAME), "rb") as f:
            return json.loads(f.read())
    except PermissionError:
        raise MountError(f"{mountpoint}: the status is readable by the mount's owner and root only") from None
    except OSError as e:
        raise MountError(f"{mountpoint}: cannot read the status: {e.strerror or e}") from None
    except ValueError as e:
        raise MountError(f"{mountpoint}: the daemon's status is not JSON ({e})") from None


def _resolved(mountpoint: str) -> str:
    """The path as the kernel lists it: absolute, symlinks resolved, without entering a mount.

    A mount point's own path is resolved up to it (a dead FUSE mount fails every lstat, and a
    live one's root is not a symlink), so only the parents' symlinks matter.
    """
    path = os.path.abspath(mountpoint)
    if mount_type(path) is not None:
        return path
    parent, name = os.path.split(path)
    resolved = os.path.join(os.path.realpath(parent), name)
    if mount_type(resolved) is not None or not os.path.islink(resolved):
        return resolved
    return os.path.realpath(resolved)
