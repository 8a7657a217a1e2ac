"""The opt-in writeback cache: the kernel gathers writes; what lands in the overlay must not change."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mounting import mounted


def test_writeback_cache_keeps_bytes_appends_and_times(roots) -> None:
    with mounted(roots.config, roots.mountpoint, "writeback_cache"):
        mnt = roots.mountpoint
        block = os.urandom(1 << 20)
        with open(mnt / "big.bin", "wb") as f:  # opened write-only: the kernel may still read pages
            for _ in range(8):
                f.write(block)
            f.seek(100)
            f.write(b"patched")
        # two appenders on a copied-up static file: the kernel computes the offsets
        a = os.open(mnt / "file.txt", os.O_WRONLY | os.O_APPEND)
        b = os.open(mnt / "file.txt", os.O_WRONLY | os.O_APPEND)
        os.write(a, b"one\n")
        os.write(b, b"two\n")
        os.close(a)
        os.close(b)
        os.utime(mnt / "file.txt", ns=(1_000_000_000, 2_000_000_000))
        assert os.stat(mnt / "file.txt").st_mtime_ns == 2_000_000_000
    expected = bytearray(block * 8)
    expected[100:107] = b"patched"
    assert (roots.overlay / "big.bin").read_bytes() == bytes(expected)
    assert (roots.overlay / "file.txt").read_bytes() == b"static file\none\ntwo\n"
    assert os.stat(roots.overlay / "file.txt").st_mtime_ns == 2_000_000_000
    assert (roots.static / "file.txt").read_bytes() == b"static file\n"


def test_writeback_cache_is_on_by_default_and_unlinked_open_files_work(roots, mnt: Path) -> None:
    """The default mount (writeback on): a file unlinked while open reads, fstats and closes."""
    status = json.loads((mnt / ".wh..wh.status").read_bytes())
    assert status["options"]["writeback_cache"] is True
    with open(mnt / "file.txt", "rb") as f:
        os.unlink(mnt / "file.txt")
        assert f.read() == b"static file\n"
        assert os.fstat(f.fileno()).st_size == len(b"static file\n")
    with open(mnt / "new.bin", "w+b") as f:
        f.write(b"abc")
        os.unlink(mnt / "new.bin")
        f.write(b"def")
        f.flush()
        assert os.fstat(f.fileno()).st_size == 6


def test_writeback_cache_with_a_file_unlinked_while_open(roots) -> None:
    """The kernel updates the times of an unlinked file at close: answered by inode, no EIO."""
    with mounted(roots.config, roots.mountpoint, "writeback_cache"):
        mnt = roots.mountpoint
        with open(mnt / "gone.bin", "w+b") as f:
            f.write(b"x" * 10000)
            os.unlink(mnt / "gone.bin")
            f.write(b"y")
            f.flush()
            assert os.fstat(f.fileno()).st_size == 10001
            f.seek(0)
            assert f.read() == b"x" * 10000 + b"y"
        with open(mnt / "file.txt", "ab") as f:  # a copied-up static file, unlinked while open
            os.unlink(mnt / "file.txt")
            f.write(b"more")
        assert not (mnt / "file.txt").exists() and not (mnt / "gone.bin").exists()


def test_times_written_back_for_removed_files_are_no_failure(roots, mnt: Path) -> None:
    """With the writeback cache the kernel sends the times of a file it still caches when
    the file is removed: answered, not failed (nor logged as a failure)."""
    (mnt / "many").mkdir()
    for i in range(50):
        (mnt / "many" / f"f{i}").write_bytes(b"x" * 4096)
    for i in range(50):
        os.unlink(mnt / "many" / f"f{i}")
    status = json.loads((mnt / ".wh..wh.status").read_bytes())
    assert status["operations"].get("setattr", 0) > 0, "the kernel wrote times back"
    assert not any(key.startswith("setattr:") for key in status["errors"]), status["errors"]
