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
from .assemble import CHUNK, assemble, project_half, read_slices

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


class PCAMaps:
    """PCA maps of a volume, kept on the patch grid; pixel-grid maps are computed when asked for.

    Memory: ``patch`` holds (S, h, w, n) float32 components -- one value per patch, about 1/256 of the
    pixel grid. Per-slice views (:meth:`slice_components`, :meth:`slice_rgb8`) cost one slice; whole-volume
    maps are assembled chunk by chunk on first access: ``rgb8()`` 3 bytes per voxel, ``components`` and
    ``rgb`` float32 (12 bytes per voxel each, kept once computed).

    Attributes
    ----------
    patch : np.ndarray, (S, h, w, n) float32
        Components on the patch grid, slices along ``fv.axis`` (place them in napari with
        :func:`dinomed_napari.features.grid.patch_transform`).
    basis : PCABasis
    fv : FeatureVolume
        The features the maps come from (their grid and axis).
    """

    def __init__(self, patch: np.ndarray, basis: PCABasis, fv: FeatureVolume):
        self.patch, self.basis, self.fv = patch, basis, fv
        self._components: np.ndarray | None = None
        self._rgb: np.ndarray | None = None

    @property
    def components(self) -> np.ndarray:
        """(Z, Y, X, n) float32 components on the pixel grid (bilinear from the patch grid)."""
        if self._components is None:
            self._components = assemble(self.fv, lambda s0, s1: self.patch[s0:s1], self.basis.n_components)
        return self._components

    @property
    def rgb(self) -> np.ndarray:
        """(Z, Y, X, 3) float32 in [0, 1]: the first three components with the volume-wide scaling."""
        if self._rgb is None:
            self._rgb = assemble(self.fv, lambda s0, s1: self.patch[s0:s1], 3, transform=self.basis.to_rgb)
        return self._rgb

    def rgb8(self) -> np.ndarray:
        """(Z, Y, X, 3) uint8 RGB (what a viewer shows), assembled chunk by chunk: no float volume."""
        # Small chunks: the float temporaries of a chunk, not the output, set the peak.
        return assemble(self.fv, lambda s0, s1: self.patch[s0:s1], 3, dtype=np.uint8, chunk=4,
                        transform=lambda c: to_uint8(self.basis.to_rgb(c)))

    def patch_rgb8(self) -> np.ndarray:
        """(Z', Y', X', 3) uint8 RGB on the patch grid, in volume axis order: tiny; show it in napari with
        ``scale, translate = features.grid.patch_transform(fv.volume_shape, fv.grid, fv.axis, spacing)``."""
        from ..features.grid import to_volume_order

        return to_volume_order(to_uint8(self.basis.to_rgb(self.patch)), self.fv.axis)

    def component(self, k: int = 0) -> ComponentVolume:
        """Component ``k`` on the pixel grid as a (Z, Y, X) array-like that upsamples only the slices a
        read touches (e.g. a box around a seed), instead of :attr:`components` (4 bytes per voxel each)."""
        return ComponentVolume(self, k)

    def slice_components(self, index: int) -> np.ndarray:
        """(H, W, n) float32 components of slice ``index`` along ``fv.axis`` on its pixel grid."""
        return upsample_patches(self.patch[index], self.fv.plane_shape)

    def slice_rgb8(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB of slice ``index`` (for a viewer that asks slice by slice)."""
        return to_uint8(self.basis.to_rgb(self.slice_components(index)))


class ComponentVolume:
    """One PCA component on the pixel grid, (Z, Y, X) float32, computed where it is indexed.

    ``vol[box]`` (a tuple of slices) upsamples the slices along the maps' axis that ``box`` touches and
    returns the same values :attr:`PCAMaps.components` holds there; ``np.asarray`` gives the whole volume.
    """

    def __init__(self, maps: PCAMaps, k: int = 0):
        if not 0 <= int(k) < maps.basis.n_components:
            raise ValueError(f"component {k} of maps with {maps.basis.n_components} components")
        self.maps, self.k = maps, int(k)
        self.shape = tuple(int(n) for n in maps.fv.volume_shape)
        self.ndim, self.dtype = 3, np.dtype(np.float32)

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if key == (Ellipsis,):
            key = ()
        key = key + (slice(None),) * (3 - len(key))
        if not all(isinstance(k, slice) for k in key):
            raise TypeError(f"index a ComponentVolume with slices only (a box), got {key!r}")
        axis = self.maps.fv.axis
        along = range(*key[axis].indices(self.shape[axis]))
        planes = [self.maps.slice_components(i)[..., self.k] for i in along]
        if not planes:
            return np.zeros(tuple(len(range(*k.indices(n))) for k, n in zip(key, self.shape, strict=True)),
                            np.float32)
        rest = tuple(slice(None) if d == axis else k for d, k in enumerate(key))
        return np.stack(planes, axis=axis)[rest]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)


def to_uint8(unit: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 0..255, rounded."""
    return np.clip(np.asarray(unit) * 255.0 + 0.5, 0, 255).astype(np.uint8)


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
    """PCA components of every slice, projected on the patch grid (maps on the pixel grid on demand).

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
        On the patch grid; ``components`` / ``rgb`` / ``rgb8()`` give pixel-grid volumes on demand.
    """
    if basis is None:
        basis = fit_pca(fv, n_components=n_components, max_tokens=max_tokens, seed=seed)
    offset = basis.mean @ basis.components.T
    h, w = fv.grid
    patch = np.empty((fv.n_slices, h, w, basis.n_components), np.float32)
    for s0 in range(0, fv.n_slices, CHUNK):
        s1 = min(s0 + CHUNK, fv.n_slices)
        patch[s0:s1] = project_half(read_slices(fv, s0, s1), basis.components.T) - offset
    return PCAMaps(patch, basis, fv)
