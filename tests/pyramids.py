"""Small precomputed pyramids for tests, written with neuroglancer-scripts' own accessor."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from neuroglancer_scripts.file_accessor import FileAccessor as NgFileAccessor

KEY = "8_8_8"
SIZE = (20, 16, 8)
CHUNK = (8, 8, 8)


def info(key: str = KEY) -> dict:
    return {
        "type": "image", "data_type": "uint8", "num_channels": 1,
        "scales": [{"key": key, "size": list(SIZE), "chunk_sizes": [list(CHUNK)], "encoding": "raw",
                    "resolution": [8, 8, 8], "voxel_offset": [0, 0, 0]}],
    }


def chunk_coords() -> list[tuple[int, ...]]:
    out = []
    for x0 in range(0, SIZE[0], CHUNK[0]):
        for y0 in range(0, SIZE[1], CHUNK[1]):
            for z0 in range(0, SIZE[2], CHUNK[2]):
                out.append((x0, min(x0 + CHUNK[0], SIZE[0]), y0, min(y0 + CHUNK[1], SIZE[1]),
                            z0, min(z0 + CHUNK[2], SIZE[2])))
    return out


def chunk_data(coords: tuple[int, ...]) -> bytes:
    """Distinct, compressible bytes for each chunk (sizes differ at the edges)."""
    x0, x1, y0, y1, z0, z1 = coords
    n = (x1 - x0) * (y1 - y0) * (z1 - z0)
    return (f"{coords}".encode() * n)[:n]


def make_pyramid(directory: Path, flat: bool, gz: bool) -> dict[tuple[int, ...], bytes]:
    """A pyramid stored by neuroglancer-scripts in one layout; returns its chunks."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "info").write_text(json.dumps(info()))
    accessor = NgFileAccessor(str(directory), flat=flat, gzip=gz)
    chunks = {}
    for coords in chunk_coords():
        chunks[coords] = chunk_data(coords)
        accessor.store_chunk(chunks[coords], KEY, coords)
    return chunks


def names(coords: tuple[int, ...], key: str = KEY) -> dict[str, str]:
    """The four names of a chunk: flat, flat.gz, nested, nested.gz."""
    x0, x1, y0, y1, z0, z1 = coords
    flat = f"{key}/{x0}-{x1}_{y0}-{y1}_{z0}-{z1}"
    nested = f"{key}/{x0}-{x1}/{y0}-{y1}/{z0}-{z1}"
    return {"flat": flat, "flat.gz": flat + ".gz", "nested": nested, "nested.gz": nested + ".gz"}


def stored_name(coords: tuple[int, ...], flat: bool, gz: bool) -> str:
    return names(coords)[("flat" if flat else "nested") + (".gz" if gz else "")]


def files_below(root: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


def gunzip(data: bytes) -> bytes:
    return gzip.decompress(data)


class Roots:
    """Static, overlay and mount point for pyramid tests; `seal` records static's digest.

    Build the static tree, then `seal()`; the `proots` fixture then checks after the test
    that static is unchanged byte for byte.
    """

    def __init__(self, tmp_path: Path) -> None:
        from mounting import write_config

        self.static, self.overlay, self.mountpoint = tmp_path / "static", tmp_path / "overlay", tmp_path / "mnt"
        for d in (self.static, self.overlay, self.mountpoint):
            d.mkdir()
        self.config = write_config(tmp_path / "config.json", self.overlay, self.static)
        self.digest: str | None = None

    def seal(self) -> None:
        from treehash import tree_digest

        self.digest = tree_digest(str(self.static))

    def check(self) -> None:
        from treehash import tree_digest

        assert self.digest is not None, "the test never sealed static"
        assert tree_digest(str(self.static)) == self.digest, "the static tree changed"
