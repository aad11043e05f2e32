"""3D clean-up of a predicted label volume, guided by the scribbles.

Few-click users scribble on 2-3 slices; a classifier alone then also fires on look-alike tissue far
from anything they marked. Keeping, per class, only the 3D connected components that touch a scribble
of that class removes those false positives without any extra click.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def background_class(labels: np.ndarray, classes) -> int:
    """The class with the most voxels in ``labels`` (what the removed voxels fall back to)."""
    counts = [int(np.count_nonzero(labels == c)) for c in classes]
    return int(classes[int(np.argmax(counts))])


def clean_labels(labels: np.ndarray, scribbles: np.ndarray | None = None, *, background: int | None = None,
                 fill_holes: bool = False, min_size: int = 0, connectivity: int = 1) -> np.ndarray:
    """Keep scribble-touching components, fill holes and drop small pieces, per non-background class.

    Parameters
    ----------
    labels : (Z, Y, X) int
        Predicted classes (scribble values). Works on 2D arrays too.
    scribbles : same shape, optional
        0 = unlabelled, else the class painted there. When given, each class keeps only the connected
        components that contain at least one scribble of that class; without it, nothing is removed on
        that ground.
    background : int, optional
        Class that removed voxels become and that is never cleaned (default: the class with the most
        voxels, usually the background).
    fill_holes : bool
        Fill enclosed holes of each non-background class (scipy ``binary_fill_holes``, in 3D).
    min_size : int
        Components smaller than this (voxels) become background.
    connectivity : int
        1 = faces only, up to ``labels.ndim`` = faces, edges and corners.

    Returns
    -------
    np.ndarray, same shape and dtype as ``labels``
    """
    out = np.array(labels, copy=True)
    classes = [int(c) for c in np.unique(out)]
    if len(classes) < 2:
        return out
    bg = background_class(out, classes) if background is None else int(background)
    structure = ndimage.generate_binary_structure(out.ndim, connectivity)
    for c in classes:
        if c == bg:
            continue
        mask = out == c
        comp, n = ndimage.label(mask, structure=structure)
        keep = np.ones(n + 1, bool)
        keep[0] = False
        if scribbles is not None:
            touched = np.unique(comp[(scribbles == c) & mask])
            keep[:] = False
            keep[touched[touched > 0]] = True
        if min_size > 0:
            keep &= np.bincount(comp.ravel(), minlength=n + 1) >= min_size
        kept = keep[comp]
        out[mask & ~kept] = bg
        if fill_holes:
            filled = ndimage.binary_fill_holes(kept)
            out[filled & (out == bg)] = c
    return out
