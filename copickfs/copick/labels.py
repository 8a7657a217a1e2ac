"""Label volumes: the dtype a segmentation is stored in and the values each type may hold.

copick never narrows a label: the default dtype is the smallest unsigned integer that holds
every value (uint8 up, uint16 up for instance and panoptic segmentations), and a value that a
cast would change raises instead of wrapping. Messages are copick's, since callers match them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

PANOPTIC_CHANNELS = ("label", "instance")
_UNSIGNED = (np.uint8, np.uint16, np.uint32, np.uint64)


def _value_range(data: np.ndarray) -> tuple[int, int]:
    if data.size == 0:
        return 0, 0
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)):
            raise ValueError("Segmentation values must be finite; found NaN or infinity.")
        if np.any(data != np.floor(data)):
            raise ValueError("Segmentation values must be integers; found non-integral floating-point values.")
    elif data.dtype.kind not in "iub":
        raise ValueError(f"Segmentation data must be integer, boolean or integral floating point, not {data.dtype}.")
    return int(data.min()), int(data.max())


def label_dtype(data: np.ndarray, floor: Any = np.uint8) -> np.dtype:
    """The smallest unsigned integer dtype, no narrower than ``floor``, that holds every value."""
    lo, hi = _value_range(np.asarray(data))
    if lo < 0:
        raise ValueError(f"Segmentation values must be non-negative, found {lo}. Pass an explicit signed dtype to "
                         "store negative labels.")
    for dtype in _UNSIGNED:
        if np.dtype(dtype).itemsize >= np.dtype(floor).itemsize and hi <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"Segmentation value {hi} does not fit any unsigned integer dtype.")


def checked_cast(data: np.ndarray, dtype: Any) -> np.ndarray:
    """``data`` as ``dtype``, refusing any value the cast would change."""
    data = np.asarray(data)
    if dtype is None or data.dtype == np.dtype(dtype):
        return data
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return data.astype(dtype, copy=False)
    lo, hi = _value_range(data)
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    if info is None or lo < info.min or hi > info.max:
        bounds = f" ([{info.min}, {info.max}])" if info is not None else ""
        raise ValueError(f"Segmentation values in [{lo}, {hi}] do not fit {dtype}{bounds}. Pass a wider dtype, or "
                         "dtype=None to choose one.")
    return data.astype(dtype, copy=False)


def channel_index(channel: str | int) -> int:
    """A panoptic channel by name (``label``, ``instance``) or index."""
    if isinstance(channel, str) and channel in PANOPTIC_CHANNELS:
        return PANOPTIC_CHANNELS.index(channel)
    if not isinstance(channel, (bool, str)) and channel in (0, 1):
        return int(channel)
    raise ValueError(f"Unknown panoptic channel {channel!r}; use one of {PANOPTIC_CHANNELS} or 0/1.")


def check_panoptic(labels: np.ndarray, instances: np.ndarray, known_labels: Iterable[int | None]) -> None:
    """Labels are 0 or an object's label; instances belong to an object (no instance ID on background)."""
    unknown = sorted(set(np.unique(labels).tolist()) - {0} - set(known_labels))
    if unknown:
        raise ValueError(f"Panoptic label channel holds {unknown}, which no pickable object has as its label.")
    stray = int(np.count_nonzero((labels == 0) & (instances != 0)))
    if stray:
        raise ValueError(f"{stray} background voxels (label 0) carry an instance ID; instances belong to an object.")
