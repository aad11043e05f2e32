"""Similarity map: cosine similarity of every patch to the mean feature at clicked points."""

from __future__ import annotations

import numpy as np

from ..features.grid import upsample_patches
from ..features.volume import FeatureVolume
from .assemble import assemble, read_slices
from .sampling import sample_features


def query_feature(fv: FeatureVolume, points_zyx) -> np.ndarray:
    """Unit-norm mean feature at one or more (z, y, x) voxel positions (bilinear on the patch grid)."""
    feats = sample_features(fv, points_zyx)
    if len(feats) == 0:
        raise ValueError("similarity_map needs at least one (z, y, x) point")
    q = feats.mean(axis=0)
    return q / max(float(np.linalg.norm(q)), 1e-8)


def _cosine(f: np.ndarray, q: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float32)
    return ((f @ q) / np.maximum(np.linalg.norm(f, axis=-1), 1e-8))[..., None]


def similarity_map(fv: FeatureVolume, points_zyx, slice_only: int | None = None,
                   dtype=np.float32) -> np.ndarray:
    """Cosine similarity of every patch to the mean feature at the clicked points, on the pixel grid.

    Parameters
    ----------
    fv : FeatureVolume
    points_zyx : array (N, 3)
        Clicked voxels in (Z, Y, X) order (napari points layer data).
    slice_only : int, optional
        Only this slice along ``fv.axis``: returns (H, W) instead of (Z, Y, X).
    dtype : numpy dtype
        Of the whole-volume map: float16 halves its memory (cosines need no more than ~1e-3).

    Returns
    -------
    np.ndarray, float32 in [-1, 1]
        Computed per patch, then bilinearly upsampled (cosine of patches, not of upsampled features).
    """
    q = query_feature(fv, points_zyx)
    if slice_only is not None:
        return upsample_patches(_cosine(fv.slice(slice_only), q), fv.plane_shape)[..., 0]
    return assemble(fv, lambda s0, s1: _cosine(read_slices(fv, s0, s1), q), 1, dtype=dtype)[..., 0]


def similarity_patch(fv: FeatureVolume, points_zyx) -> np.ndarray:
    """(S, h, w) float32 cosine similarity on the patch grid (1/256 of the pixel map's memory)."""
    q = query_feature(fv, points_zyx)
    return np.concatenate([_cosine(read_slices(fv, s0, min(s0 + 16, fv.n_slices)), q)[..., 0]
                           for s0 in range(0, fv.n_slices, 16)])
