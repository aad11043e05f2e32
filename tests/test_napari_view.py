"""`dinomed-napari view`: a viewer with the image opened by our reader and the four widgets docked."""

from __future__ import annotations

import numpy as np
import pytest

from dinomed_napari.samples import sample_path

pytestmark = pytest.mark.gui


def test_view_opens_image_with_widgets_docked(qtbot, tmp_path):
    import nibabel as nib

    from dinomed_napari.cli.view import WIDGETS, build_viewer

    src = nib.load(sample_path("lung_ct"))  # 8 slices of the real chest CT, same header
    path = tmp_path / "lung_crop.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(src.dataobj)[:, :, 20:28], src.affine, src.header), path)
    viewer, docked = build_viewer([path], show=False)
    try:
        assert list(docked) == list(WIDGETS)
        (layer,) = viewer.layers
        assert layer.data.shape == (8, 160, 160)
        np.testing.assert_allclose(layer.scale, [5.0, 0.5703125, 0.5703125])
        features = docked["DINOv3 features"]
        assert features.image.value is layer  # the docked widget sees the real layer, not a proxy
        features.weights.value, features.resolution.value = "random", 64
        features.run()
        qtbot.waitUntil(lambda: not features.running, timeout=60_000)
        assert features.status.value.startswith("features ready"), features.status.value
        assert any(lyr.name.startswith("PCA ") for lyr in viewer.layers)
    finally:
        viewer.close()


def test_view_command_is_registered():
    from dinomed_napari.cli import view
    from dinomed_napari.cli.main import COMMANDS, build_parser

    assert COMMANDS["view"][0] == "view"
    build_parser()
    import argparse

    parser = argparse.ArgumentParser()
    view.configure(parser)
    args = parser.parse_args(["a.nii.gz", "--sample", "em"])
    assert args.images == ["a.nii.gz"] and args.sample == "em" and not args.no_widgets
