"""The precomputed view without FUSE: names, made-up directories, renames, attribute changes."""

from __future__ import annotations

import errno
import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyramids import KEY, Roots, chunk_coords, files_below, make_pyramid, names

from copickfs.precomputed import PrecomputedView
from copickfs.precomputed.names import parse_flat, parse_range, scale_keys
from copickfs.union import UnionFileSystem


@pytest.fixture
def proots(tmp_path: Path) -> Iterator[Roots]:
    roots = Roots(tmp_path)
    yield roots
    roots.check()


def view_over(roots: Roots, flat: bool, gz: bool, layout: str = "stored") -> tuple[PrecomputedView, dict]:
    chunks = make_pyramid(roots.static / "pyr", flat, gz)
    roots.seal()
    return PrecomputedView(UnionFileSystem(str(roots.overlay), str(roots.static)), layout), chunks


def fails_with(code: int, call, *args, **kwargs) -> None:
    with pytest.raises(OSError) as e:
        call(*args, **kwargs)
    assert e.value.errno == code, f"{e.value!r}, expected {errno.errorcode[code]}"


def test_name_parsers() -> None:
    assert parse_flat("0-64_64-128_-8-0") == (0, 64, 64, 128, -8, 0)
    for bad in ("0-64_64-128", "0-64_64-128_0-8_0-8", "0-64_64-128_0-8.gz", "a-b_c-d_e-f", ""):
        assert parse_flat(bad) is None
    assert parse_range("0-64") == (0, 64) and parse_range("0-64.gz") is None and parse_range("0_64") is None
    assert scale_keys(b'{"scales": [{"key": "a"}, {"key": "../up"}, {"key": "/abs"}, {"nokey": 1}, 3]}') == {"a"}
    for bad in (b"[]", b'{"scales": {}}', b"not json", b"\xff"):
        assert scale_keys(bad) is None


def test_a_flat_pyramid_has_made_up_nested_directories(proots: Roots) -> None:
    view, _ = view_over(proots, flat=True, gz=False)
    c = chunk_coords()[0]
    x, y, _ = names(c)["nested"].split("/")[1:]
    assert view.stat_entry(f"pyr/{KEY}/{x}")[0].is_dir
    assert view.stat_entry(f"pyr/{KEY}/{x}/{y}")[0].is_dir
    fails_with(errno.ENOENT, view.stat_entry, f"pyr/{KEY}/999-1000")
    fails_with(errno.EISDIR, view.unlink, f"pyr/{KEY}/{x}")
    fails_with(errno.ENOTEMPTY, view.rmdir, f"pyr/{KEY}/{x}")
    fails_with(errno.EXDEV, view.posix_rename, f"pyr/{KEY}/{x}", f"pyr/{KEY}/elsewhere")
    fails_with(errno.EEXIST, view.mkdir, f"pyr/{KEY}/{x}", create_parents=False)
    # a plain file created in a made-up directory makes it real in the overlay
    view.create(f"pyr/{KEY}/{x}/{y}/notes", 0o644)
    assert (proots.overlay / "pyr" / KEY / x / y / "notes").is_file()
    assert "notes" in view.listdir_types(f"pyr/{KEY}/{x}/{y}")
    view.mkdir(f"pyr/{KEY}/{x}/999-1000", create_parents=False)
    assert view.stat_entry(f"pyr/{KEY}/{x}/999-1000")[0].is_dir


def test_attribute_changes_of_an_alias_change_the_stored_chunk(proots: Roots) -> None:
    view, _ = view_over(proots, flat=False, gz=True)
    c = chunk_coords()[0]
    view.chmod(f"pyr/{names(c)['flat']}", 0o600)
    view.utime(f"pyr/{names(c)['flat.gz']}", 1_000_000_000, 2_000_000_000)
    stored = proots.overlay / "pyr" / names(c)["nested.gz"]  # copied up, nothing else
    assert stored.stat().st_mode & 0o777 == 0o600 and stored.stat().st_mtime_ns == 2_000_000_000
    assert {n for n in files_below(proots.overlay / "pyr")} == {names(c)["nested.gz"]}
    assert view.stat_entry(f"pyr/{names(c)['flat']}")[0].mtime_ns == 2_000_000_000


def test_renames_refuse_to_replace_with_noreplace(proots: Roots) -> None:
    view, chunks = view_over(proots, flat=False, gz=True)
    a, b = chunk_coords()[0], chunk_coords()[1]
    fails_with(errno.EEXIST, view.posix_rename, f"pyr/{names(a)['flat']}", f"pyr/{names(b)['flat']}",
               replace=False)
    fails_with(errno.ENOENT, view.posix_rename, f"pyr/{KEY}/1-2_1-2_1-2", f"pyr/{names(b)['flat']}")
    view.posix_rename(f"pyr/{names(a)['flat.gz']}", "pyr/moved.gz")  # out of the pyramid, bytes as named
    assert gzip.decompress((proots.overlay / "pyr" / "moved.gz").read_bytes()) == chunks[a]
    for name in names(a).values():
        fails_with(errno.ENOENT, view.stat_entry, f"pyr/{name}")


def test_creating_a_chunk_name_drops_the_other_variants(proots: Roots) -> None:
    view, _ = view_over(proots, flat=True, gz=True)
    c = chunk_coords()[0]
    fd = view.create(f"pyr/{names(c)['nested']}", 0o644, os.O_WRONLY)
    assert fd is not None
    os.write(fd, b"fresh")
    os.close(fd)
    assert view.open(f"pyr/{names(c)['flat.gz']}").read() == gzip.compress(b"fresh", 6, mtime=0)
    assert view.listdir_types(f"pyr/{KEY}").keys() >= {names(c)["nested"].split("/")[1]}
    assert names(c)["flat.gz"].split("/")[1] not in view.listdir_types(f"pyr/{KEY}")


def test_symlink_and_truncate_of_chunk_names(proots: Roots) -> None:
    view, chunks = view_over(proots, flat=False, gz=True)
    a, b = chunk_coords()[0], chunk_coords()[1]
    fails_with(errno.EEXIST, view.symlink, "elsewhere", f"pyr/{names(a)['flat']}")
    view.truncate(f"pyr/{names(b)['flat']}", 3)
    assert view.open(f"pyr/{names(b)['nested']}").read() == chunks[b][:3]
    view.truncate(f"pyr/{names(b)['flat']}", 6)
    assert view.open(f"pyr/{names(b)['nested']}").read() == chunks[b][:3] + b"\0\0\0"


def test_paths_are_normalised(proots: Roots) -> None:
    view, chunks = view_over(proots, flat=False, gz=True)
    c = chunk_coords()[0]
    assert view.open(f"/pyr//./{names(c)['flat']}/").read() == chunks[c]
    with pytest.raises(ValueError):
        view.stat_entry(f"pyr/../{names(c)['flat']}")


def test_a_converted_chunk_is_made_again_only_when_read(proots: Roots) -> None:
    """Sizes of converted chunks outlive their bytes in the converter's cache: a stat or an
    open needs no conversion, a read does (the kernel's page cache answers most reads)."""
    view, chunks = view_over(proots, flat=False, gz=True)
    view.converter.cache_bytes = 1  # keeps no bytes at all
    made = []
    real = view.converter._make
    view.converter._make = lambda path, to_gz: made.append(path) or real(path, to_gz)
    coords = chunk_coords()[0]
    flat_raw = f"pyr/{names(coords)['flat']}"
    assert view.stat_entry(flat_raw)[0].size == len(chunks[coords])
    assert len(made) == 1
    for _ in range(3):
        assert view.stat_entry(flat_raw)[0].size == len(chunks[coords])
        assert view.open_file(flat_raw, os.O_RDONLY) is None  # served from memory, checked
        f = view.open(flat_raw, "rb")
        f.close()
    assert len(made) == 1, "no conversion without a read"
    with view.open(flat_raw, "rb") as f:
        f.seek(3)
        assert f.read(10) == chunks[coords][3:13]
    assert len(made) == 2
