"""Affinity maps (x, y, z channels in volume terms, any slicing axis) and click similarity maps."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_helpers import synthetic_features

from dinomed_napari.analysis.affinity import affinity_maps
from dinomed_napari.analysis.similarity import similarity_map
from dinomed_napari.errors import ScribbleError


def _split_volume(axis_of_split: int, shape=(16, 32, 32)) -> np.ndarray:
    """Two halves that differ along one volume axis (0 z, 1 y, 2 x)."""
    lab = np.zeros(shape, np.uint8)
    idx = [slice(None)] * 3
    idx[axis_of_split] = slice(shape[axis_of_split] // 2, None)
    lab[tuple(idx)] = 1
    return lab


@pytest.mark.parametrize("fv_axis", [0, 1, 2])
def test_affinity_low_only_across_the_boundary(fv_axis):
    for split, channel in ((2, 0), (1, 1), (0, 2)):  # split along x -> channel 0 (x) drops, etc.
        lab = _split_volume(split)
        fv = synthetic_features(lab, axis=fv_axis, grid=(8, 8), noise=0.05)
        aff = affinity_maps(fv)
        assert aff.shape == lab.shape + (3,)
        n = lab.shape[split]
        at_border = np.take(aff[..., channel], [n // 2 - 1, n // 2], axis=split)
        far = np.take(aff[..., channel], [0, n - 1], axis=split)
        assert at_border.mean() < 0.75 and far.mean() > 0.95, (fv_axis, split)
        others = [c for c in range(3) if c != channel]
        assert aff[..., others].min() > 0.9, (fv_axis, split)


def test_affinity_single_slice_matches_volume():
    lab = _split_volume(2)
    fv = synthetic_features(lab, axis=0, grid=(8, 8))
    assert np.allclose(affinity_maps(fv, index=5), affinity_maps(fv)[5], atol=1e-5)


def test_similarity_map_high_on_clicked_region():
    lab = _split_volume(2)
    fv = synthetic_features(lab, axis=0, grid=(8, 8), noise=0.1)
    sim = similarity_map(fv, [[3, 10, 28], [8, 20, 26]])
    assert sim.shape == lab.shape and sim.dtype == np.float32
    assert sim[:, :, 20:].mean() > 0.9 and sim[:, :, :12].mean() < 0.5
    one = similarity_map(fv, [[3, 10, 28], [8, 20, 26]], slice_only=4)
    assert one.shape == (32, 32) and np.allclose(one, sim[4], atol=1e-5)
    # Coronal features give the same picture.
    sim1 = similarity_map(synthetic_features(lab, axis=1, grid=(8, 8), noise=0.1), [[3, 10, 28]])
    assert sim1[:, :, 20:].mean() > 0.9 and sim1[:, :, :12].mean() < 0.5


def test_similarity_map_bad_points():
    fv = synthetic_features(_split_volume(2), axis=0)
    # The point is written as numbers, not as np.float64(...) reprs.
    with pytest.raises(ScribbleError, match=r"outside the volume of shape \(16, 32, 32\), "
                                            r"e\.g\. \(z, y, x\) = \(3, 10, 40\)$"):
        similarity_map(fv, [[3, 10, 40]])
    with pytest.raises(ValueError, match="at least one"):
        similarity_map(fv, np.zeros((0, 3)))
