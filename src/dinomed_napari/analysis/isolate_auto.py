"""One click, one structure: the channel and threshold picked from the seed's neighbourhood.

Global thresholds fail on volumes nobody tuned them for: a whole-volume Otsu of CT splits air from body,
not a nodule from lung, and the PC1 foreground step can drop the very voxel the user clicked. Here the
threshold is the Otsu split of a box around the seed (``radius_mm``), on the side the seed lies, and:

- PC1 is used (as a foreground mask before the intensity threshold) only when it splits the box into two
  clear groups (Otsu effectiveness >= PC1_SEPARATION; random-weight PC1s reach 0.61-0.79 on the bundled
  CT) with the seed in the upper one, and only if the seed survives it; otherwise the image intensity
  alone is thresholded, and the result says so;
- the kept region is the 3D component holding the seed, inside the box, so a preview of one plane is
  exactly that plane of the 3D result (same thresholds, same components).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .isolate import _threshold
from .sampling import check_points

#: PC1 gates the foreground only when it splits the box into two clear groups (Otsu's effectiveness).
PC1_SEPARATION = 0.85
#: Half-size of the box around the seeds in which thresholds are chosen and the structure is kept (mm).
RADIUS_MM = 40.0
#: A structure whose half-size is over a third of the box is isolated again in a box this many times its
#: half-size: Otsu's split depends on how much of the box the structure fills (the shared lung nodule
#: magnified 3x / 4x: Dice 0.80 / 0.83 in the 40 mm box, 0.87 / 0.89 in the widened one).
BOX_PER_EXTENT = 3.0
#: Largest half-size (mm) of the widened box.
MAX_RADIUS_MM = 100.0
#: A region covering more than this fraction of the box's in-plane sides reaches them: it is the tissue
#: around the structure, or runs on past the box.
MAX_BORDER = 0.02
#: A region that intensity cannot keep off the box's sides is parted from what it touches by shape
#: (:func:`shape_split`). The 35 HU lung tumour on the mediastinum of
#: ``benchmarks/bench_phantom_lesions.py`` (synthetic): Dice 0.272 -> 0.934. One click at the deepest
#: voxel of 29 shared structures (``../shared`` CT and MRI organs, lesions, aorta): mean 0.420 -> 0.455
#: (CT portal vein 0.12 -> 0.55, vertebra L1 0.10 -> 0.40, duodenum 0.21 -> 0.51, gallbladder 0.50 ->
#: 0.59, spleen 0.69 -> 0.72; MRI stomach 0.67 -> 0.58, autochthon 0.75 -> 0.72); the bundled nodule
#: and the magnified lesions unchanged. Taking a deeper Otsu level only where it
#: splits two clear groups (effectiveness >= 0.7) instead cost those 29 (0.422).
SPLIT_BY_SHAPE = True
#: ... when the seed lies this deep (mm) in the region: a solid blob (a lesion worth a click is a
#: centimetre across or more), not the speckle a deep Otsu level leaves in an organ (there the basin
#: around the seed was a few voxels: three shared organs fell from 0.39-0.56 Dice to 0).
SPLIT_DEPTH_MM = 5.0
#: The seed's flood starts from the centre of the blob the seed is in (:func:`climb`), not from the seed:
#: a click off the centre is shallow, and the flood from the box's sides, deep where the tissue runs on
#: past them, took the blob's centre before the seed's flood began. Clicks at 25-75 % of the depth of the
#: lung tumour phantoms (``benchmarks/bench_phantom_lesions.py``, 17 and 24 mm, on the mediastinum and on
#: the chest wall): mean Dice 0.772 -> 0.919, worst 0.290 -> 0.879; the deepest voxel unchanged. One click
#: at the deepest voxel of 29 shared structures: 0.455 -> 0.465 (CT right kidney 0.39 -> 0.85, brain
#: lesion 0.01 -> 0.17, MRI duodenum 0.33 -> 0.51; the livers, larger than the box, 0.56 / 0.63 -> 0.32 /
#: 0.38). Rejecting a basin whose border with the sides' flood lies deeper than 0.7-0.9 of its centre
#: (a blob without a neck) did not recover the livers without losing the kidney (0.437-0.463).
CLIMB = True


@dataclass
class Isolation:
    """Result of :func:`auto_isolate`.

    Attributes
    ----------
    mask : np.ndarray uint8 (Z, Y, X)
        1 = the structure.
    recipe : str
        The steps used, readable (e.g. "intensity above 123.4 (local Otsu)").
    thresholds : dict
        ``{"foreground": PC1 threshold or None, "inner": value, "side": "above"/"below"}``.
    seeds_inside : bool
        Every seed lies in ``mask``.
    note : str
        Empty, or which step removed a seed and what to try.
    spacing : tuple of float
    """

    mask: np.ndarray
    recipe: str
    thresholds: dict
    seeds_inside: bool
    note: str = ""
    spacing: tuple = field(default=(1.0, 1.0, 1.0))

    @property
    def volume_ml(self) -> float:
        """Volume of the structure in millilitres (spacing in mm)."""
        return float(np.count_nonzero(self.mask)) * float(np.prod(self.spacing)) / 1000.0

    def plane(self, index: int, axis: int = 0) -> np.ndarray:
        """The result on plane ``index`` along ``axis`` (what a preview shows)."""
        return np.take(self.mask, index, axis=axis)


def _box(shape, pts: np.ndarray, spacing: np.ndarray, radius_mm: float) -> tuple[slice, ...]:
    r = np.maximum(np.ceil(radius_mm / spacing).astype(int), 1)
    lo = np.maximum(pts.min(0) - r, 0)
    hi = np.minimum(pts.max(0) + r + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def separation(values: np.ndarray, t: float) -> float:
    """Otsu's effectiveness at ``t``: between-class over total variance (1 = two clean modes, ~0.64 for a
    uniform spread, lower for one Gaussian blob)."""
    v = np.asarray(values, np.float64).ravel()
    hi = v > t
    w1 = hi.mean()
    if v.var() <= 0 or w1 in (0.0, 1.0):
        return 0.0
    return float(w1 * (1 - w1) * (v[hi].mean() - v[~hi].mean()) ** 2 / v.var())


def _split(values: np.ndarray, seed_value: float) -> tuple[float, str]:
    """Otsu threshold of ``values`` and the side of it the seed's value lies on."""
    t = _threshold(values, "otsu")
    return t, "above" if seed_value > t else "below"


def _seed_component(inner: np.ndarray, local: np.ndarray) -> np.ndarray:
    lab, _ = ndimage.label(inner, ndimage.generate_binary_structure(3, 1))
    ids = {int(lab[tuple(p)]) for p in local} - {0}
    return np.isin(lab, sorted(ids))


def _sides(shape) -> np.ndarray:
    """The box's in-plane sides: its first and last rows and columns, on every slice."""
    sides = np.zeros(shape, bool)
    sides[:, [0, -1], :] = True
    sides[:, :, [0, -1]] = True
    return sides


def _border_share(mask: np.ndarray) -> float:
    """Fraction of the box's border voxels (in-plane sides, each voxel once) that ``mask`` covers."""
    return float(mask[_sides(mask.shape)].mean())


def _nested_split(sub: np.ndarray, fg: np.ndarray, local: np.ndarray, seed_value: float,
                  depth: int = 3, max_border: float = MAX_BORDER):
    """Otsu inside the box, then again inside the seed's side, until the seed's component no longer
    reaches the box's sides (a structure, not the tissue around it). -> (threshold, side, mask, level)."""
    region = fg.copy()
    lo, hi = -np.inf, np.inf
    best = None
    for level in range(1, depth + 1):
        vals = sub[region]
        if vals.size < 2 or np.ptp(vals) <= 0:
            break
        t, side = _split(vals, seed_value)
        lo, hi = (max(lo, t), hi) if side == "above" else (lo, min(hi, t))
        inner = fg & (sub > lo) & (sub < hi)
        keep = _seed_component(inner, local)
        best = (t, side, keep, level)
        if _border_share(keep) <= max_border:
            break
        region = inner
    if best is None:
        return float(seed_value), "above", np.zeros(sub.shape, bool), 0
    return best


def auto_isolate(image: np.ndarray, seeds, spacing=(1.0, 1.0, 1.0), *, pc1: np.ndarray | None = None,
                 radius_mm: float = RADIUS_MM, fill_holes: bool = True, min_size: int = 0) -> Isolation:
    """Isolate the structure under the seed(s) with thresholds chosen around them.

    Parameters
    ----------
    image : (Z, Y, X)
        Intensities (HU, MR units, SUV, ...).
    seeds : (N, 3)
        (z, y, x) voxels inside the structure.
    spacing : (3,) float
        Voxel spacing in mm (sets the box and the reported volume).
    pc1 : (Z, Y, X), optional
        First PCA component of the features; used as a foreground mask when it puts the seeds in its
        foreground (above its Otsu threshold in the box).
    radius_mm : float
        Half-size of the box around the seeds. A structure larger than a third of it is isolated again
        in a box :data:`BOX_PER_EXTENT` times its half-size (at most :data:`MAX_RADIUS_MM`), so that
        the thresholds see as much surrounding tissue around a large tumour as around a small nodule.
    fill_holes, min_size
        Post-processing of the kept region.

    Returns
    -------
    Isolation
    """
    pts = np.rint(check_points(seeds, tuple(np.shape(image)))).astype(int)
    if len(pts) == 0:
        raise ValueError("auto isolation needs at least one seed (z, y, x) inside the structure")
    sp = np.asarray(spacing, float)
    first, clean = _isolate_in_box(image, pts, sp, pc1, radius_mm, fill_holes, min_size)
    want = float(min(np.ceil(BOX_PER_EXTENT * _half_extent_mm(first.mask, sp)), MAX_RADIUS_MM))
    if first.seeds_inside and clean and want > radius_mm:
        wider, clean = _isolate_in_box(image, pts, sp, pc1, want, fill_holes, min_size)
        # A structure filling much of the box pulls Otsu's split towards its surroundings, so more
        # surroundings can only tighten it: a region that grows instead took in something else.
        if wider.seeds_inside and clean and np.count_nonzero(wider.mask) <= np.count_nonzero(first.mask):
            return wider
    return first


def shape_split(region: np.ndarray, seeds: np.ndarray, spacing) -> np.ndarray:
    """The part of ``region`` around ``seeds`` that a watershed of its distance map parts from the
    region's voxels on the box's in-plane sides (what it touches and runs on past the box).

    Parameters
    ----------
    region : (Z, Y, X) bool
        A thresholded component holding the seeds and reaching the box's sides.
    seeds : (N, 3) int
        Seed voxels, inside ``region``.
    spacing : (3,) float
        Voxel spacing (mm): distances are measured in it.

    Returns
    -------
    (Z, Y, X) bool
        The seeds' basin (flooded from the seeds and, with ``CLIMB``, from the centres of their blobs);
        empty when no voxel of ``region`` lies on the box's sides, a seed is outside it, no seed or
        centre lies ``SPLIT_DEPTH_MM`` deep in it, or the basin is smaller than a ball of half that depth
        (the structure runs on past the box).
    """
    from skimage.segmentation import watershed

    markers = np.zeros(region.shape, np.int32)
    sides = _sides(region.shape)
    markers[sides & region] = 2
    if not markers.any() or not all(region[tuple(p)] for p in seeds):
        return np.zeros(region.shape, bool)
    for p in seeds:
        markers[tuple(p)] = 1
    region = ndimage.binary_fill_holes(region)  # noise holes would make the inside look shallow
    depth = ndimage.distance_transform_edt(region, sampling=spacing)
    if CLIMB:
        # The climb counts the box's sides as a border: it stays in the blob inside the box.
        inner = ndimage.distance_transform_edt(np.pad(region, ((0, 0), (1, 1), (1, 1))),
                                               sampling=spacing)[:, 1:-1, 1:-1]
        for p in seeds:
            markers[climb(inner, p)] = 1
    deepest = float(depth[markers == 1].max())
    if deepest < SPLIT_DEPTH_MM:
        return np.zeros(region.shape, bool)  # no solid blob around the seed: its basin means nothing
    basin = watershed(-depth, markers, mask=region) == 1
    # The box's sides are not background to the distance map, so a structure running on past them is
    # deep there: their flood then takes all but a few voxels around the seed. A basin smaller than a
    # ball of half the seed's depth is that (an organ larger than the box), not a blob around the seed.
    if np.count_nonzero(basin) * np.prod(spacing) < 4 / 3 * np.pi * (deepest / 2) ** 3:
        return np.zeros(region.shape, bool)
    return basin


def climb(depth: np.ndarray, start) -> tuple[int, ...]:
    """The voxel reached from ``start`` by steepest ascent of ``depth`` (26 neighbours): the centre of
    the blob the voxel lies in."""
    here = tuple(int(v) for v in start)
    while True:
        lo = [max(h - 1, 0) for h in here]
        window = depth[tuple(slice(a, h + 2) for a, h in zip(lo, here, strict=True))]
        step = np.unravel_index(int(np.argmax(window)), window.shape)  # the first of equal maxima
        best = tuple(int(a + d) for a, d in zip(lo, step, strict=True))
        if depth[best] <= depth[here]:
            return here
        here = best


def _half_extent_mm(mask: np.ndarray, spacing: np.ndarray) -> float:
    """Half the largest extent (mm) of a mask's bounding box; 0 when empty."""
    idx = np.argwhere(mask)
    return 0.0 if len(idx) == 0 else float(((np.ptp(idx, axis=0) + 1) * spacing).max()) / 2


def _isolate_in_box(image, pts: np.ndarray, sp: np.ndarray, pc1, radius_mm: float, fill_holes: bool,
                    min_size: int) -> tuple[Isolation, bool]:
    """:func:`auto_isolate` in one box of ``radius_mm`` -> (result, the region stays off the box's sides)."""
    shape = tuple(np.shape(image))  # only the box around the seeds is read and converted
    box = _box(shape, pts, sp, radius_mm)
    local = pts - np.array([b.start for b in box])
    sub = np.asarray(image[box], np.float32)
    if not np.isfinite(sub).all():
        from dinomed_napari.errors import VolumeError

        raise VolumeError(f"the image holds {int(np.count_nonzero(~np.isfinite(sub)))} NaN/inf values in the "
                          f"{radius_mm:g} mm box around the seed(s) {pts.tolist()}; expected finite "
                          "intensities (replace them, e.g. np.nan_to_num, or click elsewhere)")
    seed_vals = [float(np.median(sub[tuple(slice(max(c - 1, 0), c + 2) for c in p)])) for p in local]
    fg = np.ones(sub.shape, bool)
    t_fg, steps, note = None, [], ""
    if pc1 is not None:
        pcs = np.asarray(pc1[box], np.float32)
        t_fg, side = _split(pcs, float(np.median([pcs[tuple(p)] for p in local])))
        eta = separation(pcs, t_fg)
        if side == "above" and eta < PC1_SEPARATION:
            note = (f"PC1 does not split the box into two clear groups (Otsu effectiveness {eta:.2f} < "
                    f"{PC1_SEPARATION}), so the PC1 foreground step was skipped. ")
            t_fg = None
        elif side == "above":
            fg = pcs > t_fg
            steps.append(f"PC1 foreground above {t_fg:.3g}")
        else:
            note = "PC1 puts the seed in the background, so the PC1 foreground step was skipped. "
            t_fg = None
    t_in, side, keep, level = _nested_split(sub, fg, local, float(np.median(seed_vals)))
    if t_fg is not None and not all(keep[tuple(p)] for p in local):
        # The PC1 gate left the seed out (its voxel below the gate, or an empty component): intensity alone.
        fg, t_fg, steps = np.ones(sub.shape, bool), None, []
        note = "The PC1 foreground dropped the seed, so intensity alone was used. "
        t_in, side, keep, level = _nested_split(sub, fg, local, float(np.median(seed_vals)))
    steps.append(f"intensity {side} {t_in:.4g} (Otsu level {level} of a {radius_mm:g} mm box around "
                 "the seed)")
    if _border_share(keep) > MAX_BORDER and SPLIT_BY_SHAPE:
        # Intensity does not part the structure from what it touches (a tumour on the mediastinum):
        # shape does, at the narrowing between the seed's blob and the tissue reaching the box's sides.
        blob = shape_split(keep, local, sp)
        if blob.any():
            keep = blob
            steps.append("parted from the tissue it touches at their narrowest (distance watershed)")
            note += ("Intensity alone does not separate this structure from the tissue it touches: it was "
                     "parted from it by shape, where they meet at their narrowest; check the border there, "
                     "or paint a few scribbles (segment). ")
    if fill_holes:
        keep = ndimage.binary_fill_holes(keep)
    if min_size > 0:
        lab2, _ = ndimage.label(keep)
        keep &= (np.bincount(lab2.ravel()) >= min_size)[lab2]
    mask = np.zeros(shape, np.uint8)
    mask[box] = keep
    inside = all(mask[tuple(p)] for p in pts)
    clean = _border_share(keep) <= MAX_BORDER
    if not clean:
        note += ("The region reaches the edges of the box around the seed: intensity does not separate "
                 "this structure from its surroundings here; paint a few scribbles (segment) instead. ")
    if np.ptp(sub) == 0:
        note += "The box around the seed has one intensity only: there is nothing to separate. "
    elif not inside:
        note += ("A seed fell outside the result (its neighbourhood straddles the threshold): click nearer "
                 "the structure's centre, or give --inner-threshold / --channel explicitly.")
    return Isolation(mask=mask, recipe=", then ".join(steps), thresholds={"foreground": t_fg,
                     "inner": t_in, "side": side}, seeds_inside=inside, note=note.strip(),
                     spacing=tuple(float(v) for v in sp)), clean
