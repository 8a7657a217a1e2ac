"""Decoding one stored zarr chunk into a numpy array, with numcodecs and no zarr machinery.

Why not zarr itself: a virtual MRC file reads chunk by chunk from FUSE threads, and the
cache must be keyed by each chunk file's identity; calling numcodecs directly costs no
event loop per chunk and decodes into one array we keep.

Format 2: the compressor and filters of ``.zarray``, any ``order``. Format 3: the codecs
``transpose``, ``bytes``, ``blosc``, ``zstd``, ``gzip`` and ``crc32c``; an array with any
other codec (sharding among them) has no virtual file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

#: Bytes of a stored chunk -> the chunk as an array of the full chunk shape.
Decoder = Callable[[bytes], np.ndarray]
Decoded = tuple[Decoder, np.dtype, Any, Callable[[tuple[int, ...]], str]]

_V3_BYTES_CODECS = {"blosc", "zstd", "gzip", "crc32c"}


def v2_decoder(meta: dict[str, Any], chunks: tuple[int, ...]) -> Decoded | None:
    import numcodecs

    dtype = np.dtype(meta["dtype"])
    if dtype.hasobject or dtype.fields is not None:
        return None
    compressor = numcodecs.get_codec(meta["compressor"]) if meta.get("compressor") else None
    filters = [numcodecs.get_codec(f) for f in meta.get("filters") or []]
    order = meta.get("order", "C")
    separator = meta.get("dimension_separator") or "."
    count = int(np.prod(chunks))

    def decode(raw: bytes) -> np.ndarray:
        data: Any = compressor.decode(raw) if compressor is not None else raw
        for f in reversed(filters):
            data = f.decode(data)
        return _array(data, dtype, count).reshape(chunks, order=order)

    def key(index: tuple[int, ...]) -> str:
        return separator.join(map(str, index))

    return decode, dtype, _fill(meta.get("fill_value"), dtype), key


def v3_decoder(meta: dict[str, Any], chunks: tuple[int, ...]) -> Decoded | None:
    import numcodecs

    name = meta["data_type"]
    if not isinstance(name, str):
        return None
    dtype = np.dtype(name)
    transpose: tuple[int, ...] | None = None
    bytes_codecs: list[Any] = []
    crc = False
    seen_bytes = False
    codecs = meta.get("codecs") or []
    if any(c.get("name") == "crc32c" for c in codecs[:-1]):
        return None  # a checksum is only read as the last codec
    for codec in codecs:
        codec_name, config = codec.get("name"), codec.get("configuration") or {}
        if codec_name == "transpose" and not seen_bytes:
            transpose = tuple(config["order"])
        elif codec_name == "bytes" and not seen_bytes:
            seen_bytes = True
            if config.get("endian") == "big":
                dtype = dtype.newbyteorder(">")
            elif dtype.itemsize > 1:
                dtype = dtype.newbyteorder("<")
        elif codec_name in _V3_BYTES_CODECS and seen_bytes:
            if codec_name == "crc32c":
                crc = True
            else:
                bytes_codecs.append({"blosc": numcodecs.Blosc, "zstd": numcodecs.Zstd, "gzip": numcodecs.GZip}
                                    [codec_name]())
        else:
            return None  # sharding, or a codec we do not decode
    if not seen_bytes:
        return None
    stored_shape = chunks if transpose is None else tuple(chunks[i] for i in transpose)
    inverse = None if transpose is None else tuple(int(i) for i in np.argsort(transpose))
    count = int(np.prod(chunks))

    def decode(raw: bytes) -> np.ndarray:
        data: Any = memoryview(raw)[:-4] if crc else raw  # the checksum follows the other bytes
        for codec in reversed(bytes_codecs):
            data = codec.decode(data)
        arr = _array(data, dtype, count).reshape(stored_shape)
        return arr if inverse is None else arr.transpose(inverse)

    encoding = meta.get("chunk_key_encoding") or {"name": "default"}
    separator = (encoding.get("configuration") or {}).get("separator")
    if encoding.get("name") == "v2":
        separator = separator or "."

        def key(index: tuple[int, ...]) -> str:
            return separator.join(map(str, index))
    elif encoding.get("name") == "default":
        separator = separator or "/"

        def key(index: tuple[int, ...]) -> str:
            return separator.join(("c", *map(str, index)))
    else:
        return None
    return decode, dtype, _fill(meta.get("fill_value"), dtype), key


def _array(data: Any, dtype: np.dtype, count: int) -> np.ndarray:
    """The first ``count`` items of ``dtype`` in a decoded buffer (bytes or an array), without a copy."""
    from numcodecs.compat import ensure_contiguous_ndarray

    return np.frombuffer(ensure_contiguous_ndarray(data).reshape(-1).view(np.uint8), dtype=dtype, count=count)


def _fill(value: Any, dtype: np.dtype) -> Any:
    """A zarr fill value as a numpy scalar (``None`` -> 0; "NaN", "Infinity", ... for floats)."""
    if value is None:
        return dtype.type(0)
    if isinstance(value, str) and dtype.kind == "f":
        return dtype.type({"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}.get(value, value))
    return np.array(value).astype(dtype).reshape(()).item() if dtype.kind != "b" else bool(value)


__all__ = ["Decoded", "Decoder", "v2_decoder", "v3_decoder"]
