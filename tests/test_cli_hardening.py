"""The `copickfs` command under hostile or careless input, as a root daemon serving many users.

Three findings and a fuzz pass:

A. ``copickfs unmount`` removes only copickfs mounts (a live one, or a dead one whose
   daemon died); any other filesystem at the path is left alone with a one-line error.
B. Of several ``copickfs mount`` racing for one mount point exactly one succeeds; the
   others fail with one line instead of pretending to have mounted.
C. Bad configs, bad ``-o`` options and odd paths give one line ``Error: <thing>: <what>``,
   a non-zero exit, no traceback and nothing mounted; relative roots and log paths are
   taken relative to the caller's working directory, also by the background daemon.

Every mount and tmpfs made here is removed in a ``finally``; only processes started
here (by PID) are ever killed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from copickfs.cli import main as cli_main
from copickfs.mount.mountinfo import is_mounted, mount_entry
from mounting import copickfs, force_unmount
from test_cli import (STATIC_NAMES, assert_one_line_error, background_cleanup, daemon_pids, foreground,
                      mount_count, wait_gone)
from treehash import tree_digest

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def cli(*args: str | bytes, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it; arguments may be bytes (names that are not UTF-8)."""
    return subprocess.run([sys.executable, "-m", "copickfs", *args], capture_output=True, text=True,
                          errors="backslashreplace", cwd=cwd, timeout=timeout)


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "Error: internal error" not in result.stderr, result.stderr


def write_json(path: Path, data: object) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# ---------------------------------------------------------------- tmpfs helpers


def _top_type(path: str | bytes) -> bytes | None:
    """The fs type of the visible mount at ``path``, read independently of the code under test."""
    target = os.fsencode(path)
    found = None
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            if re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), fields[4]) == target:
                found = fields[fields.index(b"-") + 1]
    return found


@contextmanager
def tmpfs(path: Path | bytes) -> Iterator[None]:
    """A tmpfs mounted at ``path`` (as root); always unmounted afterwards (only it)."""
    done = subprocess.run(["mount", "-t", "tmpfs", "none", path], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield
    finally:
        for flags in ([], ["-l"]):
            if _top_type(path) == b"tmpfs":
                subprocess.run(["umount", *flags, path], capture_output=True)
        assert _top_type(path) != b"tmpfs", "the test tmpfs could not be removed"


# ---------------------------------------------------------------- A: unmount only copickfs


@needs_root
def test_unmount_refuses_a_tmpfs_and_leaves_it_mounted(tmp_path: Path) -> None:
    target = tmp_path / "plain"
    target.mkdir()
    with tmpfs(target):
        (target / "keep.txt").write_bytes(b"still here")
        result = copickfs("unmount", str(target))
        line = assert_one_line_error(result, str(target), "tmpfs", "copickfs")
        assert line.startswith("Error: ")
        assert is_mounted(str(target)), "unmount removed a filesystem that is not copickfs"
        assert mount_entry(str(target))[1] == "tmpfs"
        assert (target / "keep.txt").read_bytes() == b"still here"


@needs_root
def test_unmount_refuses_a_tmpfs_stacked_on_a_copickfs_mount(roots) -> None:
    """The visible (last) mount decides; the copickfs mount below stays too."""
    mp = roots.mountpoint
    with foreground(roots.config, mp) as proc:
        with tmpfs(mp):
            result = copickfs("unmount", str(mp))
            assert_one_line_error(result, str(mp), "tmpfs")
            assert mount_entry(str(mp))[1] == "tmpfs"
            assert mount_count(mp) == 2
        assert mount_entry(str(mp))[1] == "fuse.copickfs"
        assert proc.poll() is None
        result = copickfs("unmount", str(mp))
        assert result.returncode == 0, result.stderr
        assert proc.wait(timeout=15) == 0


def test_unmount_of_a_copickfs_mount_reached_through_a_symlink(roots, tmp_path: Path) -> None:
    link = tmp_path / "link-to-mnt"
    link.symlink_to(roots.mountpoint)
    with foreground(roots.config, roots.mountpoint) as proc:
        result = copickfs("unmount", str(link))
        assert result.returncode == 0, result.stderr
        assert proc.wait(timeout=15) == 0
        assert not is_mounted(str(roots.mountpoint))


@needs_root
def test_a_mount_path_that_is_not_utf8_breaks_nothing(roots, tmp_path: Path) -> None:
    """/proc/self/mountinfo may name paths that are not UTF-8; copickfs must still read it."""
    odd = os.fsencode(tmp_path) + b"/odd-\xff-name"
    os.mkdir(odd)
    with tmpfs(odd):
        assert mount_entry(os.fsdecode(odd))[1] == "tmpfs"
        result = cli("unmount", odd)
        no_traceback(result)
        assert result.returncode != 0 and is_mounted(os.fsdecode(odd))
        assert "tmpfs" in result.stderr
        # Mounting elsewhere still works with that entry in the table.
        with background_cleanup(roots.mountpoint) as pids:
            result = cli("mount", str(roots.config), str(roots.mountpoint))
            assert result.returncode == 0, result.stderr
            pids |= daemon_pids(roots.mountpoint)
            assert sorted(os.listdir(roots.mountpoint)) == STATIC_NAMES
            assert cli("unmount", str(roots.mountpoint)).returncode == 0


def _daemons_of(mountpoint: bytes) -> set[int]:
    """PIDs of live copickfs processes with this mount point (bytes) as an argument."""
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"copickfs" in b" ".join(argv) and mountpoint in argv:
                pids.add(int(entry))
    return pids


@contextmanager
def cleanup_bytes(mountpoint: bytes) -> Iterator[None]:
    """background_cleanup for a mount point that is not UTF-8: unmount, then end our daemons."""
    pids: set[int] = set()
    try:
        yield
    finally:
        pids |= _daemons_of(mountpoint)
        for flags in (["-u"], ["-uz"]):
            if _top_type(mountpoint) == b"fuse.copickfs":
                subprocess.run(["fusermount3", *flags, mountpoint], capture_output=True)
        deadline = time.monotonic() + 10
        while pids & _daemons_of(mountpoint) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids & _daemons_of(mountpoint):
            os.kill(pid, 9)


def test_mount_and_unmount_at_a_mount_point_that_is_not_utf8(roots, tmp_path: Path) -> None:
    odd = os.fsencode(tmp_path) + b"/mnt-\xfe"
    os.mkdir(odd)
    with cleanup_bytes(odd):
        result = cli("mount", str(roots.config), odd)
        assert result.returncode == 0, result.stderr
        assert mount_entry(os.fsdecode(odd))[1] == "fuse.copickfs"
        assert sorted(os.listdir(odd)) == [os.fsencode(n) for n in STATIC_NAMES]
        result = cli("unmount", odd)
        assert result.returncode == 0, result.stderr
        assert not is_mounted(os.fsdecode(odd))


# ---------------------------------------------------------------- B: racing mounts

RACE_LINE = ("is already mounted", "is being mounted by another copickfs")


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "copickfs", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("round_", range(3))
def test_racing_background_mounts_exactly_one_wins(roots, round_: int) -> None:
    mp = roots.mountpoint
    with background_cleanup(mp) as pids:
        procs = [_start("mount", str(roots.config), str(mp)) for _ in range(4)]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
        pids |= daemon_pids(mp)
        winners = [r for r in results if r.returncode == 0]
        assert len(winners) == 1, [(r.returncode, r.stderr) for r in results]
        for loser in (r for r in results if r.returncode != 0):
            line = assert_one_line_error(loser, str(mp))
            assert any(words in line for words in RACE_LINE), line
        assert mount_count(mp) == 1
        assert sorted(os.listdir(mp)) == STATIC_NAMES
        result = copickfs("unmount", str(mp))
        assert result.returncode == 0, result.stderr
        assert not is_mounted(str(mp))
        assert not wait_gone(pids, mp)


def test_racing_foreground_mounts_exactly_one_serves(roots) -> None:
    mp = roots.mountpoint
    procs = [_start("mount", "-f", str(roots.config), str(mp)) for _ in range(4)]
    try:
        deadline = time.monotonic() + 60
        while sum(p.poll() is not None for p in procs) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        deadline = time.monotonic() + 30
        while not is_mounted(str(mp)) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a second winner would show up by now
        running = [p for p in procs if p.poll() is None]
        assert len(running) == 1, [(p.returncode, p.stderr.read() if p.poll() is not None else "")
                                   for p in procs]
        for loser in (p for p in procs if p.poll() is not None):
            result = subprocess.CompletedProcess(loser.args, loser.returncode, "", loser.stderr.read())
            line = assert_one_line_error(result, str(mp))
            assert any(words in line for words in RACE_LINE), line
        assert mount_count(mp) == 1
        assert sorted(os.listdir(mp)) == STATIC_NAMES
        result = copickfs("unmount", str(mp))
        assert result.returncode == 0, result.stderr
        assert running[0].wait(timeout=15) == 0
    finally:
        force_unmount(mp)
        for proc in procs:
            if proc.poll() is None:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for stream in (proc.stdout, proc.stderr):
                stream.close()
        force_unmount(mp)


def test_a_mount_point_locked_by_another_process_is_refused(roots) -> None:
    """While another copickfs holds the mount point (it is mounting there), a mount fails at once."""
    import fcntl

    fd = os.open(roots.mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for mode in ([], ["-f"]):
            with background_cleanup(roots.mountpoint):
                result = copickfs("mount", *mode, str(roots.config), str(roots.mountpoint))
                assert_one_line_error(result, str(roots.mountpoint), "being mounted by another copickfs")
                assert not is_mounted(str(roots.mountpoint))
    finally:
        os.close(fd)


@pytest.mark.parametrize("fd", ["0", "1", "999", "-1", "x"])
def test_the_daemons_lock_descriptor_cannot_be_faked(roots, fd: str) -> None:
    with background_cleanup(roots.mountpoint):
        result = copickfs("mount", "-f", "--lock-fd", fd, str(roots.config), str(roots.mountpoint))
        assert result.returncode != 0
        no_traceback(result)
        assert not is_mounted(str(roots.mountpoint))


# ---------------------------------------------------------------- C: bad configs


def _config_text(r, text: str) -> str:
    return text.replace("@OVERLAY@", str(r.overlay)).replace("@STATIC@", str(r.static))


def _with(r, **fields: object) -> dict[str, object]:
    return {"config_type": "filesystem", "overlay_root": str(r.overlay), "static_root": str(r.static),
            **fields}


# (name, builder (roots, tmp) -> config bytes, words the error line must contain)
BAD_CONFIGS: list[tuple[str, Callable[..., bytes], list[str]]] = [
    ("not_utf8", lambda r, t: b'\xff\xfe{"overlay_root": "' + os.fsencode(r.overlay) + b'"}', ["UTF-8"]),
    ("latin1_inside", lambda r, t: _config_text(r, '{"overlay_root": "@OVERLAY@", "name": "x"}').encode()
     .replace(b'"x"', b'"caf\xe9"'), ["UTF-8"]),
    ("nul_in_overlay_root", lambda r, t: b'{"overlay_root": "a\\u0000b"}', ["overlay_root", "NUL"]),
    ("surrogate_in_static_root", lambda r, t: _config_text(
        r, '{"overlay_root": "@OVERLAY@", "static_root": "\\udcff"}').encode(), ["static_root", "surrogate"]),
    ("surrogate_in_name", lambda r, t: _config_text(
        r, '{"overlay_root": "@OVERLAY@", "name": "x\\ud800"}').encode(), ["name", "surrogate"]),
    ("nul_in_user_id", lambda r, t: _config_text(
        r, '{"overlay_root": "@OVERLAY@", "user_id": "me\\u0000"}').encode(), ["user_id", "NUL"]),
    ("empty_overlay_root", lambda r, t: b'{"overlay_root": ""}', ["overlay_root"]),
    ("empty_static_root", lambda r, t: _config_text(
        r, '{"overlay_root": "@OVERLAY@", "static_root": ""}').encode(), ["static_root"]),
    ("file_url_without_path", lambda r, t: b'{"overlay_root": "file://"}', ["overlay_root"]),
    ("unknown_protocol", lambda r, t: b'{"overlay_root": "nosuchproto://bucket/x"}',
     ["overlay_root", "nosuchproto"]),
    ("overlay_root_is_a_file", lambda r, t: json.dumps(_with(r, overlay_root=str(r.static / "file.txt")))
     .encode(), ["overlay_root", "file.txt"]),
    ("duplicate_key", lambda r, t: _config_text(
        r, '{"overlay_root": "@OVERLAY@", "overlay_root": "/"}').encode(), ["duplicate", "overlay_root"]),
    ("nan_literal", lambda r, t: _config_text(
        r, '{"overlay_root": "@OVERLAY@", "copickfs": {"attr_timeout": NaN}}').encode(), ["attr_timeout"]),
    ("deep_nesting", lambda r, t: _config_text(
        r, '{"overlay_root": "@OVERLAY@", "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}").encode(),
     ["nested"]),
    ("moderate_deep_nesting", lambda r, t: _config_text(
        r, '{"overlay_root": "@OVERLAY@", "metadata": ' + "[" * 900 + "]" * 900 + "}").encode(),
     ["nested"]),
    ("huge_integer", lambda r, t: _config_text(
        r, '{"overlay_root": "@OVERLAY@", "x": ' + "9" * 5000 + "}").encode(), ["number"]),
    ("newline_in_a_key", lambda r, t: json.dumps(_with(r, copickfs={"bad\nkey": 1})).encode(), ["bad"]),
    ("array", lambda r, t: b"[]", ["JSON object"]),
    ("number", lambda r, t: b"1e400", ["JSON object"]),
    ("null", lambda r, t: b"null", ["JSON object"]),
    ("empty_file", lambda r, t: b"", ["invalid JSON"]),
    ("config_type_array", lambda r, t: json.dumps(_with(r, config_type=["filesystem"])).encode(),
     ["config_type"]),
    ("log_empty", lambda r, t: json.dumps(_with(r, copickfs={"log": ""})).encode(), ["log"]),
    ("log_in_missing_dir", lambda r, t: json.dumps(_with(r, copickfs={"log": str(t / "no-dir" / "x.log")}))
     .encode(), ["log", "no-dir"]),
    ("log_is_a_directory", lambda r, t: json.dumps(_with(r, copickfs={"log": str(t)})).encode(),
     ["log", "directory"]),
    ("log_is_a_fifo", lambda r, t: (os.mkfifo(t / "fifo"),
                                    json.dumps(_with(r, copickfs={"log": str(t / "fifo")})).encode())[1],
     ["log", "fifo", "regular file"]),
    ("fs_args_switch_storage",
     lambda r, t: json.dumps(_with(r, overlay_fs_args={"protocol": "memory"})).encode(),
     ["overlay_fs_args", "overlay_root"]),
    ("fs_args_missing_storage", lambda r, t: json.dumps(_with(r, static_fs_args={"protocol": "nosuchproto"}))
     .encode(), ["static_fs_args", "static_root"]),
    ("log_nul", lambda r, t: _config_text(
        r, '{"overlay_root": "@OVERLAY@", "copickfs": {"log": "/tmp/a\\u0000"}}').encode(), ["log", "NUL"]),
]
for _field in ("overlay_root", "static_root", "copickfs", "pickable_objects", "overlay_fs_args",
               "static_fs_args", "name", "user_id"):
    for _shape, _value in (("null", None), ("array", [1]), ("object", {"a": {"b": [None]}}),
                           ("number", 1e308)):
        if _field in ("static_root", "name", "user_id") and _shape == "null":
            continue  # null is allowed there
        if _field in ("overlay_fs_args", "static_fs_args", "copickfs") and _shape == "object":
            continue  # an object is the right shape
        BAD_CONFIGS.append((f"{_field}_{_shape}",
                            lambda r, t, f=_field, v=_value: json.dumps(_with(r, **{f: v})).encode(),
                            [_field]))
for _opt in ("attr_timeout", "entry_timeout", "negative_timeout"):
    for _raw in ("Infinity", "-Infinity", "1e400", "-1", "31536001", "1e300", "true", '"1"', "null", "[]"):
        BAD_CONFIGS.append((f"{_opt}_{_raw}", lambda r, t, o=_opt, v=_raw: _config_text(
            r, '{"overlay_root": "@OVERLAY@", "copickfs": {"%s": %s}}' % (o, v)).encode(), [_opt]))
for _raw in ("1e20", "1" + "0" * 30, "1.5", "1024.0", "1048577", "-1", "true", '"1024"'):
    BAD_CONFIGS.append((f"read_ahead_kb_{_raw}", lambda r, t, v=_raw: _config_text(
        r, '{"overlay_root": "@OVERLAY@", "copickfs": {"read_ahead_kb": %s}}' % v).encode(),
        ["read_ahead_kb"]))
for _raw in ('"maybe"', "1", '"yes"', "null"):
    BAD_CONFIGS.append((f"allow_other_{_raw}", lambda r, t, v=_raw: _config_text(
        r, '{"overlay_root": "@OVERLAY@", "copickfs": {"allow_other": %s}}' % v).encode(), ["allow_other"]))


MOUNT_ONLY = {"log_in_missing_dir", "log_is_a_directory", "log_is_a_fifo"}


@pytest.mark.parametrize("command", ["mount", "mount -f", "info"])
def test_an_endless_config_file_is_refused(roots, command: str) -> None:
    args = command.split() + ["/dev/zero"] + ([str(roots.mountpoint)] if command != "info" else [])
    result = cli(*args, timeout=30)
    assert_one_line_error(result, "/dev/zero", "larger than")
    assert not is_mounted(str(roots.mountpoint))


@pytest.mark.parametrize("command", ["mount", "mount -f", "info"])
@pytest.mark.parametrize("name, build, needles", BAD_CONFIGS, ids=[case[0] for case in BAD_CONFIGS])
def test_bad_config_is_one_line_and_mounts_nothing(roots, tmp_path: Path, name: str, build, needles,
                                                   command: str) -> None:
    if command == "info" and name in MOUNT_ONLY:
        pytest.skip("the log file matters only to a mount")
    config = tmp_path / "bad.json"
    config.write_bytes(build(roots, tmp_path))
    before = tree_digest(str(tmp_path))
    args = command.split() + [str(config)] + ([str(roots.mountpoint)] if command != "info" else [])
    with background_cleanup(roots.mountpoint):
        result = cli(*args)
        assert_one_line_error(result, *needles)
        no_traceback(result)
        assert not is_mounted(str(roots.mountpoint))
        assert not daemon_pids(roots.mountpoint)
    assert tree_digest(str(tmp_path)) == before, "a failed command wrote something"


# ---------------------------------------------------------------- C: bad -o options

BAD_OPTIONS: list[tuple[str, list[str]]] = [
    (",,,", ["-o", "empty"]),
    ("", ["-o", "empty"]),
    ("attr_timeout=1,,ro", ["-o", "empty"]),
    ("log=", ["log"]),
    ("log=@TMP@/no-dir/x.log", ["log", "no-dir"]),
    ("log=@TMP@/config.json/x.log", ["log"]),
    ("log=@TMP@", ["log", "directory"]),
    ("allow_other=maybe", ["allow_other"]),
    ("ro=2", ["ro"]),
    ("threads=", ["threads"]),
    ("nothreads=1", ["nothreads"]),
    ("attr_timeout", ["attr_timeout", "value"]),
    ("log", ["log", "value"]),
    ("precomputed_layout", ["precomputed_layout"]),
    ("noattr_timeout", ["noattr_timeout"]),
    ("nolog", ["nolog"]),
    ("attr_timeout=inf", ["attr_timeout"]),
    ("attr_timeout=infinity", ["attr_timeout"]),
    ("entry_timeout=nan", ["entry_timeout"]),
    ("negative_timeout=1e400", ["negative_timeout"]),
    ("attr_timeout=-1", ["attr_timeout"]),
    ("attr_timeout=31536001", ["attr_timeout"]),
    ("entry_timeout=1e300", ["entry_timeout"]),
    ("attr_timeout=1_0", ["attr_timeout"]),
    ("attr_timeout=0x10", ["attr_timeout"]),
    ("attr_timeout=", ["attr_timeout"]),
    ("read_ahead_kb=1e20", ["read_ahead_kb"]),
    ("read_ahead_kb=" + "9" * 30, ["read_ahead_kb"]),
    ("read_ahead_kb=" + "9" * 5000, ["read_ahead_kb"]),
    ("read_ahead_kb=1.5", ["read_ahead_kb"]),
    ("read_ahead_kb=1048577", ["read_ahead_kb"]),
    ("read_ahead_kb=-1", ["read_ahead_kb"]),
    ("precomputed_layout=", ["precomputed_layout"]),
    ("precomputed_layout=weird", ["precomputed_layout"]),
    ("attr_timeout=1\nro", ["attr_timeout"]),
    ("bad\nname", ["bad"]),
]


@pytest.mark.parametrize("mode", [[], ["-f"]], ids=["background", "foreground"])
@pytest.mark.parametrize("option, needles", BAD_OPTIONS, ids=[repr(o[0])[:40] for o in BAD_OPTIONS])
def test_bad_option_is_one_line_and_mounts_nothing(roots, option: str, needles: list[str],
                                                    mode: list[str]) -> None:
    tmp = roots.config.parent
    option = option.replace("@TMP@", str(tmp))
    before = tree_digest(str(tmp))
    with background_cleanup(roots.mountpoint):
        result = cli("mount", *mode, "-o", option, str(roots.config), str(roots.mountpoint))
        assert_one_line_error(result, *needles)
        no_traceback(result)
        assert not is_mounted(str(roots.mountpoint))
        assert not daemon_pids(roots.mountpoint)
    assert tree_digest(str(tmp)) == before


@pytest.mark.parametrize("text, expected", [
    ("attr_timeout=31536000", {"attr_timeout": 31536000.0}),
    ("attr_timeout=0.25,entry_timeout=2", {"attr_timeout": 0.25, "entry_timeout": 2.0}),
    ("read_ahead_kb=1048576", {"read_ahead_kb": 1048576}),
    ("read_ahead_kb=0", {"read_ahead_kb": 0}),
    ("nothreads,ro", {"threads": False, "ro": True}),
    ("allow_other=true,debug=false", {"allow_other": True, "debug": False}),
    ("ro=no,writeback_cache=yes", {"ro": False, "writeback_cache": True}),
    (" attr_timeout=1 , ro ", {"attr_timeout": 1.0, "ro": True}),
    ("precomputed_layout=flat,noprecomputed", {"precomputed_layout": "flat", "precomputed": False}),
    ("log=/tmp/a=b.log", {"log": "/tmp/a=b.log"}),
])
def test_good_options_still_parse(text: str, expected: dict[str, object]) -> None:
    from copickfs.options import MountOptions, merge_options, parse_option_string

    options = merge_options(MountOptions(), parse_option_string(text))
    for key, value in expected.items():
        assert getattr(options, key) == value


def test_option_limits_are_documented() -> None:
    from copickfs.options import MountOptions

    for name in ("attr_timeout", "entry_timeout", "negative_timeout"):
        assert "31536000" in (MountOptions.model_fields[name].description or "")
    assert "1048576" in (MountOptions.model_fields["read_ahead_kb"].description or "")


# ---------------------------------------------------------------- C: relative roots and log


def _relative_project(tmp_path: Path, roots) -> Path:
    """A config in tmp_path naming its roots relative to tmp_path."""
    return write_json(tmp_path / "relative.json", {"config_type": "filesystem", "overlay_root": "overlay",
                                                   "static_root": "static"})


@pytest.mark.parametrize("mode", [[], ["-f"]], ids=["background", "foreground"])
def test_relative_roots_are_taken_from_the_callers_directory(roots, tmp_path: Path, mode: list[str]) -> None:
    config = _relative_project(tmp_path, roots)
    mp = roots.mountpoint
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if mode:
        proc = subprocess.Popen([sys.executable, "-m", "copickfs", "mount", "-f", str(config), str(mp)],
                                cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while not is_mounted(str(mp)):
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert sorted(os.listdir(mp)) == STATIC_NAMES
        finally:
            force_unmount(mp)
            proc.wait(timeout=15)
            proc.stdout.close()
            proc.stderr.close()
        return
    with background_cleanup(mp) as pids:
        result = cli("mount", str(config), str(mp), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        pids |= daemon_pids(mp)
        assert sorted(os.listdir(mp)) == STATIC_NAMES
        (mp / "new.txt").write_bytes(b"x")
        assert (roots.overlay / "new.txt").read_bytes() == b"x"
        assert cli("unmount", str(mp)).returncode == 0
    # From another directory the same config names roots that do not exist there.
    result = cli("mount", str(config), str(mp), cwd=elsewhere)
    assert_one_line_error(result, "_root", str(elsewhere), "not an existing directory")
    assert not is_mounted(str(mp))


def test_info_takes_relative_roots_from_the_callers_directory(roots, tmp_path: Path) -> None:
    config = _relative_project(tmp_path, roots)
    result = cli("info", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_relative_log_path_is_taken_from_the_callers_directory(roots, tmp_path: Path) -> None:
    name = f"copickfs-test-{uuid.uuid4().hex}.log"
    mp = roots.mountpoint
    try:
        with background_cleanup(mp) as pids:
            result = cli("mount", "-o", f"log={name},debug", str(roots.config), str(mp), cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            pids |= daemon_pids(mp)
            os.listdir(mp)
            assert (tmp_path / name).is_file()
            assert cli("unmount", str(mp)).returncode == 0
    finally:
        stray = Path("/") / name
        if stray.exists():
            stray.unlink()
            pytest.fail("the daemon wrote its log relative to /")


def test_a_symlinked_mount_point_mounts_at_its_target(roots, tmp_path: Path) -> None:
    link = tmp_path / "mnt-link"
    link.symlink_to(roots.mountpoint)
    with background_cleanup(roots.mountpoint) as pids:
        started = time.monotonic()
        result = cli("mount", str(roots.config), str(link))
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < 20
        pids |= daemon_pids(roots.mountpoint)
        assert is_mounted(str(roots.mountpoint))
        assert sorted(os.listdir(link)) == STATIC_NAMES
        assert cli("unmount", str(link)).returncode == 0
        assert not is_mounted(str(roots.mountpoint))


# ---------------------------------------------------------------- odd paths for every command


def _odd_paths(r, tmp: Path) -> dict[str, str | bytes]:
    (tmp / "a-file").write_bytes(b"x")
    (tmp / "busy").mkdir()
    (tmp / "busy" / "x").write_bytes(b"x")
    (tmp / "dangling").symlink_to(tmp / "nowhere")
    (tmp / "loop").symlink_to(tmp / "loop")
    return {
        "missing": str(tmp / "missing"),
        "long_name": str(tmp / ("n" * 300)),
        "long_path": str(tmp / "/".join(["d" * 250] * 20)),
        "through_a_file": str(tmp / "a-file" / "x"),
        "a_file": str(tmp / "a-file"),
        "dangling_symlink": str(tmp / "dangling"),
        "symlink_loop": str(tmp / "loop"),
        "not_empty": str(tmp / "busy"),
        "inside_static": str(r.static / "empty"),
        "the_overlay_root": str(r.overlay),
        "not_utf8": os.fsencode(tmp) + b"/\xff\xfe",
        "newline": str(tmp / "new\nline"),
        "empty": "",
        "dash": "-",
    }


ODD = ["missing", "long_name", "long_path", "through_a_file", "a_file", "dangling_symlink", "symlink_loop",
       "not_empty", "inside_static", "the_overlay_root", "not_utf8", "newline", "empty", "dash"]


@pytest.mark.parametrize("which", ODD)
@pytest.mark.parametrize("command", ["mount", "mount -f", "mount-config", "unmount", "info", "demo"])
def test_odd_paths_never_give_a_traceback(roots, tmp_path: Path, which: str, command: str) -> None:
    path = _odd_paths(roots, tmp_path)[which]
    if command == "mount-config":
        args: list[str | bytes] = ["mount", path, str(roots.mountpoint)]
    elif command.startswith("mount"):
        args = [*command.split(), str(roots.config), path]
    elif command == "demo":
        if which not in ("long_name", "long_path", "through_a_file", "a_file", "symlink_loop"):
            pytest.skip("a usable demo directory: the demo would build its sample there")
        args = ["demo", "--exit-after-show", "--dir", path]
    else:
        args = [command, path]
    with background_cleanup(roots.mountpoint):
        result = cli(*args, cwd=tmp_path)
        no_traceback(result)
        assert result.returncode != 0
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 or lines[0].startswith("Usage:"), result.stderr
        assert not is_mounted(str(roots.mountpoint))
        if isinstance(path, str) and path:
            assert not is_mounted(os.path.abspath(os.path.join(tmp_path, path)))


def test_info_prints_names_that_are_not_utf8(roots, tmp_path: Path) -> None:
    runs = roots.static / "ExperimentRuns"
    odd = os.fsencode(runs) + b"/TS_\xff"
    os.makedirs(odd)
    try:
        # As in a UTF-8 locale such as en_US.UTF-8: stdout refuses what is not UTF-8.
        env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
        result = subprocess.run([sys.executable, "-m", "copickfs", "info", str(roots.config)],
                                capture_output=True, env=env, timeout=60)
        assert b"Traceback" not in result.stderr, result.stderr
        assert result.returncode == 0, result.stderr
        assert b"TS_\xff" in result.stdout, result.stdout
    finally:
        os.rmdir(odd)
        runs.rmdir()


# ---------------------------------------------------------------- fuzz (in process: fast, no mounts)

FIELDS = ["config_type", "name", "overlay_root", "static_root", "pickable_objects", "overlay_fs_args",
          "static_fs_args", "user_id", "copickfs", "attr_timeout", "read_ahead_kb", "log", "allow_other"]

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**30, max_value=10**30),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                      st.sampled_from(["/", ".", "..", "file://", "memory://x", "~", "/dev/null",
                                       "/proc/self"]))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), inner, max_size=4)),
    max_leaves=12)


def _invoke(args: list[str]):
    return CliRunner().invoke(cli_main, args, catch_exceptions=True)


def _assert_clean(result) -> None:
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"unhandled {result.exception!r}") from result.exception
    assert "Error: internal error" not in result.stderr, result.stderr
    if result.exit_code != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 or lines[0].startswith("Usage:"), result.stderr


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.one_of(json_value, st.dictionaries(st.sampled_from(FIELDS), json_value, max_size=6)))
def test_fuzz_config_shapes_with_info(tmp_path_factory, data) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    config = tmp / "c.json"
    config.write_text(json.dumps(data))
    _assert_clean(_invoke(["info", str(config)]))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(section=st.dictionaries(st.sampled_from(["attr_timeout", "entry_timeout", "negative_timeout",
                                                "read_ahead_kb", "log", "allow_other", "ro", "debug",
                                                "precomputed_layout", "threads"]) | st.text(max_size=4),
                               json_value, max_size=4))
def test_fuzz_copickfs_section_with_mount(tmp_path_factory, section) -> None:
    """The mount point is not empty, so nothing can ever mount; only the errors are checked."""
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "overlay").mkdir()
    (tmp / "busy").mkdir()
    (tmp / "busy" / "x").write_bytes(b"")
    config = write_json(tmp / "c.json", {"overlay_root": str(tmp / "overlay"), "copickfs": section})
    _assert_clean(_invoke(["mount", "-f", str(config), str(tmp / "busy")]))
    assert not is_mounted(str(tmp / "busy"))


option_text = st.lists(st.one_of(
    st.sampled_from(["attr_timeout", "entry_timeout", "read_ahead_kb", "log", "ro", "noro", "allow_other",
                     "precomputed_layout", "threads", "nothreads", "debug"]),
    st.text(alphabet="abcdefnort_=,.-+0123456789eE \n\x00", max_size=12)).map(str),
    min_size=0, max_size=4).map(lambda parts: ",".join(parts))
option_item = st.tuples(st.sampled_from(["attr_timeout", "read_ahead_kb", "log", "ro", "allow_other",
                                         "precomputed_layout", "negative_timeout"]),
                        st.text(alphabet="0123456789.eE+-infatyo_/x ", max_size=10)
                        ).map(lambda kv: "=".join(kv))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(options=st.lists(st.one_of(option_text, option_item), min_size=1, max_size=3))
def test_fuzz_option_strings_with_mount(tmp_path_factory, options) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "overlay").mkdir()
    (tmp / "busy").mkdir()
    (tmp / "busy" / "x").write_bytes(b"")
    config = write_json(tmp / "c.json", {"overlay_root": str(tmp / "overlay")})
    args = ["mount", "-f"]
    for text in options:
        if "\x00" in text:
            continue  # argv cannot hold NUL
        args += ["-o", text]
    _assert_clean(_invoke([*args, str(config), str(tmp / "busy")]))
    assert not is_mounted(str(tmp / "busy"))
