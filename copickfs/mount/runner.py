"""Running the FUSE loop, starting it in the background, and unmounting."""

from __future__ import annotations

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
from ..precomputed import PrecomputedView
from ..union import UnionFileSystem
from .mountinfo import is_mounted
from .preflight import MountError

log = logging.getLogger("copickfs.mount")

READY_TIMEOUT = 30.0


def union_from_config(config: CopickConfig) -> UnionFileSystem:
    return UnionFileSystem(
        config.overlay_root,
        config.static_root,
        overlay_options=config.overlay_fs_args,
        static_options=config.static_fs_args,
    )


def run_foreground(config: CopickConfig, mountpoint: str, options: MountOptions) -> None:
    """Serve the mount until it is unmounted or the process gets SIGINT/SIGTERM."""
    from .adapter import FuseAdapter  # loads libfuse3
    from .operations import UnionOperations

    _configure_logging(options)
    os.umask(0)  # the kernel applied the caller's umask already
    union = union_from_config(config)
    source = PrecomputedView(union, options.precomputed_layout) if options.precomputed else union
    operations = UnionOperations(source, options, mountpoint)
    fuse_options: dict[str, Any] = {
        "fsname": f"copickfs:{config.overlay_root}",
        "subtype": "copickfs",
        "default_permissions": True,
    }
    if options.allow_other:
        fuse_options["allow_other"] = True
    if options.ro:
        fuse_options["ro"] = True
    try:
        FuseAdapter(operations, mountpoint, raw_fi=True, foreground=True, nothreads=not options.threads,
              debug=options.debug, **fuse_options)
    except RuntimeError as e:
        # libfuse3's fuse_main returns 8 when its loop ends with an error, and its own
        # SIGINT/SIGTERM/SIGHUP handler records the signal as that error. It has unmounted
        # by then, so a stop by signal is a clean stop, not a failure.
        if e.args != (8,):
            raise
        log.debug("the FUSE loop ended on a signal; %s is unmounted", mountpoint)


def _configure_logging(options: MountOptions) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if options.log:
        handlers.append(logging.FileHandler(options.log))
    logging.basicConfig(level=logging.DEBUG if options.debug else logging.WARNING,
                        format="copickfs[%(process)d] %(levelname)s %(message)s", handlers=handlers, force=True)


def start_background(argv: list[str], mountpoint: str, timeout: float = READY_TIMEOUT) -> int:
    """Start ``copickfs mount -f ...`` detached and return its PID once the mount answers.

    If the daemon exits first, its last error line becomes the `MountError`.
    """
    output = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "copickfs", *argv], stdin=subprocess.DEVNULL,
                            stdout=output, stderr=output, start_new_session=True, cwd="/")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output.seek(0)
            lines = [ln for ln in output.read().decode(errors="replace").splitlines() if ln.strip()]
            raise MountError(lines[-1].removeprefix("Error: ") if lines else
                             f"the mount daemon exited with status {proc.returncode}")
        if is_mounted(mountpoint) and _answers(mountpoint):
            return proc.pid
        time.sleep(0.02)
    proc.terminate()
    unmount(mountpoint, quiet=True)
    raise MountError(f"the mount at {mountpoint} did not answer within {timeout:.0f} s")


def _answers(mountpoint: str) -> bool:
    try:
        os.stat(mountpoint)
        return True
    except OSError:
        return False


def unmount(mountpoint: str, quiet: bool = False) -> None:
    """Unmount, also clearing a mount whose daemon died ("Transport endpoint is not connected")."""
    path = os.path.abspath(mountpoint)
    if not is_mounted(path):
        if quiet:
            return
        raise MountError(f"{mountpoint} is not mounted")
    fusermount = shutil.which("fusermount3") or "fusermount3"
    result = subprocess.run([fusermount, "-u", path], capture_output=True, text=True)
    if result.returncode == 0:
        return
    if "not connected" in result.stderr or not _answers(path):
        lazy = subprocess.run([fusermount, "-uz", path], capture_output=True, text=True)
        if lazy.returncode == 0:
            return
        result = lazy
    message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "fusermount3 failed"
    raise MountError(f"cannot unmount {mountpoint}: {message.removeprefix('fusermount3: ')}")
