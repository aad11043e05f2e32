"""PC1 threshold isolation from a seed inside the structure (the seed paper's recipe), scored on the mask.

The seed is the deepest voxel of the label's largest connected component (largest distance to its border,
in mm), i.e. where a person would click. :func:`dinomed_napari.analysis.isolate.isolate` then does the rest:
foreground = PC1 above Otsu, inner threshold (Otsu) on the channel, the 3D component at the seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from scipy import ndimage

from dinomed_napari.bench.metrics import segmentation_metrics

# method name -> isolate() channel: PC1 itself, or the cosine similarity to the seed's feature.
CHANNELS = {"pc1": "pc1", "similarity": "similarity"}


def depth_inside(mask: np.ndarray, spacing) -> np.ndarray:
    """Each voxel's distance (spacing units) to the mask's border, the volume's edge counting as border
    too (a person clicks inside the structure)."""
    return ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]


def seed_inside(mask: np.ndarray, spacing) -> tuple[int, int, int]:
    """The deepest voxel (largest distance to the border, in spacing units) of the largest component."""
    lab, n = ndimage.label(mask)
    if n == 0:
        raise ValueError("cannot place a seed in an empty mask")
    biggest = np.argmax(np.bincount(lab.ravel())[1:]) + 1
    depth = depth_inside(lab == biggest, spacing)
    zyx = np.unravel_index(int(np.argmax(depth)), mask.shape)
    return int(zyx[0]), int(zyx[1]), int(zyx[2])


def isolation_records(lc, fv, settings) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """One row per (channel, label): Dice, IoU, HD95, ASSD of the isolated region over the whole volume."""
    from dinomed_napari.analysis.isolate import isolate
    from dinomed_napari.analysis.pca import pca_maps

    maps = pca_maps(fv, seed=settings.seed)  # one PCA basis per volume, shared by every label
    for method, channel in CHANNELS.items():
        for k, lab in enumerate(lc.labels, start=1):
            truth = lc.truth == k
            seed = seed_inside(truth, lc.spacing)
            source = fv if channel == "similarity" else maps
            pred = isolate(source, channel=channel, seeds=np.array([seed]))
            mask = pred > 0
            yield _row(method, lab, k, seed, mask, truth, lc.spacing), mask.astype(np.uint8) * np.uint8(k)
    yield from auto_records(lc, maps)


def _row(method: str, lab: int, k: int, seed, pred: np.ndarray, truth: np.ndarray, spacing,
         **extra) -> dict[str, Any]:
    """One isolation row: Dice, IoU, HD95, ASSD of ``pred`` over the whole volume."""
    m = segmentation_metrics(pred, truth, spacing)
    return {"protocol": "isolation", "method": method, "label": lab, "class_index": k,
            "seed_zyx": list(seed), "dice": m["dice"], "iou": m["iou"], "hd95_mm": m["hd95"],
            "assd_mm": m["assd"], "n_slices": 0, **extra, "status": "ok"}


def auto_records(lc, maps) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """One click with the default recipe (``--channel auto``): threshold chosen around the seed."""
    from dinomed_napari.analysis.isolate_auto import auto_isolate

    pc1 = maps.component(0)  # each label reads the box around its seed
    for k, lab in enumerate(lc.labels, start=1):
        truth = lc.truth == k
        seed = seed_inside(truth, lc.spacing)
        res = auto_isolate(lc.volume.data, [seed], lc.spacing, pc1=pc1)
        yield _row("auto", lab, k, seed, res.mask > 0, truth, lc.spacing, volume_ml=res.volume_ml,
                   recipe=res.recipe), res.mask * np.uint8(k)
