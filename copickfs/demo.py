"""`copickfs demo`: mount a sample project over an empty overlay and show what to try.

The point is a first mount in one command, so everything a user would otherwise set up by
hand (a static project, an overlay, a config, a mount point) is made under one directory,
and re-running it reuses what is there.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import numpy as np

from . import sample
from .config import check_roots, load_config
from .mount.fuselib import check_fuse_available
from .mount.mountinfo import is_mounted
from .mount.preflight import check_mountpoint
from .mount.runner import start_background, unmount

ZARR_SUFFIX = ".zarr"


def run_demo(directory: str, keep: bool) -> None:
    """Build the sample under ``directory``, mount it at ``directory``/mnt and show it.

    With ``keep`` the mount stays until Ctrl-C, SIGTERM or `copickfs unmount`; without it
    the mount is removed before returning. Either way nothing is left mounted by us.
    """
    base = Path(directory).absolute()
    static, overlay, mnt = base / "static", base / "overlay", base / "mnt"
    unmount(str(mnt), quiet=True)  # a previous demo's mount, alive or dead (a dead one fails stat)
    built = sample.build_sample_project(static)
    overlay.mkdir(exist_ok=True)
    mnt.mkdir(exist_ok=True)
    config_path = write_demo_config(base / "config.json", overlay, static)

    config = load_config(config_path)
    check_roots(config)
    check_fuse_available()
    target = check_mountpoint(str(mnt), config)
    print(f"{'Built' if built else 'Reusing'} the sample project in {_shown(static)}")
    if any(overlay.iterdir()):
        print(f"The overlay holds changes from earlier runs; delete {_shown(overlay)} to start afresh.")
    pid = start_background(["mount", "-f", str(config_path), target], target)
    try:
        print(f"Mounted {_shown(overlay)} over {_shown(static)} at {_shown(mnt)} (daemon PID {pid})\n")
        print("\n".join(tree_lines(mnt, str(_shown(mnt)))))
        print()
        print(what_to_try(base, mnt))
        if keep:
            print(f"\nThe mount stays until Ctrl-C (or `{_copickfs()} unmount {_q(mnt)}`).")
            _wait_for_stop(target)
        else:
            print("\n--exit-after-show: unmounting now; run without it to keep the mount.")
    finally:
        unmount(target, quiet=True)
        _reap(pid)
    print(f"Unmounted {_shown(mnt)}; the overlay {_shown(overlay)} keeps what was written.")


def write_demo_config(path: Path, overlay: Path, static: Path) -> Path:
    """The mount's config: the sample project's config plus the two roots and a demo user."""
    data = json.loads((static / sample.CONFIG_NAME).read_text())
    data.update({"overlay_root": str(overlay), "static_root": str(static),
                 "user_id": "me", "session_id": "1"})
    text = json.dumps(data, indent=2) + "\n"
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def tree_lines(root: Path, label: str) -> list[str]:
    """A `tree`-like listing read through the mount; zarr stores are one line each."""
    lines = [label]
    _tree(root, "", lines)
    return lines


def _tree(directory: Path, prefix: str, lines: list[str]) -> None:
    entries = sorted(os.scandir(directory), key=lambda e: e.name)
    for index, entry in enumerate(entries):
        last = index == len(entries) - 1
        branch, indent = ("└── ", "    ") if last else ("├── ", "│   ")
        if entry.is_dir(follow_symlinks=False) and entry.name.endswith(ZARR_SUFFIX):
            lines.append(f"{prefix}{branch}{entry.name}/  {_zarr_summary(Path(entry.path))}")
        elif entry.is_dir(follow_symlinks=False):
            lines.append(f"{prefix}{branch}{entry.name}/")
            _tree(Path(entry.path), prefix + indent, lines)
        else:
            size = _size(entry.stat(follow_symlinks=False).st_size)
            lines.append(f"{prefix}{branch}{entry.name}  ({size})")


def _zarr_summary(store: Path) -> str:
    """What a zarr store holds, from its metadata: levels and their shapes."""
    try:
        shapes = [json.loads((store / str(level) / ".zarray").read_text())["shape"]
                  for level in range(sample.LEVELS)]
        dtype = np.dtype(json.loads((store / "0" / ".zarray").read_text())["dtype"]).name
    except (OSError, ValueError, KeyError, TypeError):
        return "(zarr store)"
    return f"(OME-Zarr {dtype}, levels " + ", ".join("×".join(map(str, s)) for s in shapes) + ")"


def _size(size: int) -> str:
    return f"{size} B" if size < 1024 else f"{size / 1024:.1f} KiB"


def what_to_try(base: Path, mnt: Path) -> str:
    """Commands that show the union at work, to paste into another terminal."""
    run = mnt / sample.RUN_DIR
    picks, mine, mesh = mnt / sample.PICKS, run / "Picks" / "me_1_ribosome.json", mnt / sample.MESH
    overlay_run, static_run = base / "overlay" / sample.RUN_DIR, base / "static" / sample.RUN_DIR
    tomogram = json.dumps(str(_shown(mnt / sample.TOMOGRAM)))
    python_code = (f'import zarr; g = zarr.open_group({tomogram}, mode="r"); a = g["0"]; '
                   'print(a.shape, a.dtype, g.attrs["multiscales"][0]["axes"])')
    python = _program(Path(sys.executable))
    rename_user = """'s/"user_id": "demo"/"user_id": "me"/; s/"session_id": "0"/"session_id": "1"/'"""
    steps = [
        ("Browse it like any directory:", [f"ls -l {_q(run)}", f"cat {_q(picks)}"]),
        ("Open the tomogram through the mount with zarr:", [f"{python} -c {shlex.quote(python_code)}"]),
        ("Write new picks: they land in the overlay, static is untouched:", [
            f"sed {rename_user} {_q(picks)} > {_q(mine)}",
            f"ls {_q(overlay_run / 'Picks')} {_q(static_run / 'Picks')}"]),
        ("Delete a static file: the overlay records a whiteout, static keeps the file:", [
            f"rm {_q(mesh)}", f"ls -a {_q(overlay_run / 'Meshes')}", f"ls {_q(static_run / 'Meshes')}"]),
        ("Unmount:", [f"{_copickfs()} unmount {_q(mnt)}"]),
    ]
    lines = ["What to try:"]
    for title, commands in steps:
        lines.append(f"  # {title}")
        lines += [f"  {command}" for command in commands]
    return "\n".join(lines)


def _wait_for_stop(mountpoint: str) -> None:
    """Block until SIGINT/SIGTERM, or until someone else unmounts the demo."""
    stop: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.append(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop and is_mounted(mountpoint):
            time.sleep(0.2)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if stop:
        print()


def _reap(pid: int, timeout: float = 10.0) -> None:
    """Collect the mount daemon we started, so no zombie outlives the demo."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # already collected
            return
        if done:
            return
        time.sleep(0.05)


def _shown(path: Path) -> Path:
    """``path`` relative to the working directory when it lies below it: shorter to read and paste."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _q(path: Path) -> str:
    return shlex.quote(str(_shown(path)))


def _program(path: Path) -> str:
    """A program path a shell runs as given (with a slash, so PATH is not searched)."""
    shown = str(_shown(path))
    return shlex.quote(shown if "/" in shown else f"./{shown}")


def _copickfs() -> str:
    """How to call the CLI from a shell: the script next to this Python, else from PATH."""
    script = Path(sys.executable).with_name("copickfs")
    return _program(script) if script.is_file() else "copickfs"
