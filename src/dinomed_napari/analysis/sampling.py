"""Features at scribbled / clicked voxels: bilinear on the patch grid, plus optional pixel filters."""

from __future__ import annotations

import numpy as np

from ..errors import ScribbleError
from ..features.grid import sample_bilinear, slice_of
from ..features.volume import PLANE_AXES, FeatureVolume

#: Gaussian scales (pixels) of the optional filter features; few, so they stay cheap at pixel level.
FILTER_SIGMAS = (1.0, 4.0)


def check_points(points_zyx, volume_shape) -> np.ndarray:
    """(N, 3) integer voxel coordinates inside ``volume_shape``, or a ScribbleError saying which are not."""
    pts = np.asarray(points_zyx, dtype=float).reshape(-1, 3) if np.size(points_zyx) else np.zeros((0, 3))
    shape = np.asarray(volume_shape)
    bad = np.any((pts < 0) | (pts > shape - 1), axis=1)
    if bad.any():
        raise ScribbleError(f"{int(bad.sum())} point(s) outside the volume of shape {tuple(volume_shape)}, "
                            f"e.g. (z, y, x) = ({', '.join(f'{float(v):g}' for v in pts[bad][0])})")
    return pts


def sample_features(fv: FeatureVolume, points_zyx) -> np.ndarray:
    """Patch features at voxel positions, bilinear on each slice's patch grid.

    Parameters
    ----------
    fv : FeatureVolume
    points_zyx : array (N, 3)
        Voxel coordinates in (Z, Y, X) order; the coordinate along ``fv.axis`` must be integral.

    Returns
    -------
    np.ndarray, float32, shape (N, C)
        Reads each touched slice once.
    """
    pts = check_points(points_zyx, fv.volume_shape)
    a, b = PLANE_AXES[fv.axis]
    out = np.empty((len(pts), fv.dim), np.float32)
    slices = np.rint(pts[:, fv.axis]).astype(int)
    for s in np.unique(slices):
        sel = slices == s
        out[sel] = sample_bilinear(fv.slice(int(s)), pts[sel][:, [a, b]], fv.plane_shape)
    return out


class NormalisedImage:
    """An image scaled to about [0, 1], ``(raw - low) / (high - low)`` in float32, computed where it is read.

    Holds the raw image, not a float32 copy of the volume (4 bytes per voxel on top of it): readers index
    planes or boxes (``img[s]``, :func:`~dinomed_napari.features.grid.slice_of`) and get the same values a
    whole normalised array would hold there; ``np.asarray(img)`` gives that whole array.
    """

    def __init__(self, raw, low: float, high: float):
        self.raw, self.low, self.scale = raw, float(low), max(float(high) - float(low), 1e-6)
        self.shape = tuple(int(n) for n in np.shape(raw))
        self.ndim, self.size = len(self.shape), int(np.prod(self.shape))
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, key) -> np.ndarray:
        return (np.asarray(self.raw[key], dtype=np.float32) - self.low) / self.scale

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __len__(self) -> int:
        return self.shape[0]


def normalise_image(image: np.ndarray, low: float | None = None, high: float | None = None):
    """Scale an image to about [0, 1] by its 0.5/99.5 percentiles (or given ones) -> (img, low, high).

    ``img`` is a :class:`NormalisedImage`: planes are scaled where they are read.
    """
    if low is None or high is None:
        sample = np.asarray(image[:: max(1, np.shape(image)[0] // 16)], dtype=np.float32)
        low, high = (float(v) for v in np.percentile(sample, (0.5, 99.5)))
    return NormalisedImage(image, low, high), low, high


def filter_plane(plane: np.ndarray, mode: str) -> np.ndarray:
    """Pixel features of one normalised 2D plane: (H, W, F). ``mode`` "raw" = intensity only, "filters"
    = skimage multiscale_basic_features (intensity, edges, texture) at :data:`FILTER_SIGMAS`."""
    if mode == "raw":
        return plane[..., None].astype(np.float32)
    if mode == "filters":
        from skimage.feature import multiscale_basic_features

        return multiscale_basic_features(plane, sigma_min=FILTER_SIGMAS[0], sigma_max=FILTER_SIGMAS[-1],
                                         num_sigma=len(FILTER_SIGMAS), workers=1).astype(np.float32)
    raise ValueError(f"intensity features must be None, 'raw' or 'filters', got {mode!r}")


def sample_pixel_features(image: np.ndarray, points_zyx, axis: int, mode: str,
                          cache: dict | None = None) -> np.ndarray:
    """Pixel features (see :func:`filter_plane`) of the planes along ``axis`` at voxel positions: (N, F).

    ``cache`` (slice index -> (H, W, F)) avoids recomputing a plane's filters on every retrain.
    """
    pts = np.rint(np.asarray(points_zyx)).astype(int).reshape(-1, 3)
    a, b = PLANE_AXES[axis]
    cache = {} if cache is None else cache
    rows = None
    for s in (int(v) for v in np.unique(pts[:, axis])):
        if s not in cache:
            cache[s] = filter_plane(slice_of(image, axis, int(s)), mode)
        feats = cache[s]
        if rows is None:
            rows = np.empty((len(pts), feats.shape[-1]), np.float32)
        sel = pts[:, axis] == s
        rows[sel] = feats[pts[sel, a], pts[sel, b]]
    return rows if rows is not None else np.zeros((0, 1), np.float32)


class SampleCache:
    """Features of scribbled voxels, kept between fits so that one more stroke only samples its new voxels.

    Rows live in a growing buffer in insertion order (appending a stroke copies nothing else); voxels no
    longer scribbled (erased) are compacted out. ``source`` identifies the features the rows came from.
    """

    def __init__(self, source=None):
        self.source = source
        self.index = np.zeros(0, np.int64)
        self.buf = None

    def update(self, flat_index: np.ndarray, fetch) -> tuple[np.ndarray, np.ndarray]:
        """Rows for the scribbled voxels ``flat_index`` (sorted unique): returns (rows (n, D) view, the
        flat index of each row). ``fetch(new_flat_index) -> (m, D)`` samples the voxels not cached."""
        n = len(self.index)
        if n:
            keep = np.isin(self.index, flat_index, assume_unique=True)
            if not keep.all():  # erased voxels: compact
                k = int(keep.sum())
                self.buf[:k] = self.buf[:n][keep]
                self.index = self.index[keep]
                n = k
        new = flat_index[~np.isin(flat_index, self.index, assume_unique=True)] if n else flat_index
        rows = fetch(new)
        if self.buf is None or self.buf.shape[1] != rows.shape[1] or n + len(new) > len(self.buf):
            grown = np.empty((max(2 * (n + len(new)), 1024), rows.shape[1]), np.float32)
            if self.buf is not None and self.buf.shape[1] == rows.shape[1]:
                grown[:n] = self.buf[:n]
            self.buf = grown
        self.buf[n:n + len(new)] = rows
        self.index = np.concatenate([self.index, new])
        return self.buf[:len(self.index)], self.index

