"""Few-click segmentation: simulated scribbles -> ScribbleSegmenter (the widget's class) -> metrics.

Scored on the slices that were NOT annotated (along the annotation axis), per label: Dice, IoU, HD95 and
ASSD in the units of the voxel spacing (mm for medical volumes). One row per (variant, annotated slices,
label), which gives the Dice-vs-annotated-slices curve.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from dinomed_napari.bench.metrics import segmentation_metrics, slice_region
from dinomed_napari.bench.scribbles import Scribbles, simulate_scribbles

# ScribbleSegmenter options of each variant (names listed in grid.VARIANTS).
VARIANT_OPTIONS: dict[str, dict[str, Any]] = {
    "linear": {"classifier": "linear"},
    "rf": {"classifier": "rf"},
    "fusion": {"classifier": "linear", "intensity": "raw"},
    # DINOv3 + the multiscale filter bank under a random forest (the convpaint recipe on DINOv3).
    "hybrid": {"classifier": "rf", "intensity": "filters"},
    "triplanar": {"classifier": "linear"},
    # What `segment` and the widget run: structures followed in 3D, textures (EM) by the classifier
    # blended with the scribbles' forest.
    "default": {"intensity": "filters", "spatial": "auto"},
}


def prep_for(case, resolution: int):
    """The preprocessing of a case at one input resolution (its window preset)."""
    from dinomed_napari.preprocess import Preprocess

    return Preprocess(window=case.window, resolution=int(resolution))


def features(lc, backbone, resolution: int, settings, axis: int = 0):
    """Features of a loaded case along ``axis`` with ``extract_features`` (cached like the widgets')."""
    from dinomed_napari.features.extract import extract_features

    return extract_features(lc.volume, backbone=backbone, axis=axis, prep=prep_for(lc.case, resolution),
                            batch_size=settings.batch_size, cache_dir=settings.cache_dir)


def other_passes(lc, backbone, resolution: int, settings, axis: int) -> dict:
    """The two other slicing passes for tri-planar fusion, with ``extract_triplanar`` as the widget does."""
    from dinomed_napari.features.triplanar import extract_triplanar

    return extract_triplanar(lc.volume, axes=[a for a in (0, 1, 2) if a != axis], backbone=backbone,
                             prep=prep_for(lc.case, resolution), batch_size=settings.batch_size,
                             cache_dir=settings.cache_dir)


def scribbles_for(lc, n_slices: int, settings) -> Scribbles:
    """Seeded scribbles on ``n_slices`` slices: scribble value k + 1 is class k of ``lc.truth`` (0 = bg)."""
    return simulate_scribbles(lc.truth, n_slices=int(n_slices), strokes_per_class=settings.strokes,
                              axis=settings.axis, seed=settings.seed,
                              classes=list(range(len(lc.labels) + 1)))


def scribble_sets(lc, settings) -> Iterator[Scribbles]:
    """Scribbles for each requested number of annotated slices, skipping repeats: a volume with fewer
    usable slices than asked gives the same set again, which would double-count it in the curve."""
    seen = set()
    for n in sorted(set(settings.slices)):
        scr = scribbles_for(lc, n, settings)
        if scr.slices not in seen:
            seen.add(scr.slices)
            yield scr


def score(pred_classes: np.ndarray, lc, scr: Scribbles) -> list[dict[str, Any]]:
    """Metric rows (one per label) of a predicted class map (0 bg, 1..K) on the unannotated slices."""
    region = slice_region(lc.truth.shape, scr.slices, axis=scr.axis)
    n_eval = lc.truth.shape[scr.axis] - len(scr.slices)
    rows = []
    for k, lab in enumerate(lc.labels, start=1):
        m = segmentation_metrics(pred_classes == k, lc.truth == k, lc.spacing, region)
        rows.append({"label": lab, "class_index": k, "dice": m["dice"], "iou": m["iou"], "hd95_mm": m["hd95"],
                     "assd_mm": m["assd"], "n_slices": len(scr.slices), "n_eval_slices": n_eval,
                     "annotated_slices": list(scr.slices), "n_scribbled": int(np.count_nonzero(scr.labels)),
                     "status": "ok"})
    return rows


def to_classes(pred_scribble_values: np.ndarray) -> np.ndarray:
    """Scribble values 1..K+1 -> class map 0..K (inverse of :func:`scribbles_for`'s encoding)."""
    return (np.asarray(pred_scribble_values).astype(np.int16) - 1).clip(0).astype(np.uint8)


def fewclick_records(lc, fv, backbone, resolution: int, settings) -> Iterator[tuple[dict, np.ndarray]]:
    """Rows and predicted class maps of every variant x number of annotated slices."""
    from dinomed_napari.analysis.segment import ScribbleSegmenter

    feats: dict[str, Any] = {}
    for scr in scribble_sets(lc, settings):
        for variant in settings.variants:
            if variant == "triplanar":
                if "tri" not in feats:  # the other two passes, computed once per unit
                    feats["tri"] = {settings.axis: fv,
                                    **other_passes(lc, backbone, resolution, settings, settings.axis)}
                f = feats["tri"]
            else:
                f = fv
            # The classifier variants side by side (the 3D step is scored by the fewclick3d protocol),
            # and the default pipeline on the same strokes.
            seg = ScribbleSegmenter(**{"seed": settings.seed, "spatial": "none", **VARIANT_OPTIONS[variant]})
            seg.fit(f, scr.labels, image=lc.volume.data, spacing=lc.volume.spacing)
            pred = to_classes(seg.predict().labels)
            rows = score(pred, lc, scr)
            for row in rows:
                row.update(protocol="fewclick", method=variant)
                yield row, pred
