"""Bench metrics on shapes with known answers (offset cubes, anisotropic spacing, empty masks)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dinomed_napari.bench.metrics import (
    dice_iou,
    hd95_assd,
    segmentation_metrics,
    slice_region,
    surface_distances,
    volume_ratio,
)
from dinomed_napari.errors import VolumeError


def _cube(shape, start, size):
    m = np.zeros(shape, bool)
    m[tuple(slice(s, s + size) for s in start)] = True
    return m


def test_offset_cubes_dice_iou():
    a = _cube((20, 20, 20), (5, 5, 5), 6)
    b = _cube((20, 20, 20), (5, 5, 7), 6)  # shifted 2 voxels along x: overlap 6*6*4
    dice, iou = dice_iou(a, b)
    assert dice == pytest.approx(2 * 144 / 432)
    assert iou == pytest.approx(144 / 288)


def test_shifted_cube_hd95_in_mm_uses_spacing():
    a = _cube((20, 20, 20), (5, 5, 5), 6)
    b = _cube((20, 20, 20), (5, 5, 7), 6)
    # Shifted 2 voxels along x: the x-faces are 2 voxels apart, the farthest surface point 2 voxels away.
    hd_iso, _ = hd95_assd(a, b, (1.0, 1.0, 1.0))
    hd_aniso, assd_aniso = hd95_assd(a, b, (5.0, 0.5, 3.0))  # (z, y, x) mm: x voxels are 3 mm
    assert hd_iso == pytest.approx(2.0)
    assert hd_aniso == pytest.approx(6.0)
    assert 0 < assd_aniso < 6.0
    # Same shift along z (5 mm voxels) must give 10 mm: spacing is applied per axis, in (z, y, x) order.
    c = _cube((20, 20, 20), (7, 5, 5), 6)
    assert hd95_assd(a, c, (5.0, 0.5, 3.0))[0] == pytest.approx(10.0)


def test_identical_masks_are_perfect():
    a = _cube((10, 12, 14), (2, 3, 4), 5)
    m = segmentation_metrics(a, a.copy(), (2.0, 1.0, 1.0))
    assert m == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0}


def test_empty_masks_rules():
    empty = np.zeros((8, 8, 8), bool)
    full = _cube((8, 8, 8), (2, 2, 2), 3)
    perfect = {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0}
    assert segmentation_metrics(empty, empty, (1, 1, 1)) == perfect
    m = segmentation_metrics(empty, full, (1, 1, 1))
    assert m["dice"] == 0.0 and m["iou"] == 0.0
    assert math.isnan(m["hd95"]) and math.isnan(m["assd"])
    assert surface_distances(full, empty, (1, 1, 1)) is None


def test_region_excludes_annotated_slices():
    truth = _cube((10, 10, 10), (0, 2, 2), 5)  # slices 0..4
    pred = truth.copy()
    pred[2] = False  # error only on slice 2
    region = slice_region(truth.shape, [2], axis=0)
    assert region[2].sum() == 0 and region[3].all()
    assert dice_iou(pred, truth, region) == (1.0, 1.0)
    assert dice_iou(pred, truth)[0] < 1.0


def test_volume_ratio_counts_inside_the_region_and_is_nan_without_truth():
    truth = _cube((10, 10, 10), (0, 2, 2), 5)  # 5 slices of 25 voxels
    pred = _cube((10, 10, 10), (0, 2, 2), 6)  # 6 slices of 36 voxels
    assert volume_ratio(pred, truth) == 216 / 125
    region = slice_region(truth.shape, [0, 1, 2, 3], axis=0)
    assert volume_ratio(pred, truth, region) == 72 / 25  # slices 4 and 5 only
    assert math.isnan(volume_ratio(pred, truth, slice_region(truth.shape, range(5), axis=0)))


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(VolumeError, match=r"prediction shape \(4, 4, 4\) differs .* \(4, 4, 5\)"):
        dice_iou(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))
    with pytest.raises(VolumeError, match="spacing"):
        hd95_assd(np.ones((4, 4, 4)), np.ones((4, 4, 4)), (1.0, 1.0))
