"""Step 1 of the few-click walk (:mod:`.propagate`): each painted structure's full outline on its annotated
slices, by a random walker seeded by the scribbles; adjacent annotated slices walked together, in 3D,
and an outline that flooded a look-alike neighbour cut back."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .walker import grown_box, touching, walk_plane, walk_planes
from .window import stroke_window

#: Box around the structure's strokes on an annotated slice: stroke extent x this, plus MARGIN_MM.
BOX_FACTOR, MARGIN_MM = 1.0, 10.0
#: Largest box (pixels) the annotated-slice walker solves at full resolution; larger boxes are pooled.
WALK_PIXELS = 30_000
#: The same for an interactive preview of one annotated slice (tens of milliseconds per stroke).
PREVIEW_PIXELS = 6_000
#: The classifier's probability guides an annotated slice's walker only for structures whose strokes span
#: at least this many cells of its grid: smaller ones are a few patches wide, where the coarse map blurs
#: the outline (on the shared cases it helped the liver, spleen and aorta, and hurt the lesions and kidneys).
MIN_CELLS = 5.0
#: Weight of that probability as a walker channel (the image's is 1). The map is blocky (one value per
#: patch, mostly near 0 or 1), so at full weight its patch borders act as edges as strong as the image's:
#: on the shared CTA (random ViT-S) the arch's outline took in the superior vena cava beside it, whose
#: patches the classifier calls aorta, and the walk then lost the aorta (k=1 / k=5: 0.44 / 0.47). At 0.5
#: they read 0.65 / 0.74; shared mean 0.7814 -> 0.7941, the 40 untuned organ pairs 0.5403 -> 0.5439 (over
#: 2x 12 -> 14), the magnified lesions 0.618 -> 0.619, the demo's crops unchanged (too coarse a grid for
#: the channel). 0.25 read the same as 0.5 (0.7944 / 0.5441), 0.75 as 1 (0.7803 / 0.5421); without the
#: channel 0.7940 / 0.5460. Since the CT window reaches towards the background (``WINDOW_TO_BACKGROUND``)
#: the channel is off: the lesions magnified to the held-back sizes (``bench_large_lesions.py``, whose
#: crops make the grid fine enough for it) read 0.623 -> 0.628 and, over four scribble seeds, the lung
#: nodule 0.866 / 0.846 / 0.826 -> 0.924 / 0.855 / 0.846 (x1 / x2 / x3; its blocky map had spread the
#: seed-1 outline to 474 pixels for 347 true), the brain lesion 0.375 / 0.218 / 0.331 -> 0.415 / 0.246 /
#: 0.360; the shared cases over three seeds 0.7940 -> 0.7944 (seed 0: 0.8064 -> 0.8049, CTA aorta k=1 /
#: k=5 -0.02), the 40 untuned organ pairs 0.5627 -> 0.5687, the demo's crops unchanged. The classifier
#: still guides the walk's steps (``STEP_CLASSIFIER``) and labels what is not followed in 3D; with DINOv3
#: weights its map may earn the channel back (0.5 was the default until 7 Dec 2026).
CLASSIFIER_WEIGHT = 0.0
#: Weight of the scribbles' forest probability as a channel of the annotated slices' walker (next to the
#: image at 1). On the shared cases 0.25 kept outlines from spilling into look-alike neighbours (lung
#: nodule +0.06-0.08 Dice, brain lesion k=2 volume 15.6x -> 11.2x); 0.5-1 cut heterogeneous organs
#: short (kidneys -0.1 to -0.3).
FOREST_WEIGHT = 0.25
#: A class's outline on an annotated slice over this many times the median of its outlines on annotated
#: slices at most ``NEAR_SLICES`` away (for a class annotated on three slices or more) has flooded a
#: look-alike neighbour: it is cut to the nearest of those that did not flood, grown by the walk's reach
#: per slice between them (:func:`rein_outliers`). On the 40 untuned organ pairs (random ViT-S) mean Dice
#: 0.5439 -> 0.5549 and pairs over 2x the true volume 14 -> 11 (CT label 7 at k=3 11.2x -> 1.4x, CT label
#: 64 3.7x -> 0.5x, MRI label 20 4.5x -> 1.6x); the shared cases, the demo's crops and the magnified
#: lesions unchanged. 1.5 read the same, 3 caught one. Compared with all the class's other outlines, the
#: active user's CT liver (slices 3, 4, 15, 24: the liver's tip and its middle) lost 0.90 -> 0.87.
OUTLIER_OUTLINE = 2.0
NEAR_SLICES = 2
#: The most separate parts a class's outline on an annotated slice may have and still be one structure to
#: follow (the two limbs of the aortic arch, a liver lobe cut off from the rest); strokes in more objects
#: describe a texture or instances (see :func:`several_regions`). At 3, the EM membrane strokes of
#: tests/test_segment_real.py (three on each slice) were followed in 3D and lost to the classifier.
MAX_PARTS = 2


def _box(mask: np.ndarray, spacing2: np.ndarray) -> tuple[slice, slice]:
    """The strokes' bounding box grown by ``BOX_FACTOR`` x their largest extent + ``MARGIN_MM`` (mm, in
    each axis's pixels)."""
    idx = np.argwhere(mask)
    extent = float(((idx.max(0) + 1 - idx.min(0)) * spacing2).max())
    return grown_box(mask, np.ceil((BOX_FACTOR * extent + MARGIN_MM) / spacing2).astype(int))


def annotated_masks(plane: np.ndarray, scribbles: np.ndarray, spacing2, background: int,
                    proba: np.ndarray | None = None, max_pixels: int = WALK_PIXELS,
                    cell: float | None = None, pixel=None, hounsfield: bool = False,
                    classes=None) -> dict[int, np.ndarray]:
    """Full outline of each painted structure on one annotated plane.

    Parameters
    ----------
    plane : (H, W) float
        Normalised image (about [0, 1]).
    scribbles : (H, W) int
        0 unlabelled, else class values.
    spacing2 : (2,) float
        Pixel spacing of the plane.
    background : int
        Class value of the background.
    proba : (H, W, F), optional
        Extra channels for the walker (e.g. the classifier's probabilities), at ``CLASSIFIER_WEIGHT``.
    max_pixels : int
        Boxes larger than this are walked on a pooled grid (cost grows faster than the pixel count).
    cell : float, optional
        Size (pixels) of the grid ``proba`` was predicted on: a class's channel is used only when its
        strokes span at least ``MIN_CELLS`` cells (default: always used).
    pixel : callable, optional
        ``pixel(cls, box) -> (H, W)`` a pixel-level probability of a class (the scribbles' filter-bank
        forest), one more walker channel at ``FOREST_WEIGHT``; only ``box`` (the walker's) is read.
    hounsfield : bool
        The plane is CT in Hounsfield units: the walker sees it windowed around the structures' strokes
        (:func:`stroke_window`).
    classes : sequence of int, optional
        The class of each ``proba`` channel (default: the classes painted on this plane, in order). A
        class painted on other slices only still has its channel in a volume's ``proba``.

    Returns
    -------
    dict class -> (H, W) bool
        For every non-background class painted on the plane, the random-walker region connected to its
        strokes. The walker runs in a box around the strokes whose border counts as background.
    """
    out = run_masks([plane], [scribbles], spacing2, background, [proba], max_pixels, cell,
                    None if pixel is None else [pixel], hounsfield, classes)
    return {c: ms[0] for c, ms in out.items()}


#: Adjacent annotated slices are walked together, as one 3D random walker (:func:`run_masks`): an outline
#: that stops at a vessel inside the liver on one slice is carried past it by its neighbours. This is the
#: through-plane step of that walker, in in-plane pixels: smaller steps make an intensity change between
#: slices a stronger edge. On the shared cases (random ViT-S) the annotated outlines' Dice went 0.800 ->
#: 0.829 and the unannotated slices' 0.7942 -> 0.7979 (CT liver k=5 0.77 -> 0.89); the 40 untuned organ
#: pairs 0.5549 -> 0.5626 (outlines 0.722 -> 0.742); the demo's crops 0.8382 / 0.8379 -> 0.8574 / 0.8397.
#: A step of 1 read 0.7964 / 0.5579 / 0.8517, 0.5 0.7976 / 0.5595, 0.1 0.7972 / 0.5561. 0 walks each
#: annotated slice alone.
RUN_GAP = 0.25
#: The most adjacent annotated slices walked together (the walker's cost grows with its size).
MAX_RUN = 5


def annotated_runs(annotated, gap: float | None = None, longest: int | None = None) -> list[list[int]]:
    """The annotated slices grouped into runs of adjacent ones (at most ``longest``, default ``MAX_RUN``,
    each; each slice alone when ``gap``, default ``RUN_GAP``, is 0)."""
    gap = RUN_GAP if gap is None else gap
    longest = MAX_RUN if longest is None else longest
    runs: list[list[int]] = []
    for s in sorted(annotated):
        if gap and runs and s == runs[-1][-1] + 1 and len(runs[-1]) < longest:
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs


def run_masks(planes, scribbles, spacing2, background: int, probas, max_pixels: int = WALK_PIXELS,
              cell: float | None = None, pixels=None, hounsfield: bool = False, classes=None,
              gap: float | None = None) -> dict[int, list[np.ndarray | None]]:
    """:func:`annotated_masks` of adjacent annotated planes, walked together in 3D.

    Parameters
    ----------
    planes, scribbles : sequences of (H, W) arrays
        Adjacent planes and their scribbles, in order.
    probas : sequence of (H, W, F) arrays or None
        Each plane's ``proba`` (see :func:`annotated_masks`).
    pixels : sequence of callables, optional
        Each plane's ``pixel``.
    gap : float, optional
        Through-plane step of the walker in in-plane pixels (default ``RUN_GAP``).
    spacing2, background, max_pixels, cell, hounsfield, classes
        As :func:`annotated_masks`; ``max_pixels`` applies to each plane.

    Returns
    -------
    dict class -> list of (H, W) bool or None
        Per plane, the class's region connected to its strokes there (None where it is not painted).
    """
    spacing2 = np.asarray(spacing2, float)
    n = len(planes)
    fg_classes = sorted({int(c) for scr in scribbles for c in np.unique(scr) if c > 0 and c != background})
    if not fg_classes:
        return {}
    box = _box(np.logical_or.reduce([np.isin(scr, fg_classes) for scr in scribbles]), spacing2)
    order = fg_classes if classes is None else [int(c) for c in classes]
    fine = [c for c in fg_classes if _fine_enough(np.logical_or.reduce([q == c for q in scribbles]), cell)]
    sub_shape = planes[0][box].shape
    # Large boxes are walked on a coarser grid (seeds kept by max-pooling each class), then upsampled: the
    # walker's cost grows faster than linearly with pixels, and outlines need no sub-pixel accuracy.
    f = max(1, int(np.ceil(np.sqrt(np.prod(sub_shape) / max_pixels))))
    seeds, datas = [], []
    for plane, scr, proba, k in zip(planes, scribbles, probas, range(n), strict=True):
        # Walker labels: 1 = background, 2.. = the structures (scribble values can be anything).
        sd = np.zeros(plane[box].shape, np.int32)
        sub = scr[box]
        sd[sub == background] = 1
        for i, c in enumerate(fg_classes):
            sd[sub == c] = i + 2
        border = np.ones(sd.shape, bool)
        border[1:-1, 1:-1] = False
        sd[border & (sd == 0)] = 1
        chans = [stroke_window(plane[box], np.isin(sub, fg_classes), sub == background) if hounsfield
                 else plane[box]]
        if proba is not None and CLASSIFIER_WEIGHT > 0:
            chans += [CLASSIFIER_WEIGHT * proba[box][..., order.index(c)] for c in fine]
        if pixels is not None:
            chans += [FOREST_WEIGHT * pixels[k](c, box)[box] for c in fg_classes]
        data = np.stack(chans, axis=-1).astype(np.float64)
        if f > 1:
            data = _pool(data, f)
            sd = _pool_seeds(sd, f, len(fg_classes) + 1)
        seeds.append(sd)
        datas.append(data)
    sp = spacing2 / spacing2.min()
    if n == 1:
        walk = walk_plane(datas[0], seeds[0], sp, channel_axis=-1)[None]
    else:
        gap = RUN_GAP if gap is None else gap
        if gap <= 0:
            raise ValueError(f"gap must be > 0 to walk {n} planes together (got {gap})")
        walk = walk_planes(np.stack(datas), np.stack(seeds), (gap, *sp), channel_axis=-1)
    out: dict[int, list[np.ndarray | None]] = {}
    for k in range(n):
        w = walk[k]
        if f > 1:
            w = np.repeat(np.repeat(w, f, axis=0), f, axis=1)[:sub_shape[0], :sub_shape[1]]
        for i, c in enumerate(fg_classes):
            if not (scribbles[k] == c).any():
                continue
            region = np.zeros(planes[k].shape, bool)
            region[box] = w == i + 2
            out.setdefault(c, [None] * n)[k] = touching(region, scribbles[k] == c)
    return out


#: Why scribbles are not followed in 3D under ``spatial="auto"`` (what the CLI and the widget say).
NOT_ONE_STRUCTURE = ("a class's strokes spread over whole planes or over more than two separate objects, or "
                     "the class covers most of a slice it is painted on")


def several_regions(mask: np.ndarray) -> bool:
    """Whether an outline is more separate regions than one structure has parts (``MAX_PARTS``): strokes
    in several objects (cells) or over a texture, not one structure to follow (``spatial="auto"`` then
    leaves the volume to the classifier)."""
    return ndimage.label(mask)[1] > MAX_PARTS


def _fine_enough(strokes: np.ndarray, cell: float | None) -> bool:
    """Whether a structure's strokes span at least ``MIN_CELLS`` cells of a ``cell``-pixel grid."""
    if cell is None:
        return True
    idx = np.argwhere(strokes)
    return bool(idx.size) and float(np.ptp(idx, axis=0).max() + 1) >= MIN_CELLS * cell


def _pool(data: np.ndarray, f: int) -> np.ndarray:
    """Mean-pool (H, W, C) by ``f`` (edges padded by reflection)."""
    h, w = data.shape[:2]
    ph, pw = -h % f, -w % f
    data = np.pad(data, ((0, ph), (0, pw), (0, 0)), mode="reflect") if (ph or pw) else data
    return data.reshape(data.shape[0] // f, f, data.shape[1] // f, f, -1).mean(axis=(1, 3))


def _pool_seeds(seeds: np.ndarray, f: int, n: int) -> np.ndarray:
    """Seeds on the pooled grid: a cell takes the structure labels first, then background (1)."""
    h, w = seeds.shape
    padded = np.zeros((h + (-h % f), w + (-w % f)), seeds.dtype)
    padded[:h, :w] = seeds
    cells = padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f)
    out = np.zeros(cells.shape[::2], np.int32)
    for label in [1] + list(range(2, n + 1)):  # later labels (structures) overwrite the background
        out[(cells == label).any(axis=(1, 3))] = label
    return out


def rein_outliers(outlines: dict[int, np.ndarray], strokes: dict[int, np.ndarray], radius: int) -> list[int]:
    """Cut a class's annotated outlines that are far larger than its others nearby (``OUTLIER_OUTLINE``).

    Parameters
    ----------
    outlines : dict slice -> (H, W) bool
        One class's outline on each of its annotated slices; changed in place.
    strokes : dict slice -> (H, W) bool
        That class's strokes on the same slices (always kept).
    radius : int
        Pixels a wall may shift from one slice to the next (the walk's step).

    Returns
    -------
    list of int
        The slices whose outline was cut.
    """
    if OUTLIER_OUTLINE <= 0 or len(outlines) < 3:
        return []
    sizes = {s: int(m.sum()) for s, m in outlines.items()}
    # Compared with the outlines a few slices away only: a structure's area changes along its axis.
    near = {s: [t for t in outlines if t != s and abs(t - s) <= NEAR_SLICES] for s in outlines}
    flagged = [s for s in outlines
               if near[s] and sizes[s] > OUTLIER_OUTLINE * np.median([sizes[t] for t in near[s]])]
    cut = []
    for s in flagged:
        refs = [t for t in near[s] if t not in flagged]
        if not refs:
            continue  # its near neighbours flooded too: nothing to cut it back to
        ref = min(refs, key=lambda t: abs(t - s))
        reach = ndimage.distance_transform_edt(~outlines[ref]) <= radius * abs(ref - s)
        outlines[s] = touching(outlines[s] & reach, strokes[s]) | strokes[s]
        cut.append(s)
    return cut
