"""Real mounts for tests: started by PID, always unmounted, never left stale."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

from copickfs.mount.mountinfo import is_mounted


def write_config(path: Path, overlay: Path, static: Path | None, **extra: object) -> Path:
    data = {"config_type": "filesystem", "name": "test", "overlay_root": str(overlay), **extra}
    if static is not None:
        data["static_root"] = str(static)
    path.write_text(json.dumps(data))
    return path


def copickfs(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would."""
    return subprocess.run([sys.executable, "-m", "copickfs", *args], capture_output=True, text=True,
                          timeout=timeout)


def force_unmount(mountpoint: Path) -> None:
    if is_mounted(str(mountpoint)):
        subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True)
    if is_mounted(str(mountpoint)):
        subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)


@contextmanager
def mounted(config: Path, mountpoint: Path, *options: str, timeout: float = 30,
            output: Path | None = None) -> Iterator[int]:
    """Mount in the foreground in a child process; yield its PID; always unmount and reap it.
    Its stdout and stderr go to a pipe read only if the mount fails, or to the file ``output``
    (appended to; use it for a chatty daemon: a full pipe would block it)."""
    argv = [sys.executable, "-m", "copickfs", "mount", "-f", str(config), str(mountpoint)]
    for opt in options:
        argv += ["-o", opt]
    sink = open(output, "ab") if output is not None else None
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sink or subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    finally:
        if sink is not None:
            sink.close()  # the child has its own copy
    try:
        deadline = time.monotonic() + timeout
        while not is_mounted(str(mountpoint)):
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else output.read_text()  # type: ignore[union-attr]
                raise RuntimeError(f"mount failed ({proc.returncode}): {out}")
            if time.monotonic() > deadline:
                raise RuntimeError("mount did not come up")
            time.sleep(0.02)
        os.stat(mountpoint)
        yield proc.pid
    finally:
        force_unmount(mountpoint)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            force_unmount(mountpoint)
        if proc.stdout:
            proc.stdout.close()
