"""napari readers, writer and sample data, through napari's own open/save paths (needs Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

from dinomed_napari.io import load_volume
from dinomed_napari.samples import sample_path

pytestmark = pytest.mark.gui
PLUGIN = "dinomed-napari"


def test_manifest_is_valid():
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution(PLUGIN)
    pm.validate_imports()
    assert {w.display_name for w in pm.contributions.widgets} == {
        "DINOv3 tools", "DINOv3 features", "Feature similarity", "Tumour isolation", "Scribble segmenter"}
    assert any("SYNTHETIC" in s.display_name for s in pm.contributions.sample_data)


def test_nifti_reader_gives_spacing_and_grid(make_napari_viewer):
    viewer = make_napari_viewer()
    path = sample_path("lung_ct")
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    vol = load_volume(path)
    assert type(layer).__name__ == "Image"
    assert layer.data.shape == vol.shape == (48, 160, 160)
    np.testing.assert_allclose(layer.scale, [5.0, 0.5703125, 0.5703125])
    np.testing.assert_allclose(layer.metadata["dinomed"]["affine"], vol.affine)


def test_mask_files_open_as_labels(make_napari_viewer):
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(sample_path("lung_mask")), plugin=PLUGIN)
    assert type(layer).__name__ == "Labels"
    assert int(np.asarray(layer.data).sum()) == 837  # the manual nodule mask, unchanged


def test_nrrd_reader_keeps_anisotropic_spacing(make_napari_viewer, tmp_path):
    import nrrd

    crop = np.asarray(load_volume(sample_path("ct_organs")).data)[10:18, 20:60, 30:90]
    # NRRD stores (x, y, z); spacing 0.8 x 0.7 mm in-plane, 2.5 mm slices.
    header = {"space": "left-posterior-superior",
              "space directions": np.diag([0.8, 0.7, 2.5]), "space origin": np.zeros(3)}
    path = tmp_path / "crop.nrrd"
    nrrd.write(str(path), np.ascontiguousarray(crop.transpose(2, 1, 0)), header)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert layer.data.shape == crop.shape
    np.testing.assert_array_equal(np.asarray(layer.data), crop)
    np.testing.assert_allclose(layer.scale, [2.5, 0.7, 0.8])


def test_reader_declines_other_files(tmp_path):
    from dinomed_napari._napari.readers import get_reader

    (tmp_path / "notes.txt").write_text("hello")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path)) is None  # a folder without DICOM files
    assert get_reader(str(sample_path("em"))) is not None
    # .npy / TIFF pictures are left to napari's own readers; volumes and unreadable files stay ours
    # (load_volume then names the fault).
    import tifffile

    np.save(tmp_path / "photo.npy", np.zeros((40, 50), np.float32))
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((40, 50, 3), np.uint8), photometric="rgb")
    np.save(tmp_path / "vol.npy", np.zeros((4, 40, 50), np.float32))
    (tmp_path / "cut.npy").write_bytes(b"\x93NUMPY")
    assert get_reader(str(tmp_path / "photo.npy")) is None and get_reader(str(tmp_path / "rgb.tif")) is None
    assert get_reader(str(tmp_path / "vol.npy")) is not None and get_reader(str(tmp_path / "cut.npy"))
    assert get_reader([str(tmp_path / "vol.npy"), str(tmp_path / "photo.npy")]) is None


@pytest.mark.parametrize("suffix", [".nii.gz", ".tif", ".nrrd"])
def test_writer_output_reloads_on_the_image_grid(make_napari_viewer, tmp_path, suffix):
    import napari

    from dinomed_napari._napari.layers import aligned_kwargs

    viewer = make_napari_viewer()
    (image,) = viewer.open(str(sample_path("ct_organs")), plugin=PLUGIN)
    mask = (np.asarray(image.data) > 150).astype(np.uint8)
    labels = viewer.add_labels(mask, **aligned_kwargs(image, "bone"))
    (out,) = napari.save_layers(str(tmp_path / f"bone{suffix}"), [labels], plugin=PLUGIN)
    back = load_volume(out)
    src = load_volume(sample_path("ct_organs"))
    assert back.shape == src.shape
    np.testing.assert_allclose(back.spacing, src.spacing)
    if suffix != ".tif":  # TIFF has no orientation, only spacing
        np.testing.assert_allclose(back.affine, src.affine)
    # The layer shows the RAS file radiologically (flipped); the file gets the source's voxel order.
    np.testing.assert_array_equal(np.asarray(back.data), (np.asarray(src.data) > 150).astype(np.uint8))


def test_nifti_shows_radiologically_and_says_how(make_napari_viewer):
    viewer = make_napari_viewer()
    (ras,) = viewer.open(str(sample_path("ct_organs")), plugin=PLUGIN)  # stored R, A, S
    src = np.asarray(load_volume(sample_path("ct_organs")).data)
    # patient's right on the screen's left, anterior up: both in-plane axes flipped, never the slices
    np.testing.assert_array_equal(np.asarray(ras.data), np.flip(src, (1, 2)))
    assert ras.metadata["dinomed"]["display_flip"] == [1, 2]
    (lps,) = viewer.open(str(sample_path("lung_ct")), plugin=PLUGIN)  # stored L, P, S: already so
    np.testing.assert_array_equal(np.asarray(lps.data), np.asarray(load_volume(sample_path("lung_ct")).data))
    assert "display_flip" not in lps.metadata["dinomed"]
    assert tuple(ras.contrast_limits) == (-160.0, 240.0)  # CT soft-tissue window, not percentiles


def test_sample_data_opens_real_and_synthetic(make_napari_viewer):
    viewer = make_napari_viewer()
    ct = viewer.open_sample(PLUGIN, "ct_organs")
    assert [type(lyr).__name__ for lyr in ct] == ["Image", "Labels"]
    assert ct[0].data.shape == ct[1].data.shape == (30, 101, 122)
    np.testing.assert_allclose(ct[0].scale, ct[1].scale)
    em = viewer.open_sample(PLUGIN, "em")
    assert em[0].data.shape == (20, 352, 352)
    np.testing.assert_allclose(em[0].scale, [50.0, 4.0, 4.0])  # nm (ISBI 2012), not 1, 1, 1
    assert em[0].metadata["dinomed"]["meta"]["spacing_unit"] == "nm"
    # membranes are label 1 (the file stores them as 0)
    assert 0.1 < float(np.mean(np.asarray(em[1].data) == 1)) < 0.5
    phantom = viewer.open_sample(PLUGIN, "pet_ct_phantom")
    assert len(phantom) >= 2
    assert all("SYNTHETIC" in lyr.name for lyr in phantom)


def test_dicom_folder_opens_with_spacing_and_labels_write_back(make_napari_viewer, tmp_path):
    import napari
    from dicom_series import write_series

    from dinomed_napari._napari.layers import aligned_kwargs

    raw = np.asarray(load_volume(sample_path("ct_organs")).data)[12:16, 30:70, 40:88].astype(np.int16)
    folder = tmp_path / "ct_series"
    write_series(folder, raw + 1024, intercepts=[-1024.0] * 4)  # stored unsigned-style, HU via intercept
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(folder), plugin=PLUGIN)
    vol = load_volume(folder)
    np.testing.assert_array_equal(np.asarray(image.data), raw)  # HU restored
    np.testing.assert_allclose(image.scale, vol.spacing)
    np.testing.assert_allclose(image.scale, [2.5, 0.8, 0.7])
    assert image.metadata["dinomed"]["modality"] == "CT"
    mask = (raw > 0).astype(np.uint8)
    labels = viewer.add_labels(mask, **aligned_kwargs(image, "dense"))
    (out,) = napari.save_layers(str(tmp_path / "dense.nii.gz"), [labels], plugin=PLUGIN)
    back = load_volume(out)
    np.testing.assert_allclose(back.affine, vol.affine)
    np.testing.assert_array_equal(np.asarray(back.data), mask)


def test_empty_mask_opens_as_labels_but_constant_image_is_refused(tmp_path):
    import nibabel as nib

    from dinomed_napari._napari.readers import read_layers
    from dinomed_napari.errors import VolumeError

    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    zeros = np.zeros((20, 20, 5), np.uint8)
    nib.save(nib.Nifti1Image(zeros, affine), tmp_path / "empty_mask.nii.gz")
    nib.save(nib.Nifti1Image(zeros.astype(np.float32), affine), tmp_path / "flat.nii.gz")

    ((data, kwargs, kind),) = read_layers(str(tmp_path / "empty_mask.nii.gz"))
    assert kind == "labels" and data.shape == (5, 20, 20) and not data.any()
    assert kwargs["scale"] == (4.0, 3.0, 2.0)
    with pytest.raises(VolumeError, match="constant"):
        read_layers(str(tmp_path / "flat.nii.gz"))


def test_plain_tiff_resolution_tags_give_the_in_plane_spacing(make_napari_viewer, tmp_path):
    import tifffile

    em = np.random.default_rng(0).integers(0, 255, (3, 32, 32)).astype(np.uint8)
    path = tmp_path / "em_4nm.tif"  # 2,500,000 pixels per cm = 4 nm = 0.004 um per pixel
    tifffile.imwrite(path, em, resolution=(2.5e6, 2.5e6), resolutionunit="CENTIMETER")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    np.testing.assert_allclose(layer.scale, [1.0, 0.004, 0.004])
    assert layer.metadata["dinomed"]["meta"]["spacing_from"] == "resolution tags"
    assert layer.metadata["dinomed"]["meta"]["spacing_unit"] == "µm"
