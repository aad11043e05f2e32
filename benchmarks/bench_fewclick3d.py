"""Few-click 3D speed: the 3D result of a 512 x 512 x 100 volume and an annotated slice's preview.

A synthetic ellipsoidal "tumour" (about 60 mm, 0.7 mm pixels, 5 mm slices) in noise, painted on its 3
largest slices with ``structure_scribbles``; ViT-B-shaped random patch features (32 x 32 x 768, float16)
feed the classifier. Prints medians; goal: 3D result <= 3 s (issue 8).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main(argv=None) -> int:
    from dinomed_napari.analysis.segment import ScribbleSegmenter
    from dinomed_napari.bench.scribbles import structure_scribbles
    from dinomed_napari.features.volume import FeatureVolume

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slices", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    shape = (args.slices, 512, 512)
    spacing = (5.0, 0.7, 0.7)
    z, y, x = np.ogrid[:shape[0], :512, :512]
    tumour = (((z - shape[0] / 2) * 5 / 30) ** 2 + ((y - 256) * 0.7 / 30) ** 2
              + ((x - 240) * 0.7 / 25) ** 2) < 1
    rng = np.random.default_rng(0)
    image = (60 * tumour + rng.normal(0, 15, shape)).astype(np.float32)
    feats = rng.normal(size=(shape[0], 32, 32, 768)).astype(np.float16)
    fv = FeatureVolume(feats, 0, shape, "vit_base_patch16_dinov3", "random", 512)
    scr = structure_scribbles(tumour, n_slices=3, seed=0)
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; volume {shape}, "
          f"{np.count_nonzero(scr.labels)} scribbled voxels on slices {scr.slices}")
    seg = ScribbleSegmenter(intensity="filters")
    t0 = time.perf_counter()
    seg.fit(fv, scr.labels, image=image, spacing=spacing)
    print(f"first fit: {1000 * (time.perf_counter() - t0):.0f} ms")
    preview, vol = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        seg.predict(index=scr.slices[1])
        preview.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        res = seg.predict()
        vol.append(time.perf_counter() - t0)
    pred = res.labels == 2
    dice = 2 * np.count_nonzero(pred & tumour) / (pred.sum() + tumour.sum())
    print(f"annotated-slice preview: median {1000 * np.median(preview):.0f} ms")
    print(f"3D result (classifier + propagation): median {np.median(vol):.2f} s (goal <= 3 s); "
          f"Dice {dice:.3f}, suggested slice {res.suggested_slice}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
