"""Simulated user scribbles from a ground-truth mask: a few short strokes per class on a few slices."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from ..errors import VolumeError


class Scribbles(NamedTuple):
    """Result of :func:`simulate_scribbles`.

    labels : (Z, Y, X) uint8/uint16, 0 = unlabelled, k + 1 = ``classes[k]`` of the ground truth.
    slices : tuple of int, the annotated slice indices along ``axis``.
    classes : tuple of int, the ground-truth value behind each scribble value 1..K.
    axis : int, the slicing axis the strokes were painted on.
    """

    labels: np.ndarray
    slices: tuple[int, ...]
    classes: tuple[int, ...]
    axis: int


def _stroke(region: np.ndarray, inside: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One stroke in a 2D ``inside`` area (eroded region): a short line or a small blob, width ~3 px,
    clipped to ``region`` so it never crosses the structure's border."""
    from skimage.draw import disk, line

    h, w = region.shape
    cand = np.argwhere(inside)
    r0, c0 = cand[rng.integers(len(cand))]
    out = np.zeros_like(region)
    if rng.random() < 0.7:  # a line of 4-15 % of the slice size in a random direction
        length = max(3.0, rng.uniform(0.04, 0.15) * min(h, w))
        ang = rng.uniform(0, np.pi)
        r1 = int(np.clip(round(r0 + length * np.sin(ang)), 0, h - 1))
        c1 = int(np.clip(round(c0 + length * np.cos(ang)), 0, w - 1))
        rr, cc = line(int(r0), int(c0), r1, c1)
        ok = inside[rr, cc]
        stop = len(ok) if ok.all() else max(1, int(np.argmin(ok)))  # stop where the line leaves the area
        out[rr[:stop], cc[:stop]] = True
        out = ndimage.binary_dilation(out, iterations=1)
    else:  # a dab of radius 1-3 px
        rr, cc = disk((r0, c0), rng.uniform(1.0, 3.0), shape=region.shape)
        out[rr, cc] = True
    return out & region


def simulate_scribbles(mask_or_labels: np.ndarray, n_slices: int = 3, strokes_per_class: int = 3,
                       axis: int = 0, seed: int = 0, classes=None, erode: int = 2) -> Scribbles:
    """Seeded scribbles like a person paints them: short strokes inside each structure on a few slices.

    Every other stroke of a class starts close to its border with another class (within 8 % of the slice
    size), as people do when they outline a structure; the rest start anywhere inside. A class much larger
    than the smallest one on the slice (the background) gets up to three times more strokes.

    Parameters
    ----------
    mask_or_labels : (Z, Y, X) int or bool
        Ground truth. Every distinct value (0, i.e. background, included) is a class unless ``classes``
        is given.
    n_slices : int
        Slices annotated along ``axis``: spread evenly over the slices where every class is present.
    strokes_per_class : int
        Strokes per class on each annotated slice.
    axis : int
        Slicing axis (0 axial).
    seed : int
    classes : sequence of int, optional
        Ground-truth values to scribble, in the order of the scribble values 1..K; other values get none.
    erode : int
        Strokes are started inside the region eroded by this many pixels (less if that empties it).

    Returns
    -------
    Scribbles
        ``labels`` (0 = unlabelled, 1..K), ``slices`` annotated, ``classes``, ``axis``.
    """
    gt = np.asarray(mask_or_labels)
    if gt.ndim != 3:
        raise VolumeError(f"simulate_scribbles needs a (Z, Y, X) mask, got shape {gt.shape}")
    values = [int(v) for v in (np.unique(gt) if classes is None else classes)]
    if len(values) < 2:
        raise VolumeError(f"the mask has {len(values)} class(es) {values}: need at least two to scribble")
    rng = np.random.default_rng(seed)
    present = np.stack([np.any(np.moveaxis(gt == v, axis, 0), axis=(1, 2)) for v in values])
    candidates = np.flatnonzero(present.all(axis=0))
    if len(candidates) == 0:
        candidates = np.flatnonzero(present[1:].any(axis=0) if len(values) > 1 else present[0])
    n = min(n_slices, len(candidates))
    # Spread the annotated slices evenly (a person skips through the stack), avoiding the extremes.
    picks = [int(candidates[int((i + 1) * len(candidates) / (n + 1))]) for i in range(n)]
    picks = sorted(set(picks))
    labels = np.zeros(gt.shape, np.uint8 if len(values) < 255 else np.uint16)
    out = np.moveaxis(labels, axis, 0)  # a view: writing planes writes the volume
    smallest = {s: min(int(np.count_nonzero(np.take(gt, s, axis=axis) == v)) or 10**12 for v in values)
                for s in picks}
    for s in picks:
        plane = np.take(gt, s, axis=axis)
        for k, v in enumerate(values):
            region = plane == v
            if not region.any():
                continue
            inside = region
            for it in range(erode, 0, -1):  # erode as much as the region allows
                eroded = ndimage.binary_erosion(region, iterations=it)
                if eroded.any():
                    inside = eroded
                    break
            # People outline: every other stroke starts near the border with another class.
            near = inside & (ndimage.distance_transform_edt(region) <= max(3.0, 0.08 * min(region.shape)))
            # A large, varied class (the background) gets more strokes: up to 3x, by sqrt of its area share.
            share = np.sqrt(region.sum() / (smallest[s] or 1))
            n_strokes = strokes_per_class * int(np.clip(share // 2, 1, 3))
            for i in range(n_strokes):
                area = near if (i % 2 == 0 and near.any()) else inside
                out[s][_stroke(region, area, rng)] = k + 1
    return Scribbles(labels=labels, slices=tuple(picks), classes=tuple(values), axis=axis)
