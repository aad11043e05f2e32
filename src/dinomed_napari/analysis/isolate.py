"""Threshold isolation of a structure (e.g. a tumour) from a seed: the seed paper's PC1 recipe, in 3D.

1. Foreground = PC1 above a threshold (Otsu by default). PC1's sign convention (positive = minority side,
   see :mod:`.pca`) makes this drop the background on every volume.
2. Inside it, threshold a chosen channel: a principal component, the similarity map of the seeds, raw
   intensity or PET SUV (any (Z, Y, X) array), by Otsu, a value, or a percentage of the local maximum
   (``"41%"`` = the classic 41 % SUVmax rule).
3. Keep the connected component(s) containing the seed(s) (or the largest without seeds), fill holes,
   drop pieces smaller than ``min_size``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..features.grid import slice_of
from ..features.volume import FeatureVolume
from .pca import PCAMaps, fit_pca, pca_maps, project_slice
from .sampling import check_points
from .similarity import similarity_map

#: Half-size (voxels) of the box around each seed whose maximum is the reference of "NN%" thresholds.
SEED_RADIUS = 5


class _PerComponent:
    """``maps.components`` as (Z, Y, X, n), each component assembled only when ``[..., k]`` asks for it: a
    volume isolation reads PC1 and at most one more, 4 bytes per voxel each instead of 4n at once."""

    def __init__(self, maps: PCAMaps):
        self.maps, self.cache = maps, {}
        self.shape = (*maps.fv.volume_shape, maps.basis.n_components)

    def __getitem__(self, key) -> np.ndarray:
        if not (isinstance(key, tuple) and len(key) == 2 and key[0] is Ellipsis):
            raise IndexError(f"components are read one at a time as [..., k], got {key!r}")
        k = int(key[1])
        if k not in self.cache:
            self.cache[k] = np.asarray(self.maps.component(k))
        return self.cache[k]


def _components(source, index: int | None, axis: int):
    """PCA components of the volume (Z,Y,X,n) or of one plane (H,W,n)."""
    if isinstance(source, PCAMaps):
        if source._components is not None:  # already assembled (e.g. by the CLI): reuse
            return source.components if index is None else slice_of(source.components, axis, index)
        if index is None:
            return _PerComponent(source)
        if axis == source.fv.axis:  # one plane: the same values, upsampled for that plane only
            return source.slice_components(index)
        return slice_of(source.components, axis, index)
    if isinstance(source, FeatureVolume):
        if index is None:
            return pca_maps(source).components
        return project_slice(source, fit_pca(source), index)
    return None


def _channel(channel, source, comps, seeds, index, axis) -> np.ndarray:
    if isinstance(channel, str) and channel.lower().startswith("pc"):
        k = int(channel[2:]) - 1
        if comps is None or not 0 <= k < comps.shape[-1]:
            raise ValueError(f"channel {channel!r} needs PCA components (a FeatureVolume or PCAMaps source) "
                             f"with at least {k + 1} components")
        return comps[..., k]
    if isinstance(channel, str) and channel == "similarity":
        if not isinstance(source, FeatureVolume) or seeds is None:
            raise ValueError("channel 'similarity' needs a FeatureVolume source and seeds")
        return similarity_map(source, seeds, slice_only=index)
    if isinstance(channel, str):
        raise ValueError(f"channel must be 'pc1'.., 'similarity' or a (Z, Y, X) array, got {channel!r}")
    # Thresholds compare in the image's own type (no float32 copy of the volume, 4 bytes per voxel); a
    # slice keeps that type too, so a preview thresholds exactly like the whole volume.
    arr = np.asarray(channel if index is None else slice_of(channel, axis, index))
    return arr if arr.dtype.kind in "iuf" else arr.astype(np.float32)


def _volume_shape(source, channel) -> tuple[int, ...]:
    if isinstance(source, FeatureVolume):
        return tuple(source.volume_shape)
    if isinstance(source, PCAMaps):
        return tuple(source.fv.volume_shape)
    return np.shape(channel)


def _threshold(values: np.ndarray, rule, reference: np.ndarray | None = None) -> float:
    from skimage.filters import threshold_otsu

    if rule is None or rule == "otsu":
        return float(threshold_otsu(values)) if values.size and np.ptp(values) > 0 else float(values.min())
    if isinstance(rule, str) and rule.endswith("%"):
        ref = values if reference is None or reference.size == 0 else reference
        return float(rule[:-1]) / 100.0 * float(ref.max())
    return float(rule)


def isolate(source, channel="pc1", seeds=None, fg_threshold=None, inner_threshold="otsu", *,
            foreground: bool = True, inner_side: str = "above", index: int | None = None, axis: int = 0,
            fill_holes: bool = True, min_size: int = 0, return_thresholds: bool = False):
    """Isolate the structure under the seed(s) by two thresholds and 3D connectivity.

    Parameters
    ----------
    source : FeatureVolume, PCAMaps or None
        Gives PC1 (foreground) and the PC / similarity channels. None only with ``foreground=False`` and
        an array channel.
    channel : "pc1", "pc2", ..., "similarity" or array (Z, Y, X)
        Channel thresholded inside the foreground (raw intensity, SUV or any map on the image grid).
    seeds : array (N, 3), optional
        (z, y, x) voxels inside the structure. None keeps the largest component.
    fg_threshold : float, optional
        PC1 threshold of the foreground; None = Otsu of PC1.
    inner_threshold : "otsu", float or "NN%"
        Channel threshold inside the foreground; "NN%" = NN percent of the channel's maximum within
        ``SEED_RADIUS`` voxels of the seeds (e.g. "41%" of the lesion's SUVmax), or of the whole
        foreground without seeds.
    foreground : bool
        False skips the PC1 step (threshold the channel everywhere).
    inner_side : {"above", "below"}
        Keep values above (default) or below the inner threshold.
    index, axis
        Work on plane ``index`` along ``axis`` only (2D components; seeds on that plane).
    fill_holes, min_size
        Post-processing of the kept region.
    return_thresholds : bool
        Also return {"foreground": ..., "inner": ..., "dropped": ...}: the two thresholds, and the step
        that left the first seed outside the result (see :func:`dropping_step`), None when every seed
        is in it.

    Returns
    -------
    np.ndarray, uint8, (Z, Y, X) or (H, W)
        1 = isolated structure, 0 elsewhere (empty when no seed lies in or next to the region).
    """
    comps = _components(source, index, axis) if (foreground or str(channel).startswith("pc")) else None
    values = _channel(channel, source, comps, seeds, index, axis)
    pts = None
    if seeds is not None:
        pts = np.rint(check_points(seeds, _volume_shape(source, channel))).astype(int)
        if index is not None:
            pts = np.delete(pts[pts[:, axis] == index], axis, axis=1)
    fg = np.ones(values.shape, bool)
    t_fg = None
    if foreground:
        if comps is None:
            raise ValueError("the PC1 foreground step needs a FeatureVolume or PCAMaps source")
        t_fg = _threshold(comps[..., 0], fg_threshold)
        fg = comps[..., 0] > t_fg
    structure = ndimage.generate_binary_structure(values.ndim, 1)
    ref = None
    if pts is not None and len(pts):  # local maximum around the seeds (SUVmax of the clicked lesion)
        r = SEED_RADIUS
        ref = np.concatenate([values[tuple(slice(max(c - r, 0), c + r + 1) for c in p)].ravel() for p in pts])
    t_in = _threshold(values[fg], inner_threshold, ref)
    inner = fg & ((values > t_in) if inner_side == "above" else (values < t_in))
    out = _keep(inner, pts, structure, fill_holes, min_size)
    if not return_thresholds:
        return out
    return out, {"foreground": t_fg, "inner": t_in, "dropped": dropping_step(out, pts, fg, inner)}


def dropping_step(out: np.ndarray, pts: np.ndarray | None, fg: np.ndarray, inner: np.ndarray) -> str | None:
    """Which step of :func:`isolate` left a seed outside the result ``out``.

    Parameters
    ----------
    out : np.ndarray of bool or uint8
        The result.
    pts : np.ndarray (N, ndim) of int, or None
        The seeds, on ``out``'s grid.
    fg, inner : np.ndarray of bool
        The PC1 foreground (all True when the step is off) and the foreground above the inner threshold.

    Returns
    -------
    str or None
        For the first seed outside ``out``: "foreground" (PC1 put it in the background), "inner" (its
        value is on the other side of the inner threshold) or "min_size" (its piece was smaller);
        None when every seed is in the result.
    """
    for p in () if pts is None else map(tuple, pts):
        if out[p]:
            continue
        if not fg[p]:
            return "foreground"
        return "inner" if not inner[p] else "min_size"
    return None


def _keep(mask: np.ndarray, pts, structure, fill_holes: bool, min_size: int) -> np.ndarray:
    lab, n = ndimage.label(mask, structure)
    if n == 0:
        return np.zeros(mask.shape, np.uint8)
    if pts is None:
        ids = [int(np.argmax(np.bincount(lab.ravel())[1:])) + 1]
    else:
        ids = [i for i in (_nearest_label(lab, p) for p in pts) if i > 0]
    keep = np.isin(lab, ids)
    if fill_holes:
        keep = ndimage.binary_fill_holes(keep)
    if min_size > 0:
        lab2, n2 = ndimage.label(keep, structure)
        sizes = np.bincount(lab2.ravel())
        keep = (sizes >= min_size)[lab2] & keep
    return keep.astype(np.uint8)


def _nearest_label(lab: np.ndarray, p: np.ndarray, radius: int = 3) -> int:
    """Component at seed ``p``, or the nearest one within ``radius`` voxels (a click just off the edge)."""
    if lab[tuple(p)] > 0:
        return int(lab[tuple(p)])
    lo = np.maximum(p - radius, 0)
    box = lab[tuple(slice(a, b + radius + 1) for a, b in zip(lo, p, strict=True))]
    hits = np.argwhere(box > 0)
    if len(hits) == 0:
        return 0
    d = np.linalg.norm(hits + lo - p, axis=1)
    return int(box[tuple(hits[np.argmin(d)])])

