"""Overlap and surface-distance metrics in physical units (mm), with explicit empty-mask rules.

Conventions (stated once, used everywhere in the bench):

- Dice and IoU over the voxels of an evaluation ``region`` (default: the whole volume).
- Surfaces are the border voxels of each mask (the mask minus its 3D erosion with the 6-connected
  structuring element); distances are Euclidean between voxel centres, scaled by ``spacing``
  (``scipy.ndimage.distance_transform_edt(..., sampling=spacing)``).
- HD95 is the 95th percentile of the pooled symmetric surface distances (both directions together, as in
  medpy); ASSD is their mean. Only surface voxels inside ``region`` are counted, but their nearest
  neighbour is searched in the whole volume (a structure continuing into an excluded slice is no error).
- Both masks empty (in the region): Dice = IoU = 1, HD95 = ASSD = 0 (perfect agreement on "nothing").
  Exactly one empty: Dice = IoU = 0 and the distances are NaN (undefined; JSON ``null``, CSV empty).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from dinomed_napari.errors import VolumeError


def _check(pred: np.ndarray, truth: np.ndarray, region: np.ndarray | None):
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise VolumeError(f"prediction shape {pred.shape} differs from the ground truth shape {truth.shape}")
    if region is None:
        region = np.ones(pred.shape, dtype=bool)
    region = np.asarray(region, dtype=bool)
    if region.shape != pred.shape:
        raise VolumeError(f"evaluation region shape {region.shape} differs from the mask shape {pred.shape}")
    return pred, truth, region


def dice_iou(pred: np.ndarray, truth: np.ndarray, region: np.ndarray | None = None) -> tuple[float, float]:
    """Dice and IoU of two binary masks inside ``region``.

    Returns
    -------
    (dice, iou) : tuple of float
        Both 1.0 when both masks are empty in the region.
    """
    pred, truth, region = _check(pred, truth, region)
    p, t = pred & region, truth & region
    inter = int(np.count_nonzero(p & t))
    total = int(np.count_nonzero(p)) + int(np.count_nonzero(t))
    if total == 0:
        return 1.0, 1.0
    union = total - inter
    return 2.0 * inter / total, inter / union


def _surface(mask: np.ndarray) -> np.ndarray:
    # Border voxels: in the mask but not in its erosion (voxels on the array edge count as border).
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(mask.ndim, 1),
                                    border_value=0)
    return mask & ~eroded


def surface_distances(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float],
                      region: np.ndarray | None = None) -> np.ndarray | None:
    """Distances (in the units of ``spacing``) from each surface voxel of one mask to the other's surface.

    Returns
    -------
    np.ndarray or None
        1D array of both directions pooled; None when exactly one mask is empty (undefined), an empty array
        when both are.
    """
    pred, truth, region = _check(pred, truth, region)
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != pred.ndim:
        raise VolumeError(f"spacing {spacing} has {len(spacing)} values for a {pred.ndim}D mask")
    has_p, has_t = bool((pred & region).any()), bool((truth & region).any())
    if not has_p and not has_t:
        return np.zeros(0)
    if has_p != has_t:
        return None
    sp, st = _surface(pred), _surface(truth)
    # EDT of the complement of a surface = distance of every voxel to the nearest surface voxel.
    to_t = ndimage.distance_transform_edt(~st, sampling=spacing)
    to_p = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return np.concatenate([to_t[sp & region], to_p[st & region]])


def hd95_assd(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float],
              region: np.ndarray | None = None) -> tuple[float, float]:
    """95th-percentile Hausdorff distance and average symmetric surface distance (NaN when undefined)."""
    d = surface_distances(pred, truth, spacing, region)
    if d is None:
        return math.nan, math.nan
    if d.size == 0:
        return 0.0, 0.0
    return float(np.percentile(d, 95)), float(d.mean())


def segmentation_metrics(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float],
                         region: np.ndarray | None = None) -> dict[str, float]:
    """Dice, IoU, HD95 and ASSD of two binary masks, as a dict (keys ``dice, iou, hd95, assd``)."""
    dice, iou = dice_iou(pred, truth, region)
    hd95, assd = hd95_assd(pred, truth, spacing, region)
    return {"dice": dice, "iou": iou, "hd95": hd95, "assd": assd}


def volume_ratio(pred: np.ndarray, truth: np.ndarray, region: np.ndarray | None = None) -> float:
    """Predicted / true voxel count inside ``region`` (NaN when the truth is empty there)."""
    if region is not None:
        pred, truth = pred & region, truth & region
    true_vol = int(np.count_nonzero(truth))
    return float(np.count_nonzero(pred)) / true_vol if true_vol else float("nan")


def slice_region(shape: Sequence[int], excluded: Sequence[int], axis: int = 0) -> np.ndarray:
    """Boolean region covering every slice along ``axis`` except the ``excluded`` (annotated) ones."""
    region = np.ones(tuple(shape), dtype=bool)
    index = [slice(None)] * len(shape)
    index[axis] = list(excluded)
    region[tuple(index)] = False
    return region
