"""The local block cache of a remote static root, against a real S3 protocol server (moto).

GETs are counted at our own seam: the filesystem object handed to the cache is wrapped,
never botocore.
"""

from __future__ import annotations

import errno
import os
import random
import stat as S
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from copickfs.storage import BlockCache, CachedLayer
from copickfs.storage.blockcache import safe_url
from copickfs.storage.cached import version_of
from copickfs.union.layers import FsspecLayer
from s3server import KEY, SECRET

MiB = 1 << 20
BIG = 20 * MiB + 12345  # a short last block


class CountingFS:
    """An fsspec filesystem as the cache sees it, counting (and on request slowing or
    failing) the calls that reach the storage."""

    def __init__(self, fs: Any, delay: float = 0.0, fail_gets: set[int] | None = None) -> None:
        self._fs = fs
        self.delay = delay
        self.fail_gets = fail_gets or set()  # 1-based numbers of cat_file calls that fail
        self.calls: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)

    def _note(self, *call: Any) -> int:
        with self._lock:
            self.calls.append(call)
            return self.count(call[0])

    def count(self, name: str) -> int:
        return sum(1 for call in list(self.calls) if call[0] == name)

    def gets(self) -> list[tuple[Any, ...]]:
        return [call[1:] for call in list(self.calls) if call[0] == "cat_file"]

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kw: Any) -> bytes:
        n = self._note("cat_file", start, end)
        time.sleep(self.delay)
        if n in self.fail_gets:
            raise ConnectionError("injected failure")
        return self._fs.cat_file(path, start=start, end=end, **kw)

    def info(self, path: str, **kw: Any) -> dict[str, Any]:
        self._note("info", path)
        return self._fs.info(path, **kw)

    def ls(self, path: str, detail: bool = True, **kw: Any) -> Any:
        self._note("ls", path)
        return self._fs.ls(path, detail=detail, **kw)

    def call_s3(self, method: str, **kw: Any) -> Any:
        self._note(method, kw.get("Prefix"))
        return self._fs.call_s3(method, **kw)


@pytest.fixture(scope="module")
def bucket(s3: Any) -> tuple[str, dict[str, bytes]]:
    """A bucket whose ``root/`` holds the objects the tests read, and their bytes."""
    rng = random.Random(7)
    objects = {
        "small.json": b'{"zarr_format": 2}\n' * 50,
        "big.bin": rng.randbytes(BIG),
        "empty": b"",
        **{f"lru/{c}.bin": rng.randbytes(MiB) for c in "abcd"},
    }
    name = s3.new_bucket()
    fs = s3.filesystem()
    for key, body in objects.items():
        fs.pipe_file(f"{name}/root/{key}", body)
    return name, objects


@pytest.fixture
def counting(s3: Any) -> CountingFS:
    return CountingFS(s3.filesystem())


@pytest.fixture
def caches(tmp_path: Any) -> Iterator[Callable[..., BlockCache]]:
    """Make BlockCaches on one directory (a mount, then the next); all closed at the end."""
    made: list[BlockCache] = []

    def make(**options: Any) -> BlockCache:
        options = {"max_bytes": 64 * MiB, "block_size": MiB, "whole_file_below": 256 * 1024, **options}
        cache = BlockCache(str(tmp_path / "cache"), **options)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


def url(bucket: tuple[str, dict[str, bytes]], key: str) -> str:
    return f"s3://{bucket[0]}/root/{key}"


def open_obj(cache: BlockCache, fs: Any, bucket: tuple[str, dict[str, bytes]], key: str):  # noqa: ANN201
    return cache.open(fs, url(bucket, key), len(bucket[1][key]), "v1")


def read(cached: Any, offset: int, length: int) -> bytes:
    cached.ensure(offset, length)
    return os.pread(cached.fd, length, offset)


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# ---------------------------------------------------------------- BlockCache


def test_small_file_is_fetched_whole_once(caches, counting, bucket):
    cache = caches()
    body = bucket[1]["small.json"]
    with open_obj(cache, counting, bucket, "small.json") as f:
        assert read(f, 3, 5) == body[3:8]
        assert os.pread(f.fd, len(body) + 10, 0) == body
        assert read(f, 0, len(body)) == body
    assert counting.gets() == [(None, None)]
    assert cache.stats()["fetched_bytes"] == len(body)


def test_empty_object_needs_no_get(caches, counting, bucket):
    cache = caches()
    with open_obj(cache, counting, bucket, "empty") as f:
        assert read(f, 0, 100) == b""
    assert counting.gets() == []


def test_random_reads_across_blocks_equal_the_object(caches, counting, bucket, s3):
    cache = caches()
    body = bucket[1]["big.bin"]
    rng = random.Random(11)
    spans = [(MiB - 10, 20), (BIG - 5, 100), (BIG - 12345 - 1, 12346), (0, 1)]
    spans += [(rng.randrange(BIG), rng.randrange(1, 3 * MiB)) for _ in range(40)]
    with open_obj(cache, counting, bucket, "big.bin") as f:
        for offset, length in spans:
            assert read(f, offset, length) == body[offset:offset + length]
    direct = s3.filesystem().cat_file(url(bucket, "big.bin"), start=5 * MiB - 7, end=5 * MiB + 7)
    with cache.open(counting, url(bucket, "big.bin"), BIG, "v1") as f:
        assert read(f, 5 * MiB - 7, 14) == direct
    gets = sorted(counting.gets())
    assert all(end <= start2 for (_, end), (start2, _) in zip(gets, gets[1:]))  # each block at most once
    per_get = cache.blocks_per_get * MiB  # contiguous missing blocks go out together, up to this
    assert all(start % MiB == 0 and (end - start <= per_get) and (end % MiB == 0 or end == BIG)
               for start, end in gets), gets


def test_concurrent_readers_of_one_block_fetch_it_once(caches, s3, bucket):
    slow = CountingFS(s3.filesystem(), delay=0.3)
    cache = caches(readahead_blocks=0)
    body = bucket[1]["big.bin"]
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def reader(i: int) -> None:
        with open_obj(cache, slow, bucket, "big.bin") as f:  # one entry, eight open files
            barrier.wait()
            offset = 5 * MiB + i * 1000
            results.append(read(f, offset, 100) == body[offset:offset + 100])

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [True] * 8
    assert slow.gets() == [(5 * MiB, 6 * MiB)]


def test_sequential_reads_trigger_read_ahead(caches, counting, bucket):
    cache = caches(readahead_blocks=3, blocks_per_get=4)
    body = bucket[1]["big.bin"]
    with open_obj(cache, counting, bucket, "big.bin") as f:
        assert read(f, 0, 10) == body[:10]
        assert read(f, MiB, 10) == body[MiB:MiB + 10]
        # blocks 2, 3, 4 without asking, and on to the end of the group of four that block 4
        # starts: a GET per group, none for a fragment of one
        wait_for(lambda: f.present(2 * MiB, 6 * MiB))
        assert sorted(counting.gets()) == [(0, MiB), (MiB, 2 * MiB), (2 * MiB, 4 * MiB), (4 * MiB, 8 * MiB)]
        assert not f.present(8 * MiB, 1)
        assert os.pread(f.fd, 100, 7 * MiB) == body[7 * MiB:7 * MiB + 100]
        assert read(f, 2 * MiB, 10) == body[2 * MiB:2 * MiB + 10]  # still sequential: the window doubles
        wait_for(lambda: f.present(8 * MiB, 4 * MiB))  # blocks 3..8, to the group's end: 8..11 in one GET
        assert sorted(counting.gets())[4:] == [(8 * MiB, 12 * MiB)]


def test_a_random_read_resets_the_read_ahead_window(caches, counting, bucket):
    cache = caches(readahead_blocks=1, blocks_per_get=1)
    with open_obj(cache, counting, bucket, "big.bin") as f:
        for block in range(3):
            read(f, block * MiB, 10)
        assert f.window == 4  # 1, 2, 4
        read(f, 10 * MiB, 10)  # a jump: no read-ahead, the window starts again
        assert f.window == 1
        wait_for(lambda: f.present(3 * MiB, 2 * MiB))  # blocks 3 and 4: the sequential reads earned them
        assert not f.present(11 * MiB, 1)


def test_eviction_keeps_the_bound_and_drops_the_least_recently_used(caches, counting, bucket):
    cache = caches(max_bytes=3 * MiB, whole_file_below=2 * MiB)
    objects = bucket[1]

    def touch(name: str) -> None:
        with open_obj(cache, counting, bucket, f"lru/{name}.bin") as f:
            assert read(f, 0, MiB) == objects[f"lru/{name}.bin"]

    for name in "abc":
        touch(name)
    touch("a")  # a is now more recent than b
    touch("d")  # 4 MiB would not fit: b goes
    assert cache.stats()["bytes_used"] <= 3 * MiB
    assert cache.stats()["evictions"] == 1
    before = len(counting.gets())
    for name in "acd":
        touch(name)
    assert len(counting.gets()) == before  # all still cached
    touch("b")
    assert len(counting.gets()) == before + 1
    data_files = [os.path.join(top, n) for top, _, names in os.walk(cache.directory)
                  for n in names if n.endswith(".data")]
    assert sum(os.stat(p).st_size for p in data_files) <= 3 * MiB


def test_open_entries_are_not_evicted(caches, counting, bucket):
    cache = caches(max_bytes=2 * MiB, whole_file_below=2 * MiB)
    objects = bucket[1]
    held = [open_obj(cache, counting, bucket, f"lru/{n}.bin") for n in "abc"]
    for f, name in zip(held, "abc"):
        assert read(f, 0, MiB) == objects[f"lru/{name}.bin"]
    assert cache.stats()["bytes_used"] == 3 * MiB  # all open: a documented overshoot
    for f, name in zip(held, "abc"):
        assert os.pread(f.fd, MiB, 0) == objects[f"lru/{name}.bin"]
        f.close()
    with open_obj(cache, counting, bucket, "lru/d.bin") as f:
        read(f, 0, 1)
    assert cache.stats()["bytes_used"] <= 2 * MiB


def test_the_next_mount_reuses_present_blocks(caches, counting, bucket, s3):
    first = caches()
    body = bucket[1]["big.bin"]
    with open_obj(first, counting, bucket, "big.bin") as f:
        read(f, 0, 3 * MiB)
        read(f, BIG - 10, 10)  # the short last block
    with open_obj(first, counting, bucket, "small.json") as f:
        read(f, 0, 1)
    first.close()

    again = CountingFS(s3.filesystem())
    second = caches()
    assert second.stats()["bytes_used"] == 3 * MiB + (BIG % MiB) + len(bucket[1]["small.json"])
    with open_obj(second, again, bucket, "big.bin") as f:
        assert read(f, 0, 3 * MiB) == body[:3 * MiB]
        assert read(f, BIG - 10, 10) == body[-10:]
    with open_obj(second, again, bucket, "small.json") as f:
        assert read(f, 0, 10 ** 6) == bucket[1]["small.json"]
    assert again.gets() == []


def test_a_cache_left_by_a_machine_crash_is_emptied(caches, counting, bucket):
    first = caches()
    with open_obj(first, counting, bucket, "small.json") as f:
        read(f, 0, 1)
    first.close()
    with open(os.path.join(first.directory, "boot"), "w") as out:  # unsynced, in another boot
        out.write("an-earlier-boot")
    second = caches()
    assert second.stats()["bytes_used"] == 0
    with open_obj(second, counting, bucket, "small.json") as f:
        assert read(f, 0, 10 ** 6) == bucket[1]["small.json"]
    assert len(counting.gets()) == 2


def test_a_failed_get_is_eio_and_a_later_ensure_succeeds(caches, s3, bucket):
    failing = CountingFS(s3.filesystem(), fail_gets={1})
    cache = caches(readahead_blocks=0)
    body = bucket[1]["big.bin"]
    with open_obj(cache, failing, bucket, "big.bin") as f:
        with pytest.raises(OSError) as info:
            f.ensure(2 * MiB, 10)
        assert info.value.errno == errno.EIO
        assert url(bucket, "big.bin") in str(info.value)
        assert KEY not in str(info.value) and SECRET not in str(info.value)
        assert not f.present(2 * MiB, 10)
        assert read(f, 2 * MiB, 10) == body[2 * MiB:2 * MiB + 10]
    with cache.open(failing, url(bucket, "missing"), 5 * MiB, "v1") as f:
        with pytest.raises(OSError) as info:
            f.ensure(0, 1)
        assert info.value.errno == errno.EIO
        assert not f.present(0, 1)


def test_no_credentials_in_the_cache_directory(caches, counting, bucket):
    cache = caches()
    for key in ("small.json", "big.bin"):
        with open_obj(cache, counting, bucket, key) as f:
            read(f, 0, MiB)
    for top, _, names in os.walk(cache.directory):
        for name in names:
            assert KEY not in name and SECRET not in name
            with open(os.path.join(top, name), "rb") as f:
                content = f.read()
            assert KEY.encode() not in content and SECRET.encode() not in content
    assert safe_url("https://user:pw@host:9000/p/k?X-Amz-Signature=s") == "https://host:9000/p/k"
    assert safe_url("s3://user:pw@bucket/k?x") == "s3://bucket/k?x"


# ---------------------------------------------------------------- CachedLayer


@pytest.fixture
def layer(caches, counting, bucket) -> CachedLayer:
    return CachedLayer(FsspecLayer(counting, f"{bucket[0]}/root"), caches())


def test_layer_memoizes_attributes_and_listings(layer, counting, bucket):
    assert layer.serves_descriptors and not layer.is_local
    st = layer.stat("big.bin")  # one page lists the root: its siblings are known too
    assert st is not None and st.is_file and st.size == BIG
    assert layer.stat("big.bin") == st
    assert layer.stat("nope") is None and layer.stat("nope") is None
    assert layer.stat("lru").is_dir and layer.stat("small.json").is_file
    assert counting.count("list_objects_v2") == 1 and counting.count("info") == 0
    names = layer.listdir("")
    assert names == layer.listdir("")
    assert names["big.bin"] == S.S_IFREG and names["lru"] == S.S_IFDIR
    assert layer.listdir("lru") == {f"{c}.bin": S.S_IFREG for c in "abcd"}
    assert layer.listdir("small.json") is None
    assert layer.stat("lru/a.bin").size == MiB  # known from the listing
    assert layer.stat("nope/deeper") is None
    assert counting.count("ls") == 1 and counting.count("info") == 0  # lru's listing; the root came paged
    assert counting.count("list_objects_v2") == 2  # + the one page that says nope/ holds nothing
    info = counting.info(url(bucket, "big.bin"))
    assert layer.lookup("big.bin") == (st, version_of(info))  # the listing's version is HEAD's
    assert version_of(info).startswith("etag:")


def test_a_directory_longer_than_a_page_is_asked_name_by_name(layer, counting, monkeypatch):
    import copickfs.storage.cached as cached

    monkeypatch.setattr(cached, "LISTING_PAGE", 3)  # lru/ holds four objects
    assert layer.stat("lru/a.bin").size == MiB
    assert layer.stat("lru/b.bin").size == MiB
    assert layer.stat("lru/zz.bin") is None
    assert counting.count("list_objects_v2") == 1  # lru's first page: too long
    assert counting.count("info") == 3  # so each name is asked
    assert layer.listdir("lru") == {f"{c}.bin": S.S_IFREG for c in "abcd"}  # a full listing still works


def test_layer_reads_through_the_cache(layer, bucket):
    objects = bucket[1]
    with layer.open("small.json", "rb") as f:
        assert f.read() == objects["small.json"]
    with layer.open("small.json", "r") as f:
        assert f.read() == objects["small.json"].decode()
    with layer.open("big.bin", "rb") as f:
        f.seek(MiB - 3)
        assert f.read(10) == objects["big.bin"][MiB - 3:MiB + 7]
        f.seek(0)
        assert f.read() == objects["big.bin"]
    with layer.open_cached("big.bin") as f:
        assert read(f, 7 * MiB - 1, 2 * MiB) == objects["big.bin"][7 * MiB - 1:9 * MiB - 1]
    opened = layer.open_file("lru/b.bin", os.O_RDONLY)
    try:
        opened.ensure(10, 20)
        assert os.pread(opened.fd, 20, 10) == objects["lru/b.bin"][10:30]
    finally:
        opened.close()
    fd = layer.open_fd("small.json", os.O_RDONLY)
    try:
        assert os.pread(fd, 10 ** 6, 0) == objects["small.json"]
    finally:
        os.close(fd)
    with pytest.raises(FileNotFoundError):
        layer.open_cached("nope")
    with pytest.raises(IsADirectoryError):
        layer.open_cached("lru")


@pytest.mark.parametrize("write", [
    lambda layer: layer.open("small.json", "wb"),
    lambda layer: layer.open("new", "xb"),
    lambda layer: layer.open_file("small.json", os.O_RDWR),
    lambda layer: layer.open_fd("small.json", os.O_WRONLY | os.O_TRUNC),
    lambda layer: layer.mkdir("d"),
    lambda layer: layer.remove("small.json"),
    lambda layer: layer.rename("small.json", "other"),
    lambda layer: layer.touch("t"),
])
def test_layer_refuses_writes(layer, write):
    with pytest.raises(PermissionError) as info:
        write(layer)
    assert info.value.errno == errno.EROFS


def test_another_process_never_evicts_an_entry_held_here(tmp_path):
    """Two mounts on one cache directory: per-entry flocks, whatever each one counts."""
    import subprocess
    import sys

    from fsspec.implementations.local import LocalFileSystem

    source = tmp_path / "src"
    source.mkdir()
    for name in "abcd":
        (source / name).write_bytes(os.urandom(MiB))
    options = {"max_bytes": 2 * MiB, "block_size": MiB, "whole_file_below": 2 * MiB}
    child = (
        "import os, sys\n"
        "from fsspec.implementations.local import LocalFileSystem\n"
        "from copickfs.storage import BlockCache\n"
        f"cache = BlockCache(sys.argv[1], **{options!r})\n"
        "for path in sys.argv[2:]:\n"
        "    with cache.open(LocalFileSystem(), path, os.path.getsize(path), 'v') as f:\n"
        "        f.ensure(0, 1)\n"
        "print(cache.stats()['evictions'])\n"
        "cache.close()\n"
    )
    with BlockCache(str(tmp_path / "cache"), **options) as cache:
        held = cache.open(LocalFileSystem(), str(source / "a"), MiB, "v")
        held.ensure(0, 1)
        others = [str(source / n) for n in "bcd"]
        done = subprocess.run([sys.executable, "-c", child, cache.directory, *others],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert int(done.stdout) >= 1  # the child had to evict: never ``a``
        assert held.present(0, MiB)
        assert os.pread(held.fd, MiB, 0) == (source / "a").read_bytes()
        held.close()


def test_a_damaged_sidecar_is_counted_and_evicted_first(caches, counting, bucket):
    first = caches()
    for key in ("small.json", "lru/a.bin"):
        with open_obj(first, counting, bucket, key) as f:
            read(f, 0, 1)
    first.close()
    metas = sorted((os.path.getsize(p[:-5] + ".data"), p) for top, _, names in os.walk(first.directory)
                   for p in (os.path.join(top, n) for n in names) if p.endswith(".meta"))
    damaged = metas[0][1]  # small.json's
    with open(damaged, "w") as out:
        out.write("{not json")
    second = caches(max_bytes=2 * MiB)
    assert second.stats()["bytes_used"] >= MiB + 4096  # the damaged entry's disk use counts
    with open_obj(second, counting, bucket, "lru/b.bin") as f:
        read(f, 0, 1)
    assert not os.path.exists(damaged) and not os.path.exists(damaged[:-5] + ".data")
    before = len(counting.gets())
    with open_obj(second, counting, bucket, "lru/a.bin") as f:
        assert read(f, 0, MiB) == bucket[1]["lru/a.bin"]
    assert len(counting.gets()) == before
