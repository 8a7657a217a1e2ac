"""What a directory inside a pyramid lists: one name per chunk, in the layout chosen.

- ``stored``: the scale directory as stored; a chunk stored under several names shows once.
- ``flat``: every chunk's flat name; ``nested``: the x directories of every chunk.

A nested directory lists its chunks under nested names whatever the layout (it was asked
for by a nested name). Names keep the compression the chunk is stored with, so a listing
never has to convert a chunk to learn its size.
"""

from __future__ import annotations

import stat as S

from ..union import UnionFileSystem
from .names import (
    VARIANTS,
    Range,
    Variant,
    chunk_path,
    flat_name,
    join,
    parse_flat,
    parse_range,
    range_name,
    split_gz,
)
from .pyramids import PyramidMap, is_dirish, is_fileish

#: name -> (type bits, union path whose attributes it shows; None for a nested directory
#: that only flat chunks make)
Entries = dict[str, tuple[int, str | None]]


class Lister:
    def __init__(self, union: UnionFileSystem, pyramids: PyramidMap, layout: str) -> None:
        self.union = union
        self.pyramids = pyramids
        self.layout = layout

    def entries(self, path: str, scale: str, ranges: tuple[Range, ...],
                stored: dict[str, int]) -> Entries:
        """name -> (type bits, union path whose attributes it shows; None for a made-up directory).

        ``stored`` is what the union lists in ``path``.
        """
        if not ranges:
            return self._scale_entries(path, stored)
        index = self.pyramids.flat_index(scale)
        out: Entries = {}
        if len(ranges) == 1:
            for name, kind in stored.items():
                out[name] = (kind, join(path, name))
            for y in index.tree.get(ranges[0], {}):
                out.setdefault(range_name(y), (S.S_IFDIR, None))
            return out
        x, y = ranges
        nested: dict[Range, set[bool]] = {}
        for name, kind in stored.items():
            base, gz = split_gz(name)
            r = parse_range(base)
            if r is not None and is_fileish(kind):
                nested.setdefault(r, set()).add(gz)
            else:
                out[name] = (kind, join(path, name))
        flat = index.tree.get(x, {}).get(y, {})
        for z in nested.keys() | flat.keys():
            variant = _winner(nested.get(z, set()), flat.get(z, set()))
            coords = (*x, *y, *z)
            name = range_name(z) + (".gz" if variant.gz else "")
            source = join(path, name) if variant.nested else join(scale, flat_name(coords, variant.gz))  # type: ignore[arg-type]
            out[name] = (S.S_IFREG, source)
        return out

    def _scale_entries(self, scale: str, stored: dict[str, int]) -> Entries:
        out: Entries = {}
        flat: dict[tuple, set[bool]] = {}
        range_dirs: dict[str, int] = {}
        for name, kind in stored.items():
            base, gz = split_gz(name)
            coords = parse_flat(base)
            if coords is not None and is_fileish(kind):
                flat.setdefault(coords, set()).add(gz)
            elif not gz and parse_range(name) is not None and is_dirish(kind):
                range_dirs[name] = kind
            else:
                out[name] = (kind, join(scale, name))
        if self.layout == "nested":
            for name, kind in range_dirs.items():
                out[name] = (kind, join(scale, name))
            for coords in flat:
                out.setdefault(f"{coords[0]}-{coords[1]}", (S.S_IFDIR, None))
            return out
        nested = self._nested_chunks(scale, range_dirs) if range_dirs and (flat or self.layout == "flat") else {}
        if self.layout == "stored":
            for name, kind in range_dirs.items():
                out[name] = (kind, join(scale, name))
        for coords in (flat.keys() | nested.keys()) if self.layout == "flat" else flat.keys():
            variant = _winner(nested.get(coords, set()), flat.get(coords, set()))
            if variant.nested and self.layout == "stored":
                continue  # listed under its nested name
            source = chunk_path(scale, coords, variant)  # type: ignore[arg-type]
            out[flat_name(coords, variant.gz)] = (S.S_IFREG, source)
        return out

    def _nested_chunks(self, scale: str, range_dirs: dict[str, int]) -> dict[tuple, set[bool]]:
        """The chunks stored nested below ``scale``: coords -> ``.gz`` flags present."""
        out: dict[tuple, set[bool]] = {}
        for xname in range_dirs:
            x = parse_range(xname)
            for yname, ykind in self._listdir(join(scale, xname)).items():
                y = parse_range(yname)
                if y is None or not is_dirish(ykind):
                    continue
                for zname, zkind in self._listdir(join(scale, xname, yname)).items():
                    base, gz = split_gz(zname)
                    z = parse_range(base)
                    if z is not None and is_fileish(zkind):
                        out.setdefault((*x, *y, *z), set()).add(gz)  # type: ignore[misc]
        return out

    def _listdir(self, path: str) -> dict[str, int]:
        try:
            return self.union.listdir_types(path)
        except (FileNotFoundError, NotADirectoryError):
            return {}


def _winner(nested: set[bool], flat: set[bool]) -> Variant:
    """The variant that serves a chunk, given the ``.gz`` flags stored nested and flat."""
    for variant in VARIANTS:
        if variant.gz in (nested if variant.nested else flat):
            return variant
    raise AssertionError("a chunk with no variant")
