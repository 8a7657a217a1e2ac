"""copickfs.precomputed.FileAccessor against neuroglancer-scripts' own FileAccessor.

Same names, gzip rules, defaults and errors; plus what neuroglancer-scripts does not do:
keys that leave the pyramid are refused, a store leaves one variant, no handle leaks,
and any fsspec URL or a copick config's union works as the base.
"""

from __future__ import annotations

import gc
import gzip
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import fsspec
import neuroglancer_scripts.accessor as ng_accessor
import pytest
from neuroglancer_scripts.file_accessor import FileAccessor as NgFileAccessor
from neuroglancer_scripts.precomputed_io import get_IO_for_existing_dataset
from pyramids import KEY, Roots, chunk_coords, chunk_data, files_below, make_pyramid, names, stored_name
from users import public_dir  # noqa: F401  (a fixture)

from copickfs.precomputed import DataAccessError, FileAccessor

COORDS = (0, 8, 8, 16, 0, 8)
DATA = b"chunk bytes " * 40


@pytest.mark.parametrize("flat", [False, True], ids=["nested", "flat"])
@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_stores_the_names_neuroglancer_scripts_stores(tmp_path: Path, flat: bool, gz: bool) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for mime in ("application/octet-stream", "application/json", "image/jpeg", "image/png"):
        coords = (0, 8, 0, 8, len(mime), len(mime) + 8)
        FileAccessor(ours, flat=flat, gzip=gz).store_chunk(DATA, KEY, coords, mime_type=mime)
        NgFileAccessor(str(theirs), flat=flat, gzip=gz).store_chunk(DATA, KEY, coords, mime_type=mime)
        FileAccessor(ours, flat=flat, gzip=gz).store_file(f"files/{len(mime)}", DATA, mime_type=mime)
        NgFileAccessor(str(theirs), flat=flat, gzip=gz).store_file(f"files/{len(mime)}", DATA, mime_type=mime)
    assert files_below(ours) == files_below(theirs)
    assert sum(n.endswith(".gz") for n in files_below(ours)) == (2 if gz else 0)  # octet-stream only
    for name in files_below(ours):  # .gz files hold gzip data of the buffer, raw files the buffer
        data = (ours / name).read_bytes()
        assert (gzip.decompress(data) if name.endswith(".gz") else data) == DATA


@pytest.mark.parametrize("flat", [False, True], ids=["stored-nested", "stored-flat"])
@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_each_reads_what_the_other_stored_in_any_layout(tmp_path: Path, flat: bool, gz: bool) -> None:
    chunks = make_pyramid(tmp_path / "theirs", flat, gz)
    mine = FileAccessor(tmp_path / "ours", flat=flat, gzip=gz)
    for coords, data in chunks.items():
        mine.store_chunk(data, KEY, coords)
    for reader_flat in (False, True):
        for reader_gz in (False, True):
            for coords, data in chunks.items():
                assert FileAccessor(tmp_path / "theirs", flat=reader_flat, gzip=reader_gz).fetch_chunk(
                    KEY, coords) == data
                assert NgFileAccessor(str(tmp_path / "ours"), flat=reader_flat, gzip=reader_gz).fetch_chunk(
                    KEY, coords) == data


def test_neuroglancer_scripts_high_level_io_takes_it(tmp_path: Path) -> None:
    make_pyramid(tmp_path / "p", flat=False, gz=True)
    io = get_IO_for_existing_dataset(FileAccessor(tmp_path / "p", flat=True))
    coords = chunk_coords()[-1]
    array = io.read_chunk(KEY, coords)
    assert array.tobytes() == chunk_data(coords)  # one channel of uint8: the raw chunk bytes


def test_files_gzip_rules_and_overwrite(tmp_path: Path) -> None:
    acc = FileAccessor(tmp_path)
    acc.store_file("sub/blob", DATA)
    assert sorted(files_below(tmp_path)) == ["sub/blob.gz"]
    assert acc.file_exists("sub/blob") and acc.fetch_file("sub/blob") == DATA
    assert not acc.file_exists("sub/other") and not acc.file_exists("sub")
    with pytest.raises(DataAccessError, match="exists"):
        acc.store_file("sub/blob", b"new")  # overwrite=False by default: even the .gz counts
    with pytest.raises(DataAccessError, match="exists"):
        FileAccessor(tmp_path, gzip=False).store_file("sub/blob", b"new")
    FileAccessor(tmp_path, gzip=False).store_file("sub/blob", b"new", overwrite=True)
    assert sorted(files_below(tmp_path)) == ["sub/blob"]  # the stale .gz is gone
    assert acc.fetch_file("sub/blob") == b"new"
    acc.store_file("info", b"{}", mime_type="application/json")
    assert (tmp_path / "info").read_bytes() == b"{}"
    with pytest.raises(DataAccessError, match="Cannot find"):
        acc.fetch_file("missing")
    with pytest.raises(DataAccessError):
        acc.fetch_file("sub")  # a directory is no file


def test_store_chunk_leaves_one_variant(tmp_path: Path) -> None:
    FileAccessor(tmp_path, flat=False, gzip=True).store_chunk(b"one", KEY, COORDS)
    FileAccessor(tmp_path, flat=True, gzip=False).store_chunk(b"two", KEY, COORDS)  # overwrite=True default
    assert [n for n in files_below(tmp_path)] == [stored_name(COORDS, flat=True, gz=False)]
    FileAccessor(tmp_path, flat=True, gzip=True, compresslevel=1).store_chunk(b"three", KEY, COORDS)
    assert [n for n in files_below(tmp_path)] == [stored_name(COORDS, flat=True, gz=True)]
    with pytest.raises(DataAccessError, match="exists"):
        FileAccessor(tmp_path, flat=False, gzip=False).store_chunk(b"four", KEY, COORDS, overwrite=False)
    assert FileAccessor(tmp_path).fetch_chunk(KEY, COORDS) == b"three"
    FileAccessor(tmp_path).store_chunk(b"five", KEY, (8, 16, 0, 8, 0, 8), overwrite=False)  # free: stored


def test_compresslevel_is_used(tmp_path: Path) -> None:
    data = bytes(range(256)) * 64
    FileAccessor(tmp_path / "0", compresslevel=0).store_chunk(data, KEY, COORDS)
    FileAccessor(tmp_path / "9", compresslevel=9).store_chunk(data, KEY, COORDS)
    name = stored_name(COORDS, flat=False, gz=True)
    assert (tmp_path / "0" / name).stat().st_size > len(data) > 10 * (tmp_path / "9" / name).stat().st_size


def test_missing_and_corrupt_data_are_data_access_errors(tmp_path: Path) -> None:
    acc = FileAccessor(tmp_path)
    with pytest.raises(DataAccessError, match="Cannot find chunk"):
        acc.fetch_chunk(KEY, COORDS)
    with pytest.raises(ng_accessor.DataAccessError):  # neuroglancer-scripts' callers catch ours
        acc.fetch_chunk(KEY, COORDS)
    bad = tmp_path / stored_name(COORDS, flat=False, gz=True)
    bad.parent.mkdir(parents=True)
    good = gzip.compress(DATA)
    for corrupt in (b"not gzip at all", good[:10] + b"\xff" * 20 + good[30:], good[:-6]):
        bad.write_bytes(corrupt)  # bad magic; a broken deflate stream (zlib.error); a cut trailer (EOFError)
        with pytest.raises(DataAccessError, match="decompressing"):
            acc.fetch_chunk(KEY, COORDS)
    (tmp_path / "f.gz").write_bytes(b"junk")
    with pytest.raises(DataAccessError):
        acc.fetch_file("f")


@pytest.mark.parametrize("bad", ["../outside", "/etc/passwd", "a/../../outside", "", "."])
def test_paths_and_keys_that_leave_the_pyramid_are_refused(tmp_path: Path, bad: str) -> None:
    acc = FileAccessor(tmp_path / "pyramid")
    for call in (lambda: acc.fetch_file(bad), lambda: acc.file_exists(bad),
                 lambda: acc.store_file(bad, DATA), lambda: acc.fetch_chunk(bad, COORDS),
                 lambda: acc.store_chunk(DATA, bad, COORDS)):
        with pytest.raises(ValueError):
            call()
    assert files_below(tmp_path) == set()  # nothing written anywhere


def test_neuroglancer_scripts_lets_keys_escape_and_we_do_not(tmp_path: Path) -> None:
    """Why keys are checked: neuroglancer-scripts writes wherever a key points."""
    NgFileAccessor(str(tmp_path / "pyramid")).store_chunk(DATA, "../escaped", COORDS)
    assert (tmp_path / "escaped").is_dir()
    with pytest.raises(ValueError):
        FileAccessor(tmp_path / "pyramid").store_chunk(DATA, "../escaped2", COORDS)
    assert not (tmp_path / "escaped2").exists()


@pytest.mark.parametrize("coords", [(0, 8, 0, 8, 0), (0, 8, 0, 8, 0, 8, 9), ("a", 1, 2, 3, 4, 5), (0.5, 1, 2, 3, 4, 5)])
def test_bad_chunk_coordinates(tmp_path: Path, coords) -> None:
    with pytest.raises(ValueError):
        FileAccessor(tmp_path).store_chunk(DATA, KEY, coords)


def test_no_file_handle_is_leaked(tmp_path: Path) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    acc = FileAccessor(tmp_path)
    acc.store_chunk(DATA, KEY, COORDS)
    (tmp_path / "corrupt.gz").write_bytes(b"junk")
    gc.collect()
    before = open_fds()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        for _ in range(50):
            acc.store_chunk(DATA, KEY, COORDS)
            assert acc.fetch_chunk(KEY, COORDS) == DATA
            acc.file_exists("corrupt")
            for call in (lambda: acc.fetch_file("corrupt"), lambda: acc.fetch_chunk(KEY, (1, 2, 3, 4, 5, 6)),
                         lambda: acc.store_chunk(DATA, KEY, COORDS, overwrite=False)):
                with pytest.raises(DataAccessError):
                    call()
    assert open_fds() == before


def test_any_fsspec_url(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    try:
        acc = FileAccessor("memory://pyr", flat=True)
        acc.store_file("info", b'{"scales": []}', mime_type="application/json")
        acc.store_chunk(DATA, KEY, COORDS)
        assert fs.cat("/pyr/" + names(COORDS)["flat.gz"]) == gzip.compress(DATA, 9, mtime=0)
        assert FileAccessor("memory://pyr").fetch_chunk(KEY, COORDS) == DATA
        assert acc.fetch_file("info") == b'{"scales": []}'
    finally:
        fs.rm("/pyr", recursive=True)
    acc = FileAccessor(f"file://{tmp_path}/p")
    acc.store_chunk(DATA, KEY, COORDS)
    assert (tmp_path / "p" / names(COORDS)["nested.gz"]).is_file()


@pytest.fixture
def proots(tmp_path: Path) -> Iterator[Roots]:
    roots = Roots(tmp_path)
    yield roots
    roots.check()


def test_a_copick_config_works_on_the_union(proots: Roots) -> None:
    """Reads fall through to static; a store lands in the overlay and whites out static's variant."""
    roots = proots
    chunks = make_pyramid(roots.static / "pyr", flat=False, gz=True)
    roots.seal()
    acc = FileAccessor(roots.config / "pyr", flat=True, gzip=False)
    assert json.loads(acc.fetch_file("info"))["scales"][0]["key"] == KEY
    assert all(acc.fetch_chunk(KEY, c) == d for c, d in chunks.items())
    acc.store_chunk(b"new", KEY, COORDS)
    flat, nested_gz = names(COORDS)["flat"], names(COORDS)["nested.gz"]
    whiteout = nested_gz.rpartition("/")[0] + "/.wh." + nested_gz.rpartition("/")[2]
    assert files_below(roots.overlay / "pyr") == {flat, whiteout}
    assert (roots.overlay / "pyr" / flat).read_bytes() == b"new"
    assert FileAccessor(roots.config / "pyr").fetch_chunk(KEY, COORDS) == b"new"
    assert FileAccessor(roots.config).file_exists("pyr/info")
    # the proots fixture checks that static is unchanged byte for byte


def test_rewriting_a_static_chunk_under_its_own_name(proots: Roots) -> None:
    """Static's variant is whited out and the overlay's copy takes its name."""
    make_pyramid(proots.static / "pyr", flat=False, gz=True)
    proots.seal()
    FileAccessor(proots.config / "pyr").store_chunk(b"again", KEY, COORDS)
    nested_gz = names(COORDS)["nested.gz"]
    assert files_below(proots.overlay / "pyr") == {nested_gz}
    assert gzip.decompress((proots.overlay / "pyr" / nested_gz).read_bytes()) == b"again"
    assert FileAccessor(proots.config / "pyr", flat=True).fetch_chunk(KEY, COORDS) == b"again"


ACCESSORS = [FileAccessor, NgFileAccessor]
ACCESSOR_IDS = ["copickfs", "neuroglancer-scripts"]


@pytest.mark.parametrize("cls", ACCESSORS, ids=ACCESSOR_IDS)
def test_attributes_are_neuroglancer_scripts(tmp_path: Path, cls: type) -> None:
    acc = cls(str(tmp_path / "p"), flat=True, gzip=False, compresslevel=3)
    assert type(acc.base_path) is type(Path()) and acc.base_path == tmp_path / "p"
    assert (acc.gzip, acc.compresslevel) == (False, 3)
    defaults = cls("relative/p")
    assert defaults.base_path == Path("relative/p")  # as given, not made absolute
    assert (defaults.gzip, defaults.compresslevel) == (True, 9)
    if cls is FileAccessor:  # neuroglancer-scripts keeps only the chunk pattern
        assert acc.flat is True and defaults.flat is False


def test_base_path_is_none_off_the_local_filesystem(proots: Roots) -> None:
    proots.seal()
    assert FileAccessor("memory://pyr").base_path is None
    assert FileAccessor(proots.config / "pyr").base_path is None  # a path in the union
    assert FileAccessor(f"file://{proots.overlay}/pyr").base_path == proots.overlay / "pyr"


def _json_file(directory: Path) -> Path:
    (directory / "info").write_text(json.dumps({"scales": []}))  # JSON, but no copick config
    return directory / "info"


def _text_file(directory: Path) -> Path:
    (directory / "notes.txt").write_text("not a directory")
    return directory / "notes.txt"


@pytest.mark.parametrize("cls", ACCESSORS, ids=ACCESSOR_IDS)
@pytest.mark.parametrize("make_file", [_text_file, _json_file], ids=["text", "json"])
@pytest.mark.parametrize("below", ["", "pyr", "a/pyr"], ids=["the-file", "under", "deep-under"])
def test_a_base_at_or_under_a_regular_file(tmp_path: Path, cls: type, make_file, below: str) -> None:
    """The constructor takes it; every use is a DataAccessError (file_exists: False)."""
    file = make_file(tmp_path)
    before = file.read_bytes()
    acc = cls(str(file / below) if below else str(file))
    assert acc.file_exists("info") is False
    for call in (lambda: acc.fetch_file("info"), lambda: acc.fetch_chunk(KEY, COORDS),
                 lambda: acc.store_file("info", b"{}", mime_type="application/json"),
                 lambda: acc.store_chunk(DATA, KEY, COORDS)):
        with pytest.raises(ng_accessor.DataAccessError) as error:
            call()
        if cls is FileAccessor:  # says why the file was not taken as the project's config
            assert "not a copick config" in str(error.value)
    assert file.read_bytes() == before and files_below(tmp_path) == {file.name}


@pytest.mark.parametrize("cls", ACCESSORS, ids=ACCESSOR_IDS)
def test_missing_info_and_chunk(tmp_path: Path, cls: type) -> None:
    for acc in (cls(str(tmp_path)), cls(str(tmp_path / "no" / "such" / "dir"))):
        assert acc.file_exists("info") is False
        with pytest.raises(ng_accessor.DataAccessError, match="Cannot find info"):
            acc.fetch_file("info")
        with pytest.raises(ng_accessor.DataAccessError, match="Cannot find chunk"):
            acc.fetch_chunk(KEY, COORDS)
    assert files_below(tmp_path) == set()  # nothing made on the way


def _outcomes(cls: type, base: Path) -> dict[str, str]:
    """What each call does in a child process without root's rights: "ok" or the error's name."""
    def run() -> dict[str, str]:
        acc = cls(str(base))
        out = {}
        for name, call in {"file_exists": lambda: acc.file_exists("info"),
                           "fetch_file": lambda: acc.fetch_file("info"),
                           "fetch_chunk": lambda: acc.fetch_chunk(KEY, COORDS),
                           "fetch_unreadable": lambda: acc.fetch_chunk(KEY, (8, 16, 0, 8, 0, 8)),
                           "store_chunk": lambda: acc.store_chunk(DATA, KEY, (16, 20, 0, 8, 0, 8)),
                           "overwrite_chunk": lambda: acc.store_chunk(DATA, KEY, COORDS),
                           "store_file": lambda: acc.store_file("extra", DATA)}.items():
            try:
                call()
                out[name] = "ok"
            except Exception as e:  # noqa: BLE001 - the outcome is what is compared
                refused = isinstance(e, ng_accessor.DataAccessError)
                out[name] = "DataAccessError" if refused else type(e).__name__
        return out

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root's rights, report, and leave without running pytest's teardown
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            os.write(write, json.dumps(run()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        report = f.read()
    os.waitpid(pid, 0)
    return json.loads(report)


@pytest.mark.parametrize("cls", ACCESSORS, ids=ACCESSOR_IDS)
def test_unwritable_base_and_unreadable_chunk(public_dir: Path, cls: type) -> None:
    base = public_dir / "pyr"
    NgFileAccessor(str(base)).store_file("info", b"{}", mime_type="application/json")
    for coords in (COORDS, (8, 16, 0, 8, 0, 8)):
        NgFileAccessor(str(base)).store_chunk(DATA, KEY, coords)
    os.chmod(base / stored_name((8, 16, 0, 8, 0, 8), flat=False, gz=True), 0o000)
    for directory, _, _ in os.walk(base):
        os.chmod(directory, 0o555)
    before = {n: (base / n).read_bytes() for n in files_below(base)}
    try:
        refused = "DataAccessError"
        assert _outcomes(cls, base) == {
            "file_exists": "ok", "fetch_file": "ok", "fetch_chunk": "ok", "fetch_unreadable": refused,
            "store_chunk": refused, "overwrite_chunk": refused, "store_file": refused}
    finally:
        for directory, _, _ in os.walk(base):
            os.chmod(directory, 0o755)
    assert {n: (base / n).read_bytes() for n in files_below(base)} == before  # nothing lost or added
