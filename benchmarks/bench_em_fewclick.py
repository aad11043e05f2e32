"""Few clicks on EM cells or membranes: the default segmenter against the filter-bank forest, same strokes.

The bundled ISBI 2012 crop: the demo's 12 x 128 x 128 corner at 64 and 128 px, and the whole 20 x 352 x 352
crop at 224 px (random ViT-S). ``simulate_scribbles`` (3 strokes per class, as the bench's ``fewclick``
protocol paints them) on k = 1, 2, 3, 5 sections, seeds 0-3; Dice of the cell interiors on the sections
nobody painted (``--structure membranes``: the membranes painted as 2 and scored instead). Each draw prints
which class the segmenter took for the background and whether its volume was followed in 3D::

    .venv/bin/python benchmarks/bench_em_fewclick.py        # about 3 min on 2 cores
    .venv/bin/python benchmarks/bench_em_fewclick.py --structure membranes

Numbers are in docs/analysis.md ("EM cell interiors").
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

SETS = (("crop 12x128x128", (12, 128, 128), 64), ("crop 12x128x128", (12, 128, 128), 128),
        ("20x352x352", None, 224))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--structure", choices=("cells", "membranes"), default="cells")
    args = parser.parse_args(argv)

    from dinomed_napari.analysis.filterbank import FilterBankRF
    from dinomed_napari.analysis.sampling import normalise_image
    from dinomed_napari.analysis.segment import ScribbleSegmenter
    from dinomed_napari.bench.metrics import dice_iou, slice_region
    from dinomed_napari.bench.scribbles import simulate_scribbles
    from dinomed_napari.features.extract import extract_features
    from dinomed_napari.io import load_volume
    from dinomed_napari.models import load_backbone
    from dinomed_napari.preprocess import Preprocess
    from dinomed_napari.samples import sample_path

    full = load_volume(sample_path("em"))
    full_cells = load_volume(sample_path("em_labels"), check=False).data == (255 if args.structure == "cells"
                                                                             else 0)
    backbone = load_backbone("S", "random", device="cpu")
    every = []
    for name, crop, res in SETS:
        part = tuple(slice(0, n) for n in crop) if crop else (slice(None),) * 3
        vol = replace(full, data=np.asarray(full.data)[part])
        cells = full_cells[part]
        fv = extract_features(vol, backbone=backbone, prep=Preprocess(resolution=res), cache_dir=False)
        bank = FilterBankRF(normalise_image(vol.data)[0])
        rows = []
        for seed in range(args.seeds):
            for k in (1, 2, 3, 5):
                scr = simulate_scribbles(cells.astype(np.uint8), n_slices=k, seed=seed)  # 2 = the structure
                region = slice_region(cells.shape, scr.slices, 0)
                seg = ScribbleSegmenter(intensity="filters").fit(fv, scr.labels, image=vol.data,
                                                                  spacing=vol.spacing)
                res_ = seg.predict()
                ours = dice_iou(res_.labels == 2, cells, region)[0]
                classic = dice_iou(bank.segment(scr.labels, seed=0) == 2, cells, region)[0]
                rows.append((ours, classic))
                print(f"{name} @{res} seed {seed} k={k}: background class {seg._background()}, "
                      f"{'followed in 3D' if res_.propagation is not None else 'classifier'}; "
                      f"Dice default {ours:.3f}, filter bank {classic:.3f}", flush=True)
        mean = np.mean(rows, axis=0)
        print(f"{name} @{res}: {len(rows)} draws, mean Dice default {mean[0]:.4f}, filter bank {mean[1]:.4f}")
        every += rows
    mean = np.mean(every, axis=0)
    print(f"all: {len(every)} draws, mean Dice default {mean[0]:.4f}, filter bank {mean[1]:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
