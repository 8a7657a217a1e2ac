"""A throwaway unprivileged user for tests that need a second, hostile identity, and ways
to run code as that user.

The `hostile_user` fixture (session scope) creates a system user with a random name and
deletes it at the end; `as_user` runs a command or Python code as that user (no
supplementary groups) and returns its output; `spawn_as_user` starts one in the background.
`public_dir` gives a temporary directory under /tmp that the user can traverse (pytest's
tmp_path sits below 0700 directories), removed afterwards together with anything still
mounted below it.

Import the fixtures into a test module (``from users import hostile_user, public_dir``).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

USER_PREFIX = "copickfs-test-"


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int


def _user_kwargs(uid: int, gid: int) -> dict[str, Any]:
    return {"user": uid, "group": gid, "extra_groups": [], "umask": 0o022}


_PYTHONS: dict[tuple[int, int], str] = {}


def user_python(uid: int, gid: int) -> str:
    """A Python interpreter the user may run (this one may live below root's 0700 home).
    User scripts need the standard library only."""
    if (uid, gid) not in _PYTHONS:
        candidates = [sys.executable, os.path.realpath(sys.executable), "/usr/bin/python3",
                      shutil.which("python3") or "python3"]
        for candidate in candidates:
            try:
                ok = subprocess.run([candidate, "-I", "-c", "pass"], capture_output=True, timeout=60, cwd="/",
                                    stdin=subprocess.DEVNULL, **_user_kwargs(uid, gid)).returncode == 0
            except OSError:
                ok = False
            if ok:
                _PYTHONS[(uid, gid)] = candidate
                break
        else:
            raise RuntimeError(f"no Python interpreter that uid {uid} may run (tried {candidates})")
    return _PYTHONS[(uid, gid)]


def _argv(command: Sequence[str] | str, uid: int, gid: int) -> list[str]:
    """A string is Python code (run isolated, standard library only); a sequence is an argv."""
    if isinstance(command, str):
        return [user_python(uid, gid), "-I", "-c", command]
    return [str(part) for part in command]


def as_user(uid: int, gid: int, command: Sequence[str] | str, *args: str, timeout: float = 60,
            cwd: str | os.PathLike[str] = "/", input: str | None = None,
            umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (an argv, or Python code given as a string; ``args`` follow it) as
    ``uid``/``gid`` with no supplementary groups; return the finished process (text output)."""
    kwargs = _user_kwargs(uid, gid)
    kwargs["umask"] = umask
    return subprocess.run([*_argv(command, uid, gid), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, input=input, stdin=None if input is not None else subprocess.DEVNULL,
                          **kwargs)


def as_user_json(uid: int, gid: int, code: str, *args: str, timeout: float = 60, **kwargs: Any) -> Any:
    """Run Python ``code`` as the user; it must print one JSON document as its last line."""
    result = as_user(uid, gid, code, *args, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"the user's script failed ({result.returncode}):\n{result.stderr}"
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, f"the user's script printed nothing; stderr:\n{result.stderr}"
    return json.loads(lines[-1])


def spawn_as_user(uid: int, gid: int, command: Sequence[str] | str, *args: str,
                  cwd: str | os.PathLike[str] = "/") -> subprocess.Popen[str]:
    """Start ``command`` as the user in the background, with pipes for stdin/stdout/stderr.
    The caller must wait for it (or kill it by its PID)."""
    return subprocess.Popen([*_argv(command, uid, gid), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, **_user_kwargs(uid, gid))


def _kill_processes_of(uid: int) -> None:
    """Kill what is left of the user's processes (started by these tests), one PID at a time."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid == uid:
                os.kill(int(entry), 9)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass


@pytest.fixture(scope="session")
def hostile_user() -> Iterator[User]:
    """A fresh system user (and its own group) that exists for this test session only."""
    if os.geteuid() != 0:
        pytest.skip("creating a user needs root")
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        pytest.skip("useradd/userdel are not installed")
    name = USER_PREFIX + secrets.token_hex(4)
    created = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                              "--user-group", name], capture_output=True, text=True, timeout=60)
    if created.returncode != 0:
        pytest.fail(f"useradd {name} failed: {created.stderr.strip()}")
    try:
        entry = pwd.getpwnam(name)
        yield User(name, entry.pw_uid, entry.pw_gid)
    finally:
        try:
            _kill_processes_of(pwd.getpwnam(name).pw_uid)
        except KeyError:
            pass
        subprocess.run(["userdel", "--force", name], capture_output=True, timeout=60)


def _unescape(field: bytes) -> str:
    """A mountinfo path field: octal escapes (\\040 ...) decoded, bytes kept as os.fsdecode does."""
    out, i = bytearray(), 0
    while i < len(field):
        if field[i:i + 1] == b"\\" and field[i + 1:i + 4].isdigit():
            out.append(int(field[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return os.fsdecode(bytes(out))


def _mounts_below(root: str) -> list[str]:
    """Mount points at or below ``root``, deepest first (from /proc/self/mountinfo)."""
    found = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if point == root or point.startswith(root + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def unmount_below(root: str) -> None:
    """Unmount everything mounted at or below ``root`` (FUSE and tmpfs), lazily if busy."""
    for point in _mounts_below(root):
        for argv in (["fusermount3", "-u", point], ["umount", point], ["umount", "-l", point]):
            if subprocess.run(argv, capture_output=True, timeout=60).returncode == 0:
                break


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A 0755 directory under /tmp that other users can traverse; removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="copickfs-hardening-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        unmount_below(str(base))
        if not _mounts_below(str(base)):  # never remove through a mount still in place
            shutil.rmtree(base, ignore_errors=True)


def tree_owners(root: str | os.PathLike[str]) -> dict[str, tuple[int, int, int]]:
    """Every entry below ``root`` (and root itself): relative path -> (uid, gid, mode)."""
    out: dict[str, tuple[int, int, int]] = {}
    st = os.lstat(root)
    out["."] = (st.st_uid, st.st_gid, st.st_mode)
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            out[os.path.relpath(path, root)] = (st.st_uid, st.st_gid, st.st_mode)
    return out
