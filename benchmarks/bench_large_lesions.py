"""Large lesions: one click and few clicks on the shared lesions magnified to held-back sizes.

The held-back cases are larger than the shared ones (a lung tumour on 11 slices of 5 mm, a brain lesion
on 7 of 6.5 mm; the shared nodule and lesion span 3). This magnifies the bundled lung nodule and (with
``../shared/data``) the brain lesion by linear interpolation in every axis, keeping the spacing, so that
they span 6-9 slices, and prints for each:

- one click at the deepest voxel (``auto_isolate``): Dice with the fixed 40 mm box and with the default
  box sized to the structure;
- few clicks (``ScribbleSegmenter(intensity="filters")``, the CLI default, random ViT-S at 512,
  ``structure_scribbles`` on the 3 largest slices, or the largest one when the structure spans under 6):
  Dice on the unannotated slices and predicted / true volume; and the same Dice against the mask cut at
  a quarter instead of a half ("soft"). The image is interpolated linearly across slices, so the slice
  just past the mask's end carries a faint copy of the lesion (a third to half of its contrast on the
  brain lesion): the soft mask counts those slices as lesion.

Random weights: this measures the method's geometry, not DINOv3. About 2 min on 2 cores (features are
cached). The last line reads ``large lesions: one click mean N, few clicks mean N``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def magnified(image: np.ndarray, mask: np.ndarray, spacing, factor: float, half_mm=(20.0, 30.0, 30.0)):
    """A crop around ``mask`` magnified ``factor`` times (same spacing: the structure grows): the image and
    the mask's fraction in each voxel (interpolated like the image; cut it at a level for a mask)."""
    from scipy import ndimage

    sp = np.asarray(spacing, float)
    centre = np.argwhere(mask).mean(0).round().astype(int)
    half = np.ceil(np.asarray(half_mm) / sp).astype(int)
    crop = tuple(slice(max(c - h, 0), c + h + 1) for c, h in zip(centre, half, strict=True))
    img = np.asarray(image)[crop].astype(np.float32)
    m = mask[crop].astype(np.float32)
    if factor != 1:
        img, m = ndimage.zoom(img, factor, order=1), ndimage.zoom(m, factor, order=1)
    return img, m


def cases():
    """(name, image path, mask path) of the lesions available here."""
    from dinomed_napari.samples import sample_path

    out = [("lung nodule CT", sample_path("lung_ct"), sample_path("lung_mask"))]
    brain = SHARED / "mri_tumor"
    if brain.is_dir():
        out.append(("brain lesion MRI", brain / "pyradiomics_brain2_mri.nii.gz",
                    brain / "pyradiomics_brain2_tumor_mask.nii.gz"))
    else:
        print(f"{brain} not found: the brain lesion is skipped")
    return out


def main(argv=None) -> int:
    import dinomed_napari.analysis.isolate_auto as iso
    from dinomed_napari.analysis.segment import ScribbleSegmenter
    from dinomed_napari.bench.metrics import dice_iou, slice_region, volume_ratio
    from dinomed_napari.bench.protocols.isolation import seed_inside
    from dinomed_napari.bench.scribbles import structure_scribbles
    from dinomed_napari.features.extract import extract_features
    from dinomed_napari.io import load_volume
    from dinomed_napari.io.volume import Volume
    from dinomed_napari.models import load_backbone
    from dinomed_napari.preprocess import Preprocess

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--factors", default="1,2,3", help="magnifications (default 1,2,3)")
    p.add_argument("--cache", default=None, help="feature cache folder (default the user's)")
    args = p.parse_args(argv)
    factors = [float(f) for f in args.factors.split(",")]
    backbone = load_backbone("S", "random", device="cpu")
    one, few = [], []
    print("| lesion | x | slices | one click, 40 mm box | one click, default | k | few clicks | volume | "
          "few clicks, soft mask |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, image_path, mask_path in cases():
        vol = load_volume(image_path)
        truth = load_volume(mask_path, check=False).data > 0
        for f in factors:
            img, fraction = magnified(vol.data, truth, vol.spacing, f)
            m = fraction > 0.5
            seed = list(seed_inside(m, vol.spacing))
            fixed_max, iso.MAX_RADIUS_MM = iso.MAX_RADIUS_MM, 0.0
            try:
                fixed = iso.auto_isolate(img, [seed], vol.spacing)
            finally:
                iso.MAX_RADIUS_MM = fixed_max
            default = iso.auto_isolate(img, [seed], vol.spacing)
            d_fixed, d_default = dice_iou(fixed.mask, m)[0], dice_iou(default.mask, m)[0]
            v = Volume(img, spacing=vol.spacing, modality=vol.modality, units=vol.units,
                       source=f"{Path(str(image_path)).name} x{f:g}")
            fv = extract_features(v, backbone=backbone, axis=0, prep=Preprocess(resolution=512),
                                  cache_dir=args.cache)
            n_slices = int(m.any(axis=(1, 2)).sum())
            k = 3 if n_slices >= 6 else 1  # 3 of 3 slices would leave nothing to score
            scr = structure_scribbles(m, n_slices=k, seed=0)
            seg = ScribbleSegmenter(intensity="filters").fit(fv, scr.labels, image=v.data, spacing=v.spacing)
            pred = seg.predict().labels == 2
            region = slice_region(m.shape, scr.slices, 0)
            d_few = dice_iou(pred, m, region)[0]
            ratio = volume_ratio(pred, m, region)
            d_soft = dice_iou(pred, fraction > 0.25, region)[0]
            one.append(d_default)
            few.append(d_few)
            print(f"| {name} | {f:g} | {n_slices} | {d_fixed:.3f} | {d_default:.3f} | {k} | {d_few:.3f} | "
                  f"{ratio:.2f}x | {d_soft:.3f} |", flush=True)
    print(f"large lesions: one click mean {np.mean(one):.3f}, few clicks mean {np.mean(few):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
