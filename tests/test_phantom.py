"""The SYNTHETIC PET/CT phantom: labelled synthetic, anatomically ordered values, known lesions, seeded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dinomed_napari.io import check_image_volume, load_volume, save_labels
from dinomed_napari.phantom import _ORGANS, _ellipsoid, _norm_grid, make_pet_ct_phantom


@pytest.fixture(scope="module")
def case():
    return make_pet_ct_phantom(shape=(24, 64, 64), seed=0)


def _organ(case, name):
    return _ellipsoid(_norm_grid(case.ct.shape), *_ORGANS[name][:2]) & (case.lesion_mask == 0)


def test_clearly_synthetic_and_serialisable(case):
    for vol in (case.ct, case.pet):
        assert vol.meta["synthetic"] is True and "SYNTHETIC" in vol.meta["note"]
        assert vol.source.startswith("synthetic:") and vol.meta["name"].startswith("synthetic")
        json.dumps(vol.meta)
        check_image_volume(vol)
    assert case.name == "synthetic_pet_ct_phantom_seed0"


def test_grid_modalities_and_units(case):
    assert case.ct.shape == case.pet.shape == case.lesion_mask.shape == (24, 64, 64)
    assert (case.ct.modality, case.ct.units, case.ct.data.dtype) == ("CT", "HU", np.int16)
    assert (case.pet.modality, case.pet.units, case.pet.data.dtype) == ("PT", "SUVbw", np.float32)
    np.testing.assert_array_equal(case.ct.affine, case.pet.affine)
    assert case.ct.spacing == (4.0, 4.0, 4.0)
    np.testing.assert_allclose(np.diag(case.ct.affine), [-4.0, -4.0, 4.0, 1.0])


def test_ct_anatomy_in_hounsfield(case):
    ct = case.ct.data.astype(float)
    assert ct[0, 0, 0] < -950  # air outside the body
    assert np.median(ct[_organ(case, "lung_right")]) < -700
    assert 40 < np.median(ct[_organ(case, "liver")]) < 80
    spine_voxels = ct[:, 40:64, 28:36]  # posterior midline
    assert spine_voxels.max() > 250


def test_pet_uptake_pattern(case):
    pet = case.pet.data
    liver = np.median(pet[_organ(case, "liver")])
    lung = np.median(pet[_organ(case, "lung_right")])
    bladder = np.percentile(pet[_organ(case, "bladder")], 90)
    assert 1.7 < liver < 2.3
    assert lung < 0.6 and bladder > 5 and pet.min() >= 0.0
    assert np.percentile(pet[_organ(case, "heart")], 90) > liver
    for lesion in case.lesions:
        inside = pet[case.lesion_mask == lesion["id"]]
        assert inside.max() > 2 * liver, lesion["name"]  # hot against the liver background
        assert lesion["voxels"] == int((case.lesion_mask == lesion["id"]).sum()) > 20


def test_lesion_mask_known_and_inside_its_organ(case):
    assert sorted(np.unique(case.lesion_mask).tolist()) == [0, 1, 2]
    grid = _norm_grid(case.ct.shape)
    for lesion in case.lesions:
        organ = _ellipsoid(grid, *_ORGANS[lesion["organ"]][:2])
        m = case.lesion_mask == lesion["id"]
        assert organ[m].mean() > 0.9
        centre = np.array(np.nonzero(m)).mean(axis=1)
        np.testing.assert_allclose(centre, lesion["centre_zyx"], atol=0.6)


def test_seeded():
    a, b = make_pet_ct_phantom((10, 32, 32), seed=3), make_pet_ct_phantom((10, 32, 32), seed=3)
    c = make_pet_ct_phantom((10, 32, 32), seed=4)
    np.testing.assert_array_equal(a.pet.data, b.pet.data)
    np.testing.assert_array_equal(a.ct.data, b.ct.data)
    assert not np.array_equal(a.pet.data, c.pet.data)
    np.testing.assert_array_equal(a.lesion_mask, c.lesion_mask)  # noise changes, the truth does not


def test_anisotropic_spacing_keeps_lesion_size_physical():
    iso = make_pet_ct_phantom((16, 48, 48), spacing=(4.0, 4.0, 4.0))
    thick = make_pet_ct_phantom((8, 48, 48), spacing=(8.0, 4.0, 4.0))
    vol_iso = (iso.lesion_mask == 1).sum() * 64.0
    vol_thick = (thick.lesion_mask == 1).sum() * 128.0
    assert vol_thick == pytest.approx(vol_iso, rel=0.35)  # ~ 4/3 pi 12^3 = 7238 mm^3 either way


def test_too_small_shape_is_refused():
    with pytest.raises(ValueError, match=r"phantom shape \(4, 32, 32\) too small; expected \(Z, Y, X\) >= "):
        make_pet_ct_phantom((4, 32, 32))


def test_lesion_mask_saves_on_the_phantom_grid(tmp_path, case):
    back = load_volume(save_labels(tmp_path / "lesions.nii.gz", case.lesion_mask, case.pet), check=False)
    np.testing.assert_array_equal(back.data, case.lesion_mask)
    np.testing.assert_allclose(back.affine, case.pet.affine)
    labels = case.lesion_volume
    assert labels.shape == case.pet.shape and labels.spacing == case.pet.spacing
    assert labels.meta["synthetic"] is True and labels.meta["name"] == "synthetic_lesion_mask"
    np.testing.assert_array_equal(labels.affine, case.pet.affine)
