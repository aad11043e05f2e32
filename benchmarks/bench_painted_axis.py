"""Strokes painted in a coronal or sagittal view, features along axis 0: the walk along the painted axis.

The shared CT (``../shared/data/ct_organs``, 3 mm isotropic): spleen, right kidney and liver painted with
``structure_scribbles`` on their 3 largest coronal (axis 1) or sagittal (axis 2) slices, random ViT-S at
512 px, Dice and predicted / true volume on the unannotated slices of that axis. "features' axis" walks
along axis 0 (the rule before 7 Dec 2026, tenth stop), "painted axis" is the default::

    .venv/bin/python benchmarks/bench_painted_axis.py      # about 2 min on 2 cores

Numbers are in docs/analysis.md ("Few clicks, whole structure").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct_organs"
ORGANS = ((1, "spleen"), (2, "right kidney"), (5, "liver"))


def main() -> int:
    from dinomed_napari.analysis import strokes as S
    from dinomed_napari.analysis.segment import ScribbleSegmenter
    from dinomed_napari.bench.metrics import dice_iou, slice_region, volume_ratio
    from dinomed_napari.bench.scribbles import structure_scribbles
    from dinomed_napari.features.extract import extract_features
    from dinomed_napari.io import load_volume
    from dinomed_napari.models import load_backbone
    from dinomed_napari.preprocess import Preprocess

    vol = load_volume(SHARED / "totalseg_example_ct_sm.nii.gz")
    labels = load_volume(SHARED / "totalseg_example_ct_sm_seg.nii.gz", check=False).data
    fv = extract_features(vol, backbone=load_backbone("S", "random", device="cpu"), axis=0,
                          prep=Preprocess(resolution=512), cache_dir=False)
    painted_axis = S.painted_axis
    rules = {"features' axis": lambda points, default=0: default, "painted axis": painted_axis}
    means = {rule: [] for rule in rules}
    try:
        for value, name in ORGANS:
            truth = labels == value
            for axis in (1, 2):
                scr = structure_scribbles(truth, n_slices=3, axis=axis, seed=0)
                region = slice_region(truth.shape, scr.slices, axis)
                cells = []
                for rule, fn in rules.items():
                    S.painted_axis = fn
                    res = ScribbleSegmenter(intensity="filters").fit(fv, scr.labels, image=vol.data,
                                                                     spacing=vol.spacing).predict()
                    pred = res.labels == 2
                    d = dice_iou(pred, truth, region)[0]
                    means[rule].append(d)
                    walked = res.propagation.axis if res.propagation is not None else None
                    cells.append(f"{rule}: walked along {walked}, Dice {d:.3f}, "
                                 f"{volume_ratio(pred, truth, region):.2f}x")
                print(f"{name}, painted along axis {axis}: " + " | ".join(cells), flush=True)
    finally:
        S.painted_axis = painted_axis
    print(" | ".join(f"{rule}: mean Dice {np.mean(v):.3f}" for rule, v in means.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
