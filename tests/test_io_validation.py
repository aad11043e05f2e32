"""Bad input: each case raises VolumeError naming the file, what was found and what is expected."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import tifffile
from dicom_series import write_series

from dinomed_napari.errors import VolumeError
from dinomed_napari.io import Volume, check_image_volume, load_volume
from dinomed_napari.samples import sample_path


def _nifti(path, data_zyx):
    nib.save(nib.Nifti1Image(np.asarray(data_zyx).transpose(2, 1, 0), np.eye(4)), path)
    return path


def _ok(shape=(3, 20, 20), dtype=np.float32):
    return np.random.default_rng(0).random(shape).astype(dtype)


def test_2d_image(tmp_path):
    np.save(tmp_path / "slice.npy", _ok((64, 64)))
    with pytest.raises(VolumeError, match=r"slice.npy: got a 2D image of shape \(64, 64\); expected a 3D "):
        load_volume(tmp_path / "slice.npy")
    tifffile.imwrite(tmp_path / "slice.tif", (_ok((40, 50)) * 255).astype(np.uint8))
    with pytest.raises(VolumeError, match=r"slice.tif: got a 2D image of shape \(40, 50\)"):
        load_volume(tmp_path / "slice.tif")


def test_4d_volume(tmp_path):
    data = _ok((5, 3, 20, 20))
    nib.save(nib.Nifti1Image(data.transpose(3, 2, 1, 0), np.eye(4)), tmp_path / "dyn.nii.gz")
    with pytest.raises(VolumeError, match=r"dyn.nii.gz: got a 4D array of shape \(5, 3, 20, 20\); expected a "
                                          r"3D volume \(Z, Y, X\)"):
        load_volume(tmp_path / "dyn.nii.gz")
    np.save(tmp_path / "dyn.npy", data)
    with pytest.raises(VolumeError, match=r"dyn.npy: got a 4D array"):
        load_volume(tmp_path / "dyn.npy")
    # A trailing singleton 4th dim (X, Y, Z, 1) is still a 3D volume.
    nib.save(nib.Nifti1Image(data[0].transpose(2, 1, 0)[..., None], np.eye(4)), tmp_path / "one.nii")
    assert load_volume(tmp_path / "one.nii").shape == (3, 20, 20)


def test_rgb_volume_and_rgb_picture(tmp_path):
    rgb = (_ok((4, 32, 32, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with pytest.raises(VolumeError, match=r"rgb.tif: got an RGB/RGBA volume of shape \(4, 32, 32, 3\) "
                                          r"\(last axis = 3 colour channels\); expected a greyscale 3D"):
        load_volume(tmp_path / "rgb.tif")
    picture = (_ok((48, 64, 4)) * 255).astype(np.uint8)
    with pytest.raises(VolumeError, match=r"photo: shape \(48, 64, 4\) looks like a 2D RGB/RGBA image"):
        check_image_volume(picture, source="photo")


@pytest.mark.parametrize("bad,counts", [(np.nan, "2 NaN and 0 inf"), (np.inf, "0 NaN and 2 inf")])
def test_nan_inf(tmp_path, bad, counts):
    data = _ok()
    data[1, 2, 3] = data[2, 5, 5] = bad
    _nifti(tmp_path / "bad.nii.gz", data)
    with pytest.raises(VolumeError, match=rf"bad.nii.gz: contains {counts} values \(shape \(3, 20, 20\)\); "
                                          r"expected finite intensities"):
        load_volume(tmp_path / "bad.nii.gz")


def test_constant_volume(tmp_path):
    _nifti(tmp_path / "flat.nii.gz", np.full((3, 20, 20), 7, np.int16))
    with pytest.raises(VolumeError, match=r"flat.nii.gz: volume is constant \(every voxel = 7, shape "
                                          r"\(3, 20, 20\)\); expected an image with contrast"):
        load_volume(tmp_path / "flat.nii.gz")
    # Label images may be empty: the check is optional.
    assert load_volume(tmp_path / "flat.nii.gz", check=False).shape == (3, 20, 20)


@pytest.mark.parametrize("name", ["empty.nii.gz", "empty.tif", "empty.npy", "empty.nrrd"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(VolumeError, match=rf"{name}: empty file \(0 bytes\); expected an image volume"):
        load_volume(tmp_path / name)


def test_empty_folder(tmp_path):
    (tmp_path / "series").mkdir()
    with pytest.raises(VolumeError, match=r"series: empty folder; expected a DICOM series or a zarr store"):
        load_volume(tmp_path / "series")
    (tmp_path / "series" / "notes.txt").write_text("no images")
    with pytest.raises(VolumeError, match=r"series: no DICOM image with position/orientation tags found"):
        load_volume(tmp_path / "series")


def test_truncated_nifti_gz(tmp_path):
    blob = sample_path("ct_organs").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(VolumeError, match=r"cut.nii.gz: truncated or corrupt NIfTI data .*; expected "
                                          r"122x101x30 voxels of int16"):
        load_volume(tmp_path / "cut.nii.gz")


def test_truncated_uncompressed_nifti(tmp_path):
    raw = gzip.decompress(sample_path("ct_organs").read_bytes())
    (tmp_path / "cut.nii").write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(VolumeError, match=r"cut.nii: truncated or corrupt NIfTI data"):
        load_volume(tmp_path / "cut.nii")


def test_truncated_tiff_and_npy(tmp_path):
    blob = sample_path("em").read_bytes()
    (tmp_path / "cut.tif").write_bytes(blob[: len(blob) // 3])
    with pytest.raises(VolumeError, match=r"cut.tif: truncated TIFF file: its metadata declares shape "
                                          r"\(20, 352, 352\) but only \(352, 352\) could be read"):
        load_volume(tmp_path / "cut.tif")
    np.save(tmp_path / "v.npy", _ok())
    blob = (tmp_path / "v.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(blob[:-100])
    with pytest.raises(VolumeError, match=r"cut.npy: not a readable .npy array or truncated data"):
        load_volume(tmp_path / "cut.npy")


def test_garbage_nifti(tmp_path):
    (tmp_path / "junk.nii").write_bytes(b"this is not a nifti header" * 20)
    with pytest.raises(VolumeError, match=r"junk.nii: not a readable NIfTI file"):
        load_volume(tmp_path / "junk.nii")


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}] * 8, dtype=object).reshape(2, 2, 2), allow_pickle=True)
    with pytest.raises(VolumeError, match=r"obj.npy: not a readable .npy array .*pickle") as err:
        load_volume(tmp_path / "obj.npy")
    assert "allow_pickle" not in str(err.value)  # numpy's advice to unpickle is not passed on


def test_smaller_than_one_patch(tmp_path):
    _nifti(tmp_path / "tiny.nii.gz", _ok((10, 12, 40)))
    with pytest.raises(VolumeError, match=r"tiny.nii.gz: in-plane size 12x40 \(Y x X, volume shape "
                                          r"\(10, 12, 40\)\) is smaller than one 16x16-pixel patch"):
        load_volume(tmp_path / "tiny.nii.gz")
    check_image_volume(_ok((1, 16, 16)))  # one patch exactly is fine


def test_missing_path_and_unknown_suffix(tmp_path):
    with pytest.raises(VolumeError, match=r"nowhere.nii.gz: no such file or folder; expected an image volume "
                                          r"\(.nii, .nii.gz"):
        load_volume(tmp_path / "nowhere.nii.gz")
    (tmp_path / "image.png").write_bytes(b"\x89PNG....")
    with pytest.raises(VolumeError, match=r"image.png: unsupported file type '.png'; supported: .nii"):
        load_volume(tmp_path / "image.png")


def test_check_names_the_volume_source_and_rejects_non_numeric():
    vol = Volume(np.zeros((2, 20, 20), np.float32), source="/data/scan.nii.gz")
    with pytest.raises(VolumeError, match=r"^/data/scan.nii.gz: volume is constant"):
        check_image_volume(vol)
    with pytest.raises(VolumeError, match=r"image: data type bool is not a numeric image type"):
        check_image_volume(np.zeros((2, 20, 20), bool))
    check_image_volume(Volume(_ok()))  # a good volume passes silently


def test_truncated_dicom_slice_is_named(tmp_path):
    raw = np.random.default_rng(1).integers(0, 1000, (3, 16, 16)).astype(np.int16)
    paths = write_series(tmp_path / "ct", raw)
    blob = paths[1].read_bytes()
    paths[1].write_bytes(blob[:-200])  # header intact, pixel data cut short
    with pytest.raises(VolumeError, match=r"IM0001.dcm: cannot decode DICOM pixel data"):
        load_volume(tmp_path / "ct")


def test_integer_labels_accept_whole_floats_and_name_fractions_and_nan():
    from dinomed_napari.errors import ScribbleError
    from dinomed_napari.io.validate import integer_labels

    ints = np.array([[0, 1], [2, 3]], np.uint8)
    assert integer_labels(ints, "m") is ints  # integer labels are used as they are
    whole = integer_labels(np.array([0.0, 1.0, 2.0, 255.0], np.float32), "m")
    assert whole.dtype == np.int64 and whole.tolist() == [0, 1, 2, 255]
    fractions = r"mask\.tif: 2 voxel\(s\) are not whole class numbers \(e\.g\. 0\.5\)"
    with pytest.raises(VolumeError, match=fractions):
        integer_labels(np.array([0.0, 0.5, 1.0, 2.25]), "mask.tif")
    with pytest.raises(VolumeError, match=r"1 voxel\(s\) .*\(e\.g\. inf\)"):
        integer_labels(np.array([0.0, np.inf]), "m")
    with pytest.raises(ScribbleError, match=r"\(e\.g\. nan\)"):
        integer_labels(np.array([np.nan, 1.0]), "s", ScribbleError)
