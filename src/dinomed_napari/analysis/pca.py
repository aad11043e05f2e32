"""One PCA basis per volume: fitted on a seeded token subsample, projected on every slice.

Sign convention: every component is oriented so that its positive side holds the *minority* of the
fitted tokens. For PC1 of a medical or EM volume the majority is usually background (air, table, body
fat, cytoplasm) and the minority the structures of interest, so "threshold PC1 to remove the background"
keeps the positive side on every volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..features.grid import upsample_patches
from ..features.volume import FeatureVolume
from .assemble import assemble, project_half, read_slices

#: Percentiles that map a component to the [0, 1] colour range (robust to outlier tokens).
RGB_PERCENTILES = (1.0, 99.0)


@dataclass
class PCABasis:
    """A PCA basis of patch features, with the colour scaling shared by the whole volume.

    Attributes
    ----------
    mean : (C,) float32
    components : (n, C) float32
        Unit rows, oriented by the minority-positive sign convention.
    explained_variance_ratio : (n,) float32
    low, high : (n,) float32
        Per-component values mapped to 0 and 1 in the RGB maps (percentiles of the fitted tokens).
    model, weights : str
        Which features the basis belongs to.
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray
    low: np.ndarray
    high: np.ndarray
    model: str = ""
    weights: str = ""

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Project features (..., C) to components (..., n), float32."""
        f = np.asarray(features, dtype=np.float32)
        return (f - self.mean) @ self.components.T

    def to_rgb(self, components: np.ndarray) -> np.ndarray:
        """First three components (..., n>=3) to RGB in [0, 1] with the volume-wide scaling."""
        k = min(3, self.n_components)
        scale = np.maximum(self.high[:k] - self.low[:k], 1e-6)
        rgb = np.clip((components[..., :k] - self.low[:k]) / scale, 0.0, 1.0).astype(np.float32)
        if k < 3:  # fewer than three components: pad with zeros so the result is still RGB
            rgb = np.concatenate([rgb, np.zeros(rgb.shape[:-1] + (3 - k,), np.float32)], axis=-1)
        return rgb


@dataclass
class PCAMaps:
    """PCA maps of a volume on its pixel grid: ``components`` (Z,Y,X,n) and ``rgb`` (Z,Y,X,3) in [0, 1]."""

    components: np.ndarray
    rgb: np.ndarray
    basis: PCABasis


def sample_tokens(fv: FeatureVolume, max_tokens: int = 10000, seed: int = 0) -> np.ndarray:
    """A seeded random subsample of patch tokens from all slices, read one slice at a time.

    Each slice contributes the same share, so memory stays at one slice plus ``max_tokens`` rows.
    """
    rng = np.random.default_rng(seed)
    h, w = fv.grid
    per_slice = max(1, int(np.ceil(max_tokens / fv.n_slices)))
    rows = []
    for s in range(fv.n_slices):
        idx = rng.choice(h * w, size=min(per_slice, h * w), replace=False)
        rows.append(np.asarray(fv.data[s]).reshape(h * w, -1)[idx].astype(np.float32))
    return np.concatenate(rows)


def fit_pca(fv: FeatureVolume, n_components: int = 3, max_tokens: int = 10000, seed: int = 0) -> PCABasis:
    """Fit one PCA basis for the whole volume on a seeded subsample of its patch tokens.

    Parameters
    ----------
    fv : FeatureVolume
    n_components : int
    max_tokens : int
        Upper bound on the tokens used for the fit (bounded memory and time).
    seed : int
        Seeds the token subsample (the eigendecomposition itself is deterministic).

    Returns
    -------
    PCABasis
    """
    from sklearn.decomposition import PCA

    tokens = sample_tokens(fv, max_tokens, seed)
    n = int(min(n_components, tokens.shape[1], tokens.shape[0]))
    # Exact eigendecomposition of the C x C covariance: deterministic and, for C <= 1536 and ~10k tokens,
    # faster than randomized SVD at the same accuracy.
    pca = PCA(n_components=n, svd_solver="covariance_eigh").fit(tokens)
    comps = pca.components_.astype(np.float32)
    proj = (tokens - pca.mean_.astype(np.float32)) @ comps.T
    # Minority-positive sign convention (see module docstring).
    flip = (proj > 0).sum(axis=0) > (proj < 0).sum(axis=0)
    comps[flip] *= -1
    proj[:, flip] *= -1
    low, high = np.percentile(proj, RGB_PERCENTILES, axis=0).astype(np.float32)
    return PCABasis(pca.mean_.astype(np.float32), comps, pca.explained_variance_ratio_.astype(np.float32),
                    low, high, model=fv.model, weights=fv.weights)


def project_slice(fv: FeatureVolume, basis: PCABasis, index: int, upsample: bool = True) -> np.ndarray:
    """Components of one slice: (H, W, n) on the pixel grid, or (h, w, n) on the patch grid."""
    comp = basis.transform(fv.slice(index))
    # Projection is linear, so projecting patches then upsampling equals projecting upsampled features.
    return upsample_patches(comp, fv.plane_shape) if upsample else comp


def pca_maps(fv: FeatureVolume, basis: PCABasis | None = None, n_components: int = 3,
             max_tokens: int = 10000, seed: int = 0) -> PCAMaps:
    """PCA components and RGB maps of every slice, in (Z, Y, X) order on the image pixel grid.

    Parameters
    ----------
    fv : FeatureVolume
    basis : PCABasis, optional
        Reuse a basis (e.g. fitted on another volume of the same model); fitted with ``fit_pca`` if None.
    n_components, max_tokens, seed
        Passed to :func:`fit_pca` when ``basis`` is None.

    Returns
    -------
    PCAMaps
    """
    if basis is None:
        basis = fit_pca(fv, n_components=n_components, max_tokens=max_tokens, seed=seed)
    offset = basis.mean @ basis.components.T
    comps = assemble(fv, lambda s0, s1: project_half(read_slices(fv, s0, s1), basis.components.T) - offset,
                     basis.n_components)
    return PCAMaps(components=comps, rgb=basis.to_rgb(comps), basis=basis)
