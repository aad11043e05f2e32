"""The random walker as the few-click outlines use it (one edge sensitivity, one plane or a stack of
planes), the connected parts it keeps and the boxes it runs in."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Edge sensitivity of the annotated-slice random walker (skimage's default scale).
BETA = 130.0


def walk_plane(data: np.ndarray, seeds: np.ndarray, spacing, channel_axis: int | None = None) -> np.ndarray:
    """The random walker's labels on one plane, solved directly."""
    from skimage.segmentation import random_walker

    return random_walker(data, seeds, beta=BETA, mode="bf", channel_axis=channel_axis, spacing=spacing)


def grown_box(mask: np.ndarray, margin) -> tuple[slice, slice]:
    """Bounding box of ``mask`` grown by ``margin`` pixels (one number, or one per axis), clipped to the
    plane."""
    idx = np.argwhere(mask)
    lo, hi = np.maximum(idx.min(0) - margin, 0), np.minimum(idx.max(0) + 1 + margin, mask.shape)
    return slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1]))


def box_inside(inner: tuple[slice, slice], outer: tuple[slice, slice]) -> bool:
    """Whether box ``inner`` lies inside box ``outer`` (tuples of slices with starts and stops)."""
    return all(o.start <= i.start and i.stop <= o.stop for i, o in zip(inner, outer, strict=True))


def walk_planes(data: np.ndarray, seeds: np.ndarray, spacing, channel_axis: int | None = None) -> np.ndarray:
    """The random walker's labels on a stack of planes, solved iteratively: a direct solve of 5 planes
    of 30k pixels took 7 s against 0.6 s, for the same outlines."""
    import warnings

    from skimage.segmentation import random_walker

    with warnings.catch_warnings():  # the iterative solve's probabilities overshoot [0, 1] by its
        warnings.filterwarnings("ignore", "The probability range is outside")  # tolerance: argmax only
        return random_walker(data, seeds, beta=BETA, mode="cg_j", tol=1e-4, channel_axis=channel_axis,
                             spacing=spacing)


def touching(region: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The connected parts of ``region`` that contain a ``seeds`` pixel."""
    lab, _ = ndimage.label(region)
    ids = np.unique(lab[seeds & region])
    return np.isin(lab, ids[ids > 0])
