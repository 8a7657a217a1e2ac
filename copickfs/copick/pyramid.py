"""The next level of a multiscale pyramid, computed as copick 1.31 computes it, value for value.

copick makes image levels with scikit-image's ``downscale_local_mean`` (2x2x2 block mean,
odd sizes padded with zeros, summed in the image's own dtype) and label levels with
``rescale(order=0)`` (nearest voxel on a grid of ``round(n / 2)`` voxels, rounding half to
even). A volume written through copickfs gets the very levels copick would have written,
without depending on scikit-image. Leading (channel) axes are never downsampled.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def image_level(volume: np.ndarray) -> np.ndarray:
    """The block mean of each 2x2x2 block of the three trailing axes, in the volume's dtype (floats: as
    ``downscale_local_mean(...).astype(dtype)``; integers: the float mean truncated, as numpy casts it)."""
    factors = (1,) * (volume.ndim - 3) + (2, 2, 2)
    pad = [(0, (f - n % f) % f) for n, f in zip(volume.shape, factors)]
    image = np.pad(volume, pad, mode="constant", constant_values=0) if any(p for _, p in pad) \
        else np.ascontiguousarray(volume)
    # skimage's view_as_blocks: the block index axes first, then the axes within a block, with these strides
    shape = tuple(n // f for n, f in zip(image.shape, factors)) + factors
    strides = tuple(s * f for s, f in zip(image.strides, factors)) + image.strides
    blocks = as_strided(image, shape=shape, strides=strides)
    return np.mean(blocks, axis=tuple(range(image.ndim, blocks.ndim))).astype(volume.dtype)


def label_level(volume: np.ndarray) -> np.ndarray:
    """Every channel resampled to half size by nearest voxel, so no new label value appears."""
    picks = [nearest_indices(n) for n in volume.shape[-3:]]
    return volume[..., picks[0][:, None, None], picks[1][None, :, None], picks[2][None, None, :]]


def nearest_indices(size: int) -> np.ndarray:
    """The source voxels of scipy's ``zoom(order=0, grid_mode=True)`` to ``max(round(size / 2), 1)`` voxels."""
    out = max(int(np.round(size * 0.5)), 1)
    zoom = size / out
    centres = (np.arange(out, dtype=float) + 0.5) * zoom - 0.5
    return np.minimum(np.floor(centres + 0.5).astype(np.intp), size - 1)
