"""PCA colours of slices while the volume is still being extracted (Qt-free; the viewer's preview).

The basis comes from the first computed slice (the one the user looks at) by a plain SVD of its few hundred
tokens: ~10 ms, where scikit-learn's PCA costs ~0.2 s plus its import. Later slices reuse it, so colours
are stable while the volume fills in; the final PCA layer is :func:`dinomed_napari.analysis.pca.pca_maps`.
"""

from __future__ import annotations

import numpy as np

from dinomed_napari.analysis.pca import RGB_PERCENTILES, PCABasis, project_slice
from dinomed_napari.features.volume import FeatureVolume


def slice_basis(tokens: np.ndarray, n_components: int = 3) -> PCABasis:
    """PCA basis of ``tokens`` (N, C) with the same conventions as ``fit_pca`` (minority-positive signs,
    1-99 % colour range)."""
    x = np.asarray(tokens, np.float32)
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    n = int(min(n_components, vt.shape[0]))
    comps = vt[:n].astype(np.float32)
    proj = (x - mean) @ comps.T
    flip = (proj > 0).sum(axis=0) > (proj < 0).sum(axis=0)
    comps[flip] *= -1
    proj[:, flip] *= -1
    low, high = np.percentile(proj, RGB_PERCENTILES, axis=0).astype(np.float32)
    var = s**2
    return PCABasis(mean, comps, (var[:n] / max(float(var.sum()), 1e-12)).astype(np.float32), low, high,
                    "preview", "preview")


class SlicePreview:
    """Turns each extracted batch into uint8 RGB slices, the basis fitted on the first batch."""

    def __init__(self, volume_shape: tuple[int, int, int], axis: int, resolution: int):
        self.shape, self.axis, self.resolution = tuple(volume_shape), int(axis), int(resolution)
        self.basis: PCABasis | None = None

    def rgb(self, feats: np.ndarray) -> list[np.ndarray]:
        """(B, h, w, C) features of B slices -> B uint8 (h, w, 3) images on the patch grid (a viewer
        places them over the slice, e.g. with :func:`~dinomed_napari.features.grid.patch_transform`)."""
        feats = np.asarray(feats)
        one = list(self.shape)
        one[self.axis] = len(feats)
        fv = FeatureVolume(feats, self.axis, tuple(one), "preview", "preview", self.resolution)
        if self.basis is None:
            self.basis = slice_basis(feats[0].reshape(-1, feats.shape[-1]))
        out = []
        for i in range(len(feats)):
            rgb = self.basis.to_rgb(project_slice(fv, self.basis, i, upsample=False))
            out.append(np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8))
        return out
