"""save_labels: written labels reload on the source grid (same shape, spacing, affine), also via nibabel."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import tifffile
from dicom_series import write_series

from dinomed_napari.errors import VolumeError
from dinomed_napari.io import load_volume, save_labels
from dinomed_napari.io.volume import Volume
from dinomed_napari.samples import sample_path


@pytest.mark.parametrize("image_key,mask_key", [("ct_organs", "ct_organs_seg"), ("lung_ct", "lung_mask")])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nifti_labels_identical_header_geometry(tmp_path, image_key, mask_key, suffix):
    ct = load_volume(sample_path(image_key))
    seg = load_volume(sample_path(mask_key), check=False)
    out = save_labels(tmp_path / f"labels{suffix}", seg.data, like=ct)
    src, got = nib.load(sample_path(image_key)), nib.load(out)
    assert got.shape == src.shape
    np.testing.assert_array_equal(got.affine, src.affine)
    for getter in ("get_qform", "get_sform"):
        ref_m, ref_code = getattr(src.header, getter)(coded=True)
        m, code = getattr(got.header, getter)(coded=True)
        assert code == ref_code
        if ref_m is not None:
            np.testing.assert_allclose(m, ref_m, atol=1e-5)
    assert got.header.get_zooms() == src.header.get_zooms()
    # The written labels are voxel-for-voxel the reference mask file (it shares the image grid).
    ref = np.asarray(nib.load(sample_path(mask_key)).dataobj)
    np.testing.assert_array_equal(np.asarray(got.dataobj), ref)
    back = load_volume(out, check=False)
    assert back.shape == ct.shape and back.spacing == ct.spacing
    np.testing.assert_array_equal(back.affine, ct.affine)
    np.testing.assert_array_equal(back.data, seg.data)


def test_label_dtype_is_compact_and_exact(tmp_path):
    ct = load_volume(sample_path("ct_organs"))
    labels = np.zeros(ct.shape, dtype=np.int64)
    labels[5:10, 20:40, 30:60] = 300
    out = save_labels(tmp_path / "l.nii.gz", labels, ct)
    assert nib.load(out).get_data_dtype() == np.uint16
    np.testing.assert_array_equal(load_volume(out, check=False).data, labels)
    assert nib.load(save_labels(tmp_path / "b.nii", labels > 0, ct)).get_data_dtype() == np.uint8


def test_nrrd_labels_on_nrrd_and_nifti_grids(tmp_path):
    import nrrd

    arr = np.random.default_rng(0).integers(0, 100, (20, 18, 6)).astype(np.int16)
    dirs = np.array([[0.0, 0.7, 0.0], [0.8, 0.0, 0.0], [0.0, 0.0, 2.5]])
    nrrd.write(str(tmp_path / "v.nrrd"), arr, {"space": "left-posterior-superior", "space directions": dirs,
                                              "space origin": np.array([10.0, -20.0, 30.0])})
    vol = load_volume(tmp_path / "v.nrrd")
    labels = (vol.data > 50).astype(np.uint8)
    back = load_volume(save_labels(tmp_path / "l.nrrd", labels, vol), check=False)
    np.testing.assert_array_equal(back.data, labels)
    np.testing.assert_allclose(back.affine, vol.affine)
    _, header = nrrd.read(str(tmp_path / "l.nrrd"))
    np.testing.assert_allclose(header["space directions"], dirs)  # same LPS header as the source

    ct = load_volume(sample_path("cta_aorta"))
    mask = load_volume(sample_path("cta_aorta_mask"), check=False)
    back = load_volume(save_labels(tmp_path / "aorta.nrrd", mask.data, ct), check=False)
    np.testing.assert_allclose(back.affine, ct.affine)
    assert back.spacing == pytest.approx(ct.spacing) and int(back.data.sum()) == 72810


def test_tiff_labels_keep_spacing(tmp_path):
    data = np.random.default_rng(1).integers(0, 255, (4, 20, 30)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "em.tif", data, imagej=True, resolution=(1 / 0.004, 1 / 0.004),
                     metadata={"spacing": 0.05, "unit": "um", "axes": "ZYX"})
    em = load_volume(tmp_path / "em.tif")
    labels = np.arange(data.size, dtype=np.int32).reshape(data.shape) % 1000
    back = load_volume(save_labels(tmp_path / "labels.tif", labels, em), check=False)
    np.testing.assert_array_equal(back.data, labels)
    assert back.data.dtype == np.uint16
    assert back.spacing == pytest.approx(em.spacing, rel=1e-6)
    assert back.meta["spacing_unit"] == "um"
    with pytest.raises(VolumeError, match=r"labels.tif: labels of dtype int16 with range \[-1, 0\] do not"):
        save_labels(tmp_path / "labels.tif", -(labels == 0).astype(np.int32), em)


@pytest.mark.parametrize("suffix", [".npy", ".zarr"])
def test_npy_and_zarr_labels_record_the_grid(tmp_path, suffix):
    ct = load_volume(sample_path("lung_ct"))
    mask = load_volume(sample_path("lung_mask"), check=False)
    back = load_volume(save_labels(tmp_path / f"mask{suffix}", mask.data, ct), check=False)
    np.testing.assert_array_equal(back.data, mask.data)
    assert back.spacing == ct.spacing
    np.testing.assert_array_equal(back.affine, ct.affine)


def test_dicom_source_labels_as_nifti(tmp_path):
    raw = np.random.default_rng(2).integers(0, 2000, (4, 20, 24)).astype(np.int16)
    write_series(tmp_path / "ct", raw, intercepts=[-1024.0] * 4)
    ct = load_volume(tmp_path / "ct")
    labels = (ct.data > 0).astype(np.uint8)
    out = save_labels(tmp_path / "seg.nii.gz", labels, ct)
    img = nib.load(out)
    np.testing.assert_allclose(img.affine, ct.affine, atol=1e-6)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")  # DICOM axial: columns to patient left
    np.testing.assert_array_equal(np.asarray(img.dataobj).transpose(2, 1, 0), labels)


def test_writer_rejects_wrong_shape_and_suffix(tmp_path):
    like = Volume(np.zeros((3, 16, 16), np.float32))
    with pytest.raises(VolumeError, match=r"labels have shape \(3, 16, 15\); expected the source volume's "
                                          r"shape \(3, 16, 16\)"):
        save_labels(tmp_path / "x.nii.gz", np.zeros((3, 16, 15)), like)
    with pytest.raises(VolumeError, match=r"x.png: unsupported label file type; expected one of .nii"):
        save_labels(tmp_path / "x.png", np.zeros((3, 16, 16)), like)
