"""`FreshLayer`: a remote overlay's listings kept ``ttl`` seconds, on moto's real S3 server.

What it saves (requests counted by a counting s3fs filesystem, as test_union_s3.py does),
that other writers show within the ttl, and that this process's own changes show at once.
The union table itself is run over it by test_union_s3.py (backend ``s3-fresh/local``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
import pytest

from copickfs.storage.fresh import MAX_ENTRIES, FreshLayer
from copickfs.storage.staging import StagedLayer, StagingArea
from copickfs.union import FsspecLayer, LocalLayer, UnionFileSystem
from test_union_s3 import counting_fs, put_empty_objects

NAMES = [f"n{i:02d}.json" for i in range(20)]


@pytest.fixture
def static(tmp_path: Path) -> Path:
    root = tmp_path / "static"
    (root / "runs" / "r1" / "picks").mkdir(parents=True)
    for name in NAMES[::2]:  # half the names asked about are static files
        (root / "runs" / "r1" / name).write_bytes(b"s")
    (root / "runs" / "r1" / "picks" / "p.json").write_bytes(b"p")
    return root


def workload(union: UnionFileSystem) -> tuple[int, int]:
    """A new nested file, then a lookup of 20 names in one directory: (requests of each)."""
    fs = union.overlay.inner.fs if isinstance(union.overlay, FreshLayer) else union.overlay.fs
    fs.requests.clear()
    union.pipe_file("runs/r1/picks/new/mine.json", b"{}")
    write = len(fs.requests)
    fs.requests.clear()
    found = [union.exists(f"runs/r1/{name}") for name in NAMES]
    assert found == [i % 2 == 0 for i in range(20)]
    assert union.cat("runs/r1/picks/new/mine.json") == b"{}"
    return write, len(fs.requests)


def test_far_fewer_requests_than_without(s3, static: Path) -> None:
    bucket = s3.new_bucket()
    plain = UnionFileSystem(FsspecLayer(counting_fs(s3), f"{bucket}/plain"), LocalLayer(str(static)))
    fresh = UnionFileSystem(FreshLayer(FsspecLayer(counting_fs(s3), f"{bucket}/fresh"), ttl=60),
                            LocalLayer(str(static)))
    plain_write, plain_lookup = workload(plain)
    fresh_write, fresh_lookup = workload(fresh)
    print(f"\npipe_file of a new nested file: {plain_write} requests plain, {fresh_write} with FreshLayer")
    print(f"lookup of 20 names in one directory: {plain_lookup} requests plain, {fresh_lookup} with FreshLayer")
    assert fresh_write * 3 <= plain_write + 2  # pipe_file: its own create checks stay the inner layer's
    assert fresh_lookup * 3 <= plain_lookup
    assert fresh_write + fresh_lookup <= (plain_write + plain_lookup) / 3
    # the same objects either way
    raw = s3.filesystem(use_listings_cache=False)
    keys = {name: sorted(key.split(f"{bucket}/{name}", 1)[1] for key in raw.find(f"{bucket}/{name}"))
            for name in ("plain", "fresh")}
    assert keys["plain"] == keys["fresh"] and "/runs/r1/picks/new/mine.json" in keys["fresh"]


def test_another_writer_shows_after_the_ttl(s3, static: Path) -> None:
    bucket = s3.new_bucket()
    ttl = 0.3
    union = UnionFileSystem(FreshLayer(FsspecLayer(s3.filesystem(use_listings_cache=False), f"{bucket}/ov"),
                                       ttl=ttl), LocalLayer(str(static)))
    other = s3.filesystem(use_listings_cache=False)  # another machine's client
    assert union.exists("runs/r1/n00.json") and not union.exists("runs/r1/theirs.json")
    other.pipe_file(f"{bucket}/ov/runs/r1/theirs.json", b"t")
    other.pipe_file(f"{bucket}/ov/runs/r1/.wh.n00.json", b"")  # they delete a static file
    written = time.monotonic()
    deadline = written + ttl + 5
    while not union.exists("runs/r1/theirs.json"):
        assert time.monotonic() < deadline, "another writer's file never showed"
        time.sleep(0.05)
    # each listing is at most ttl old (they expire one by one): after ttl, all of it shows
    time.sleep(max(0.0, written + ttl + 0.05 - time.monotonic()))
    assert not union.exists("runs/r1/n00.json")
    assert "runs/r1/theirs.json" in union.ls("runs/r1", detail=False)
    assert "runs/r1/n00.json" not in union.ls("runs/r1", detail=False)
    other.rm_file(f"{bucket}/ov/runs/r1/theirs.json")
    deadline = time.monotonic() + ttl + 5
    while union.exists("runs/r1/theirs.json"):
        assert time.monotonic() < deadline, "another writer's removal never showed"
        time.sleep(0.05)


def test_own_changes_show_at_once(s3, static: Path) -> None:
    bucket = s3.new_bucket()
    layer = FreshLayer(FsspecLayer(s3.filesystem(use_listings_cache=False), f"{bucket}/ov"), ttl=60)
    union = UnionFileSystem(layer, LocalLayer(str(static)))
    assert union.ls("runs/r1/picks", detail=False) == ["runs/r1/picks/p.json"]
    assert not union.exists("runs/r1/picks/a.json")  # misses are kept too...
    union.pipe_file("runs/r1/picks/a.json", b"1")  # ...and dropped by the write
    assert union.cat("runs/r1/picks/a.json") == b"1" and union.info("runs/r1/picks/a.json")["size"] == 1
    with union.open("runs/r1/picks/a.json", "wb") as f:
        f.write(b"longer")
    assert union.info("runs/r1/picks/a.json")["size"] == 6
    union.rm("runs/r1/picks/p.json")  # a whiteout
    assert union.ls("runs/r1/picks", detail=False) == ["runs/r1/picks/a.json"]
    union.makedirs("runs/r1/picks/d/e")
    union.pipe_file("runs/r1/picks/d/e/f", b"f")
    assert union.isdir("runs/r1/picks/d/e")
    union.posix_rename("runs/r1/picks/d", "runs/r1/moved")  # a directory: listings below it go too
    assert not union.exists("runs/r1/picks/d") and not union.exists("runs/r1/picks/d/e/f")
    assert union.cat("runs/r1/moved/e/f") == b"f"
    union.rm("runs/r1/moved", recursive=True)
    assert not union.exists("runs/r1/moved") and not union.exists("runs/r1/moved/e")
    union.mkdir("runs/r1/moved")
    assert union.ls("runs/r1/moved") == []
    union.rm("runs/r1/n00.json")
    assert not union.exists("runs/r1/n00.json")
    union.pipe_file("runs/r1/n00.json", b"back")
    assert union.cat("runs/r1/n00.json") == b"back"
    assert "runs/r1/n00.json" in union.ls("runs/r1", detail=False)
    # another machine's write, by contrast, waits for the ttl (or an explicit invalidate)
    s3.filesystem(use_listings_cache=False).pipe_file(f"{bucket}/ov/runs/r1/theirs.json", b"t")
    assert not union.exists("runs/r1/theirs.json")
    layer.invalidate()
    assert union.exists("runs/r1/theirs.json")


def test_staged_copies_are_never_answered_from_a_listing(s3, static: Path, tmp_path: Path) -> None:
    bucket = s3.new_bucket()
    fs = s3.filesystem(use_listings_cache=False)
    area = StagingArea(str(tmp_path / "staging"))
    layer = FreshLayer(StagedLayer(FsspecLayer(fs, f"{bucket}/ov"), area), ttl=60)
    assert layer.area is area and layer.serves_descriptors and layer.object_store and not layer.is_local
    union = UnionFileSystem(layer, LocalLayer(str(static)))
    try:
        union.makedirs("runs/r2", exist_ok=True)
        union.pipe_file("runs/r2/grow.bin", b"")
        opened = union.open_file("runs/r2/grow.bin", os.O_WRONLY)
        assert opened is not None
        assert union.info("runs/r2/grow.bin")["size"] == 0
        assert union.ls("runs/r2", detail=False) == ["runs/r2/grow.bin"]  # the listing is kept now
        opened.pwrite(b"x" * 1000, 0)
        assert union.info("runs/r2/grow.bin")["size"] == 1000  # the staged copy's size, not the listing's
        opened.close()
        assert union.info("runs/r2/grow.bin")["size"] == 1000
        assert union.cat("runs/r2/grow.bin") == b"x" * 1000
    finally:
        area.close_all()
    assert fs.cat_file(f"{bucket}/ov/runs/r2/grow.bin") == b"x" * 1000


def test_ttl_zero_keeps_nothing_and_big_directories_are_not_kept(s3, static: Path) -> None:
    bucket = s3.new_bucket()
    counting = counting_fs(s3)
    off = FreshLayer(FsspecLayer(counting, f"{bucket}/off"), ttl=0)
    other = s3.filesystem(use_listings_cache=False)
    assert off.stat("a") is None
    other.pipe_file(f"{bucket}/off/a", b"1")
    assert off.stat("a") is not None and off.listdir("") == {"a": 0o100000}
    assert not off._dirs

    put_empty_objects(s3.endpoint, bucket, [f"big/d/{i:05d}" for i in range(MAX_ENTRIES + 1)])
    big = FreshLayer(FsspecLayer(counting, f"{bucket}/big"), ttl=60, max_dirs=2)
    assert len(big.listdir("d")) == MAX_ENTRIES + 1
    assert big._dirs["d"].big and not big._dirs["d"].entries  # only the fact is kept
    counting.requests.clear()
    assert big.stat("d/00001") is not None and big.stat("d/nope") is None
    assert [r[0] for r in counting.requests if r[0] == "head_object"]  # asked, not listed again
    assert not [r for r in counting.requests if r[0] == "list_objects_v2" and r[2] == "big/d/"
                and "MaxKeys" not in r]
    for name in ("x", "y", "z"):  # an LRU of two listings
        big.stat(f"{name}/f")
    assert list(big._dirs) == ["y", "z"]


def test_invalidations_are_thread_safe(s3, static: Path) -> None:
    """Concurrent writers and readers through one layer: every thread sees its own file."""
    import threading

    bucket = s3.new_bucket()
    layer = FreshLayer(FsspecLayer(s3.filesystem(use_listings_cache=False), f"{bucket}/ov"), ttl=60)
    union = UnionFileSystem(layer, LocalLayer(str(static)))
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(3):
                union.pipe_file(f"runs/r1/t{i}-{j}", b"x")
                assert union.exists(f"runs/r1/t{i}-{j}")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    names = union.ls("runs/r1", detail=False)
    assert all(f"runs/r1/t{i}-{j}" in names for i in range(6) for j in range(3))
