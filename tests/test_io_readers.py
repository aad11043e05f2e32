"""Readers: real NIfTI/TIFF samples and generated NRRD, DICOM (CT, PET SUV), TIFF, zarr and npy files."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile
from dicom_series import pet_tags, write_series

from dinomed_napari.errors import VolumeError
from dinomed_napari.io import load_volume
from dinomed_napari.samples import SAMPLES, sample_path

REAL_NIFTI = {
    "ct_organs": ((30, 101, 122), (3.0, 3.0, 3.0)),
    "cta_aorta": ((164, 126, 120), (1.5, 1.5, 1.5)),
    "lung_ct": ((48, 160, 160), (5.0, 0.5703125, 0.5703125)),
    "mri_organs": ((20, 91, 117), (3.0, 3.0, 3.0)),
}


def test_every_sample_exists_and_has_attribution():
    for key, (name, description, attribution) in SAMPLES.items():
        path = sample_path(key)
        assert path.name == name and path.stat().st_size > 0
        assert description and attribution
    with pytest.raises(KeyError, match="unknown sample 'nope'; available: ct_organs"):
        sample_path("nope")


@pytest.mark.parametrize("key", sorted(REAL_NIFTI))
def test_real_nifti_matches_nibabel(key):
    shape, spacing = REAL_NIFTI[key]
    vol = load_volume(sample_path(key), modality="CT")
    img = nib.load(sample_path(key))
    assert vol.shape == shape
    assert vol.spacing == pytest.approx(spacing)
    np.testing.assert_array_equal(vol.affine, img.affine)
    np.testing.assert_array_equal(vol.data, np.asarray(img.dataobj).transpose(2, 1, 0))
    assert vol.data.dtype == np.int16 and vol.data.flags.c_contiguous
    assert vol.modality == "CT" and vol.units == "HU"
    json.dumps(vol.meta)  # napari layer metadata must stay serialisable


def test_real_mask_shares_grid_with_image():
    ct = load_volume(sample_path("lung_ct"))
    mask = load_volume(sample_path("lung_mask"), check=False)
    assert mask.shape == ct.shape and np.array_equal(mask.affine, ct.affine)
    assert int((mask.data > 0).sum()) == 837
    assert ct.modality is None and ct.units == "a.u."  # files do not say their modality


def test_real_em_tiff():
    em = load_volume(sample_path("em"), modality="EM")
    assert em.shape == (20, 352, 352) and em.data.dtype == np.uint8
    assert em.spacing == (1.0, 1.0, 1.0) and em.meta["spacing_from"] == "none"
    np.testing.assert_array_equal(em.data, tifffile.imread(sample_path("em")))
    cells = load_volume(sample_path("em_cells"), check=False)
    assert cells.data.dtype == np.uint16 and cells.shape == em.shape


def test_nrrd_lps_geometry(tmp_path):
    import nrrd

    arr_ijk = np.random.default_rng(0).integers(-100, 100, (20, 18, 6)).astype(np.int16)
    dirs = np.array([[0.0, 0.7, 0.0], [0.8, 0.0, 0.0], [0.0, 0.0, 2.5]])  # i along y, j along x (LPS)
    origin = np.array([10.0, -20.0, 30.0])
    nrrd.write(str(tmp_path / "v.nrrd"), arr_ijk, {"space": "left-posterior-superior",
                                                   "space directions": dirs, "space origin": origin})
    vol = load_volume(tmp_path / "v.nrrd")
    assert vol.shape == (6, 18, 20)
    np.testing.assert_array_equal(vol.data, arr_ijk.transpose(2, 1, 0))
    assert vol.spacing == pytest.approx((2.5, 0.8, 0.7))
    expected = np.array([[0.0, -0.8, 0.0, -10.0], [-0.7, 0.0, 0.0, 20.0], [0.0, 0.0, 2.5, 30.0],
                         [0, 0, 0, 1]])
    np.testing.assert_allclose(vol.affine, expected)


def test_dicom_ct_sorted_by_position_with_rescale(tmp_path):
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 2000, (5, 20, 24)).astype(np.int16)
    raw[:, 0, 0] = np.arange(5)  # slice id, to check the order
    pos = [(-50.0, -60.0, 20.0 + 2.5 * k) for k in range(5)]
    write_series(tmp_path / "ct", raw, positions=pos, intercepts=[-1024.0] * 5, order=[3, 0, 4, 1, 2])
    vol = load_volume(tmp_path / "ct")
    assert vol.modality == "CT" and vol.units == "HU" and vol.data.dtype == np.int16
    assert vol.shape == (5, 20, 24)
    np.testing.assert_array_equal(vol.data, raw.astype(np.int32) - 1024)
    assert vol.spacing == pytest.approx((2.5, 0.8, 0.7))
    # (column, row, slice) -> RAS: x and y of LPS negated.
    expected = np.array([[-0.7, 0, 0, 50.0], [0, -0.8, 0, 60.0], [0, 0, 2.5, 20.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(vol.affine, expected)
    assert vol.meta["format"] == "dicom" and vol.meta["n_files"] == 5
    # One file stands for its series.
    one = load_volume(tmp_path / "ct" / "IM0002.dcm")
    np.testing.assert_array_equal(one.data, vol.data)


def test_dicom_sagittal_sorted_along_normal(tmp_path):
    raw = np.stack([np.full((20, 20), 10 * k, np.int16) for k in range(3)])
    raw[:, 1, 1] = 7  # keep slices non-constant
    # rows along A->P (LPS +y), columns head->feet (-z): normal = row x col = -x (towards patient right).
    pos = [(10.0 + 2.0 * k, 0.0, 0.0) for k in range(3)]
    write_series(tmp_path / "sag", raw, positions=pos, orientation=(0, 1, 0, 0, 0, -1),
                 pixel_spacing=(1.0, 1.0))
    vol = load_volume(tmp_path / "sag")
    # Ascending along the normal -x means descending LPS x: the x=14 slice comes first.
    assert [int(vol.data[k, 0, 0]) for k in range(3)] == [20, 10, 0]
    np.testing.assert_allclose(vol.affine[:3, 2], [2.0, 0.0, 0.0])  # LPS step (-2, 0, 0) -> RAS (+2, 0, 0)
    np.testing.assert_allclose(vol.affine[:3, 3], [-14.0, 0.0, 0.0])
    np.testing.assert_allclose(vol.affine[:3, 0], [0.0, -1.0, 0.0])
    np.testing.assert_allclose(vol.affine[:3, 1], [0.0, 0.0, -1.0])


def test_dicom_pet_suv_bw_matches_hand_calculation(tmp_path):
    raw = np.random.default_rng(2).integers(0, 30000, (4, 18, 18)).astype(np.int16)
    slopes = [0.25, 0.5, 0.75, 1.5]  # per-slice scaling, as PET scanners write it
    write_series(tmp_path / "pet", raw, modality="PT", slopes=slopes, extra=pet_tags(), order=[2, 1, 3, 0])
    vol = load_volume(tmp_path / "pet")
    # 70 kg, 370 MBq at 09:30, scan at 10:30 -> 3600 s of F-18 decay (half-life 6586.2 s).
    decayed_dose = 3.7e8 * 2 ** (-3600 / 6586.2)
    factor = 70.0 * 1000 / decayed_dose
    bq_ml = raw * np.array(slopes)[:, None, None]
    assert vol.modality == "PT" and vol.units == "SUVbw"
    np.testing.assert_allclose(vol.data, bq_ml * factor, rtol=1e-5)
    assert vol.meta["suv_factor"] == pytest.approx(factor)
    assert vol.meta["decay_factor"] == pytest.approx(0.6847, abs=1e-4)
    assert "suv_note" not in vol.meta


def test_dicom_pet_injection_before_midnight(tmp_path):
    raw = np.random.default_rng(3).integers(0, 1000, (2, 16, 16)).astype(np.int16)
    tags = pet_tags(injection="233000", series_time="003000")  # injected the day before the scan
    write_series(tmp_path / "pet", raw, modality="PT", extra=tags)
    vol = load_volume(tmp_path / "pet")
    factor = 70000 / (3.7e8 * 2 ** (-3600 / 6586.2))
    np.testing.assert_allclose(vol.data, raw * factor, rtol=1e-5)


def test_dicom_pet_without_weight_stays_bqml_with_note(tmp_path):
    raw = np.random.default_rng(4).integers(0, 1000, (3, 16, 16)).astype(np.int16)
    write_series(tmp_path / "pet", raw, modality="PT", slopes=[2.0] * 3, extra=pet_tags(weight=None))
    vol = load_volume(tmp_path / "pet")
    assert vol.units == "BQML"
    assert "SUVbw needs PatientWeight" in vol.meta["suv_note"]
    np.testing.assert_allclose(vol.data, raw * 2.0)


def test_dicom_pet_counts_not_converted(tmp_path):
    raw = np.random.default_rng(5).integers(0, 1000, (2, 16, 16)).astype(np.int16)
    write_series(tmp_path / "pet", raw, modality="PT", extra=pet_tags(units="CNTS"))
    vol = load_volume(tmp_path / "pet")
    assert vol.units == "a.u." and "Units is 'CNTS', not 'BQML'" in vol.meta["suv_note"]


def test_dicom_folder_with_two_series(tmp_path):
    raw = np.random.default_rng(6).integers(0, 1000, (3, 16, 16)).astype(np.int16)
    write_series(tmp_path / "study" / "ct", raw)
    write_series(tmp_path / "study" / "pt", raw, modality="PT", extra=pet_tags())
    (tmp_path / "study" / "README.txt").write_text("not dicom")
    with pytest.raises(VolumeError, match=r"several series:.*Choose one with modality="):
        load_volume(tmp_path / "study")
    assert load_volume(tmp_path / "study", modality="PT").units == "SUVbw"
    assert load_volume(tmp_path / "study", modality="CT").units == "HU"


def test_dicom_4d_series_rejected(tmp_path):
    raw = np.random.default_rng(7).integers(0, 1000, (4, 16, 16)).astype(np.int16)
    pos = [(0.0, 0.0, 5.0 * (k % 2)) for k in range(4)]  # two time points at two positions
    write_series(tmp_path / "dyn", raw, positions=pos)
    with pytest.raises(VolumeError, match=r"4 images share 2 slice positions \(a 4D series"):
        load_volume(tmp_path / "dyn")


def test_tiff_spacing_from_imagej_ome_and_plain(tmp_path):
    data = np.random.default_rng(8).integers(0, 255, (4, 20, 30)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "ij.tif", data, imagej=True, resolution=(1 / 0.5, 1 / 0.25),
                     metadata={"spacing": 2.5, "unit": "um", "axes": "ZYX"})
    tifffile.imwrite(tmp_path / "ome.ome.tif", data, ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.25,
                               "PhysicalSizeZ": 2.5})
    tifffile.imwrite(tmp_path / "plain.tiff", data, photometric="minisblack")
    for name, spacing in (("ij.tif", (2.5, 0.25, 0.5)), ("ome.ome.tif", (2.5, 0.25, 0.5)),
                          ("plain.tiff", (1.0, 1.0, 1.0))):
        vol = load_volume(tmp_path / name, modality="EM")
        np.testing.assert_array_equal(vol.data, data)
        assert vol.spacing == pytest.approx(spacing), name
        np.testing.assert_allclose(np.diag(vol.affine)[:3], spacing[::-1])
    assert load_volume(tmp_path / "ij.tif").meta["spacing_unit"] == "um"


def test_zarr_array_with_spacing_and_ome_group(tmp_path):
    import zarr

    data = np.random.default_rng(9).random((5, 20, 24)).astype(np.float32)
    arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=data.shape, dtype=data.dtype)
    arr[...] = data
    arr.attrs["spacing"] = [3.0, 0.5, 0.5]
    vol = load_volume(tmp_path / "a.zarr")
    np.testing.assert_array_equal(vol.data, data)
    assert vol.spacing == (3.0, 0.5, 0.5) and np.diag(vol.affine).tolist() == [0.5, 0.5, 3.0, 1.0]

    group = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    group.create_array("0", shape=data.shape, dtype=data.dtype)[...] = data
    group.create_array("1", shape=(5, 10, 12), dtype=data.dtype)[...] = data[:, ::2, ::2]
    group.attrs["multiscales"] = [{"datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [2.0, 0.3, 0.4]}]},
        {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [2.0, 0.6, 0.8]}]}]}]
    vol = load_volume(tmp_path / "ome.zarr")
    assert vol.shape == (5, 20, 24) and vol.spacing == (2.0, 0.3, 0.4)

    plain = zarr.open_group(str(tmp_path / "two.zarr"), mode="w")
    plain.create_array("a", shape=data.shape, dtype=data.dtype)
    plain.create_array("b", shape=data.shape, dtype=data.dtype)
    with pytest.raises(VolumeError, match=r"zarr group holds 2 arrays \['a', 'b'\]; expected exactly one"):
        load_volume(tmp_path / "two.zarr")


def test_npy_with_and_without_sidecar(tmp_path):
    data = np.random.default_rng(10).normal(size=(3, 16, 20)).astype(np.float32)
    np.save(tmp_path / "v.npy", data)
    vol = load_volume(tmp_path / "v.npy")
    np.testing.assert_array_equal(vol.data, data)
    assert vol.spacing == (1.0, 1.0, 1.0) and np.array_equal(vol.affine, np.eye(4))
    (tmp_path / "v.npy.json").write_text(json.dumps({"spacing": [4.0, 2.0, 1.0]}))
    vol = load_volume(tmp_path / "v.npy")
    assert vol.spacing == (4.0, 2.0, 1.0) and np.diag(vol.affine).tolist() == [1.0, 2.0, 4.0, 1.0]


def test_pet_nifti_gets_a_units_note(tmp_path):
    data = np.random.default_rng(11).random((4, 16, 16)).astype(np.float32)
    nib.save(nib.Nifti1Image(data.transpose(2, 1, 0), np.eye(4)), tmp_path / "pet.nii.gz")
    vol = load_volume(tmp_path / "pet.nii.gz", modality="PT")
    assert vol.modality == "PT" and "carry no PET dose/weight tags" in vol.meta["suv_note"]
    assert load_volume(tmp_path / "pet.nii.gz", modality="PT", units="SUVbw").units == "SUVbw"
