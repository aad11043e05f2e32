"""Per-axis class scores on the pixel grid, and their tri-planar fusion.

Each pass (axial, coronal, sagittal FeatureVolume) is scored on its own planes, upsampled on those
planes and put back in (Z, Y, X) order; the fused score is the mean of the passes' logits. A voxel thus
gets evidence from three orthogonal 2D views, which makes the result consistent across slices.
"""

from __future__ import annotations

import numpy as np

from ..features.grid import slice_of, upsample_patches
from ..features.volume import FeatureVolume
from .assemble import CHUNK, project_half, put_slice, read_slices
from .sampling import filter_plane


class PixelTerm:
    """Pixel-level features of a normalised image along one axis, computed per plane and cached."""

    def __init__(self, image: np.ndarray, axis: int, mode: str):
        self.image, self.axis, self.mode = image, axis, mode
        self.cache: dict = {}

    def plane(self, index: int) -> np.ndarray:
        if index not in self.cache:
            self.cache[index] = filter_plane(slice_of(self.image, self.axis, int(index)), self.mode)
        return self.cache[index]


def axis_scores(fv: FeatureVolume, clf, n_dino: int, pixel: PixelTerm | None,
                index: int | None) -> np.ndarray:
    """Scores of one pass: logits for a linear model, log-probabilities for a forest.

    Linear: patch logits of the DINO part are upsampled bilinearly (exactly what classifying upsampled
    features gives), then the pixel-level part (intensity / filters) is added. Forest: features are
    upsampled to pixels and classified there (non-linear, so no shortcut; slower).
    Returns (H, W, K) for ``index`` along ``fv.axis``, else (Z, Y, X, K).
    """
    k = len(clf.classes_)

    def plane_scores(s: int) -> np.ndarray:
        if clf.linear:
            out = upsample_patches(fv.slice(s) @ clf.weights[:n_dino] + clf.bias, fv.plane_shape)
            if pixel is not None:
                out += pixel.plane(s) @ clf.weights[n_dino:]
            return out
        feats = upsample_patches(fv.slice(s), fv.plane_shape)
        if pixel is not None:
            feats = np.concatenate([feats, pixel.plane(s)], axis=-1)
        return np.log(np.maximum(clf.predict_proba(feats), 1e-6))

    if index is not None:
        return plane_scores(index)
    out = np.empty(tuple(fv.volume_shape) + (k,), np.float32)
    if not clf.linear:
        for s in range(fv.n_slices):
            put_slice(out, fv.axis, s, plane_scores(s))
        return out
    for s0 in range(0, fv.n_slices, CHUNK):  # a chunk of slices: one read, matmul and upsampling
        s1 = min(s0 + CHUNK, fv.n_slices)
        patch = project_half(read_slices(fv, s0, s1), clf.weights[:n_dino]) + clf.bias
        up = upsample_patches(patch, fv.plane_shape)
        if pixel is not None:
            up += np.stack([pixel.plane(s) for s in range(s0, s1)]) @ clf.weights[n_dino:]
        put_slice(out, fv.axis, slice(s0, s1), up)
    return out


def fuse(scores: list[np.ndarray]) -> np.ndarray:
    """Tri-planar fusion: the mean of the passes' scores (all in (Z, Y, X[, K]) or the same plane)."""
    return scores[0] if len(scores) == 1 else np.mean(scores, axis=0, dtype=np.float32)
