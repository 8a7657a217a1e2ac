"""The union as fsspec and zarr callers use it: suffix reads, concurrent writers, touch,
pickling, and bulk copies of names at the union root.

The static tree is conftest.build_static's; the `roots` fixture checks it is unchanged
after every test.
"""

from __future__ import annotations

import pickle
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from copickfs.copick.stores import open_store
from copickfs.union import LocalLayer, UnionFileSystem
from treehash import tree_digest


def in_threads(count: int, work: Callable[[int], Any]) -> list[BaseException]:
    """Run ``work(i)`` in ``count`` threads released together; the exceptions they raised."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            work(i)
        except BaseException as e:  # noqa: BLE001 (collected for the assertion)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


# ---------------------------------------------------------------------------- reads from the end


@pytest.mark.parametrize("path", ["dir/a.txt", "mine.bin"], ids=["static", "overlay"])
def test_cat_file_reads_from_the_end(union: UnionFileSystem, path: str) -> None:
    data = bytes(range(100))
    if path == "mine.bin":
        union.pipe_file(path, data)
    else:
        data = b"a" * 100
    assert union.cat_file(path, start=-7) == data[-7:]
    assert union.cat_file(path, start=-7, end=-2) == data[-7:-2]
    assert union.cat_file(path, start=3, end=-90) == data[3:-90]
    assert union.cat_file(path, start=-1000) == data  # longer than the file: all of it
    assert union.tail(path, 5) == data[-5:]
    with union.open(path, "rb") as f:
        assert f.size == 100
        assert f.path == path and f.mode == "rb" and f.fs is union


def test_cat_file_reads_from_the_end_on_object_store_layers(roots) -> None:
    union = UnionFileSystem(f"memory://suffix-{uuid.uuid4().hex}", str(roots.static))
    union.pipe_file("m/obj", b"0123456789")
    assert union.cat_file("m/obj", start=-3) == b"789"
    assert union.cat_file("m/obj", start=-4, end=-1) == b"678"
    assert union.cat_file("file.txt", start=-5) == b"file\n"
    union.rm("m", recursive=True)


def test_repr_names_the_roots_not_the_object(roots) -> None:
    text = repr(UnionFileSystem(str(roots.overlay), str(roots.static)))
    assert f"file://{roots.overlay}" in text and f"file://{roots.static}" in text
    assert repr(UnionFileSystem(str(roots.overlay), str(roots.static))) == text
    assert "0x" not in text


def test_cat_ranges_with_suffixes(union: UnionFileSystem) -> None:
    union.pipe_file("r.bin", b"0123456789")
    assert union.cat_ranges(["r.bin", "dir/a.txt", "r.bin"], [-3, -2, 1], [None, None, 4]) == [
        b"789", b"aa", b"123"]


def test_sharded_zarr_v3_partial_reads_through_the_union_store(roots, union: UnionFileSystem) -> None:
    """zarr reads a shard's index with a suffix request, then the chunks it needs by range."""
    data = np.arange(32 * 32, dtype="uint16").reshape(32, 32)
    writer = zarr.create_array(open_store(union, "s.zarr", read_only=False), shape=data.shape,
                               shards=(16, 16), chunks=(4, 4), dtype=data.dtype, zarr_format=3)
    writer[:] = data
    reader = zarr.open_array(open_store(union, "s.zarr", read_only=True), mode="r")
    np.testing.assert_array_equal(reader[5:9, 17:30], data[5:9, 17:30])
    np.testing.assert_array_equal(reader[:], data)


def test_sharded_zarr_v3_array_in_static_reads_and_partly_rewrites(tmp_path: Path) -> None:
    static, overlay = tmp_path / "static", tmp_path / "overlay"
    data = np.arange(16 * 16, dtype="int32").reshape(16, 16)
    arr = zarr.create_array(str(static / "pub.zarr"), shape=data.shape, shards=(8, 8),
                            chunks=(2, 2), dtype=data.dtype, zarr_format=3)
    arr[:] = data
    union = UnionFileSystem(str(overlay), str(static))
    before = {p: (static / p).read_bytes() for p in union.find("pub.zarr")}
    reader = zarr.open_array(open_store(union, "pub.zarr", read_only=True), mode="r")
    np.testing.assert_array_equal(reader[3:6, 9:15], data[3:6, 9:15])
    writer = zarr.open_array(open_store(union, "pub.zarr", read_only=False), mode="r+")
    writer[0:2, 0:2] = -1
    expected = data.copy()
    expected[0:2, 0:2] = -1
    np.testing.assert_array_equal(writer[:], expected)
    assert union.layer_of("pub.zarr/c/0/0") == "overlay"  # the shard was copied up and rewritten
    assert {p: (static / p).read_bytes() for p in before} == before


# ---------------------------------------------------------------------------- concurrent writers


@pytest.mark.parametrize("static_holds_array_dir", [False, True])
def test_zarr_v3_array_written_by_many_threads(tmp_path: Path, static_holds_array_dir: bool) -> None:
    """zarr writes chunks from a thread pool: their directories are made concurrently."""
    static = tmp_path / "static"
    (static / "w.zarr" / "c").mkdir(parents=True)
    before = tree_digest(str(static))
    with zarr.config.set({"async.concurrency": 32}):
        for trial in range(5):
            union = UnionFileSystem(str(tmp_path / f"overlay{trial}"),
                                    str(static) if static_holds_array_dir else None)
            name = f"w.zarr/t{trial}"
            data = np.random.default_rng(trial).integers(0, 255, (24, 24, 24), dtype="uint8")
            arr = zarr.create_array(open_store(union, name, read_only=False), shape=data.shape,
                                    chunks=(4, 4, 4), dtype=data.dtype, zarr_format=3)
            arr[:] = data
            np.testing.assert_array_equal(arr[:], data)
    assert tree_digest(str(static)) == before


def test_concurrent_touch_of_one_new_file(union: UnionFileSystem) -> None:
    errors = in_threads(16, lambda i: union.touch("fresh/sub/same"))
    assert errors == []
    assert union.cat_file("fresh/sub/same") == b""


def test_concurrent_touch_of_a_static_file(roots, union: UnionFileSystem) -> None:
    errors = in_threads(16, lambda i: union.touch("dir/a.txt"))
    assert errors == []
    assert union.cat_file("dir/a.txt") == b""
    assert union.layer_of("dir/a.txt") == "overlay"


def test_concurrent_makedirs_and_mkdir_with_parents(union: UnionFileSystem) -> None:
    errors = in_threads(16, lambda i: union.makedirs("m/n/o", exist_ok=True))
    errors += in_threads(16, lambda i: union.mkdir(f"p/q/r{i}", create_parents=True))
    errors += in_threads(16, lambda i: union.makedirs(f"dir/sub/new{i % 3}/x{i}", exist_ok=True))
    assert errors == []
    assert union.isdir("m/n/o")
    assert sorted(union.ls("p/q", detail=False)) == sorted(f"p/q/r{i}" for i in range(16))
    assert len(union.find("dir/sub", withdirs=True)) == 1 + 1 + 3 + 16  # itself, deep.bin, new*, x*


def test_concurrent_makedirs_without_exist_ok_lets_one_win(union: UnionFileSystem) -> None:
    errors = in_threads(8, lambda i: union.makedirs("only/once"))
    assert len(errors) == 7 and all(isinstance(e, FileExistsError) for e in errors)


def test_concurrent_exclusive_creates_let_one_win(union: UnionFileSystem) -> None:
    def create(i: int) -> None:
        with union.open("x/one", "xb") as f:
            f.write(b"%d" % i)

    errors = in_threads(8, create)
    assert len(errors) == 7 and all(isinstance(e, FileExistsError) for e in errors)
    assert union.cat_file("x/one") in {b"%d" % i for i in range(8)}


def test_concurrent_mkdir_over_a_whiteout_keeps_static_hidden(roots, union: UnionFileSystem) -> None:
    union.rm("dir", recursive=True)
    errors = in_threads(8, lambda i: union.makedirs(f"dir/n{i}", exist_ok=True))
    assert errors == []
    assert sorted(union.ls("dir", detail=False)) == sorted(f"dir/n{i}" for i in range(8))
    assert not union.exists("dir/a.txt")


# ---------------------------------------------------------------------------- touch


def test_touch_makes_missing_parents(roots, union: UnionFileSystem) -> None:
    union.touch("new/deeper/file")
    assert union.cat_file("new/deeper/file") == b""
    union.touch("dir/sub/also/file")  # below a static directory: copied up on the way
    assert union.layer_of("dir/sub/also/file") == "overlay"
    assert union.exists("dir/sub/deep.bin")


def test_touch_under_a_file_fails(union: UnionFileSystem) -> None:
    with pytest.raises(NotADirectoryError):
        union.touch("file.txt/x")


def test_touch_keeps_whiteouts_honest(roots, union: UnionFileSystem) -> None:
    union.rm("dir", recursive=True)
    union.touch("dir/new")
    assert union.ls("dir", detail=False) == ["dir/new"]  # static's dir/ stays deleted


# ---------------------------------------------------------------------------- pickling, equality


def _roundtrip_in_thread(obj: Any) -> Any:
    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.append(pickle.loads(pickle.dumps(obj))))
    worker.start()
    worker.join()
    return out[0]


@pytest.mark.parametrize("kind", ["urls", "layers", "memory_overlay", "no_static"])
def test_pickled_union_equals_the_original(roots, kind: str) -> None:
    overlay, static = str(roots.overlay), str(roots.static)
    union = {
        "urls": lambda: UnionFileSystem(overlay, static),
        "layers": lambda: UnionFileSystem(LocalLayer(overlay), LocalLayer(static)),
        "memory_overlay": lambda: UnionFileSystem(f"memory://pickled-{uuid.uuid4().hex}", static),
        "no_static": lambda: UnionFileSystem(overlay),
    }[kind]()
    again = pickle.loads(pickle.dumps(union))
    assert again == union and hash(again) == hash(union)
    elsewhere = _roundtrip_in_thread(union)
    assert elsewhere == union and hash(elsewhere) == hash(union)
    if kind != "no_static":
        assert again.cat_file("file.txt") == b"static file\n"
    again.pipe_file("written/after/unpickling", b"x")
    assert union.cat_file("written/after/unpickling") == b"x"


def test_unions_over_other_storage_differ(roots, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    union = UnionFileSystem(str(roots.overlay), str(roots.static))
    assert union != UnionFileSystem(str(other), str(roots.static))
    assert union != UnionFileSystem(str(roots.overlay), str(other))
    assert union != UnionFileSystem(str(roots.overlay))
    assert union == UnionFileSystem(LocalLayer(str(roots.overlay)), str(roots.static))


def test_pickled_zarr_store_equals_the_original(roots, union: UnionFileSystem) -> None:
    """zarr compares stores by their filesystems: the async wrapper's token is made from the
    union's repr. (fsspec ties an asynchronous filesystem's token to its thread, so a copy
    unpickled in another thread differs there, for any fsspec store.)"""
    store = open_store(union, "dir", read_only=True)
    assert pickle.loads(pickle.dumps(store)) == store
    assert open_store(union, "dir", read_only=False) != store


# ---------------------------------------------------------------------------- names at the root


def test_recursive_get_of_a_top_level_directory_keeps_its_name(union: UnionFileSystem,
                                                               tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    union.get("dir", str(target), recursive=True)
    assert (target / "dir" / "a.txt").read_bytes() == b"a" * 100
    assert (target / "dir" / "sub" / "deep.bin").is_file()
    assert not (target / "a.txt").exists()


def test_get_of_a_top_level_file_into_a_directory(union: UnionFileSystem, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    union.get("file.txt", str(target))
    assert (target / "file.txt").read_bytes() == b"static file\n"
    union.get("file.txt", str(target / "renamed.txt"))
    assert (target / "renamed.txt").read_bytes() == b"static file\n"


def test_recursive_copy_of_a_top_level_directory_into_a_directory(union: UnionFileSystem) -> None:
    union.makedirs("into")
    union.copy("dir", "into", recursive=True)
    assert union.cat_file("into/dir/a.txt") == b"a" * 100
    assert not union.exists("into/a.txt")
    union.copy("dir/", "flat", recursive=True)  # a trailing slash copies the contents
    assert union.cat_file("flat/a.txt") == b"a" * 100


def test_recursive_put_of_a_directory_to_the_root(union: UnionFileSystem, tmp_path: Path) -> None:
    (tmp_path / "src" / "inner").mkdir(parents=True)
    (tmp_path / "src" / "inner" / "f").write_bytes(b"f")
    union.put(str(tmp_path / "src"), "", recursive=True)
    assert union.cat_file("src/inner/f") == b"f"


def test_expand_path_keeps_the_union_spelling(union: UnionFileSystem) -> None:
    assert sorted(union.expand_path("dir", recursive=True)) == [
        "dir", "dir/a.txt", "dir/exec.sh", "dir/sub", "dir/sub/deep.bin"]
    assert union.expand_path("file.txt") == ["file.txt"]
    assert sorted(union.expand_path("/dir/sub", recursive=True)) == ["/dir/sub", "/dir/sub/deep.bin"]


@pytest.mark.parametrize("target", ["moved", "empty", "dir2/inner"])
def test_mv_of_a_static_directory_is_a_rename(union: UnionFileSystem, target: str) -> None:
    """rename(2) says EXDEV for a directory static holds; mv copies instead, and the copy
    lands where the rename would have put it: at the target name, filling an empty one."""
    if target == "dir2/inner":
        union.makedirs(target)
    union.mv("dir", target)
    assert union.cat_file(f"{target}/a.txt") == b"a" * 100
    assert union.exists(f"{target}/sub/deep.bin")
    assert not union.exists(f"{target}/dir")
    assert not union.exists("dir")


def test_text_mode_reads_through_the_layer_file(union: UnionFileSystem) -> None:
    with union.open("file.txt", "r") as f:
        assert f.read() == "static file\n"
    with union.open("notes/t.txt", "w") as f:
        f.write("line one\nline two\n")
    with union.open("notes/t.txt", "r") as f:
        assert list(f) == ["line one\n", "line two\n"]
