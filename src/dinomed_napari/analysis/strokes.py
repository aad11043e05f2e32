"""Where the scribbles are: the classes painted on each slice, the background class, and whether the
strokes sit on one structure or spread over whole planes."""

from __future__ import annotations

import numpy as np


def painted_classes(scribbles: np.ndarray, axis: int = 0) -> dict[int, np.ndarray]:
    """The classes painted on each slice along ``axis`` that has strokes, slice by slice (no
    whole-volume boolean temporaries)."""
    scr = np.moveaxis(np.asarray(scribbles), axis, 0)
    return {s: np.unique(scr[s][scr[s] > 0]) for s in range(scr.shape[0]) if scr[s].any()}


def background_of(scribbles: np.ndarray, axis: int = 0) -> int:
    """The background class of a scribble volume (see :func:`stroke_layout`)."""
    scr = np.asarray(scribbles)
    flat = np.flatnonzero(scr)
    return stroke_layout(flat, scr.ravel()[flat], scr.shape, axis)[0]


def painted_axis(points: np.ndarray, default: int = 0) -> int:
    """The axis the strokes were painted along: the one whose planes the scribbled voxels (``points``,
    (N, 3) voxel coordinates) occupy the fewest of. A stroke painted in a 2D view lies in one plane of the
    viewed axis, while the strokes of one view spread over many planes of the two others. Ties keep
    ``default`` (the features' axis)."""
    points = np.asarray(points)
    if len(points) == 0:
        return default
    planes = [len(np.unique(points[:, a])) for a in range(points.shape[1])]
    return default if planes[default] <= min(planes) else int(np.argmin(planes))


def layout(flat: np.ndarray, values: np.ndarray, shape, feature_axis: int) -> tuple[int, bool, int]:
    """(background class, strokes localised?, axis painted along) of the scribbled voxels (flat indices
    and values): the strokes' planes decide the walk's axis (:func:`painted_axis`), and localisation is
    judged on those planes (:func:`stroke_layout`)."""
    every = np.stack(np.unravel_index(flat, shape), axis=1)
    axis = painted_axis(every, feature_axis)
    return (*_stroke_layout(every, values, shape, axis), axis)


def strokes_localized(scribbles: np.ndarray, axis: int = 0, max_fraction: float = 0.5) -> bool:
    """True when, on every annotated slice, the structures' strokes sit in a box covering less than
    ``max_fraction`` of the plane: a structure to follow (an organ, a tumour). Strokes spread over whole
    planes (membranes, cell interiors in EM) describe textures, which propagation does not suit."""
    scr = np.asarray(scribbles)
    flat = np.flatnonzero(scr)
    return stroke_layout(flat, scr.ravel()[flat], scr.shape, axis, max_fraction)[1]


def stroke_layout(flat: np.ndarray, values: np.ndarray, shape, axis: int = 0,
                  max_fraction: float = 0.5) -> tuple[int, bool]:
    """(background class, strokes localised?) from the scribbled voxels only (flat indices and values),
    so that a retrain does not rescan the whole scribble volume. See :func:`strokes_localized`; the
    background is the class whose strokes span the largest in-plane box (ties: the most voxels)."""
    return _stroke_layout(np.stack(np.unravel_index(flat, shape), axis=1), values, shape, axis, max_fraction)


def _stroke_layout(every: np.ndarray, values: np.ndarray, shape, axis: int,
                   max_fraction: float = 0.5) -> tuple[int, bool]:
    """:func:`stroke_layout` of the scribbled voxels' (N, 3) coordinates ``every``."""
    uniq, counts = np.unique(values, return_counts=True)
    if len(uniq) == 0:
        raise ValueError("no scribbles")
    a, b = (d for d in range(3) if d != axis)
    # The background is painted around and away from the structures: the class whose strokes span the
    # largest in-plane box (then the most voxels), whatever its value.
    spread = [(np.ptp(every[values == v, a]) + 1) * (np.ptp(every[values == v, b]) + 1) for v in uniq]
    bg = int(uniq[np.lexsort((counts, spread))[-1]])
    pts = every[values != bg]
    if len(pts) == 0:
        return bg, True
    plane = shape[a] * shape[b]
    order = np.argsort(pts[:, axis], kind="stable")
    pts = pts[order]
    cuts = np.flatnonzero(np.diff(pts[:, axis])) + 1
    for part in np.split(pts, cuts):
        box = (np.ptp(part[:, a]) + 1) * (np.ptp(part[:, b]) + 1)
        if box > max_fraction * plane:
            return bg, False
    return bg, True
