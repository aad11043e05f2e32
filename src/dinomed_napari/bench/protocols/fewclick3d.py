"""Few clicks, whole structure: what a person gives one structure, scored on the slices nobody painted.

For each label (a structure against everything else) and each number k of annotated slices: the strokes of
:func:`~dinomed_napari.bench.scribbles.structure_scribbles` on the k slices where the structure is largest;
the default :class:`~dinomed_napari.analysis.segment.ScribbleSegmenter` (filters + DINOv3, 3D
propagation); the filter-bank random forest on the same scribbles with the same clean-up a user would apply
to it (keep the 3D components touching the structure's strokes); and an "active" user who starts from one
slice and each round annotates the slice the segmenter suggests (or, where that slice shows a leak and no
structure, paints background across the leak). Rows: Dice, HD95 (mm) on unannotated
slices, predicted / true volume there, seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from dinomed_napari.bench.metrics import segmentation_metrics, slice_region, volume_ratio
from dinomed_napari.bench.scribbles import leak_stroke, structure_scribbles

#: Rounds of the simulated active user (annotated slices 1, 2, ... ACTIVE_ROUNDS).
ACTIVE_ROUNDS = 4


def score_row(pred: np.ndarray, truth: np.ndarray, lc, slices, axis: int, method: str, label: int, k: int,
              seconds: float) -> dict[str, Any]:
    """One table row: Dice, IoU, HD95, ASSD and predicted / true volume on the slices not in ``slices``."""
    region = slice_region(truth.shape, slices, axis=axis)
    m = segmentation_metrics(pred, truth, lc.spacing, region)
    ratio = volume_ratio(pred, truth, region)
    return {"protocol": "fewclick3d", "method": method, "label": label, "class_index": k,
            "dice": m["dice"], "iou": m["iou"], "hd95_mm": m["hd95"], "assd_mm": m["assd"],
            "volume_ratio": ratio, "n_slices": len(slices), "annotated_slices": [int(s) for s in slices],
            "n_eval_slices": truth.shape[axis] - len(slices), "fit_predict_seconds": round(seconds, 3),
            "status": "ok"}


def not_one_structure(truth: np.ndarray, axis: int) -> str:
    """Why one structure's clicks cannot describe this label ("" when they can): on its largest slice it
    covers over half the plane (a background-like class such as EM cell interiors), or its largest
    connected piece holds under half of it (many separate cells)."""
    from scipy import ndimage

    planes = np.moveaxis(truth, axis, 0)
    s = int(np.argmax(planes.sum(axis=(1, 2))))
    lab, n = ndimage.label(planes[s])
    biggest = np.bincount(lab.ravel())[1:].max() if n else 0
    share = planes[s].sum() / planes[s].size
    if share > 0.5:
        return (f"it covers {100 * share:.0f} % of its largest slice {s}: a background-like class, not one "
                "structure to click on; score it with the fewclick protocol")
    if biggest < 0.5 * planes[s].sum():
        return (f"{n} separate pieces on its largest slice {s} (the largest holds "
                f"{100 * biggest / planes[s].sum():.0f} %): not one structure to click on; score it with "
                "the fewclick protocol")
    return ""


def segment_default(seg, fv, lc, scr: np.ndarray):
    """The default segmenter on new scribbles; ``seg`` is refitted, so what depends on the image only
    (its filter bank, intensity features, sampled features) is computed once per case."""
    result = seg.fit(fv, scr, image=lc.volume.data, spacing=lc.spacing).predict()
    return result.labels == 2, result


def structure_scribble_sets(truth: np.ndarray, slices, axis: int, seed: int) -> Iterator[Any]:
    """:func:`structure_scribbles` on the k largest slices for each k in ``slices``, skipping a set seen
    before (a short structure) and one that leaves no slice with the structure to score."""
    seen = set()
    for n in sorted(set(slices)):
        scr = structure_scribbles(truth, n_slices=n, axis=axis, seed=seed)
        if scr.slices in seen or not np.delete(np.moveaxis(truth, axis, 0), scr.slices, axis=0).any():
            continue
        seen.add(scr.slices)
        yield scr


def fewclick3d_records(lc, fv, settings) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """Rows (and predicted masks) of ours, the filter bank and the active user, per label and k."""
    from dinomed_napari.analysis.cleanup import clean_labels
    from dinomed_napari.analysis.segment import ScribbleSegmenter

    from .baseline import case_filter_bank

    bank = case_filter_bank(lc, settings)
    seg = ScribbleSegmenter(intensity="filters")
    axis = settings.axis
    for k, lab in enumerate(lc.labels, start=1):
        truth = lc.truth == k
        why = not_one_structure(truth, axis)
        if why:
            yield {"protocol": "fewclick3d", "method": "default", "label": lab, "class_index": k,
                   "status": "skipped", "error": f"label {lab}: {why}"}, None
            continue
        for scr in structure_scribble_sets(truth, settings.slices, axis, settings.seed):
            t0 = time.perf_counter()
            pred, _ = segment_default(seg, fv, lc, scr.labels)
            yield score_row(pred, truth, lc, scr.slices, axis, "default", lab, k, time.perf_counter() - t0), \
                pred.astype(np.uint8) * np.uint8(k)
            t0 = time.perf_counter()
            classic = clean_labels(bank.segment(scr.labels, seed=settings.seed), scr.labels) == 2
            yield score_row(classic, truth, lc, scr.slices, axis, "filterbank_rf_cleanup", lab, k,
                       time.perf_counter() - t0), classic.astype(np.uint8) * np.uint8(k)
        yield from _active(seg, lc, fv, truth, lab, k, settings)


def _active(seg, lc, fv, truth, lab, k, settings) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """A user who starts on the largest slice and then, each round, follows the suggestion: paints the
    structure on the suggested slice or, where the walk leaked onto a slice without it, one background
    stroke across the leak there (:func:`~dinomed_napari.bench.scribbles.leak_stroke`). Scored, as the
    other rows, on the slices nobody painted."""
    axis = settings.axis
    slices = list(structure_scribbles(truth, n_slices=1, axis=axis, seed=settings.seed).slices)
    refuting: dict[int, np.ndarray] = {}  # slice without the structure -> the stroke across its leak
    for _ in range(ACTIVE_ROUNDS):
        scr = structure_scribbles(truth, axis=axis, seed=settings.seed, slices=slices)
        for s, stroke in refuting.items():
            np.moveaxis(scr.labels, axis, 0)[s][stroke] = 1
        painted = sorted(slices + list(refuting))
        t0 = time.perf_counter()
        pred, result = segment_default(seg, fv, lc, scr.labels)
        row = score_row(pred, truth, lc, painted, axis, "active", lab, k, time.perf_counter() - t0)
        yield row, pred.astype(np.uint8) * np.uint8(k)
        nxt = result.suggested_slice
        if nxt is None or nxt in painted:
            break
        if np.take(truth, nxt, axis=axis).any():
            slices = sorted(slices + [nxt])
        else:
            leak = np.take(pred, nxt, axis=axis)
            if not leak.any():
                break
            refuting[nxt] = leak_stroke(leak)
        if not np.delete(np.moveaxis(truth, axis, 0), slices + list(refuting), axis=0).any():
            break  # every slice with the structure is painted: nothing left to score
