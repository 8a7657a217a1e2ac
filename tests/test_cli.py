"""The `copickfs` command as a user runs it: mount, unmount, options, signals and bad input.

Every failure must be one line on stderr that names what is wrong, exit non-zero, and leave
nothing mounted and nothing written. Mounts made here are always unmounted, and only
processes started here (found by their PID) are ever killed.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import pytest

from copickfs.mount.mountinfo import is_mounted
from mounting import copickfs, force_unmount, mounted
from treehash import tree_digest

STATIC_NAMES = ["dir", "empty", "file.txt", "link"]


# ---------------------------------------------------------------- helpers


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI with a chosen working directory or environment."""
    return subprocess.run([sys.executable, "-m", "copickfs", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def installed_command() -> str:
    """The `copickfs` console script of this environment, as users run it."""
    script = Path(sys.executable).with_name("copickfs")
    if not script.exists():
        pytest.skip("the copickfs console script is not installed in this environment")
    return str(script)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Non-zero exit, exactly one non-empty stderr line, naming every needle; no traceback."""
    assert result.returncode != 0, f"exit 0 for a failure: {result.stdout!r} {result.stderr!r}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got: {result.stderr!r}"
    line = lines[0]
    assert "Traceback" not in line
    for needle in needles:
        assert needle in line, f"{needle!r} not named in {line!r}"
    return line


def mount_count(mountpoint: Path) -> int:
    """How many mounts /proc/self/mountinfo lists at exactly this path."""
    target = str(mountpoint)
    with open("/proc/self/mountinfo") as f:
        return sum(1 for line in f if line.split()[4] == target)


def daemon_pids(mountpoint: Path) -> set[int]:
    """PIDs of live copickfs processes that have this mount point as an argument."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"copickfs" in b" ".join(argv) and str(mountpoint).encode() in argv:
            pids.add(int(entry))
    return pids


def still_running(pid: int, mountpoint: Path) -> bool:
    """The process is alive (not a zombie) and still the one serving this mount point."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                     if line.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return str(mountpoint).encode() in argv and "Z" not in state.split()[1]


def wait_gone(pids: set[int], mountpoint: Path, timeout: float = 15) -> set[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = {pid for pid in pids if still_running(pid, mountpoint)}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def kill_ours(pids: set[int], mountpoint: Path) -> None:
    """SIGKILL processes this test started, identified by PID and re-checked by cmdline."""
    for pid in pids:
        if still_running(pid, mountpoint):
            os.kill(pid, signal.SIGKILL)


@contextmanager
def background_cleanup(mountpoint: Path) -> Iterator[set[int]]:
    """Yields a set the test fills with its daemon's PIDs; afterwards nothing is left behind."""
    pids: set[int] = set()
    try:
        yield pids
    finally:
        if not pids:
            pids |= daemon_pids(mountpoint)
        force_unmount(mountpoint)
        if wait_gone(pids, mountpoint, timeout=5):
            kill_ours(pids, mountpoint)
            force_unmount(mountpoint)


@contextmanager
def foreground(config: Path, mountpoint: Path, *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """`copickfs mount -f` as a child; yields it once the mount answers; always cleans up."""
    argv = [sys.executable, "-m", "copickfs", "mount", "-f", str(config), str(mountpoint)]
    for opt in options:
        argv += ["-o", opt]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not is_mounted(str(mountpoint)):
            if proc.poll() is not None:
                raise AssertionError(f"mount -f exited {proc.returncode}: {proc.stderr.read()!r}")
            assert time.monotonic() < deadline, "the mount did not come up"
            time.sleep(0.02)
        os.stat(mountpoint)
        yield proc
    finally:
        force_unmount(mountpoint)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            force_unmount(mountpoint)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


# ---------------------------------------------------------------- version and help


@pytest.mark.parametrize("how", ["script", "module"])
def test_version_prints_the_installed_version(how: str) -> None:
    if how == "script":
        result = subprocess.run([installed_command(), "--version"], capture_output=True, text=True,
                                timeout=60)
    else:
        result = copickfs("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"copickfs, version {version('copickfs')}"


@pytest.mark.parametrize("command", [[], ["mount"], ["unmount"], ["demo"]],
                         ids=["group", "mount", "unmount", "demo"])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_on_the_group_and_every_command(command: list[str], flag: str, tmp_path: Path) -> None:
    result = subprocess.run([installed_command(), *command, flag], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    usage = " ".join(["copickfs", *command])
    assert result.stdout.startswith(f"Usage: {usage} "), result.stdout
    if not command:
        for name in ("mount", "unmount", "demo"):
            assert f"\n  {name} " in result.stdout
    if command == ["mount"]:
        assert "CONFIG MOUNTPOINT" in result.stdout
        assert "--foreground" in result.stdout and "-o OPT" in result.stdout
    if command == ["demo"]:
        assert "--dir" in result.stdout
    assert os.listdir(tmp_path) == [], "--help must not create anything"


# ---------------------------------------------------------------- background mount and unmount


def test_background_mount_answers_on_return_and_unmount_stops_the_daemon(roots) -> None:
    mp = roots.mountpoint
    with background_cleanup(mp) as pids:
        result = copickfs("mount", str(roots.config), str(mp))
        assert result.returncode == 0, result.stderr
        # No waiting: the command returns only once the mount answers.
        assert sorted(os.listdir(mp)) == STATIC_NAMES
        assert (mp / "file.txt").read_bytes() == b"static file\n"
        assert os.stat(mp).st_dev != os.stat(roots.static).st_dev
        assert mount_count(mp) == 1
        pids |= daemon_pids(mp)
        assert pids, "no daemon process serves the mount"
        assert os.getpid() not in pids

        (mp / "written.txt").write_bytes(b"through the mount")
        assert (roots.overlay / "written.txt").read_bytes() == b"through the mount"

        result = copickfs("unmount", str(mp))
        assert result.returncode == 0, result.stderr
        assert not is_mounted(str(mp))
        assert os.listdir(mp) == []
        assert not wait_gone(pids, mp), "the daemon outlived its unmount"
    assert (roots.overlay / "written.txt").read_bytes() == b"through the mount"


def test_background_mount_with_relative_paths(roots) -> None:
    """Paths are taken relative to the caller's directory, also by the detached daemon."""
    mp = roots.mountpoint
    cwd = roots.config.parent
    with background_cleanup(mp) as pids:
        result = run_cli("mount", roots.config.name, mp.name, cwd=cwd)
        assert result.returncode == 0, result.stderr
        pids |= daemon_pids(mp)
        assert sorted(os.listdir(mp)) == STATIC_NAMES
        result = run_cli("unmount", mp.name, cwd=cwd)
        assert result.returncode == 0, result.stderr
        assert not is_mounted(str(mp))


# ---------------------------------------------------------------- -o options


def test_known_option_is_accepted_and_applied(roots) -> None:
    mp = roots.mountpoint
    with background_cleanup(mp) as pids:
        result = copickfs("mount", "-o", "attr_timeout=0,entry_timeout=0", "-o", "nowriteback_cache",
                          str(roots.config), str(mp))
        assert result.returncode == 0, result.stderr
        pids |= daemon_pids(mp)
        (mp / "grows.txt").write_bytes(b"1")
        assert os.stat(mp / "grows.txt").st_size == 1
        (roots.overlay / "grows.txt").write_bytes(b"12345")  # changed behind the mount
        # attr_timeout=0 (and no writeback cache, whose sizes the kernel trusts over ours):
        # the kernel keeps no attributes, so the new size shows at once.
        assert os.stat(mp / "grows.txt").st_size == 5


@pytest.mark.parametrize("option, needles", [
    ("no_such_option=1", ["no_such_option", "unknown"]),
    ("attr_timeout=0,bogus", ["bogus", "unknown"]),
    ("attr_timeout=soon", ["attr_timeout"]),
    ("read_ahead_kb=-1", ["read_ahead_kb"]),
])
@pytest.mark.parametrize("mode", [[], ["-f"]], ids=["background", "foreground"])
def test_bad_option_is_one_line_and_mounts_nothing(roots, option: str, needles: list[str],
                                                    mode: list[str]) -> None:
    before = tree_digest(str(roots.config.parent))
    with background_cleanup(roots.mountpoint):
        result = copickfs("mount", *mode, "-o", option, str(roots.config), str(roots.mountpoint))
        assert_one_line_error(result, *needles)
        assert not is_mounted(str(roots.mountpoint))
        assert not daemon_pids(roots.mountpoint)
    assert tree_digest(str(roots.config.parent)) == before


# ---------------------------------------------------------------- foreground and signals


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_foreground_mount_unmounts_cleanly(roots, signum: int) -> None:
    mp = roots.mountpoint
    with foreground(roots.config, mp) as proc:
        with open(mp / "before-signal.txt", "wb") as f:
            f.write(b"kept")
        (mp / "made-dir").mkdir()
        assert proc.poll() is None
        os.kill(proc.pid, signum)
        returncode = proc.wait(timeout=15)
        stderr = proc.stderr.read().decode()
        assert returncode == 0, f"exit {returncode} on {signal.Signals(signum).name}: {stderr!r}"
        assert "Error" not in stderr and "Traceback" not in stderr, stderr
        assert not is_mounted(str(mp))
        assert os.listdir(mp) == []
    assert (roots.overlay / "before-signal.txt").read_bytes() == b"kept"
    assert (roots.overlay / "made-dir").is_dir()


def test_unmount_of_a_foreground_mount_ends_the_daemon_with_status_0(roots) -> None:
    with foreground(roots.config, roots.mountpoint) as proc:
        result = copickfs("unmount", str(roots.mountpoint))
        assert result.returncode == 0, result.stderr
        assert proc.wait(timeout=15) == 0
        assert not is_mounted(str(roots.mountpoint))


# ---------------------------------------------------------------- unmount


def test_unmount_clears_a_mount_whose_daemon_died(roots) -> None:
    mp = roots.mountpoint
    with foreground(roots.config, mp) as proc:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
        assert is_mounted(str(mp))
        with pytest.raises(OSError) as dead:
            os.listdir(mp)
        assert dead.value.errno == errno.ENOTCONN

        result = copickfs("unmount", str(mp))
        assert result.returncode == 0, result.stderr
        assert not is_mounted(str(mp))
        assert os.listdir(mp) == []
    # The mount point is usable again.
    with mounted(roots.config, mp):
        assert sorted(os.listdir(mp)) == STATIC_NAMES


def test_unmount_of_a_path_that_is_not_mounted(roots) -> None:
    result = copickfs("unmount", str(roots.mountpoint))
    assert_one_line_error(result, str(roots.mountpoint), "not mounted")


def test_unmount_of_a_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = copickfs("unmount", str(missing))
    assert_one_line_error(result, str(missing))
    assert not missing.exists()


# ---------------------------------------------------------------- bad input


def _cfg(tmp: Path, name: str, data: object) -> str:
    path = tmp / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


# Each case: (roots, tmp) -> (config path, mount point, words the error line must contain).
BadCase = Callable[..., tuple[str, str, list[str]]]


def missing_config(r, tmp):
    return str(tmp / "missing.json"), str(r.mountpoint), ["missing.json", "not found"]


def config_is_a_directory(r, tmp):
    return str(r.overlay), str(r.mountpoint), [str(r.overlay), "directory"]


def invalid_json(r, tmp):
    return _cfg(tmp, "broken.json", '{"overlay_root": '), str(r.mountpoint), ["broken.json", "invalid JSON"]


def json_not_an_object(r, tmp):
    return _cfg(tmp, "list.json", [1, 2]), str(r.mountpoint), ["list.json", "JSON object"]


def missing_overlay_root(r, tmp):
    cfg = _cfg(tmp, "no-overlay.json", {"config_type": "filesystem", "static_root": str(r.static)})
    return cfg, str(r.mountpoint), ["no-overlay.json", "overlay_root", "missing"]


def overlay_root_not_a_string(r, tmp):
    return _cfg(tmp, "num.json", {"overlay_root": 5}), str(r.mountpoint), ["num.json", "overlay_root"]


def unknown_config_type(r, tmp):
    cfg = _cfg(tmp, "portal.json", {"config_type": "cryoet_data_portal", "overlay_root": str(r.overlay)})
    return cfg, str(r.mountpoint), ["config_type", "cryoet_data_portal"]


def bad_pickable_object(r, tmp):
    cfg = _cfg(tmp, "objs.json", {"overlay_root": str(r.overlay), "pickable_objects": [{"name": "ribosome"}]})
    return cfg, str(r.mountpoint), ["objs.json", "pickable_objects", "is_particle"]


def unknown_key_in_copickfs_section(r, tmp):
    cfg = _cfg(tmp, "sect.json", {"overlay_root": str(r.overlay), "copickfs": {"cache_forever": True}})
    return cfg, str(r.mountpoint), ["sect.json", "cache_forever"]


def static_root_missing(r, tmp):
    missing = str(tmp / "no-static")
    cfg = _cfg(tmp, "c.json", {"overlay_root": str(r.overlay), "static_root": missing})
    return cfg, str(r.mountpoint), ["static_root", missing]


def overlay_root_missing(r, tmp):
    missing = str(tmp / "no-overlay")
    cfg = _cfg(tmp, "c.json", {"overlay_root": missing, "static_root": str(r.static)})
    return cfg, str(r.mountpoint), ["overlay_root", missing]


def overlay_equals_static(r, tmp):
    cfg = _cfg(tmp, "c.json", {"overlay_root": str(r.static), "static_root": str(r.static) + "/"})
    return cfg, str(r.mountpoint), ["overlay_root", "static_root"]


def overlay_inside_static(r, tmp):
    cfg = _cfg(tmp, "c.json", {"overlay_root": str(r.static / "dir"), "static_root": str(r.static)})
    return cfg, str(r.mountpoint), ["overlay_root", "inside", str(r.static / "dir")]


def static_inside_overlay(r, tmp):
    (r.overlay / "published").mkdir()
    cfg = _cfg(tmp, "c.json", {"overlay_root": str(r.overlay), "static_root": str(r.overlay / "published")})
    return cfg, str(r.mountpoint), ["static_root", "inside", str(r.overlay / "published")]


def mountpoint_missing(r, tmp):
    return str(r.config), str(tmp / "no-mnt"), [str(tmp / "no-mnt"), "does not exist"]


def mountpoint_is_a_file(r, tmp):
    (tmp / "a-file").write_bytes(b"x")
    return str(r.config), str(tmp / "a-file"), [str(tmp / "a-file"), "not a directory"]


def mountpoint_not_empty(r, tmp):
    (tmp / "busy").mkdir()
    (tmp / "busy" / "keep.txt").write_bytes(b"x")
    return str(r.config), str(tmp / "busy"), [str(tmp / "busy"), "not empty"]


def mountpoint_inside_overlay(r, tmp):
    (r.overlay / "mnt").mkdir()
    return str(r.config), str(r.overlay / "mnt"), [str(r.overlay / "mnt"), "overlay_root"]


def mountpoint_inside_static(r, tmp):
    return str(r.config), str(r.static / "empty"), [str(r.static / "empty"), "static_root"]


BAD_INPUT: list[BadCase] = [
    missing_config, config_is_a_directory, invalid_json, json_not_an_object, missing_overlay_root,
    overlay_root_not_a_string, unknown_config_type, bad_pickable_object, unknown_key_in_copickfs_section,
    static_root_missing, overlay_root_missing, overlay_equals_static, overlay_inside_static,
    static_inside_overlay, mountpoint_missing, mountpoint_is_a_file, mountpoint_not_empty,
    mountpoint_inside_overlay, mountpoint_inside_static,
]


@pytest.mark.parametrize("mode", [[], ["-f"]], ids=["background", "foreground"])
@pytest.mark.parametrize("case", BAD_INPUT, ids=[case.__name__ for case in BAD_INPUT])
def test_bad_input_is_one_line_and_touches_nothing(roots, tmp_path: Path, case: BadCase,
                                                   mode: list[str]) -> None:
    config, mountpoint, needles = case(roots, tmp_path)
    before = tree_digest(str(tmp_path))
    with background_cleanup(Path(mountpoint)):
        result = copickfs("mount", *mode, config, mountpoint)
        assert_one_line_error(result, *needles)
        assert not is_mounted(mountpoint)
        assert not is_mounted(str(roots.mountpoint))
        assert not daemon_pids(Path(mountpoint))
    assert tree_digest(str(tmp_path)) == before, "a failed mount wrote something"


def test_mount_point_already_mounted(roots, mnt: Path) -> None:
    (mnt / "mine.txt").write_bytes(b"still served")
    before = tree_digest(str(roots.overlay))
    for mode in ([], ["-f"]):
        result = copickfs("mount", *mode, str(roots.config), str(mnt))
        assert_one_line_error(result, str(mnt), "already mounted")
        assert mount_count(mnt) == 1, "a second mount was stacked on the first"
        # The first mount is untouched and still answers.
        assert (mnt / "mine.txt").read_bytes() == b"still served"
        assert sorted(os.listdir(mnt)) == sorted([*STATIC_NAMES, "mine.txt"])
    assert tree_digest(str(roots.overlay)) == before


# ---------------------------------------------------------------- missing FUSE pieces


def _needs_namespaces() -> None:
    if os.geteuid() != 0:
        pytest.skip("private mount namespaces need root")
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")


NAMESPACE_SETUP_FAILED = 97


def run_in_private_namespace(setup: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a private mount namespace after `setup` (shell, each step checked).

    Nothing done there is visible outside, and it all vanishes when the process exits.
    """
    cli = " ".join(f"'{a}'" for a in [sys.executable, "-m", "copickfs", *args])
    script = (f"mount --make-rprivate / >/dev/null 2>&1 || exit {NAMESPACE_SETUP_FAILED}\n"
              f"{setup}\n"
              f"exec {cli}\n")
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                            timeout=60)
    if result.returncode == NAMESPACE_SETUP_FAILED:
        pytest.skip(f"could not set up the mount namespace: {result.stderr.strip()}")
    return result


def test_no_dev_fuse(roots) -> None:
    _needs_namespaces()
    fail = f"exit {NAMESPACE_SETUP_FAILED}"
    setup = (f"mount -t tmpfs none /dev || {fail}\n"
             f"[ ! -e /dev/fuse ] || {fail}")
    before = tree_digest(str(roots.config.parent))
    for mode in ([], ["-f"]):
        result = run_in_private_namespace(setup, "mount", *mode, str(roots.config), str(roots.mountpoint))
        assert_one_line_error(result, "/dev/fuse")
        assert not is_mounted(str(roots.mountpoint))
    assert tree_digest(str(roots.config.parent)) == before


def _libfuse3_path() -> str | None:
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.strip().startswith("libfuse3.so") and "=>" in line:
            return os.path.realpath(line.split("=>")[1].strip())
    return None


def test_no_libfuse3(roots, tmp_path: Path) -> None:
    """libfuse3 as if uninstalled: the loader cache and the library itself are empty files."""
    _needs_namespaces()
    library = _libfuse3_path()
    if library is None:
        pytest.skip("libfuse3 is not in the loader cache, so it cannot be hidden")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    fail = f"exit {NAMESPACE_SETUP_FAILED}"
    setup = (f"mount --bind '{empty}' /etc/ld.so.cache || {fail}\n"
             f"mount --bind '{empty}' '{library}' || {fail}\n"
             f"[ ! -s '{library}' ] || {fail}\n"
             f"! ldconfig -p 2>/dev/null | grep -q libfuse3 || {fail}")
    before = tree_digest(str(tmp_path))
    for mode in ([], ["-f"]):
        result = run_in_private_namespace(setup, "mount", *mode, str(roots.config), str(roots.mountpoint))
        line = assert_one_line_error(result, "libfuse3")
        assert "fuse3" in line.replace("libfuse3", "") and "libfuse3-3" in line, \
            f"the message must say what to install: {line!r}"
        assert not is_mounted(str(roots.mountpoint))
    assert tree_digest(str(tmp_path)) == before


def test_no_fusermount3(roots, tmp_path: Path) -> None:
    """Without fusermount3 on PATH the mount could never be removed: refuse it up front."""
    bare = tmp_path / "bin"
    bare.mkdir()
    before = tree_digest(str(tmp_path))
    env = {**os.environ, "PATH": str(bare)}
    result = run_cli("mount", str(roots.config), str(roots.mountpoint), env=env)
    assert_one_line_error(result, "fusermount3", "fuse3")
    assert not is_mounted(str(roots.mountpoint))
    assert tree_digest(str(tmp_path)) == before
