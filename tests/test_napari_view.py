"""`dinomed-napari view`: a viewer with the image opened by our reader and the four widgets docked."""

from __future__ import annotations

import numpy as np
import pytest

from dinomed_napari.samples import sample_path

pytestmark = pytest.mark.gui


def test_view_opens_image_with_widgets_docked(qtbot, tmp_path):
    import nibabel as nib

    from dinomed_napari.cli.view import build_viewer

    src = nib.load(sample_path("lung_ct"))  # 8 slices of the real chest CT, same header
    path = tmp_path / "lung_crop.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(src.dataobj)[:, :, 20:28], src.affine, src.header), path)
    viewer, dock = build_viewer([path], show=False)
    try:
        assert [dock.tabs.tabText(i) for i in range(4)] == ["Features", "Similarity", "Isolate", "Segment"]
        (layer,) = viewer.layers
        assert layer.data.shape == (8, 160, 160)
        np.testing.assert_allclose(layer.scale, [5.0, 0.5703125, 0.5703125])
        features = dock.features
        assert dock.segment.image.value is layer  # every tool on the same image
        assert "CT (auto: intensities" in features.window_note.value  # the file does not say CT
        assert tuple(layer.contrast_limits) == (-160.0, 240.0)  # display = the soft-tissue window
        assert features.image.value is layer  # the docked widget sees the real layer, not a proxy
        features.weights.value, features.resolution.value = "random", 64
        features.run()
        qtbot.waitUntil(lambda: not features.running, timeout=60_000)
        assert features.status.value.startswith("features ready"), features.status.value
        assert [lyr.name for lyr in viewer.layers] == ["lung_crop.nii.gz", "PCA", "affinity"]
    finally:
        viewer.close()


def test_view_shows_a_2d_picture_with_napari_own_reader(qtbot, tmp_path, capsys):
    from dinomed_napari.cli.view import build_viewer

    np.save(tmp_path / "photo.npy", np.arange(40 * 50, dtype=np.float32).reshape(40, 50))
    viewer, _ = build_viewer([tmp_path / "photo.npy"], widgets=False, show=False)
    try:
        (layer,) = viewer.layers
        assert layer.data.shape == (40, 50) and float(layer.data[39, 49]) == 40 * 50 - 1
        assert "a 2D or colour picture, opened with napari's own reader" in capsys.readouterr().err
    finally:
        viewer.close()


def test_view_sets_the_preferred_reader(monkeypatch):
    from napari.settings import get_settings

    from dinomed_napari.cli.view import PLUGIN, prefer_reader

    plugins = get_settings().plugins
    monkeypatch.setattr(plugins, "extension2reader", {"*.tif": "someone-else"})
    added = prefer_reader()
    assert "*.nii.gz" in added and "*.tif" not in added  # the user's own choice stays
    prefs = plugins.extension2reader
    assert prefs["*.nii.gz"] == PLUGIN and prefs["*.tif"] == "someone-else"


def test_importing_the_plugin_leaves_triton_alone():
    import subprocess
    import sys

    code = "import sys, dinomed_napari._napari.widget_dock; print('triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


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


def test_closing_napari_during_an_extraction_stops_it_cleanly(qtbot):
    from dinomed_napari.cli.view import build_viewer

    viewer, dock = build_viewer(sample="ct_organs", show=False)
    f = dock.features
    f.weights.value, f.resolution.value = "random", 64
    done = []
    f._relay.progress.connect(lambda d, _t: done.append(d))
    f.run()
    qtbot.waitUntil(lambda: len(done) >= 2, timeout=60_000)
    job = f._job
    viewer.close()  # the dock goes: its job is cancelled and waited for; nothing touches deleted widgets
    qtbot.wait(500)
    assert not job.busy and job.cancelled and done[-1] < 30
