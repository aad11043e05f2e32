"""Put per-slice maps computed on the patch grid back into a (Z, Y, X, K) volume on the pixel grid."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..features.grid import upsample_patches
from ..features.volume import FeatureVolume


def put_slice(out: np.ndarray, axis: int, index: int, plane: np.ndarray) -> None:
    """Write a (H, W, ...) plane into ``out`` (Z, Y, X, ...) at ``index`` along ``axis`` (undoes slice_of)."""
    sl = [slice(None)] * out.ndim
    sl[axis] = index
    out[tuple(sl)] = plane


def assemble(fv: FeatureVolume, per_slice: Callable[[int], np.ndarray], channels: int,
             dtype=np.float32) -> np.ndarray:
    """Upsample ``per_slice(s)`` (h, w, K) patch maps of every slice and assemble them in (Z, Y, X, K).

    One slice is upsampled at a time, so the peak memory is the output plus one slice.
    """
    out = np.empty(tuple(fv.volume_shape) + (channels,), dtype=dtype)
    for s in range(fv.n_slices):
        put_slice(out, fv.axis, s, upsample_patches(per_slice(s), fv.plane_shape))
    return out
