"""Intensity windows, input sizes and network batches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dinomed_napari.errors import VolumeError
from dinomed_napari.io.volume import Volume
from dinomed_napari.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    input_size,
    intensity_mapper,
    intensity_to_unit,
    to_network_batch,
)

HU = np.array([-1350, -1000, -600, -160, 0, 40, 80, 240, 400, 1000, 1300, 3000], dtype=np.int16)


def _ct(values=HU, modality="CT", units="HU") -> Volume:
    return Volume(np.asarray(values).reshape(1, 1, -1), modality=modality, units=units)


@pytest.mark.parametrize("window, level, width", [("soft_tissue", 40, 400), ("lung", -600, 1500),
                                                  ("bone", 400, 1800), ("brain", 40, 80)])
def test_ct_presets(window, level, width):
    out = intensity_to_unit(_ct(), Preprocess(window=window))
    expected = np.clip((HU.astype(float) - (level - width / 2)) / width, 0, 1)
    assert out.dtype == np.float32 and out.shape == (1, 1, HU.size)
    np.testing.assert_allclose(out[0, 0], expected, atol=1e-6)


def test_named_window_spot_values():
    soft = intensity_to_unit(_ct(), Preprocess(window="soft_tissue"))[0, 0]
    at = list(HU).index
    assert soft[at(40)] == 0.5 and soft[at(-160)] == 0 and soft[at(240)] == 1
    lung = intensity_to_unit(_ct(), Preprocess(window="lung"))[0, 0]
    assert lung[at(-600)] == 0.5 and lung[at(-1350)] == 0
    brain = intensity_to_unit(_ct(), Preprocess(window="brain"))[0, 0]
    assert brain[at(0)] == 0 and brain[at(80)] == 1


def test_custom_window():
    p = Preprocess(level=100, width=200)
    assert p.window == "custom"
    out = intensity_to_unit(_ct([0, 100, 150, 250]), p)[0, 0]
    np.testing.assert_allclose(out, [0.0, 0.5, 0.75, 1.0])
    assert Preprocess(window="custom", level=-600, width=1500).key()["level"] == -600


def test_ct3_packs_three_different_windows():
    out = intensity_to_unit(_ct(), Preprocess(window="ct3"))
    assert out.shape == (1, 1, HU.size, 3) and out.dtype == np.float32
    i = list(HU).index(40)
    np.testing.assert_allclose(out[0, 0, i], [0.5, (40 + 1350) / 1500, (40 + 500) / 1800], atol=1e-6)
    r, g, b = out[0, 0].T
    assert not np.allclose(r, g) and not np.allclose(g, b) and not np.allclose(r, b)


def test_pet_suv_range():
    vol = _ct([-1.0, 0.0, 2.5, 5.0, 12.0], modality="PT", units="SUVbw")
    np.testing.assert_allclose(intensity_to_unit(vol, Preprocess())[0, 0], [0, 0, 0.25, 0.5, 1])
    narrow = intensity_to_unit(vol, Preprocess(window="pet_suv", suv_range=(2.0, 4.0)))[0, 0]
    np.testing.assert_allclose(narrow, [0, 0, 0.25, 1, 1])


def test_auto_by_modality():
    assert Preprocess().resolve(_ct()).window == "soft_tissue"
    assert Preprocess().resolve(_ct(modality="PT", units="SUVbw")).window == "pet_suv"
    assert Preprocess().resolve(_ct(modality="PT", units="BQML")).window == "percentile"  # not SUV
    assert Preprocess().resolve(_ct(modality="MR", units="a.u.")).window == "percentile"
    assert Preprocess().resolve(_ct(modality=None, units="a.u.")).window == "percentile"
    np.testing.assert_array_equal(intensity_to_unit(_ct(), Preprocess()),
                                  intensity_to_unit(_ct(), Preprocess(window="soft_tissue")))


def test_percentiles_are_per_volume_not_per_slice():
    rng = np.random.default_rng(0)
    data = np.stack([rng.normal(100, 10, (32, 32)), rng.normal(300, 10, (32, 32))]).astype(np.float32)
    vol = Volume(data, modality="EM")
    out = intensity_to_unit(vol, Preprocess())
    lo, hi = np.percentile(data, (0.5, 99.5))
    np.testing.assert_allclose(out, np.clip((data - lo) / (hi - lo), 0, 1), atol=1e-5)
    # One mapping for the whole volume: the dark slice stays dark, the bright one bright.
    assert out[0].mean() < 0.2 and out[1].mean() > 0.8
    wide = intensity_to_unit(vol, Preprocess(percentiles=(0.0, 100.0)))
    assert wide.min() == 0 and wide.max() == 1


@pytest.mark.parametrize("window", ["percentile", "ct3", "lung"])
def test_mapper_on_slices_equals_whole_volume(window):
    rng = np.random.default_rng(1)
    data = (rng.normal(0, 400, (4, 16, 16)) + np.arange(4)[:, None, None] * 300).astype(np.float32)
    vol = Volume(data, modality="CT")
    prep = Preprocess(window=window)
    whole = intensity_to_unit(vol, prep)
    to_unit = intensity_mapper(vol, prep)
    batches = np.concatenate([to_unit(data[0:1]), to_unit(data[1:3]), to_unit(data[3:])])
    np.testing.assert_array_equal(batches, whole)
    assert whole.shape == data.shape + ((3,) if window == "ct3" else ())
    bad = data[:1].copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(VolumeError, match="contains NaN or inf voxels"):
        to_unit(bad)


def test_percentile_falls_back_to_min_max_for_sparse_volumes():
    data = np.zeros((2, 20, 20), np.float32)
    data[0, 0, 0] = 5.0  # 0.5/99.5 percentiles both 0: fall back to min/max
    out = intensity_to_unit(Volume(data, modality="EM"), Preprocess())
    assert out[0, 0, 0] == 1 and out.sum() == 1


def test_bad_intensities():
    with pytest.raises(VolumeError, match=r"volume is constant \(every voxel = 7.0\)"):
        intensity_to_unit(Volume(np.full((2, 4, 4), 7.0), modality="MR"), Preprocess())
    bad = np.zeros((2, 4, 4))
    bad[1, 2, 3] = np.nan
    with pytest.raises(VolumeError, match="scan.nii contains NaN or inf voxels"):
        intensity_to_unit(Volume(bad, modality="CT", source="scan.nii"), Preprocess())


@pytest.mark.parametrize("kwargs, message", [
    (dict(resolution=500), "resolution must be a multiple of 16 and at least 16, got 500"),
    (dict(resolution=0), "resolution must be a multiple of 16 and at least 16, got 0"),
    (dict(window="mediastinum"), "unknown window 'mediastinum'; expected one of auto, soft_tissue"),
    (dict(window="lung", level=10, width=20), "level/width given with window='lung'; use window='custom'"),
    (dict(window="custom", level=10), "a custom window needs level and width > 0"),
    (dict(level=10, width=0), "a custom window needs level and width > 0"),
    (dict(percentiles=(99, 1)), r"percentiles must satisfy 0 <= low < high <= 100, got \(99, 1\)"),
    (dict(suv_range=(5, 5)), r"suv_range must be \(low, high\) with low < high"),
])
def test_preprocess_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Preprocess(**kwargs)


def test_key_is_json_and_tracks_what_matters():
    ct = _ct()
    key = Preprocess(window="soft_tissue").key()
    assert json.loads(json.dumps(key)) == key
    assert key == {"window": "soft_tissue", "resolution": 512, "isotropic": False}
    # Settings the window ignores do not split the cache; the ones it uses do.
    assert Preprocess(window="soft_tissue", percentiles=(1, 99)).key() == key
    assert Preprocess(window="percentile", percentiles=(1, 99)).key() != Preprocess(window="percentile").key()
    assert Preprocess(resolution=256).key() != Preprocess().key()
    assert Preprocess(isotropic=True).key() != Preprocess().key()
    assert Preprocess().key(ct) == key  # auto resolved with the volume
    assert Preprocess().key() != key  # unresolved auto keeps every parameter
    assert Preprocess(window="ct3").key()["window"] == "ct3"
    assert Preprocess(level=100, width=200).key() == Preprocess(level=100.0, width=200.0).key()
    assert Preprocess(percentiles=(1, 99)).key() == Preprocess(percentiles=(1.0, 99.0)).key()


@pytest.mark.parametrize("shape, spacing, res, iso, expected", [
    ((512, 512), (1, 1), 512, False, (512, 512)),
    ((100, 200), (1, 1), 512, False, (256, 512)),
    ((200, 100), (1, 1), 512, False, (512, 256)),
    ((300, 512), (1, 1), 512, False, (304, 512)),  # 300/512*512 = 300 -> nearest multiple of 16
    ((10, 1000), (1, 1), 512, False, (16, 512)),   # never below one patch
    ((64, 64), (1, 1), 32, False, (32, 32)),
    ((100, 100), (2.0, 1.0), 512, True, (512, 256)),  # physical aspect 200 mm x 100 mm
    ((100, 100), (2.0, 1.0), 512, False, (512, 512)),
    ((50, 200), (4.0, 1.0), 256, True, (256, 256)),
])
def test_input_size(shape, spacing, res, iso, expected):
    out = input_size(shape, spacing, res, isotropic=iso)
    assert out == expected and all(s % 16 == 0 for s in out)


def test_input_size_rejects_bad_resolution():
    with pytest.raises(ValueError, match="resolution must be a multiple of 16 and at least 16, got 100"):
        input_size((64, 64), (1, 1), 100)


def test_to_network_batch_normalises_grey_to_three_channels():
    x = to_network_batch(np.full((2, 20, 30), 0.5, np.float32), (32, 48))
    assert x.shape == (2, 3, 32, 48) and x.dtype == torch.float32
    expected = [(0.5 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    np.testing.assert_allclose(x.mean(dim=(0, 2, 3)).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(x.std(dim=(0, 2, 3)).numpy(), 0, atol=1e-5)
    sat_mean, sat_std = (0.43, 0.411, 0.296), (0.213, 0.156, 0.143)
    sat = to_network_batch(np.ones((1, 16, 16)), (16, 16), mean=sat_mean, std=sat_std)
    np.testing.assert_allclose(sat[0, :, 0, 0].numpy(), [(1 - 0.43) / 0.213, (1 - 0.411) / 0.156,
                                                         (1 - 0.296) / 0.143], rtol=1e-5)


def test_to_network_batch_colour_and_resize():
    rgb = np.zeros((1, 8, 8, 3), np.float32)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 0.0, 0.5, 1.0
    x = to_network_batch(rgb, (16, 16))
    expected = [(v - m) / s for v, m, s in zip((0, 0.5, 1), IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    np.testing.assert_allclose(x[0, :, 5, 5].numpy(), expected, rtol=1e-5)
    # Whole-slice resize keeps geometry: a left/right step stays a left/right step.
    step = np.zeros((1, 40, 40), np.float32)
    step[:, :, 20:] = 1.0
    y = to_network_batch(step, (16, 32))[0, 0]
    lo, hi = (0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert torch.allclose(y[:, :14], torch.tensor(lo), atol=1e-5)
    assert torch.allclose(y[:, 18:], torch.tensor(hi), atol=1e-5)


def test_to_network_batch_antialias():
    # A one-pixel checkerboard shrunk 4x must average to grey, not alias into stripes.
    board = (np.indices((64, 64)).sum(0) % 2).astype(np.float32)[None]
    x = to_network_batch(board, (16, 16))[0, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    assert torch.allclose(x, torch.tensor(0.5), atol=0.05)


def test_to_network_batch_bad_shape():
    with pytest.raises(ValueError, match=r"slices must be \(B, H, W\) or \(B, H, W, 3\), got shape \(4, 4\)"):
        to_network_batch(np.zeros((4, 4)), (16, 16))
