"""Several processes at once through one mount: nothing lost, nothing doubled, one copy-up.

Workers are forked processes that use plain os calls on the mount; each reports a
failure by exiting non-zero after printing its traceback. A worker still running at
the deadline is killed (by its own PID) and the test fails.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import random
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import build_static
from mounting import mounted, write_config
from treehash import tree_digest

MiB = 1 << 20
WORKERS = 6
CTX = multiprocessing.get_context("fork")
ROUNDS = 4
STATIC_FILES = [f"data/f{i:02d}.bin" for i in range(WORKERS + ROUNDS + 1)]


@functools.lru_cache(maxsize=None)
def static_bytes(i: int) -> bytes:
    # the later files are big, so a copy-up takes long enough for racing openers to meet
    size = 50_000 + 77_777 * i if i < WORKERS else 8 * MiB + 1000 * i
    return random.Random(f"static-{i}").randbytes(size)


@dataclass
class Wide:
    static: Path
    overlay: Path
    mnt: Path


@pytest.fixture
def wide(tmp_path: Path) -> Iterator[Wide]:
    """The usual static tree plus a file per worker under data/, mounted; static unchanged after."""
    static, overlay, mnt = tmp_path / "static", tmp_path / "overlay", tmp_path / "mnt"
    for d in (static, overlay, mnt):
        d.mkdir()
    build_static(static)
    (static / "data").mkdir()
    for i, name in enumerate(STATIC_FILES):
        (static / name).write_bytes(static_bytes(i))
    before = tree_digest(str(static))
    with mounted(write_config(tmp_path / "config.json", overlay, static), mnt):
        yield Wide(static, overlay, mnt)
    assert tree_digest(str(static)) == before, "the static tree changed"


def _guarded(target: Callable[..., None], *args: object) -> None:
    try:
        target(*args)
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def run_workers(target: Callable[..., None], args: list[tuple], timeout: float = 120) -> None:
    """Run ``target(*a)`` for each ``a`` in its own process, all at once; every one must succeed."""
    procs = [CTX.Process(target=_guarded, args=(target, *a)) for a in args]
    for p in procs:
        p.start()
    failed = []
    for p in procs:
        p.join(timeout)
        if p.exitcode is None:
            p.kill()
            p.join()
            failed.append(f"worker {p.pid} hung")
        elif p.exitcode != 0:
            failed.append(f"worker {p.pid} exited {p.exitcode}")
    assert not failed, failed


def write_in_pieces(path: Path, data: bytes, seed: int, flags: int = os.O_CREAT | os.O_EXCL) -> None:
    rng = random.Random(seed)
    fd = os.open(path, os.O_WRONLY | flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view[: rng.choice([1, 4096, 65536, 1 << 20, 3 << 20])])
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def assert_same(got: bytes, want: bytes, what: object) -> None:
    """Byte equality with a short message: sizes and the first differing offset."""
    if got != want:
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        raise AssertionError(f"{what}: {len(got)} bytes, expected {len(want)}; first difference at {first}")


# ----------------------------------------------------------------------------- own files


def own_file_data(k: int, j: int) -> bytes:
    sizes = [0, 1, 4096 * k + 17, MiB + 1000 * k, 3 * MiB + k]
    return random.Random(f"own-{k}-{j}").randbytes(sizes[j % len(sizes)])


def own_files(k: int) -> dict[str, bytes]:
    """Worker k's files and their bytes: some in one new directory shared by all workers."""
    files = {f"shared/new/w{k}_{j}.bin": own_file_data(k, j) for j in range(5)}
    files.update({f"w{k}/nested/deeper/f{j}.bin": own_file_data(k, j + 2) for j in range(3)})
    files[f"dir/sub/w{k}.bin"] = own_file_data(k, 3)  # inside a static directory
    return files


def appended_to_static(k: int) -> bytes:
    return f"appended by worker {k}\n".encode() * (k + 1)


def own_files_worker(mnt: Path, k: int) -> None:
    for n, (rel, data) in enumerate(own_files(k).items()):
        path = mnt / rel
        os.makedirs(path.parent, exist_ok=True)
        write_in_pieces(path, data, seed=k * 100 + n)
    # copy up a static file of its own by appending
    fd = os.open(mnt / STATIC_FILES[k], os.O_WRONLY | os.O_APPEND)
    try:
        for line in appended_to_static(k).splitlines(keepends=True):
            os.write(fd, line)
    finally:
        os.close(fd)


def test_processes_writing_their_own_files(wide: Wide) -> None:
    run_workers(own_files_worker, [(wide.mnt, k) for k in range(WORKERS)])
    expected: dict[str, bytes] = {}
    for k in range(WORKERS):
        expected.update(own_files(k))
    for rel, data in expected.items():
        assert_same((wide.mnt / rel).read_bytes(), data, rel)
        assert_same((wide.overlay / rel).read_bytes(), data, rel)
    for k in range(WORKERS):
        want = static_bytes(k) + appended_to_static(k)
        assert_same((wide.mnt / STATIC_FILES[k]).read_bytes(), want, STATIC_FILES[k])
        assert_same((wide.overlay / STATIC_FILES[k]).read_bytes(), want, STATIC_FILES[k])
    assert sorted(os.listdir(wide.mnt / "shared" / "new")) == \
        sorted(f"w{k}_{j}.bin" for k in range(WORKERS) for j in range(5))
    assert sorted(os.listdir(wide.mnt / "dir" / "sub")) == \
        sorted(["deep.bin"] + [f"w{k}.bin" for k in range(WORKERS)])
    # static files nobody wrote were not copied up
    untouched = STATIC_FILES[WORKERS:]
    assert not any((wide.overlay / rel).exists() for rel in untouched)
    assert sorted(os.listdir(wide.mnt / "data")) == sorted(os.path.basename(s) for s in STATIC_FILES)
    work = wide.overlay / ".wh..wh.work"  # where copy-ups are made: empty once they are done
    assert not list(work.iterdir())
    assert [p for p in wide.overlay.rglob(".wh.*") if p != work] == []  # no markers, no leftovers


# ----------------------------------------------------------------------------- shared appends

LINES = 400


def line_of(k: int, i: int) -> bytes:
    pad = "abcdefghijklmnopqrstuvwxyz"[(k + i) % 26] * ((k * 37 + i * 11) % 300)
    return f"<{k:02d}:{i:05d}:{pad}>\n".encode()


def append_worker(paths: list[Path], k: int, barrier: object) -> None:
    fds = [os.open(p, os.O_WRONLY | os.O_APPEND) for p in paths]
    try:
        barrier.wait(30)  # type: ignore[attr-defined]
        for i in range(LINES):
            for fd in fds:
                line = line_of(k, i)
                assert os.write(fd, line) == len(line)
            if i % 97 == 0:
                os.fsync(fds[0])
    finally:
        for fd in fds:
            os.close(fd)


def append_reopen_worker(path: Path, k: int, barrier: object) -> None:
    """Like a shell's ``echo ... >> file``: one open per line."""
    barrier.wait(30)  # type: ignore[attr-defined]
    for i in range(LINES // 4):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line_of(100 + k, i))
        finally:
            os.close(fd)


def check_lines(data: bytes, workers: range, lines: int) -> None:
    got = data.split(b"\n")
    assert got[-1] == b"", "the file does not end with a whole line"
    got = got[:-1]
    want = [line_of(k, i)[:-1] for k in workers for i in range(lines)]
    assert len(got) == len(want), f"{len(got)} lines, expected {len(want)}"
    assert sorted(got) == sorted(want)  # every line exactly once and intact
    for k in workers:  # each writer's lines in its own order
        mine = [line for line in got if line.startswith(f"<{k:02d}:".encode())]
        assert mine == [line_of(k, i)[:-1] for i in range(lines)]


def test_concurrent_o_append_to_shared_files(wide: Wide) -> None:
    log = wide.mnt / "shared.log"
    log.write_bytes(b"")
    static_target = wide.mnt / "dir" / "a.txt"  # static until the first open for writing
    barrier = CTX.Barrier(WORKERS)
    run_workers(append_worker, [([log, static_target], k, barrier) for k in range(WORKERS)])
    check_lines(log.read_bytes(), range(WORKERS), LINES)
    assert (wide.overlay / "shared.log").read_bytes() == log.read_bytes()
    data = static_target.read_bytes()
    assert data.startswith(b"a" * 100)
    check_lines(data[100:], range(WORKERS), LINES)
    assert (wide.overlay / "dir" / "a.txt").read_bytes() == data
    assert sorted(os.listdir(wide.overlay / "dir")) == ["a.txt"]


def test_concurrent_append_with_reopen_to_static_file(wide: Wide) -> None:
    target = wide.mnt / STATIC_FILES[-1]
    barrier = CTX.Barrier(WORKERS)
    run_workers(append_reopen_worker, [(target, k, barrier) for k in range(WORKERS)])
    data = target.read_bytes()
    original = static_bytes(len(STATIC_FILES) - 1)
    assert_same(data[: len(original)], original, "the static part")
    check_lines(data[len(original):], range(100, 100 + WORKERS), LINES // 4)
    assert (wide.overlay / STATIC_FILES[-1]).read_bytes() == data


# ----------------------------------------------------------------------------- one copy-up


def region(k: int) -> tuple[int, bytes]:
    return 1000 + k * 5000, f"[worker {k} was here]".encode() * 20


def copy_up_worker(path: Path, k: int, barrier: object) -> None:
    barrier.wait(30)  # type: ignore[attr-defined]
    fd = os.open(path, os.O_RDWR)
    try:
        offset, data = region(k)
        assert os.pwrite(fd, data, offset) == len(data)
        os.fsync(fd)
        assert os.pread(fd, len(data), offset) == data
    finally:
        os.close(fd)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_concurrent_copy_up_gives_one_copy(wide: Wide, round_: int) -> None:
    """Every opener must get the same overlay copy: a second copy-up would lose writes."""
    index = WORKERS + round_
    rel = STATIC_FILES[index]
    barrier = CTX.Barrier(WORKERS)
    run_workers(copy_up_worker, [(wide.mnt / rel, k, barrier) for k in range(WORKERS)])
    expected = bytearray(static_bytes(index))
    for k in range(WORKERS):
        offset, data = region(k)
        expected[offset: offset + len(data)] = data
    assert_same((wide.overlay / rel).read_bytes(), bytes(expected), rel)
    assert_same((wide.mnt / rel).read_bytes(), bytes(expected), rel)
    assert sorted(os.listdir(wide.overlay / "data")) == [os.path.basename(rel)]  # no temp files
