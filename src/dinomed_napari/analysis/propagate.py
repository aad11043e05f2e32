"""Few clicks, whole structure: segment the annotated slices, then follow each structure slice by slice.

Scribbles on a few slices train a classifier that, on volumes nobody tuned it for, also fires on every
look-alike voxel far from the structure. Here the painted structure itself is followed instead:

1. On each annotated slice, a random walker (:func:`skimage.segmentation.random_walker`) seeded by the
   scribbles, on the image, the classifier's probability (where its grid resolves the structure) and
   the scribbles' filter-bank forest (lightly weighted), inside a box around the structure's strokes,
   gives the structure's full outline there; adjacent annotated slices are walked together, in 3D. An
   outline far larger than the structure's others has flooded a look-alike neighbour and is cut back to
   the reach of the nearest other one.
2. From those slices outward, each next slice is segmented by a small appearance model (intensity at a
   few scales, the scribbles' forest and, past the first slice out, the classifier's probability;
   class-balanced logistic regression) trained on the previous slice's mask against the ring around it,
   applied only within the previous mask dilated by the largest shift the structure can make
   between slices (``slice spacing * tan(max_angle)``: thick slices allow more). The part connected to
   the previous mask is kept; the walk stops where the structure ends (the model finds nothing, or what
   it finds is much larger than the previous slice's region, or has another intensity than the
   structure and the scribbles' forest rejects it, or the walk had tapered and now grows back: a
   neighbour of the structure's look). Each separate part of the previous mask (the two
   limbs of the aortic arch) takes this step on its own, so one part ending does not end the others.
   The region found is redrawn onto the slice's edges by a random walker in a band around it; on CT
   with the slice it came from as a second, seeded plane, so a wall that continues keeps its outline.
3. Each slice reached gets a confidence (how decided the model's probabilities are in the band where it
   decided); the slice to annotate next is the one with most structure in doubt, far from the painted
   ones (:meth:`Propagation.suggest`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..features.grid import slice_of

#: Largest angle (degrees from the slicing axis) of a structure's wall between two slices.
MAX_ANGLE = 30.0
#: Box around the structure's strokes on an annotated slice: stroke extent x this, plus MARGIN_MM.
BOX_FACTOR, MARGIN_MM = 1.0, 10.0
#: Edge sensitivity of the annotated-slice random walker (skimage's default scale).
BETA = 130.0
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
#: The walk stops on a slice whose region's median intensity is outside these percentiles of the
#: structure's intensities on its annotated slices, when the forest also rejects it.
STOP_PERCENTILE = 10.0
#: On CT (Hounsfield units) the annotated slices' walker sees the plane windowed around the structure's
#: stroke intensities: their 5-95th percentiles widened on each side by this many times their spread, as
#: a radiologist windows soft tissue, so that bone and air no longer set the scale of its edges. On the
#: shared cases (random ViT-S) CT structures gained (kidney +0.06-0.09, lung nodule +0.03-0.06) and the
#: 24 CT pairs of the untuned organs 0.417 -> 0.441; on MRI it did not (spleen -0.04-0.06, organs flat),
#: so MRI planes are walked as they are. 0.75-1 tied; 0.5 and 1.5-4 gained less.
STROKE_WINDOW = 1.0


#: The window of an annotated CT slice also reaches this fraction of the way from the structure's strokes
#: (their median) to the background strokes nearest them (the quarter of their pixels closest to the
#: structure's strokes), on the side where those lie. A structure in high contrast with what surrounds it
#: (a nodule in aerated lung) then has its blurred rim inside the window: clipped flat, the rim had no
#: edge and the outline landed wherever the seeds put it (the shared nodule's annotated slice 480 pixels
#: for 347 true, at about -560 HU; now 346). On the shared cases (random ViT-S) mean Dice 0.8029 ->
#: 0.8064 (lung nodule k=2 0.88 -> 0.96), the 40 untuned organ pairs 0.5617 -> 0.5627, the demo's crops
#: 0.8739 / 0.8632 -> 0.8712 / 0.8589 (aorta k=3 -0.02 / -0.05), the magnified lesions 0.621 -> 0.623.
#: All the background strokes instead of the nearest: 0.7979 (CT spleen k=1 0.83 -> 0.64: its far strokes
#: are in air). 0 windows around the strokes alone.
WINDOW_TO_BACKGROUND = 0.5


def stroke_window(plane: np.ndarray, strokes: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """``plane`` windowed to [0, 1] around the intensities under ``strokes`` (see ``STROKE_WINDOW``),
    reaching towards those under ``background`` strokes (``WINDOW_TO_BACKGROUND``) when given; returned
    as it is when fewer than 3 pixels are painted."""
    values = plane[strokes]
    if values.size < 3:
        return plane
    lo, hi = np.percentile(values, [5, 95])
    spread = max(float(hi - lo), 0.02)  # a flat structure still gets a window (units of the [0, 1] plane)
    a, b = lo - STROKE_WINDOW * spread, hi + STROKE_WINDOW * spread
    if background is not None and WINDOW_TO_BACKGROUND > 0 and np.count_nonzero(background) >= 3:
        # What lies just outside the structure: the background strokes' quarter nearest its strokes (the
        # others may be air or bone far off, whose scale the window is there to ignore).
        far = ndimage.distance_transform_edt(~strokes)[background]
        near = plane[background][far <= np.percentile(far, 25)]
        mid = float(np.median(values))
        reach = mid + WINDOW_TO_BACKGROUND * (float(np.median(near)) - mid)
        a, b = min(a, reach), max(b, reach)
    return (np.clip(plane, a, b) - a) / (b - a)


#: Weight of the scribbles' forest probability as a channel of the annotated slices' walker (next to the
#: image at 1). On the shared cases 0.25 kept outlines from spilling into look-alike neighbours (lung
#: nodule +0.06-0.08 Dice, brain lesion k=2 volume 15.6x -> 11.2x); 0.5-1 cut heterogeneous organs
#: short (kidneys -0.1 to -0.3).
FOREST_WEIGHT = 0.25
#: The walk stops on a slice whose region is this many times the previous slice's: a wall flaring out
#: that fast has reached a neighbour (true steps on the shared cases grew up to 1.36x, so a few now end a
#: walk early). 1.5 -> 1.3 left the shared table as it was (mean 0.702), raised the 20 untuned structures
#: 0.462 -> 0.477 (CT vertebra L2 and MRI duodenum fell under 2x the true volume) and the magnified lesions
#: of ``benchmarks/bench_large_lesions.py`` 0.577 -> 0.595; 1.2 cost the shared table.
MAX_GROWTH = 1.3
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
#: The most parts of a slice's mask followed each on its own (see :func:`_parts`).
MAX_TRACKS = 8
#: A walk whose structure has tapered (its area fell under ``TAPER`` times the largest area on its way
#: from the annotated slices, before it) and then grows back over ``REGROW`` times the smallest has passed the
#: structure's end into a neighbour of its look: it stops there (:func:`regrown`). Each step's growth
#: stays under ``MAX_GROWTH``, so such a leak used to run on for the rest of the volume: the 35 HU lung
#: tumour pressing on the mediastinum of ``benchmarks/bench_phantom_lesions.py`` (synthetic) was
#: followed up the mediastinum to the volume's end, 0.631 / 0.606 Dice (1.66x / 1.72x its volume) ->
#: 0.780 / 0.754 (1.15x / 1.19x). Shared cases (random ViT-S) 0.8048 -> 0.8042 (CTA aorta k=5 0.738
#: -> 0.720), the 40 untuned organ pairs 0.5688 -> 0.5691, the demo's crops and the magnified lesions
#: unchanged. Taper and regrowth measured from the largest area over the whole way instead cost the
#: kidneys, whose walks first grow back from a short annotated outline (organs 0.5536); a slice between
#: two reached ones is never checked (both hold the structure). A neighbour that keeps its size is
#: still followed: there the user paints "not here" (``CROSSING``). ``REGROW`` 1.5 -> 1.3 (one flare step):
#: the phantom 0.780 / 0.754 -> 0.824 / 0.804 (1.04x / 1.05x), the organs 0.5691 -> 0.5747 (CT vertebra L1
#: k=3 0.44 -> 0.66, 2.39x -> 1.25x; 10 pairs over 2x), shared 0.8042 -> 0.8039 (CTA aorta k=2 0.778 ->
#: 0.762), the demo's crops and the magnified lesions unchanged; 2.0 changed nothing anywhere (as off).
TAPER, REGROW = 0.75, 1.3
#: Gaussian scales (pixels) of the slice-to-slice appearance model.
SIGMAS = (1.0, 2.5)
#: Each slice the walk reaches has its outline re-drawn by a 2D random walker within this many pixels on
#: either side of the appearance model's boundary (:func:`redraw_outline`). The model's boundary sits a
#: little inside the structure (smoothed features straddle its edge), and the walk lost about a pixel of
#: rim per slice (CT liver 2,006 -> 1,477 pixels one slice from its annotation, against 1,937 true); the
#: walker puts it on the edge instead. On the shared cases (random ViT-S) mean Dice 0.753 -> 0.782, the
#: 40 untuned organ pairs 0.501 -> 0.550 and the magnified lesions 0.580 -> 0.609. A band of 1 gained
#: less (0.758, window of the annotated slices), 3 too (0.763, organs 0.525); growing outward only, or
#: background fixed where the model's probability is low, flooded or shrank. The walker sees the plane
#: windowed around the region (see :func:`redraw_outline`): unwindowed, CT lost (0.749); windows 2 or 4
#: times wider than the annotated slices' gave 0.764 and 0.757.
EDGE_BAND = 2
#: On CT, a reached slice's outline is redrawn together with the slice the walk came from, as a 3D walker
#: whose other plane is seeded by that slice's mask (inside) and the rest of its box (outside), this many
#: in-plane pixels away (:func:`redraw_outline`): where a wall continues from one slice to the next at the
#: same Hounsfield value, the outline keeps it (the CTA's grey thrombus around the bright lumen, which the
#: step's model leaves out). On the shared cases (random ViT-S) mean Dice 0.7979 -> 0.8029 (CTA aorta
#: k=1 0.65 -> 0.72, CT right kidney k=1 0.70 -> 0.85), the demo's crops 0.8574 / 0.8397 -> 0.8739 /
#: 0.8632 (aorta k=3 0.78 -> 0.89), the 40 untuned organ pairs 0.5626 -> 0.5617 (CT portal vein k=3 0.56
#: -> 0.39). Steps of 0.05 / 0.15 / 0.25 read 0.7997 / 0.8047 / 0.8032 (shared), 0.5608 / 0.5592 / 0.5513
#: (organs, 11 / 12 / 14 pairs over 2x). On MRI, whose intensities drift between slices, the kidneys and
#: spleens shrank (0.25: shared 0.7837, MRI right kidney -0.10 at every k): MRI planes are redrawn alone.
#: 0 redraws every plane alone.
REDRAW_GAP = 0.1
#: On a slice where only the background is painted, a part of the walk's region that background strokes
#: run across for at least this fraction of its diameter is not the structure: the user has said so, and
#: the walk through that part ends there (:func:`refuted`). A stroke that only trims a part's edge (a
#: shorter span) removes its own pixels; to keep the structure on such a slice, paint it there too.
CROSSING = 0.5
#: Each step's appearance model also reads the classifier's probability of the structure (``proba``:
#: DINOv3 features and intensity), except a step from an annotated slice: the classifier was fitted to
#: that slice's strokes, and a model trained there learnt to trust it more than it deserves one slice on
#: (MRI autochthon k=1 0.72 -> 0.07 when every step read it). On the shared cases (random ViT-S) mean
#: Dice 0.7818 -> 0.7897 (aorta k=3 / k=5 +0.06 / +0.13, CT spleen k=2 +0.02), the 40 untuned organ
#: pairs 0.5500 -> 0.5559, the magnified lesions 0.609 -> 0.618. Only for structures wide enough for the
#: classifier's grid (as ``MIN_CELLS``): 0.7950 but organs 0.5334 (without the first-step rule) or 0.7896 /
#: 0.5503; with every step reading it: 0.7800 (brain lesion k=1 0.60 -> 0.34). Those runs fitted each
#: pair's classifier warm from the previous pair's; fitted cold (f731f0b) the shared pairs read 0.7768 ->
#: 0.7814 with it, the organs 0.5483 -> 0.5403 and the demo's crops 0.848 -> 0.838: kept for the lesions,
#: whose fits were always cold, and the shared cases.
STEP_CLASSIFIER = True


#: Why a walk ended on a slice (:attr:`Propagation.stops`), as the CLI and the widget say it.
ENDS = "the structure ends (almost nothing found)"
FLARES = f"flares out over {MAX_GROWTH:g}x the previous slice: a neighbour"
OTHER_TISSUE = "another tissue (intensity outside the structure's, the forest agrees)"
REGROWS = "grows back past the structure's end: a look-alike neighbour"
NOT_HERE = "painted 'not here'"


@dataclass
class Propagation:
    """Result of :func:`propagate`.

    Attributes
    ----------
    labels : np.ndarray (Z, Y, X)
        Class values (the scribbles'); ``background`` where no structure was found.
    confidence : np.ndarray (S,)
        Per slice along ``axis``: 1 on annotated slices, the appearance model's decisiveness (0..1) on the
        slices it reached, NaN on slices never reached.
    annotated : tuple of int
        Annotated slices along ``axis``.
    axis : int
    background : int
    stops : dict slice -> str
        The slices where a walk arrived and ended, and why (``ENDS``, ``FLARES``, ``OTHER_TISSUE``,
        ``REGROWS``, ``NOT_HERE``): where to look when the result stops short or ought to have.
    """

    labels: np.ndarray
    confidence: np.ndarray
    annotated: tuple[int, ...]
    axis: int
    background: int
    stops: dict[int, str] = field(default_factory=dict)

    def ended(self) -> str:
        """Where and why the walks ended, readable ("slice 19: ...; slice 30: ..."); empty if nowhere."""
        return "; ".join(f"slice {s}: {why}" for s, why in sorted(self.stops.items()))

    def suggest(self) -> int | None:
        """The unannotated slice to annotate next, None if none was reached.

        The reached slice with the most structure in doubt, far from what is painted: (1 - confidence)
        x the structure's area there or on a slice beside it (a slice where the walk stopped counts its
        neighbour's) x its distance in slices to the nearest annotated one. The least confident slice
        alone was mostly the structure's last few pixels or the slice beside a painted one, which teach
        the next round little (see docs/analysis.md, "Kept on 7 Dec 2026 (third stop)"). The least
        confident slice when no structure was found anywhere.
        """
        conf = np.array(self.confidence, dtype=float)
        conf[list(self.annotated)] = np.nan
        if not np.isfinite(conf).any():
            return None
        lab = np.moveaxis(np.asarray(self.labels), self.axis, 0)
        area = np.count_nonzero((lab != self.background).reshape(len(lab), -1), axis=1).astype(float)
        near = np.maximum(area, np.maximum(np.r_[0.0, area[:-1]], np.r_[area[1:], 0.0]))
        dist = np.min(np.abs(np.arange(len(conf))[:, None] - np.array(self.annotated)[None, :]), axis=1) \
            if self.annotated else np.ones(len(conf))
        doubt = (1 - conf) * near * dist
        if np.nanmax(doubt) > 0:
            return int(np.nanargmax(doubt))
        return int(np.nanargmin(conf))


def pixel_features(plane: np.ndarray) -> np.ndarray:
    """(H, W, 1 + len(SIGMAS)) intensity and Gaussian-smoothed intensity of a normalised plane."""
    feats = [plane] + [ndimage.gaussian_filter(plane, s) for s in SIGMAS]
    return np.stack(feats, axis=-1).astype(np.float32)


def _box(mask: np.ndarray, spacing2: np.ndarray) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0) + 1
    extent = float(((hi - lo) * spacing2).max())
    margin = np.ceil((BOX_FACTOR * extent + MARGIN_MM) / spacing2).astype(int)
    lo, hi = np.maximum(lo - margin, 0), np.minimum(hi + margin, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


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
    from skimage.segmentation import random_walker

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
        walk = random_walker(datas[0], seeds[0], beta=BETA, mode="bf", channel_axis=-1, spacing=sp)[None]
    else:
        gap = RUN_GAP if gap is None else gap
        if gap <= 0:
            raise ValueError(f"gap must be > 0 to walk {n} planes together (got {gap})")
        walk = _walk_planes(np.stack(datas), np.stack(seeds), (gap, *sp), channel_axis=-1)
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
            out.setdefault(c, [None] * n)[k] = _touching(region, scribbles[k] == c)
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


def _plane_features(plane: np.ndarray, extra: np.ndarray | None) -> np.ndarray:
    """:func:`pixel_features` of a plane, with the ``extra`` channels appended."""
    feats = pixel_features(plane)
    return feats if extra is None else np.concatenate([feats, extra.astype(np.float32)], axis=-1)


def _local_proba(sources: list[np.ndarray], masks: list[np.ndarray], ring: np.ndarray,
                 target: np.ndarray, where: np.ndarray) -> np.ndarray | None:
    """P(structure) on ``target`` at ``where`` from a class-balanced logistic regression on the source
    planes' masks vs ``ring`` (standardised features; all planes as (H, W, F) pixel features)."""
    from sklearn.linear_model import LogisticRegression

    xs, ys = [], []
    for feats, mask in zip(sources, masks, strict=True):
        bg = ring & ~mask
        if mask.sum() < 3 or bg.sum() < 3:
            continue
        xs += [feats[mask], feats[bg]]
        ys += [np.ones(int(mask.sum()), np.int8), np.zeros(int(bg.sum()), np.int8)]
    if not xs:
        return None
    X, y = np.concatenate(xs), np.concatenate(ys)
    if np.ptp(X, axis=0).max() <= 0:
        return None
    from threadpoolctl import threadpool_limits

    mean, std = X.mean(axis=0), X.std(axis=0) + 1e-6
    # Balanced classes: the ring is larger than the structure, and size must not bias the boundary.
    with threadpool_limits(1):  # tiny problem: BLAS threads only fight torch's and each other
        model = LogisticRegression(class_weight="balanced", max_iter=200).fit((X - mean) / std, y)
    p = np.zeros(target.shape[:2], np.float32)
    p[where] = model.predict_proba((target[where] - mean) / std)[:, 1]
    return p


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
    uniq, counts = np.unique(values, return_counts=True)
    if len(uniq) == 0:
        raise ValueError("no scribbles")
    a, b = (d for d in range(3) if d != axis)
    every = np.stack(np.unravel_index(flat, shape), axis=1)
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


def _grown_box(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """Bounding box of ``mask`` grown by ``margin`` pixels, clipped to the plane."""
    idx = np.argwhere(mask)
    lo, hi = np.maximum(idx.min(0) - margin, 0), np.minimum(idx.max(0) + 1 + margin, mask.shape)
    return slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1]))


def box_inside(inner: tuple[slice, slice], outer: tuple[slice, slice]) -> bool:
    """Whether box ``inner`` lies inside box ``outer`` (tuples of slices with starts and stops)."""
    return all(o.start <= i.start and i.stop <= o.stop for i, o in zip(inner, outer, strict=True))


def _disk(radius: int) -> np.ndarray:
    r = max(1, int(radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return np.hypot(yy, xx) <= r


def propagate(image: np.ndarray, scribbles: np.ndarray, spacing, *, axis: int = 0,
              background: int | None = None, proba=None, cell: float | None = None,
              max_angle: float = MAX_ANGLE,
              threshold: float = 0.5, min_fraction: float = 0.05, cancel=None, extra=None,
              progress=None, one_object: bool = False, hounsfield: bool = False) -> Propagation | None:
    """Segment the painted structures on their annotated slices and follow them through the volume.

    Parameters
    ----------
    image : (Z, Y, X) float array-like
        Normalised image (about [0, 1], e.g. :func:`.sampling.normalise_image`), read plane by plane.
    scribbles : (Z, Y, X) int
        0 unlabelled, else class values; at least one structure and the background painted. On a slice
        with background strokes only, the parts of the walk's region those strokes cross are dropped
        (:func:`refuted`): "not here".
    spacing : (3,) float
        Voxel spacing (z, y, x): the allowed in-plane shift between slices grows with the slice spacing.
    axis : int
        Axis the annotated slices are cut along.
    background : int, optional
        Background class value (default: the class whose strokes span the largest in-plane box).
    proba : callable, optional
        ``proba(index) -> (H, W, K)`` classifier probabilities of plane ``index`` along ``axis`` (one
        channel per painted class other than the background, by increasing class value), used
        as extra channels of the annotated slices' walker and as an input of the steps past the first
        (``STEP_CLASSIFIER``).
    cell : float, optional
        Cell size (pixels) of the grid ``proba`` comes from (see :func:`annotated_masks`).
    max_angle : float
        Largest wall angle (degrees from ``axis``) followed between two slices.
    threshold : float
        Probability above which a pixel of the next slice joins the structure.
    min_fraction : float
        The walk stops when a slice's mask is smaller than this fraction of the previous one's (or
        larger than ``MAX_GROWTH`` times it).
    cancel : callable, optional
        ``cancel() -> bool`` checked between slices; raises :class:`~dinomed_napari.errors.Cancelled`.
    extra : callable, optional
        ``extra(index, cls, box) -> (H, W, F)`` more per-pixel features for the slice-to-slice model
        (e.g. a classifier's probability of class ``cls``), read only inside ``box`` (two slices of the
        plane); the model learns on each slice how far to trust them.
    progress : callable, optional
        ``progress(done, total)`` after each slice (per structure class).

    one_object : bool
        Give up (return None) when a class's outline on an annotated slice is more than ``MAX_PARTS``
        separate regions: strokes in several cells or across a texture describe a class by its look,
        which a classifier labels everywhere, not one structure to follow.
    hounsfield : bool
        The image is CT in Hounsfield units (see :func:`annotated_masks`).

    Returns
    -------
    Propagation or None
    """
    from ..errors import Cancelled, ScribbleError

    def img(s: int) -> np.ndarray:  # planes read where needed: no float32 copy of the volume
        return np.asarray(slice_of(image, axis, s), dtype=np.float32)

    scr = np.moveaxis(np.asarray(scribbles), axis, 0)
    sp = np.asarray(spacing, float)
    sp_slice, sp2 = sp[axis], np.delete(sp, axis)
    n = scr.shape[0]
    painted = painted_classes(scr)
    values = np.unique(np.concatenate(list(painted.values()))) if painted else np.zeros(0, int)
    if len(values) < 2:
        raise ScribbleError("propagation needs the structure and the background painted "
                            f"(found classes {[int(v) for v in values]})")
    bg = background_of(scr) if background is None else int(background)  # scr is already axis-first
    annotated = tuple(s for s, v in painted.items() if (v != bg).any())
    refuting = {s for s, v in painted.items() if (v == bg).all()}  # background alone: see refuted()
    structures = [int(v) for v in values if v != bg]  # the classes of ``proba``'s channels, in order
    labels = np.full(scr.shape, bg, np.uint8 if values.max() < 256 else np.int32)
    confidence = np.full(n, np.nan)
    masks: dict[int, dict[int, np.ndarray]] = {}
    for run in annotated_runs(annotated):  # adjacent annotated slices are walked together
        ps = [proba(s) if proba is not None and CLASSIFIER_WEIGHT > 0 else None for s in run]
        pixs = None if extra is None else [(lambda c, box, s=s: extra(s, c, box)[..., 0]) for s in run]
        for c, ms in run_masks([img(s) for s in run], [scr[s] for s in run], sp2, bg, ps, cell=cell,
                               pixels=pixs, hounsfield=hounsfield, classes=structures).items():
            for s, m in zip(run, ms, strict=True):
                if m is None:
                    continue
                if one_object and several_regions(m):
                    return None
                masks.setdefault(c, {})[s] = m
        confidence[list(run)] = 1.0
    shift = max(sp_slice * np.tan(np.radians(max_angle)), 2 * sp2.max())
    radius = max(1, int(round(shift / sp2.min())))
    disk = _disk(radius)
    for c, outlines in masks.items():
        rein_outliers(outlines, {s: scr[s] == c for s in outlines}, radius)
    classifier = proba is not None and STEP_CLASSIFIER
    planes: dict[int, np.ndarray] = {}  # the classifier's probability of the planes the walk still reads

    def inputs(t: int, c: int, box) -> np.ndarray | None:
        """The step model's inputs beyond intensity on plane ``t``: the forest's, then the classifier's."""
        chans = [] if extra is None else [extra(t, c, box)]
        if classifier:
            if t in masks[c]:  # a step from an annotated plane drops this channel: never computed there
                chans.append(np.zeros((*scr.shape[1:], 1), np.float32))
            else:  # once per plane, though a grown box recomputes the forest's channel
                if t not in planes:
                    planes[t] = proba(t)[..., [structures.index(c)]]
                chans.append(planes[t])
        return np.concatenate(chans, axis=-1).astype(np.float32) if chans else None

    # Winning probability where classes compete; one structure competes with nobody (no volume kept).
    best = np.zeros(scr.shape, np.float16) if len(masks) > 1 else None
    stops: dict[int, str] = {}
    total, step = max(1, len(masks) * (n - len(annotated))), 0
    for c, seeds in masks.items():
        done = dict(seeds)
        # Per slice, the largest area on the walk's way from the annotated slices and the smallest since.
        span = {t: (int(m.sum()),) * 2 for t, m in seeds.items()}
        feats: dict[int, tuple] = {}  # each plane's (box, features): a target first, then a source
        planes.clear()  # another structure, another channel

        # The structure's own intensity range on its annotated slices: a walk that drifts out of it has
        # left the structure (it follows whatever neighbour looks locally different from its ring).
        inside = np.concatenate([img(t)[m] for t, m in seeds.items()])
        lo, hi = np.percentile(inside, [STOP_PERCENTILE, 100 - STOP_PERCENTILE]) if inside.size else (0, 0)
        dist = np.min(np.abs(np.arange(n)[:, None] - np.array(list(seeds))[None, :]), axis=1)
        for s in sorted((s for s in range(n) if s not in seeds), key=lambda s: dist[s]):
            if cancel is not None and cancel():
                raise Cancelled("propagation cancelled")
            step += 1
            if progress is not None:
                progress(step, total)
            for t in [t for t in feats if dist[t] < dist[s] - 1]:
                del feats[t]  # steps go outward: planes two steps behind are never read again
                planes.pop(t, None)
            srcs = [t for t in (s - 1, s + 1) if 0 <= t < n and dist[t] < dist[s] and done.get(t) is not None
                    and done[t].any()]
            if not srcs:
                continue
            prev = np.logical_or.reduce([done[t] for t in srcs])
            # Everything this step and the next one read lies within 3 shifts of ``prev``: the extra
            # features (a forest over a filter bank: the costly part) are computed in that box only.
            box = _grown_box(prev, 3 * radius + 1)
            for t in (*srcs, s):
                if t not in feats or not box_inside(box, feats[t][0]):
                    feats[t] = (box, _plane_features(img(t), inputs(t, c, box)))
            found = np.zeros(prev.shape, bool)
            prob = np.zeros(prev.shape, np.float32)
            forest = None if extra is None else (lambda s=s, c=c, box=box: extra(s, c, box)[..., 0])
            # The classifier was fitted to the annotated slices' strokes: its probability there is learnt,
            # not predicted, and a step from one of them goes without it (see ``STEP_CLASSIFIER``).
            fitted = classifier and any(t in seeds for t in srcs)
            use = slice(None, -1) if fitted else slice(None)
            whys: list[str] = []  # why parts ended on this slice
            for part in _parts(prev):
                # Each part of the structure (the two limbs of the aortic arch) is followed on its own:
                # one part ending, or flaring into a neighbour, does not end or flood the others.
                step_out = _step(part, prev, disk, [feats[t][1][..., use] for t in srcs],
                                 [done[t] & part for t in srcs], feats[s][1][..., use], threshold,
                                 min_fraction, (lo, hi), forest)
                if step_out is None:
                    continue
                m, p, conf, why = step_out
                confidence[s] = conf if np.isnan(confidence[s]) else min(confidence[s], conf)
                if m is not None:
                    found |= m
                    prob = np.maximum(prob, p)
                elif why not in whys:
                    whys.append(why)
            # Channel 0 of a plane's features is the plane itself, already read.
            came = (feats[srcs[0]][1][..., 0], done[srcs[0]]) if hounsfield else None  # see REDRAW_GAP
            found = redraw_outline(feats[s][1][..., 0], found, sp2, previous=came)
            if s in refuting:
                painted = found.any()
                found = refuted(found, scr[s] == bg)
                if painted and not found.any():
                    whys = [NOT_HERE]
            if not found.any():
                _ended(stops, s, c, whys or [ENDS], len(masks))
                continue
            found = ndimage.binary_fill_holes(found)
            found = found & (scr[s] != bg) | (scr[s] == c)  # painted pixels always win
            area = int(found.sum())
            # Between two slices that hold the structure, the walk cannot have passed its end.
            peak, trough = span[srcs[0]] if len(srcs) == 1 else (area, area)
            if regrown(area, trough, peak):
                _ended(stops, s, c, [REGROWS], len(masks))
                continue
            span[s] = (area, area) if area > peak else (peak, min(trough, area))
            done[s] = found
            _claim(labels[s], None if best is None else best[s], done[s], prob, c)
        for s, m in seeds.items():
            _claim(labels[s], None if best is None else best[s], m, np.ones(m.shape, np.float32), c)
    return Propagation(labels=np.moveaxis(labels, 0, axis), confidence=confidence, annotated=annotated,
                       axis=axis, background=bg, stops=stops)


def _ended(stops: dict[int, str], s: int, c: int, whys: list[str], n_classes: int) -> None:
    """Note why the walk of class ``c`` ended on slice ``s`` (the class named when there are several)."""
    why = " / ".join(whys)
    why = f"class {c}: {why}" if n_classes > 1 else why
    stops[s] = f"{stops[s]}; {why}" if s in stops else why


def regrown(area: int, smallest: int, largest: int) -> bool:
    """Whether a walk's region of ``area`` pixels grew back past the structure's end: the walk had
    tapered from ``largest`` (its largest area so far) to ``smallest`` (the least since then, under
    ``TAPER`` x ``largest``) and this is over ``REGROW`` x ``smallest`` (see ``TAPER``)."""
    return REGROW > 0 and smallest < TAPER * largest and area > REGROW * smallest


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
        outlines[s] = _touching(outlines[s] & reach, strokes[s]) | strokes[s]
        cut.append(s)
    return cut


def redraw_outline(plane: np.ndarray, mask: np.ndarray, spacing2=(1.0, 1.0),
                   band: int | None = None, previous=None) -> np.ndarray:
    """``mask``'s outline moved onto the image's edges by a random walker in a band around it.

    Parameters
    ----------
    plane : (H, W) float
        Normalised image (about [0, 1]); the walker sees it windowed around the mask's intensities
        (:func:`stroke_window`).
    mask : (H, W) bool
        A region whose boundary is roughly right (within ``band`` pixels).
    spacing2 : (2,) float
        Pixel spacing of the plane.
    band : int, optional
        Pixels on either side of the boundary the walker may move it by (default ``EDGE_BAND``).
    previous : (plane, mask), optional
        The slice the walk came from and its mask, walked with ``plane`` as a second plane
        ``REDRAW_GAP`` in-plane pixels away, every pixel of it seeded (see ``REDRAW_GAP``).

    Returns
    -------
    (H, W) bool
        The walker's region connected to ``mask`` eroded by ``band`` (its sure core); ``mask`` itself when
        that core is under 3 pixels (too thin to redraw), when the region leaves no background in its
        plane, or when the plane is flat or not finite around it.
    """
    from skimage.segmentation import random_walker

    band = EDGE_BAND if band is None else int(band)
    if band < 1 or not mask.any():
        return mask
    box = _grown_box(mask, band + 2)
    sub = mask[box]
    core = ndimage.binary_erosion(sub, iterations=band)
    if core.sum() < 3:
        return mask
    seeds = np.zeros(sub.shape, np.int32)
    seeds[~ndimage.binary_dilation(sub, iterations=band)] = 1
    seeds[core] = 2
    if not (seeds == 1).any():
        return mask  # the region fills its plane: no background to walk from
    # Windowed around the region's own intensities (as annotated slices are around their strokes), so a
    # brighter or darker neighbour (bone, air, fat) does not set the scale of the edges. The rim is
    # included: a window from the core alone clips a bright structure's blurred edge and pulls the
    # outline inward (a blurred synthetic tube: Dice 0.88 against 0.92).
    data = stroke_window(plane[box].astype(np.float64), sub)
    if not np.isfinite(data).all() or np.ptp(data) == 0:
        return mask  # no edge to move onto (a flat plane; the walker would divide by its zero spread)
    sp = np.asarray(spacing2, float)
    sp = sp / sp.min()
    both = None
    if previous is not None and REDRAW_GAP > 0:
        # The previous plane windowed as this one is (around its region): one tissue reads the same on both.
        both = stroke_window(np.stack([plane[box], previous[0][box]]).astype(np.float64),
                             np.stack([sub, np.zeros_like(sub)]))
        if not np.isfinite(both[1]).all():
            both = None  # a hole in the previous plane: this one is redrawn alone
    if both is not None:
        before = np.where(previous[1][box], 2, 1).astype(np.int32)
        walk = _walk_planes(both, np.stack([seeds, before]), (REDRAW_GAP, *sp))[0]
    else:
        walk = random_walker(data, seeds, beta=BETA, mode="bf", spacing=sp)
    out = np.zeros_like(mask)
    out[box] = _touching(walk == 2, core)
    return out


def refuted(region: np.ndarray, strokes: np.ndarray, span: float | None = None) -> np.ndarray:
    """``region`` without the parts that a background stroke runs across (see ``CROSSING``).

    Parameters
    ----------
    region : (H, W) bool
        Where the walk found the structure on a slice on which only the background is painted.
    strokes : (H, W) bool
        The background strokes on that slice.
    span : float, optional
        Fraction of a part's diameter (that of a disk of its area) the strokes inside it must span for
        the part to go (default ``CROSSING``).

    Returns
    -------
    (H, W) bool
        ``region`` less every part the strokes cross; a part they only touch stays (its stroke pixels
        are background all the same).
    """
    span = CROSSING if span is None else float(span)
    lab, _ = ndimage.label(region)
    out = region.copy()
    for i in np.unique(lab[strokes & region]):
        part = lab == i
        rr, cc = np.nonzero(part & strokes)
        if np.hypot(np.ptp(rr), np.ptp(cc)) >= span * 2 * np.sqrt(part.sum() / np.pi):
            out[part] = False
    return out


def _walk_planes(data: np.ndarray, seeds: np.ndarray, spacing, channel_axis: int | None = None) -> np.ndarray:
    """The random walker's labels on a stack of planes, solved iteratively: a direct solve of 5 planes
    of 30k pixels took 7 s against 0.6 s, for the same outlines."""
    import warnings

    from skimage.segmentation import random_walker

    with warnings.catch_warnings():  # the iterative solve's probabilities overshoot [0, 1] by its
        warnings.filterwarnings("ignore", "The probability range is outside")  # tolerance: argmax only
        return random_walker(data, seeds, beta=BETA, mode="cg_j", tol=1e-4, channel_axis=channel_axis,
                             spacing=spacing)


def _touching(region: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The connected parts of ``region`` that contain a ``seeds`` pixel."""
    lab, _ = ndimage.label(region)
    ids = np.unique(lab[seeds & region])
    return np.isin(lab, ids[ids > 0])


def _parts(prev: np.ndarray) -> list[np.ndarray]:
    """The separate parts of a slice's mask, each followed on its own: the ``MAX_TRACKS - 1`` largest
    alone, any smaller ones together (a walk that split into fragments stays affordable)."""
    lab, n = ndimage.label(prev)
    if n <= 1:
        return [prev]
    order = np.argsort(-np.bincount(lab.ravel())[1:], kind="stable") + 1
    parts = [lab == i for i in order[:MAX_TRACKS - 1]]
    rest = np.isin(lab, order[MAX_TRACKS - 1:])
    return parts + [rest] if rest.any() else parts


def _step(part: np.ndarray, prev: np.ndarray, disk: np.ndarray, sources: list[np.ndarray],
          masks: list[np.ndarray], target: np.ndarray, threshold: float, min_fraction: float,
          bounds: tuple[float, float], forest) -> tuple[np.ndarray | None, np.ndarray, float, str] | None:
    """One part of the structure followed onto the next slice: (mask, probability, confidence, why); the
    mask is None where the part ends there, and ``why`` says why (``ENDS``, ``FLARES``, ``OTHER_TISSUE``;
    empty otherwise); the whole result None where no model could be trained."""
    allowed = ndimage.binary_dilation(part, disk)
    ring = ndimage.binary_dilation(allowed, disk) & ~prev  # the other parts are not background
    p = _local_proba(sources, masks, ring, target, allowed)
    if p is None:
        return None
    conf = float(np.abs(2 * p[allowed] - 1).mean())
    cand = (p > threshold) & allowed
    m = _touching(cand, part)
    if m.sum() < min_fraction * part.sum():
        return None, p, conf, ENDS
    if m.sum() > MAX_GROWTH * part.sum():
        return None, p, conf, FLARES
    # Another tissue: its intensity (channel 0 of the plane's features) is outside the structure's range
    # and the forest trained on the scribbles does not call it the structure either (each alone stops
    # real structures early).
    lo, hi = bounds
    if not lo <= float(np.median(target[..., 0][m])) <= hi and forest is not None and \
            float(forest()[m].mean()) < 0.5:
        return None, p, conf, OTHER_TISSUE
    return m, p, conf, ""


def _claim(labels: np.ndarray, best: np.ndarray | None, mask: np.ndarray, p: np.ndarray, c: int) -> None:
    """Give ``mask`` to class ``c`` where its probability beats what another class claimed (``best``;
    None when there is one class only)."""
    if best is None:
        labels[mask] = c
        return
    win = mask & (p >= best)
    labels[win] = c
    best[win] = p[win]
