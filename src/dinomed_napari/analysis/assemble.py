"""Put maps computed on the patch grid back into a (Z, Y, X, K) volume on the pixel grid."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..features.grid import upsample_patches
from ..features.volume import FeatureVolume

#: Slices processed together: large enough for fast batched matmul / upsampling, small enough for memory.
CHUNK = 16


def put_slice(out: np.ndarray, axis: int, index, plane: np.ndarray) -> None:
    """Write plane(s) (H, W, ...) into ``out`` (Z, Y, X, ...) at ``index`` (int or slice) along ``axis``."""
    np.moveaxis(out, axis, 0)[index] = plane


def read_slices(fv: FeatureVolume, start: int, stop: int) -> np.ndarray:
    """Raw (float16) features of slices ``start:stop``, (n, h, w, C), in one read of the store."""
    return np.asarray(fv.data[start:stop])


def project_half(features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``features @ weights`` as float32, for whole-volume maps.

    float16 features (what the cache holds) are multiplied in half precision by torch, which converts
    inside the kernel: about 3x faster than converting the volume to float32 first, at a cost of about
    1e-3 relative error (logits / components, never labels of the interactive slice, which uses float32).
    """
    import torch

    if features.dtype != np.float16:
        return np.asarray(features, np.float32) @ weights
    w = torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32)).half()
    return (torch.from_numpy(features) @ w).float().numpy()


def assemble(fv: FeatureVolume, per_chunk: Callable[[int, int], np.ndarray], channels: int,
             dtype=np.float32, chunk: int = CHUNK,
             transform: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Upsample ``per_chunk(start, stop)`` (n, h, w, K) patch maps and assemble them in (Z, Y, X, K).

    Slices go ``chunk`` at a time, so the peak memory is the output plus one chunk. ``transform`` maps
    each upsampled chunk (e.g. to RGB, or uint8) before it is stored as ``dtype``.
    """
    out = np.empty(tuple(fv.volume_shape) + (channels,), dtype=dtype)
    for s0 in range(0, fv.n_slices, chunk):
        s1 = min(s0 + chunk, fv.n_slices)
        up = upsample_patches(per_chunk(s0, s1), fv.plane_shape)
        put_slice(out, fv.axis, slice(s0, s1), up if transform is None else transform(up))
    return out
