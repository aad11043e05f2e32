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


def _line_in(region: np.ndarray, start, angle: float, length: float) -> np.ndarray:
    """Pixels of a straight stroke centred on ``start`` along ``angle``, cut where it leaves ``region``."""
    from skimage.draw import line

    h, w = region.shape
    out = np.zeros(region.shape, bool)
    for sign in (1, -1):  # grow both ways from the start until the region ends
        r1 = int(np.clip(round(start[0] + sign * length / 2 * np.sin(angle)), 0, h - 1))
        c1 = int(np.clip(round(start[1] + sign * length / 2 * np.cos(angle)), 0, w - 1))
        rr, cc = line(int(start[0]), int(start[1]), r1, c1)
        ok = region[rr, cc]
        stop = len(ok) if ok.all() else max(1, int(np.argmin(ok)))
        out[rr[:stop], cc[:stop]] = True
    return out & region


#: A part of the structure on an annotated slice gets its own stroke when it holds at least this share of
#: the largest part (the two limbs of the aortic arch; not a few stray pixels).
PART_SHARE = 0.25


def _medial_stroke(region: np.ndarray, length: float) -> np.ndarray:
    """A stroke through the centre of one connected ``region`` along its long axis."""
    dist = ndimage.distance_transform_edt(region)
    centre = np.unravel_index(int(np.argmax(dist)), region.shape)
    pts = np.argwhere(region).astype(float)
    cov = np.cov(pts.T) if len(pts) > 2 else np.eye(2)
    vals, vecs = np.linalg.eigh(np.atleast_2d(cov))
    major = vecs[:, int(np.argmax(vals))]
    inner = dist > min(2.0, float(dist.max()) - 1)  # stay off the border when the structure allows
    return _line_in(inner, centre, float(np.arctan2(major[0], major[1])), length)


def leak_stroke(leak: np.ndarray) -> np.ndarray:
    """The background stroke a person paints across a prediction on a slice without the structure: one
    medial stroke (one pixel dilated, as :func:`structure_scribbles`' strokes) through the largest part
    of ``leak`` (an (H, W) bool mask), along its long axis."""
    parts, n = ndimage.label(leak)
    if n == 0:
        raise VolumeError("leak_stroke needs a non-empty (H, W) mask")
    largest = parts == int(np.argmax(np.bincount(parts.ravel())[1:])) + 1
    return ndimage.binary_dilation(_medial_stroke(largest, max(leak.shape))) & largest


def structure_scribbles(mask: np.ndarray, n_slices: int = 3, axis: int = 0, seed: int = 0,
                        slices=None, fg_value: int = 2, bg_value: int = 1) -> Scribbles:
    """The few clicks a person gives one structure (a tumour, an organ) on the slices where it is largest.

    On each of the ``n_slices`` slices with the most structure: one medial stroke through the structure
    along its long axis (value ``fg_value``), one through each of its parts where the slice cuts it in
    several (the two limbs of the aortic arch; parts under ``PART_SHARE`` of the largest get none); short
    background strokes just outside it, and longer ones elsewhere on the slice (value ``bg_value``). This
    is how the project's held-back lesion cases were annotated, and what :mod:`.protocols.fewclick3d`
    scores.

    Parameters
    ----------
    mask : (Z, Y, X) bool or int
        The structure (non-zero).
    n_slices : int
        Annotated slices along ``axis``.
    axis : int
    seed : int
    slices : sequence of int, optional
        Annotate these slices instead of the largest ones.
    fg_value, bg_value : int
        Scribble values of the structure and of the background.

    Returns
    -------
    Scribbles
        ``classes`` is (0, 1) in the order of the values (bg_value, fg_value) when bg_value < fg_value.
    """
    from skimage.draw import line

    gt = np.asarray(mask) != 0
    if gt.ndim != 3 or not gt.any():
        raise VolumeError(f"structure_scribbles needs a non-empty (Z, Y, X) mask, got shape {gt.shape}")
    rng = np.random.default_rng(seed)
    area = np.moveaxis(gt, axis, 0).sum(axis=(1, 2))
    if slices is None:
        order = np.argsort(-area, kind="stable")
        slices = sorted(int(s) for s in order[:min(n_slices, int(np.count_nonzero(area)))])
    labels = np.zeros(gt.shape, np.uint8)
    out = np.moveaxis(labels, axis, 0)
    for s in slices:
        region = np.moveaxis(gt, axis, 0)[s]
        h, w = region.shape
        stroke = np.zeros(region.shape, bool)
        parts, _ = ndimage.label(region)
        sizes = np.bincount(parts.ravel())[1:]
        for p in np.flatnonzero(sizes >= PART_SHARE * sizes.max()) + 1:
            stroke |= _medial_stroke(parts == p, max(h, w))
        size = float(np.sqrt(region.sum()))
        # Background: short strokes in a ring just outside, longer ones anywhere further away.
        outside = ndimage.distance_transform_edt(~region)
        ring = (outside > 2) & (outside <= 2 + max(4.0, 0.3 * size))
        far = outside > max(10.0, 0.5 * size)
        bg = np.zeros(region.shape, bool)
        for zone, n, length in ((ring, 4, max(4.0, 0.4 * size)), (far, 3, 0.2 * min(h, w))):
            cand = np.argwhere(zone)
            for _ in range(n if len(cand) else 0):
                r0, c0 = cand[rng.integers(len(cand))]
                ang = rng.uniform(0, np.pi)
                r1 = int(np.clip(round(r0 + length * np.sin(ang)), 0, h - 1))
                c1 = int(np.clip(round(c0 + length * np.cos(ang)), 0, w - 1))
                rr, cc = line(int(r0), int(c0), r1, c1)
                ok = zone[rr, cc]
                stop = len(ok) if ok.all() else max(1, int(np.argmin(ok)))
                bg[rr[:stop], cc[:stop]] = True
        bg = ndimage.binary_dilation(bg) & ~ndimage.binary_dilation(region, iterations=2)
        out[s][bg] = bg_value
        out[s][ndimage.binary_dilation(stroke) & region] = fg_value
    classes = (0, 1) if bg_value < fg_value else (1, 0)
    return Scribbles(labels=labels, slices=tuple(int(s) for s in slices), classes=classes, axis=axis)
