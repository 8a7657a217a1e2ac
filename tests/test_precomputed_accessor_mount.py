"""The precomputed FileAccessor with its base inside a real copickfs mount.

With precomputed names on, every variant name of a chunk is another name of the one chunk
stored, and removing any of them removes the chunk; the kernel may also cache names and
attributes for a while. A store must keep the chunk it wrote under every mount option, as
neuroglancer-scripts' own FileAccessor does, and still leave one variant of the chunk.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from mounting import mounted
from neuroglancer_scripts.file_accessor import FileAccessor as NgFileAccessor
from pyramids import KEY, Roots, chunk_coords, files_below, info, make_pyramid, names, stored_name

from copickfs.precomputed import FileAccessor

LAYOUTS = [(False, True), (True, False), (True, True), (False, False)]  # each store changes the name
NO_CACHE = "attr_timeout=0,entry_timeout=0"
OPTIONS = {
    "defaults": (),
    "no-kernel-cache": (NO_CACHE,),
    "negative-cache": ("negative_timeout=30",),
    "listed-flat": ("precomputed_layout=flat",),
    "listed-nested": ("precomputed_layout=nested",),
    "names-off": ("noprecomputed",),
    "names-off-no-kernel-cache": ("noprecomputed", NO_CACHE),
    "no-writeback": ("nowriteback_cache",),
    "no-writeback-listed-flat": ("nowriteback_cache", "precomputed_layout=flat"),
}


@pytest.fixture
def proots(tmp_path: Path) -> Iterator[Roots]:
    roots = Roots(tmp_path)
    yield roots
    roots.check()


def chunk_files(overlay_pyramid: Path, coords: tuple[int, ...]) -> set[str]:
    """The chunk's variants stored in the overlay (whiteouts left out)."""
    return set(names(coords).values()) & files_below(overlay_pyramid)


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_a_stored_chunk_is_kept_under_every_mount_option(proots: Roots, options: tuple[str, ...]) -> None:
    static_chunks = make_pyramid(proots.static / "pyr", flat=False, gz=True)
    proots.seal()
    aliases = "noprecomputed" not in options
    # neuroglancer-scripts' stores are compared where the aliases are on (without them it
    # leaves the other variants, and its reader may prefer a stale one). Its store under
    # one name, in place, must not leave the sizes or pages the kernel cached for the other
    # names stale: the mount has the kernel forget them.
    writers = [FileAccessor, NgFileAccessor] if aliases else [FileAccessor]
    coords = chunk_coords()[0]
    with mounted(proots.config, proots.mountpoint, *options):
        fresh = proots.mountpoint / "fresh"
        fresh.mkdir()
        (fresh / "info").write_text(json.dumps(info()))
        step = 0
        for writer in writers:
            for flat, gz in LAYOUTS:
                for name in ("pyr", "fresh"):  # over static's chunk; a chunk first stored here
                    step += 1
                    payload = f"step {step} by {writer.__module__} flat={flat} gz={gz}".encode()
                    base = proots.mountpoint / name
                    writer(str(base), flat=flat, gzip=gz).store_chunk(payload, KEY, coords)
                    where = f"{name} after step {step}"
                    own_name = stored_name(coords, flat, gz)
                    own = base / own_name
                    assert (gzip.decompress(own.read_bytes()) if gz else own.read_bytes()) == payload, where
                    for reader_flat, reader_gz in LAYOUTS:
                        reader = FileAccessor(base, flat=reader_flat, gzip=reader_gz)
                        assert reader.fetch_chunk(KEY, coords) == payload, where
                    assert NgFileAccessor(str(base)).fetch_chunk(KEY, coords) == payload, where
                    if aliases:
                        assert chunk_files(proots.overlay / name, coords) == {own_name}, where
                    else:
                        present = {n for n in names(coords).values() if (base / n).is_file()}
                        assert present == {own_name}, where
        for other in chunk_coords()[1:]:  # the chunks around it are untouched
            assert FileAccessor(proots.mountpoint / "pyr").fetch_chunk(KEY, other) == static_chunks[other]
