"""Precomputed pyramids through a real mount: every chunk under its four names, listings in
each layout, writes that leave one variant, and bad inputs.

Pyramids are written into static by neuroglancer-scripts' own FileAccessor; each test
checks that static is unchanged byte for byte afterwards.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from mounting import mounted
from neuroglancer_scripts.file_accessor import FileAccessor as NgFileAccessor
from pyramids import KEY, Roots, chunk_coords, files_below, make_pyramid, names, stored_name

from copickfs.precomputed import FileAccessor

NO_CACHE = "attr_timeout=0,entry_timeout=0"  # writes under one name, reads under another at once
LAYOUTS = [(False, True), (False, False), (True, True), (True, False)]
LAYOUT_IDS = ["nested-gz", "nested-raw", "flat-gz", "flat-raw"]


@pytest.fixture
def proots(tmp_path: Path) -> Iterator[Roots]:
    roots = Roots(tmp_path)
    yield roots
    roots.check()


def fails_with(code: int, call, *args) -> None:
    with pytest.raises(OSError) as e:
        call(*args)
    assert e.value.errno == code, f"{call.__name__}{args}: {e.value!r}, expected {errno.errorcode[code]}"


def whiteout(name: str) -> str:
    parent, _, base = name.rpartition("/")
    return f"{parent}/.wh.{base}"


@pytest.mark.parametrize(("flat", "gz"), LAYOUTS, ids=LAYOUT_IDS)
def test_every_name_serves_the_chunk(proots: Roots, flat: bool, gz: bool) -> None:
    chunks = make_pyramid(proots.static / "pyr", flat, gz)
    proots.seal()
    with mounted(proots.config, proots.mountpoint):
        pyr = proots.mountpoint / "pyr"
        for coords, data in chunks.items():
            stored = (proots.static / "pyr" / stored_name(coords, flat, gz)).read_bytes()
            for kind, name in names(coords).items():
                path = pyr / name
                served = path.read_bytes()
                assert os.stat(path).st_size == len(served), name  # the size of what is served
                if kind.endswith(".gz"):
                    assert gzip.decompress(served) == data, name
                    if gz:  # gzip bytes as stored, not recompressed
                        assert served == stored, name
                else:
                    assert served == data, name
                with open(path, "rb") as f:  # reads at offsets (served from memory or a descriptor)
                    f.seek(3)
                    assert f.read(5) == served[3:8]
    assert files_below(proots.overlay) == set()  # reading wrote nothing


@pytest.mark.parametrize(("flat", "gz"), LAYOUTS, ids=LAYOUT_IDS)
def test_neuroglancer_scripts_reads_and_writes_the_other_layout(proots: Roots, flat: bool, gz: bool) -> None:
    chunks = make_pyramid(proots.static / "pyr", flat, gz)
    proots.seal()
    with mounted(proots.config, proots.mountpoint, NO_CACHE):
        pyr = str(proots.mountpoint / "pyr")
        theirs = NgFileAccessor(pyr, flat=not flat, gzip=not gz)
        assert all(theirs.fetch_chunk(KEY, c) == d for c, d in chunks.items())
        coords = chunk_coords()[1]
        theirs.store_chunk(b"new bytes", KEY, coords)  # in the other layout and compression
        mine = stored_name(coords, not flat, not gz)
        assert files_below(proots.overlay / "pyr") == {mine, whiteout(stored_name(coords, flat, gz))}
        for kind, name in names(coords).items():  # the new chunk under every name
            served = (proots.mountpoint / "pyr" / name).read_bytes()
            assert (gzip.decompress(served) if kind.endswith(".gz") else served) == b"new bytes", name
        assert NgFileAccessor(pyr, flat=flat, gzip=gz).fetch_chunk(KEY, coords) == b"new bytes"
        assert FileAccessor(proots.config / "pyr").fetch_chunk(KEY, coords) == b"new bytes"


def expected_listing(layout: str, flat: bool, gz: bool) -> dict[str, set[str]]:
    """directory below the pyramid -> names it lists, for the test pyramid."""
    suffix = ".gz" if gz else ""
    out: dict[str, set[str]] = {}
    if layout == "flat" or (layout == "stored" and flat):
        out[KEY] = {names(c)["flat"].split("/")[1] + suffix for c in chunk_coords()}
    else:
        for c in chunk_coords():
            _, x, y, z = names(c)["nested"].split("/")
            out.setdefault(KEY, set()).add(x)
            out.setdefault(f"{KEY}/{x}", set()).add(y)
            out.setdefault(f"{KEY}/{x}/{y}", set()).add(z + suffix)
    return out


@pytest.mark.parametrize("layout", ["stored", "flat", "nested"])
@pytest.mark.parametrize(("flat", "gz"), [(False, True), (True, False)], ids=["nested-gz", "flat-raw"])
def test_listings_show_one_name_per_chunk(proots: Roots, layout: str, flat: bool, gz: bool) -> None:
    chunks = make_pyramid(proots.static / "pyr", flat, gz)
    (proots.static / "pyr" / KEY / "notes.txt").write_text("not a chunk")
    proots.seal()
    with mounted(proots.config, proots.mountpoint, f"precomputed_layout={layout}"):
        pyr = proots.mountpoint / "pyr"
        listed: dict[str, set[str]] = {}
        sizes = {}
        for directory, dirs, files in os.walk(pyr):
            rel = os.path.relpath(directory, pyr)
            if rel.startswith(KEY):
                listed[rel] = set(dirs) | set(files)
            for f in files:
                sizes[os.path.join(rel, f)] = (os.lstat(os.path.join(directory, f)).st_size,
                                               len(Path(directory, f).read_bytes()))
        expected = expected_listing(layout, flat, gz)
        expected[KEY].add("notes.txt")
        assert listed == expected
        chunk_files = [n for n in sizes if n != f"{KEY}/notes.txt" and n.startswith(KEY)]
        assert len(chunk_files) == len(chunks)  # each chunk once
        assert all(listed_size == read for listed_size, read in sizes.values())
        with os.scandir(pyr / KEY) as entries:  # READDIRPLUS attributes agree with lookups
            for e in entries:
                assert e.stat(follow_symlinks=False).st_size == os.lstat(e.path).st_size


def test_writing_under_each_name_leaves_only_that_variant(proots: Roots) -> None:
    make_pyramid(proots.static / "pyr", flat=False, gz=True)
    proots.seal()
    coords = chunk_coords()[0]
    with mounted(proots.config, proots.mountpoint, NO_CACHE):
        pyr = proots.mountpoint / "pyr"
        for kind, name in names(coords).items():
            payload = f"written as {kind}".encode()
            stored = gzip.compress(payload) if kind.endswith(".gz") else payload
            with open(pyr / name, "wb") as f:  # an existing name: open(O_TRUNC), not create
                f.write(stored)
            chunk_files = {n for n in files_below(proots.overlay / "pyr") if "/.wh." not in n}
            assert chunk_files == {name}, kind
            if kind != "nested.gz":  # static's variant is whited out
                assert whiteout(names(coords)["nested.gz"]) in files_below(proots.overlay / "pyr")
            assert (proots.overlay / "pyr" / name).read_bytes() == stored
            for other_kind, other in names(coords).items():
                served = (pyr / other).read_bytes()
                assert (gzip.decompress(served) if other_kind.endswith(".gz") else served) == payload
        # removing any name removes the chunk
        os.unlink(pyr / names(coords)["flat"])
        assert all("/.wh." in n for n in files_below(proots.overlay / "pyr"))  # only whiteouts left
        for name in names(coords).values():
            fails_with(errno.ENOENT, os.stat, pyr / name)


def test_appending_to_an_alias_keeps_its_bytes(proots: Roots) -> None:
    chunks = make_pyramid(proots.static / "pyr", flat=False, gz=True)
    proots.seal()
    coords = chunk_coords()[2]
    with mounted(proots.config, proots.mountpoint, NO_CACHE):
        path = proots.mountpoint / "pyr" / names(coords)["flat"]
        with open(path, "ab") as f:
            f.write(b"+tail")
        assert path.read_bytes() == chunks[coords] + b"+tail"
        os.truncate(path, 4)
        assert (proots.mountpoint / "pyr" / names(coords)["nested"]).read_bytes() == chunks[coords][:4]
        assert {n for n in files_below(proots.overlay / "pyr") if "/.wh." not in n} == {names(coords)["flat"]}


def test_rename_between_names_converts(proots: Roots) -> None:
    chunks = make_pyramid(proots.static / "pyr", flat=True, gz=False)
    proots.seal()
    a, b = chunk_coords()[0], chunk_coords()[1]
    with mounted(proots.config, proots.mountpoint, NO_CACHE):
        pyr = proots.mountpoint / "pyr"
        os.rename(pyr / names(a)["flat"], pyr / names(a)["nested.gz"])  # same chunk, new name
        assert gzip.decompress((proots.overlay / "pyr" / names(a)["nested.gz"]).read_bytes()) == chunks[a]
        assert (pyr / names(a)["flat"]).read_bytes() == chunks[a]
        os.rename(pyr / names(a)["nested"], pyr / names(b)["flat"])  # onto another chunk
        assert (pyr / names(b)["nested.gz"]).read_bytes() == gzip.compress(chunks[a], 6, mtime=0)
        for name in names(a).values():
            fails_with(errno.ENOENT, os.stat, pyr / name)
        (pyr / KEY / "tmp").write_bytes(b"atomic")  # write-then-rename into place
        os.rename(pyr / KEY / "tmp", pyr / names(a)["nested"])
        assert (pyr / names(a)["flat.gz"]).read_bytes() == gzip.compress(b"atomic", 6, mtime=0)


def test_info_written_or_removed_through_the_mount_is_noticed(proots: Roots) -> None:
    proots.seal()
    with mounted(proots.config, proots.mountpoint):
        pyr = proots.mountpoint / "new"
        coords = chunk_coords()[0]
        flat = pyr / names(coords)["flat"]
        flat.parent.mkdir(parents=True)
        flat.write_bytes(b"data")
        nested = pyr / names(coords)["nested"]
        fails_with(errno.ENOENT, os.stat, nested)  # no info: not a pyramid
        (pyr / "info").write_text(json.dumps({"scales": [{"key": KEY}]}))
        assert nested.read_bytes() == b"data"
        assert gzip.decompress((pyr / names(coords)["nested.gz"]).read_bytes()) == b"data"
        os.unlink(pyr / "info")
        fails_with(errno.ENOENT, os.stat, pyr / names(coords)["flat.gz"])
        with open(pyr / "info", "w") as f:  # written in pieces: half a JSON object is not an info
            f.write('{"scales": [')
            f.flush()
            os.listdir(pyr)
            f.write(f'{{"key": "{KEY}"}}]}}')
        assert nested.read_bytes() == b"data"


@pytest.mark.parametrize("info", [b'{"scales": [', b"[]", b'{"scale": []}', b'{"scales": 5}', b"\xff\xfe"])
def test_a_bad_info_makes_no_pyramid(proots: Roots, info: bytes) -> None:
    make_pyramid(proots.static / "pyr", flat=True, gz=True)
    (proots.static / "pyr" / "info").write_bytes(info)
    proots.seal()
    coords = chunk_coords()[0]
    with mounted(proots.config, proots.mountpoint):
        pyr = proots.mountpoint / "pyr"
        assert (pyr / names(coords)["flat.gz"]).is_file()  # as stored
        for kind in ("flat", "nested", "nested.gz"):
            fails_with(errno.ENOENT, os.stat, pyr / names(coords)[kind])
        assert sorted(os.listdir(pyr / KEY)) == sorted(os.listdir(proots.static / "pyr" / KEY))


def test_chunk_names_with_the_wrong_number_of_ranges(proots: Roots) -> None:
    make_pyramid(proots.static / "pyr", flat=True, gz=False)
    proots.seal()
    with mounted(proots.config, proots.mountpoint):
        pyr = proots.mountpoint / "pyr" / KEY
        for bad in ("0-8_0-8", "0-8_0-8_0-8_0-8", "0-8_0-8_0-8.gz.gz", "0-8_0-8_x-8", "0-8-0-8"):
            fails_with(errno.ENOENT, os.stat, pyr / bad)
        fails_with(errno.ENOTDIR, os.stat, pyr / "0-8" / "0-8" / "0-8" / "0-8")
        fails_with(errno.ENOENT, os.stat, pyr / "0-8" / "0-8" / "0-8_0-8")
        fails_with(errno.ENOENT, os.stat, pyr / "0-8" / "99-100")
        fails_with(errno.ENOENT, os.stat, pyr / "99-100")
        assert (pyr / "0-8" / "0-8" / "0-8").read_bytes() == (proots.static / "pyr" / KEY / "0-8_0-8_0-8").read_bytes()


def test_corrupt_gzip_is_eio_on_read_and_the_mount_keeps_serving(proots: Roots) -> None:
    chunks = make_pyramid(proots.static / "pyr", flat=False, gz=True)
    bad, good = chunk_coords()[0], chunk_coords()[1]
    stored = proots.static / "pyr" / stored_name(bad, flat=False, gz=True)
    data = stored.read_bytes()
    stored.write_bytes(data[:10] + b"\x00" * 8 + data[18:])  # a broken deflate stream
    proots.seal()
    with mounted(proots.config, proots.mountpoint):
        pyr = proots.mountpoint / "pyr"
        for kind in ("flat", "nested"):
            with pytest.raises(OSError) as e:
                (pyr / names(bad)[kind]).read_bytes()
            assert e.value.errno == errno.EIO
        assert (pyr / names(bad)["flat.gz"]).read_bytes() == stored.read_bytes()  # stored bytes as they are
        assert (pyr / names(good)["flat"]).read_bytes() == chunks[good]


def test_paths_outside_pyramids_get_no_aliases(proots: Roots) -> None:
    plain = proots.static / "plain" / KEY
    plain.mkdir(parents=True)
    (plain / "0-8_0-8_0-8").write_bytes(b"raw")
    (plain / "0-8_0-8_8-16.gz").write_bytes(gzip.compress(b"gz"))
    proots.seal()
    with mounted(proots.config, proots.mountpoint):
        mnt = proots.mountpoint / "plain" / KEY
        assert sorted(os.listdir(mnt)) == ["0-8_0-8_0-8", "0-8_0-8_8-16.gz"]
        for missing in ("0-8/0-8/0-8", "0-8_0-8_0-8.gz", "0-8_0-8_8-16"):
            fails_with(errno.ENOENT, os.stat, mnt / missing)


def test_the_view_can_be_switched_off(proots: Roots) -> None:
    make_pyramid(proots.static / "pyr", flat=False, gz=True)
    proots.seal()
    coords = chunk_coords()[0]
    with mounted(proots.config, proots.mountpoint, "noprecomputed"):
        fails_with(errno.ENOENT, os.stat, proots.mountpoint / "pyr" / names(coords)["flat"])
        assert (proots.mountpoint / "pyr" / names(coords)["nested.gz"]).is_file()
