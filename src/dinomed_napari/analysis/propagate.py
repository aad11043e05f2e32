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

from ..blas import limited
from ..features.grid import slice_of
from . import annotated as _annot
from .annotated import annotated_runs, rein_outliers, run_masks, several_regions
from .redraw import redraw_outline
from .strokes import background_of, painted_classes
from .walker import box_inside, grown_box, touching

#: Largest angle (degrees from the slicing axis) of a structure's wall between two slices.
MAX_ANGLE = 30.0
#: The walk stops on a slice whose region's median intensity is outside these percentiles of the
#: structure's intensities on its annotated slices, when the forest also rejects it.
STOP_PERCENTILE = 10.0
#: The walk stops on a slice whose region is this many times the previous slice's: a wall flaring out
#: that fast has reached a neighbour (true steps on the shared cases grew up to 1.36x, so a few now end a
#: walk early). 1.5 -> 1.3 left the shared table as it was (mean 0.702), raised the 20 untuned structures
#: 0.462 -> 0.477 (CT vertebra L2 and MRI duodenum fell under 2x the true volume) and the magnified lesions
#: of ``benchmarks/bench_large_lesions.py`` 0.577 -> 0.595; 1.2 cost the shared table.
MAX_GROWTH = 1.3
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
FLARES = "flares out over {:g}x the previous slice: a neighbour"  # filled with MAX_GROWTH as the walk runs
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
    mean, std = X.mean(axis=0), X.std(axis=0) + 1e-6
    # Balanced classes: the ring is larger than the structure, and size must not bias the boundary.
    with limited(1):  # tiny problem: BLAS threads only fight torch's and each other
        model = LogisticRegression(class_weight="balanced", max_iter=200).fit((X - mean) / std, y)
    p = np.zeros(target.shape[:2], np.float32)
    p[where] = model.predict_proba((target[where] - mean) / std)[:, 1]
    return p


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
        ps = [proba(s) if proba is not None and _annot.CLASSIFIER_WEIGHT > 0 else None for s in run]
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
            box = grown_box(prev, 3 * radius + 1)
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
    m = touching(cand, part)
    if m.sum() < min_fraction * part.sum():
        return None, p, conf, ENDS
    if m.sum() > MAX_GROWTH * part.sum():
        return None, p, conf, FLARES.format(MAX_GROWTH)
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
