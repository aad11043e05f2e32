"""Affinity maps: cosine similarity of each patch token to its neighbours along x, y and z."""

from __future__ import annotations

import numpy as np

from ..features.grid import upsample_patches
from ..features.volume import PLANE_AXES, FeatureVolume
from .assemble import assemble


def _unit(f: np.ndarray) -> np.ndarray:
    return f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-8)


def _neighbour_mean(cos: np.ndarray, axis: int) -> np.ndarray:
    """Per-token mean of the cosines to its previous and next neighbour along ``axis`` (one at the ends).

    ``cos`` holds the n-1 pairwise cosines along ``axis``; averaging both sides keeps the map centred on
    the token instead of shifted by half a patch.
    """
    n = cos.shape[axis] + 1
    if n == 1:
        return np.ones(cos.shape[:axis] + (1,) + cos.shape[axis + 1:], np.float32)
    prev = np.take(cos, np.r_[0, np.arange(n - 1)], axis=axis)   # cos to the left (edge: to the right)
    nxt = np.take(cos, np.r_[np.arange(n - 1), n - 2], axis=axis)  # cos to the right (edge: to the left)
    return 0.5 * (prev + nxt)


def _slice_affinity(fv: FeatureVolume, s: int, cache: dict) -> np.ndarray:
    """(h, w, 3) affinities of slice ``s`` along (patch row, patch column, slice) on the patch grid."""
    def unit(i):
        if i not in cache:
            cache[i] = _unit(fv.slice(i))
            cache.pop(i - 3, None)  # keep a sliding window of three slices in memory
        return cache[i]

    u = unit(s)
    rows = _neighbour_mean(np.sum(u[1:] * u[:-1], axis=-1), 0)
    cols = _neighbour_mean(np.sum(u[:, 1:] * u[:, :-1], axis=-1), 1)
    across = [np.sum(u * unit(t), axis=-1) for t in (s - 1, s + 1) if 0 <= t < fv.n_slices]
    depth = np.mean(across, axis=0) if across else np.ones_like(rows)
    return np.stack([rows, cols, depth], axis=-1).astype(np.float32)


def _xyz_order(axis: int) -> list[int]:
    """Indices into (row, column, slice) channels that give (x, y, z) = volume axes (2, 1, 0)."""
    a, b = PLANE_AXES[axis]
    where = {a: 0, b: 1, axis: 2}
    return [where[2], where[1], where[0]]


def affinity_patch(fv: FeatureVolume) -> np.ndarray:
    """(S, h, w, 3) float32 affinities on the patch grid, channels (x, y, z) as in :func:`affinity_maps`.

    A few bytes per patch (1/256 of the pixel grid at 16-pixel patches); place it in a viewer with
    :func:`dinomed_napari.features.grid.patch_transform` or upsample slices on demand.
    """
    order, cache = _xyz_order(fv.axis), {}
    return np.stack([_slice_affinity(fv, s, cache)[..., order] for s in range(fv.n_slices)])


def affinity_rgb8(fv: FeatureVolume) -> np.ndarray:
    """(Z, Y, X, 3) uint8 affinity colours (cosines clipped to [0, 1], x 255), assembled chunk by chunk:
    3 bytes per voxel and no float volume."""
    from .pca import to_uint8

    patch = affinity_patch(fv)
    return assemble(fv, lambda s0, s1: patch[s0:s1], 3, dtype=np.uint8, chunk=4,
                    transform=lambda a: to_uint8(np.clip(a, 0.0, 1.0)))


def affinity_maps(fv: FeatureVolume, index: int | None = None) -> np.ndarray:
    """Cosine affinity of every token to its neighbours along x, y and z, on the pixel grid.

    Parameters
    ----------
    fv : FeatureVolume
    index : int, optional
        Only this slice (along ``fv.axis``); returns (H, W, 3).

    Returns
    -------
    np.ndarray, float32, shape (Z, Y, X, 3) (or (H, W, 3))
        Channels are (x, y, z) in volume terms: high where the neighbour looks alike, low across a
        boundary (membranes on EM, organ borders on CT). Each token averages the cosines to its two
        neighbours along an axis; the z channel compares consecutive slices of ``fv``.
    """
    order = _xyz_order(fv.axis)
    cache: dict = {}
    if index is not None:
        return upsample_patches(_slice_affinity(fv, index, cache)[..., order], fv.plane_shape)
    return assemble(fv, lambda s0, s1: np.stack([_slice_affinity(fv, s, cache)[..., order]
                                                 for s in range(s0, s1)]), 3)
