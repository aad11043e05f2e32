"""The four dock widgets end to end in a real napari viewer (Xvfb) on a crop of the bundled CT.

Features come from a random-weight ViT-S (no pretrained weights offline) at resolution 128, so the
Dice thresholds below are what such features reach, not what DINOv3 reaches.
"""

from __future__ import annotations

import numpy as np
import pytest

from dinomed_napari.io import Volume, load_volume
from dinomed_napari.samples import sample_path

pytestmark = pytest.mark.gui
LIVER = 5
WAIT = 60_000  # ms; generous for 2 shared CPU cores, never a timing assertion


def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float(2 * np.count_nonzero(a & b) / max(1, a.sum() + b.sum()))


@pytest.fixture(scope="module")
def ct_crop():
    """6 axial slices of the real abdominal CT (HU) through the liver, with the liver mask."""
    ct = load_volume(sample_path("ct_organs"), modality="CT")
    seg = np.asarray(load_volume(sample_path("ct_organs_seg")).data)
    zs = slice(8, 14)
    vol = Volume(np.ascontiguousarray(np.asarray(ct.data)[zs]), ct.spacing, ct.affine, "CT", "HU",
                 str(sample_path("ct_organs")), {})
    return vol, seg[zs] == LIVER


@pytest.fixture
def notes():
    """Messages of the napari notifications shown during the test."""
    from napari.utils.notifications import notification_manager

    seen: list[str] = []

    def keep(event):
        seen.append(str(event.message))

    notification_manager.notification_ready.connect(keep)
    yield seen
    notification_manager.notification_ready.disconnect(keep)


def add_image(viewer, vol):
    from dinomed_napari._napari.layers import volume_layer_data

    data, kwargs, _ = volume_layer_data(vol, "CT crop", "image")
    return viewer.add_image(data, **kwargs)


def compute(viewer, qtbot, image, planes=0, resolution=128):
    """Run the features widget with random weights and wait until it is done."""
    from dinomed_napari._napari.widget_features import FeaturesWidget

    w = FeaturesWidget(viewer)
    w.image.value = image
    w.weights.value = "random"
    w.resolution.value = resolution
    w.planes.value = planes
    w.run()
    qtbot.waitUntil(lambda: not w.running, timeout=WAIT)
    return w


def test_features_widget_adds_aligned_pca_and_affinity(make_napari_viewer, qtbot, ct_crop):
    from dinomed_napari._napari.session import SESSIONS

    viewer = make_napari_viewer()
    image = add_image(viewer, ct_crop[0])
    image.translate = (0.0, 2.0, -3.0)  # maps must follow the image's placement, not the origin
    viewer.dims.set_point(0, 4 * image.scale[0])  # current slice 4 is computed (and shown) first
    from dinomed_napari._napari.widget_features import FeaturesWidget

    w = FeaturesWidget(viewer)
    partial, shown = [], []
    w._relay.partial.connect(partial.append)
    # The PCA layer is made before the first slice is computed: that slice is on screen when it arrives.
    w._relay.partial.connect(lambda _: shown.append("PCA" in viewer.layers and viewer.layers["PCA"].visible))
    w.weights.value, w.resolution.value = "random", 128
    w.run()
    qtbot.waitUntil(lambda: not w.running, timeout=WAIT)
    assert shown[0] is True
    # One slice per forward pass on CPU, the current slice first; each shows as soon as it is computed.
    assert [p[1][0] for p in partial][0] == 4 and sorted(i for p in partial for i in p[1]) == list(range(6))
    # 101 x 122 pixels at 128: a 112 x 128 input, 7 x 8 patches; maps stay on that grid.
    assert partial[0][2][0].shape == (7, 8, 3) and partial[0][2][0].dtype == np.uint8
    pca, aff = viewer.layers["PCA"], viewer.layers["affinity"]
    assert pca.metadata["dinomed_label"] == "vit_small_patch16_dinov3 [random] @128"
    assert pca.visible and not aff.visible  # the PCA map is made hidden and shown with its first slice
    for layer in (pca, aff):
        assert layer.rgb and layer.data.shape == (6, 7, 8, 3) and layer.data.dtype == np.uint8
        # Placed over the image: the patch grid's outer edges are the image's, on every slice.
        for corner in ((3, -0.5, -0.5), (3, 6.5, 7.5)):
            pixel = (3, -0.5 + 101 * (corner[1] > 0), -0.5 + 122 * (corner[2] > 0))
            np.testing.assert_allclose(layer.data_to_world(corner), image.data_to_world(pixel), atol=1e-6)
    assert pca.data.std() > 10  # real colours, not an empty layer
    np.testing.assert_array_equal(pca.data, SESSIONS.get(image).pca.patch_rgb8())
    assert w.progress.value == w.progress.max == 6
    pca.visible = False  # the user hides the map: a second run keeps it hidden
    w.run()  # a second run updates the same layers in place: no pile of PCA layers
    qtbot.waitUntil(lambda: not w.running, timeout=WAIT)
    assert [lyr.name for lyr in viewer.layers] == ["CT crop", "PCA", "affinity"]
    assert viewer.layers["PCA"] is pca and not pca.visible
    w.planes.value, w.resolution.value = 1, 64  # coronal slices: (Z, X) planes of 6 x 122 pixels
    w.run()
    qtbot.waitUntil(lambda: not w.running, timeout=WAIT)
    assert [lyr.name for lyr in viewer.layers] == ["CT crop", "PCA", "affinity"]
    # Another grid too is written into the same layers (no remove and remake), the user's choice kept.
    assert viewer.layers["PCA"] is pca and not pca.visible and viewer.layers["affinity"] is aff
    for layer in (viewer.layers["PCA"], viewer.layers["affinity"]):
        assert layer.data.shape == (1, 101, 4, 3)  # 6 x 122 at 64: a 16 x 64 input, 1 x 4 patches
        for corner, pixel in (((-0.5, 50, -0.5), (-0.5, 50, -0.5)), ((0.5, 50, 3.5), (5.5, 50, 121.5))):
            np.testing.assert_allclose(layer.data_to_world(corner), image.data_to_world(pixel), atol=1e-6)


def test_cancel_stops_extraction_and_rerun_works(make_napari_viewer, qtbot, ct_crop, notes):
    from dinomed_napari._napari.session import SESSIONS
    from dinomed_napari._napari.widget_features import FeaturesWidget

    viewer = make_napari_viewer()
    ct = load_volume(sample_path("ct_organs"), modality="CT")  # all 30 slices: 15 batches of 2
    image = add_image(viewer, ct)
    w = FeaturesWidget(viewer)
    w.weights.value, w.resolution.value, w.batch.value = "random", 64, 2  # the batch chosen in the dock
    # Click Cancel as soon as the first slice reports progress; the worker stops before a later one.
    done_at_cancel = []
    w._relay.progress.connect(lambda done, total: done > 0 and not done_at_cancel and (
        done_at_cancel.append(done), w.cancel_button.clicked.emit()))
    w.run()
    qtbot.waitUntil(lambda: not w.running, timeout=WAIT)
    assert w.status.value.startswith("cancelled") and not SESSIONS.get(image).ready
    assert done_at_cancel == [2]  # the first batch held the chosen 2 slices
    assert w.progress.value == 0 and not any("Error" in n for n in notes), notes
    assert w.run_button.enabled and not w.cancel_button.enabled
    w._relay.progress.disconnect()
    w._relay.progress.connect(w._on_progress)
    w.run()  # the widget is usable again and resumes from the cached slices
    qtbot.waitUntil(lambda: not w.running, timeout=WAIT)
    assert SESSIONS.get(image).ready and w.run_button.enabled and not w.cancel_button.enabled


def test_similarity_updates_live_from_clicked_points(make_napari_viewer, qtbot, ct_crop):
    from dinomed_napari._napari.widget_similarity import SimilarityWidget

    viewer = make_napari_viewer()
    image = add_image(viewer, ct_crop[0])
    compute(viewer, qtbot, image)
    w = SimilarityWidget(viewer)
    points = w.add_points_layer()
    np.testing.assert_allclose(points.scale, image.scale)
    liver = np.argwhere(ct_crop[1][3])[len(np.argwhere(ct_crop[1][3])) // 2]
    points.add([3, *liver])  # data coordinates = voxels (the layer shares the image's scale)
    qtbot.waitUntil(lambda: w.result_layer is not None, timeout=WAIT)
    sim = np.asarray(w.result_layer.data).copy()
    assert sim.shape == (6, 7, 8) and w.result_layer.name == "similarity"  # the 7 x 8 patch grid
    assert w.result_layer.metadata["dinomed_label"].endswith("[random] @128")
    # The clicked voxel's patch (found through world coordinates) is among the most similar.
    patch = np.round(w.result_layer.world_to_data(image.data_to_world((3, *liver)))).astype(int)
    assert patch[0] == 3 and sim[tuple(patch)] > np.percentile(sim, 90)
    points.add([3, 5, 5])  # a background corner: the map must change
    qtbot.waitUntil(lambda: not np.allclose(w.result_layer.data, sim), timeout=WAIT)
    points.data = np.empty((0, 3))  # every point deleted: no stale map
    qtbot.waitUntil(lambda: "similarity" not in viewer.layers, timeout=WAIT)
    assert w.status.value.startswith("no points")


def isolate_widget(make_napari_viewer, qtbot, ct_crop):
    """A viewer with features computed, the isolation widget on slice 3, a seed layer and a liver voxel."""
    from dinomed_napari._napari.widget_isolate import IsolateWidget

    viewer = make_napari_viewer()
    image = add_image(viewer, ct_crop[0])
    compute(viewer, qtbot, image)
    viewer.dims.set_point(0, 3 * image.scale[0])
    w = IsolateWidget(viewer)
    liver = np.argwhere(ct_crop[1][3])[len(np.argwhere(ct_crop[1][3])) // 2]
    return viewer, image, w, liver


def test_isolation_preview_follows_sliders_and_applies_to_volume(make_napari_viewer, qtbot, ct_crop):
    viewer, image, w, liver = isolate_widget(make_napari_viewer, qtbot, ct_crop)
    seeds = w.add_seed_layer()
    w.channel.value = "image"  # threshold the CT intensity inside the PC1 foreground
    w.inner_rule.value = "value"
    w.inner_threshold.value = float(np.percentile(np.asarray(image.data), 40))
    seeds.add([3, *liver])
    qtbot.waitUntil(lambda: w.preview_layer is not None and np.asarray(w.preview_layer.data).any(),
                    timeout=WAIT)
    prev = np.asarray(w.preview_layer.data).copy()
    assert prev.shape == image.data.shape and prev[[0, 1, 2, 4, 5]].sum() == 0  # current slice only
    assert prev[3, liver[0], liver[1]] == 1  # the seed's region is kept
    from dinomed_napari._napari.session import SESSIONS

    pca = SESSIONS.get(image).pca
    assert pca._components is None and pca._rgb is None  # no full-size float maps for sliders or preview
    assert pca.patch[..., 0].min() <= w.fg_threshold.min < w.fg_threshold.max <= pca.patch[..., 0].max()
    n_before = int(prev.sum())
    w.inner_threshold.value = float(np.asarray(image.data)[3, liver[0], liver[1]]) - 1  # stricter
    qtbot.waitUntil(lambda: 0 < int(np.asarray(w.preview_layer.data).sum()) < n_before, timeout=WAIT)
    w.apply()
    qtbot.waitUntil(lambda: w.result_layer is not None, timeout=WAIT)
    out = np.asarray(w.result_layer.data)
    assert type(w.result_layer).__name__ == "Labels" and out.shape == image.data.shape
    np.testing.assert_allclose(w.result_layer.scale, image.scale)
    assert out[3, liver[0], liver[1]] == 1 and out.sum() > out[3].sum()  # 3D: grows past the seed slice
    first = out.copy()
    w.inner_threshold.value = float(np.percentile(np.asarray(image.data), 20))
    w.apply()  # a second result keeps the first as a named, hidden undo layer
    qtbot.waitUntil(lambda: not np.array_equal(np.asarray(w.result_layer.data), first), timeout=WAIT)
    prev = viewer.layers["isolated (previous)"]
    np.testing.assert_array_equal(np.asarray(prev.data), first)
    assert not prev.visible and w.result_layer.name == "isolated"
    w.inner_threshold.value = w.inner_threshold.max  # over the liver: the preview says which step lost it
    qtbot.waitUntil(lambda: "the inner threshold; choose another" in w.status.value, timeout=WAIT)
    assert np.asarray(w.preview_layer.data)[3, liver[0], liver[1]] == 0 and "step 1" not in w.status.value


def test_auto_isolation_preview_is_the_applied_volume_slice(make_napari_viewer, qtbot, ct_crop):
    viewer, image, w, liver = isolate_widget(make_napari_viewer, qtbot, ct_crop)
    assert w.channel.value == "auto"  # the default recipe
    # auto picks its own thresholds: the explicit channels' controls are greyed out, not silently ignored
    explicit = (w.fg_auto, w.fg_threshold, w.inner_rule, w.inner_threshold)
    assert not any(c.enabled for c in explicit) and "picks its own threshold" in w.inner_rule.tooltip
    w.channel.value = "image"
    assert all(c.enabled for c in explicit)
    w.channel.value = "auto"
    assert not any(c.enabled for c in explicit)
    seeds = w.add_seed_layer()
    seeds.add([3, *liver])
    qtbot.waitUntil(lambda: w.preview_layer is not None and np.asarray(w.preview_layer.data).any(),
                    timeout=WAIT)
    plane = np.asarray(w.preview_layer.data)[3].copy()
    assert plane[liver[0], liver[1]] == 1 and "intensity" in w.status.value
    w.apply()
    qtbot.waitUntil(lambda: w.result_layer is not None, timeout=WAIT)
    out = np.asarray(w.result_layer.data)
    np.testing.assert_array_equal(out[3], plane)  # preview == Apply on the same slice
    assert " ml" in w.status.value


def paint(layer, mask, value):
    """Paint like a finished napari stroke: data_setitem records history and emits `events.paint`."""
    layer.data_setitem(tuple(np.nonzero(mask)), value)


def scribble_masks(gt_slice):
    from scipy import ndimage

    rows = np.zeros_like(gt_slice)
    rows[::6, :] = True
    core = ndimage.binary_erosion(gt_slice, iterations=4) & rows
    far = ~ndimage.binary_dilation(gt_slice, iterations=6) & rows
    far[:, 1::2] = False
    return core, far


def test_scribbles_retrain_live_and_predict_volume(make_napari_viewer, qtbot, ct_crop, tmp_path, notes):
    from dinomed_napari._napari.widget_segment import SegmentWidget

    vol, gt = ct_crop
    viewer = make_napari_viewer()
    image = add_image(viewer, vol)
    compute(viewer, qtbot, image)
    viewer.dims.set_point(0, 3 * image.scale[0])
    w = SegmentWidget(viewer)
    scribbles = w.add_scribble_layer()
    core, far = scribble_masks(gt[3])
    one = np.zeros(gt.shape, bool)
    one[3] = core
    paint(scribbles, one, 1)  # one class only: a hint in the status, no error notification
    qtbot.waitUntil(lambda: "now paint some background (2)" in w.status.value, timeout=WAIT)
    assert w.trainings == 0 and not any("only class" in n or "Error" in n for n in notes)
    two = np.zeros(gt.shape, bool)
    two[3] = far
    paint(scribbles, two, 2)
    qtbot.waitUntil(lambda: w.trainings >= 1, timeout=WAIT)
    pred = np.asarray(w.prediction_layer.data)
    assert w.prediction_layer.name == "prediction" and "structure (1), background (2)" in w.status.value
    names = [lyr.name for lyr in viewer.layers]
    assert names.index("prediction") < names.index("scribbles")  # drawn below the scribbles
    assert w.prediction_layer.contour > 0  # contours by default
    assert w.prediction_layer.colormap.map(2)[3] == 0  # background class transparent
    assert not np.allclose(w.prediction_layer.colormap.map(1), scribbles.colormap.map(1))
    np.testing.assert_allclose(w.prediction_layer.scale, image.scale)
    print(f"linear, scribbled slice Dice {dice(pred[3] == 1, gt[3]):.3f}")
    assert dice(pred[3] == 1, gt[3]) > 0.6  # measured 0.72 with random ViT-S features
    assert pred[[0, 1, 2, 4, 5]].sum() == 0  # live mode predicts the shown slice only
    before, n = pred[3].copy(), w.trainings
    extra = np.zeros(gt.shape, bool)
    extra[3] = scribble_masks(np.roll(gt[3], 3, axis=1))[1] & ~one[3] & ~two[3]
    paint(scribbles, extra, 1)  # a (wrong) background stroke labelled liver: the prediction must change
    qtbot.waitUntil(lambda: w.trainings > n, timeout=WAIT)
    assert not np.array_equal(np.asarray(w.prediction_layer.data)[3], before)
    scribbles.undo()
    qtbot.waitUntil(lambda: w.trainings > n + 1, timeout=WAIT)  # undo is a data event -> retrain
    w.probability.value = True
    w.predict_volume()
    qtbot.waitUntil(lambda: np.asarray(w.prediction_layer.data)[0].any(), timeout=WAIT)
    assert viewer.layers["prediction (previous)"].data[3].any()  # the live slice result kept as undo
    pred = np.asarray(w.prediction_layer.data)
    print(f"linear, 6-slice volume Dice {dice(pred == 1, gt):.3f}")
    assert dice(pred == 1, gt) > 0.6  # whole 6-slice volume from scribbles on one slice (0.738 measured)
    assert w.probability_layer.data.shape == gt.shape
    assert "3D: followed from annotated slices [3]" in w.suggestion.value and "next" in w.suggestion.value
    suggested = int(w.suggestion.value.rsplit("annotate slice ", 1)[1].split()[0])
    assert suggested != 3 and not w.go_button.native.isHidden()
    assert w.go_button.text == f"Go to slice {suggested}"
    w.go_button.clicked.emit()  # the viewer moves to the suggested slice (world = index x spacing)
    assert w.current_index(image, 0) == suggested
    assert viewer.dims.point[0] == pytest.approx(suggested * image.scale[0])
    viewer.dims.set_point(0, 3 * image.scale[0])  # back to the painted slice, which the load below predicts
    assert set(np.unique(scribbles.data)) == {0, 1, 2}  # the user's layer was never written
    # export on the image grid, save / load the segmenter
    w.export_file.value = tmp_path / "liver.nii.gz"
    w.export()
    back = load_volume(tmp_path / "liver.nii.gz")
    np.testing.assert_array_equal(np.asarray(back.data), pred)
    np.testing.assert_allclose(back.affine, vol.affine)
    w.seg_file.value = tmp_path / "seg.npz"
    w.save()
    assert (tmp_path / "seg.npz").is_file()
    w.prediction_layer.data = np.zeros_like(pred)
    n = w.updates
    w.load()
    qtbot.waitUntil(lambda: w.updates > n, timeout=WAIT)
    # A loaded segmenter keeps no scribbles: slice 3 is the classifier's answer, not the outline the
    # scribbles gave (which also uses the image and a forest): as good as the live classifier was.
    again = np.asarray(w.prediction_layer.data)[3]
    print(f"loaded segmenter, slice 3 Dice {dice(again == 1, gt[3]):.3f} "
          f"(vs the propagated result {dice(again == 1, pred[3] == 1):.3f})")
    assert dice(again == 1, gt[3]) > 0.6


def test_errors_are_notifications_and_widgets_stay_usable(make_napari_viewer, qtbot, ct_crop, notes,
                                                          tmp_path):
    from dinomed_napari._napari.widget_features import FeaturesWidget
    from dinomed_napari._napari.widget_segment import SegmentWidget
    from dinomed_napari._napari.widget_similarity import SimilarityWidget

    viewer = make_napari_viewer()
    w = FeaturesWidget(viewer)
    w.run()
    assert "no image layer" in notes[-1]
    viewer.add_image(np.zeros((40, 50), np.float32), name="flat 2D")
    w.run()
    assert "expected a 3D (Z, Y, X)" in notes[-1] and "flat 2D" in notes[-1]
    image = add_image(viewer, ct_crop[0])
    w.image.value = image
    w.weights.value = "local file"
    w.weights_file.value = tmp_path / "missing.pth"
    w.run()
    assert "missing.pth" in notes[-1] and "not found" in notes[-1]
    w.weights.value = "hub"  # offline, nothing cached: the core's WeightsError says how to get weights
    w.run()
    qtbot.waitUntil(lambda: not w.running, timeout=WAIT)
    assert "HF_HUB_OFFLINE" in notes[-1] and "To get weights" in notes[-1]
    s = SimilarityWidget(viewer)
    s.image.value = image
    s.add_points_layer().add([2, 50, 60])
    assert "no DINOv3 features" in notes[-1]
    seg = SegmentWidget(viewer)
    seg.image.value = image
    seg.retrain()
    assert "no DINOv3 features" in notes[-1]
    w.weights.value = "random"
    w.resolution.value = 64
    w.run()  # after all these errors the same widget still computes
    qtbot.waitUntil(lambda: not w.running, timeout=WAIT)
    assert w.status.value.startswith("features ready")


def test_triplanar_random_forest_with_intensity(make_napari_viewer, qtbot, ct_crop, notes):
    from dinomed_napari._napari.session import SESSIONS
    from dinomed_napari._napari.widget_segment import SegmentWidget

    vol, gt = ct_crop
    crop = (slice(None), slice(20, 100), slice(36, 116))  # 6 x 80 x 80 around the liver
    small = Volume(np.ascontiguousarray(vol.data[crop]), vol.spacing, vol.affine, "CT", "HU", None, {})
    gt = gt[crop]
    viewer = make_napari_viewer()
    image = add_image(viewer, small)
    viewer.dims.set_point(0, 3 * image.scale[0])
    w = SegmentWidget(viewer)
    w.triplanar.value = True
    w.retrain()  # before tri-planar features exist: the reason is shown
    assert "no DINOv3 features" in notes[-1]
    fw = compute(viewer, qtbot, image, planes="tri", resolution=64)
    assert fw.status.value.endswith("tri-planar") and sorted(SESSIONS.get(image).features) == [0, 1, 2]
    w.classifier.value, w.intensity.value = "rf", "raw"
    scribbles = w.add_scribble_layer()
    core, far = scribble_masks(gt[3])
    for mask, value in ((core, 1), (far, 2)):
        full = np.zeros(gt.shape, bool)
        full[3] = mask
        paint(scribbles, full, value)
    qtbot.waitUntil(lambda: w.trainings >= 1, timeout=WAIT)
    assert SESSIONS.get(image).segmenter_settings == ("rf", "raw", True)
    pred = np.asarray(w.prediction_layer.data)
    score = dice(pred[3] == 1, gt[3])
    print(f"tri-planar rf + intensity, slice Dice {score:.3f}")
    assert score > 0.6, score


def test_label_volume_as_scribbles_asks_first_and_clearing_is_no_error(make_napari_viewer, qtbot, ct_crop,
                                                                        notes):
    from dinomed_napari._napari.widget_segment import SegmentWidget

    vol, gt = ct_crop
    viewer = make_napari_viewer()
    image = add_image(viewer, vol)
    compute(viewer, qtbot, image)
    organs = viewer.add_labels((np.arange(gt.size).reshape(gt.shape) % 12 + 1).astype(np.uint8),
                               name="organs")  # 12 classes on every voxel: a segmentation
    w = SegmentWidget(viewer)
    w.scribbles.value = organs
    w.retrain()
    asking = lambda: not w.ask.native.isHidden()  # noqa: E731 (the widget itself is not shown)
    assert asking() and "'organs' has 12 classes" in w.question.value and w.trainings == 0
    w.no_button.clicked.emit()
    assert not asking() and w.trainings == 0 and w.status.value.startswith("not trained")
    w.scribbles.value = scribbles = w.add_scribble_layer()
    core, far = scribble_masks(gt[3])
    for mask, value in ((core, 1), (far, 2)):
        full = np.zeros(gt.shape, bool)
        full[3] = mask
        paint(scribbles, full, value)
    viewer.dims.set_point(0, 3 * image.scale[0])
    qtbot.waitUntil(lambda: w.trainings >= 1, timeout=WAIT)
    assert np.asarray(w.prediction_layer.data)[3].any()
    scribbles.data = np.zeros_like(scribbles.data)  # the user clears the scribbles
    qtbot.waitUntil(lambda: "paint some structure (1) and some background (2)" in w.status.value,
                    timeout=WAIT)
    assert not np.asarray(w.prediction_layer.data)[3].any()  # no stale prediction on this slice
    assert not any("Error" in n or "scribble segmenter" in n for n in notes), notes


def test_dock_shortcuts_and_closing_stops_the_running_job(make_napari_viewer, qtbot, ct_crop):
    from dinomed_napari._napari.session import SESSIONS
    from dinomed_napari._napari.widget_dock import DinomedDock
    from dinomed_napari._napari.widget_segment import SHORTCUTS

    viewer = make_napari_viewer()
    image = add_image(viewer, load_volume(sample_path("ct_organs"), modality="CT"))
    dock = DinomedDock(viewer)
    from napari.utils.key_bindings import coerce_keybinding

    assert all(coerce_keybinding(k) in viewer.keymap for k in SHORTCUTS.values())
    dock.segment.next_class()
    assert dock.segment.paint_class.value == 2  # structure (1) -> background (2)
    other = viewer.add_image(np.asarray(image.data)[:4].copy(), name="other")
    SESSIONS.get(other)
    viewer.layers.remove(other)  # its session (features) goes with it
    assert other.unique_id not in SESSIONS._sessions and image in viewer.layers
    f = dock.features
    f.weights.value, f.resolution.value = "random", 64
    seen = []
    f._relay.progress.connect(lambda d, _t: seen.append(d))
    f.run()
    qtbot.waitUntil(lambda: len(seen) >= 1, timeout=WAIT)
    dock.close_tools()  # what closing the dock / napari does: cancel and wait for the thread
    assert not f._job.busy or f._job.cancelled
    qtbot.waitUntil(lambda: not f.running, timeout=5_000)
    assert len(seen) < 30  # stopped early



def test_segment_widget_follows_strokes_without_rescanning(make_napari_viewer, ct_crop):
    """The widget's scribble index (fed by the layer's paint events) equals a full rescan after strokes,
    erasing, undo/redo and replaced data, and rescans only for those last ones."""
    from dinomed_napari._napari.widget_segment import SegmentWidget
    from dinomed_napari.live.jobs import scribble_points

    vol, _ = ct_crop
    viewer = make_napari_viewer()
    add_image(viewer, vol)
    w = SegmentWidget(viewer)
    layer = w.add_scribble_layer()

    def same():
        points, values = w.scribble_points(layer)
        ref = scribble_points(np.asarray(layer.data))
        np.testing.assert_array_equal(points, ref[0])
        np.testing.assert_array_equal(values, ref[1])
        return len(values)

    assert same() == 0
    layer.brush_size = 7
    layer.paint((3, 40, 40), 1)
    layer.paint((3, 42, 45), 2)
    layer.paint((2, 10, 10), 1, refresh=False)
    assert same() > 0
    layer.paint((3, 40, 40), 0)  # erase
    n = same()
    assert w.index.rescans == 1
    layer.undo()  # the erase comes back undone: more voxels again
    assert same() > n and w.index.rescans == 2
    layer.redo()
    assert same() == n and w.index.rescans == 3
    layer.data = np.zeros_like(layer.data)
    assert same() == 0 and w.index.rescans == 4


def test_put_slice_redraws_only_a_slice_on_screen(make_napari_viewer):
    from magicgui.widgets import ProgressBar

    from dinomed_napari._napari.results import put_slice
    from dinomed_napari._napari.widget_base import set_progress

    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((4, 8, 9), np.uint8))
    viewer.dims.set_point(0, 1)
    assert not put_slice(layer, 3, 0, 2, viewer)  # slice 2 is not shown: written, not redrawn
    assert put_slice(layer, 5, 0, 1, viewer)
    assert (layer.data[2] == 3).all() and (layer.data[1] == 5).all()
    assert (np.asarray(layer._slice.image.raw) == 5).all()
    viewer.dims.set_point(0, 2)  # the user moves there: napari reads the written slice
    assert (np.asarray(layer._slice.image.raw) == 3).all()
    assert put_slice(layer, 1, 1, 0, viewer)  # a Y slice shows in the Z view: redrawn
    viewer.dims.ndisplay = 3
    assert put_slice(layer, 2, 0, 3, viewer)  # 3D view: everything is on screen
    from dinomed_napari._napari.results import result_layer

    image = viewer.add_image(np.zeros((4, 8, 9), np.float32))
    viewer.layers.selection.active = layer  # the user paints on it
    made = result_layer(viewer, image, "PCA", np.zeros((4, 8, 9, 3), np.uint8), "image", rgb=True)
    assert viewer.layers.selection.active is layer and made not in viewer.layers.selection
    bar = ProgressBar()
    set_progress(bar, 7, 9)
    assert (bar.value, bar.max) == (7, 9) and bar.native.updatesEnabled()


def test_live_results_wait_for_the_mouse_release_and_redraws_do_not_retrain(make_napari_viewer, qtbot,
                                                                           ct_crop):
    from types import SimpleNamespace

    from dinomed_napari._napari.widget_segment import SegmentWidget

    vol, _ = ct_crop
    viewer = make_napari_viewer()
    add_image(viewer, vol)
    w = SegmentWidget(viewer)
    layer = w.add_scribble_layer()
    shown, strokes = [], []
    w._show, w._stroke = shown.append, lambda *_: strokes.append(1)
    # a drag as napari runs viewer drag callbacks: press, moves, release
    event = SimpleNamespace(type="mouse_press")
    drag = w._track_mouse(viewer, event)
    next(drag)
    live = ({"volume": False}, "slice result")
    w._returned(live)
    w._returned(({"volume": False}, "newer slice result"))
    w._returned(({"volume": True}, "volume result"))  # a volume is never held
    assert shown == [({"volume": True}, "volume result")]
    event.type = "mouse_move"
    next(drag)
    event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(drag)
    assert shown[1:] == [({"volume": False}, "newer slice result")] and not w._mouse_down
    # a release that never comes: the held result shows after HOLD_MS anyway
    drag = w._track_mouse(viewer, SimpleNamespace(type="mouse_press"))
    next(drag)
    w._returned(live)
    qtbot.waitUntil(lambda: len(shown) == 3, timeout=5_000)
    assert shown[2] == live and not w._mouse_down  # later results are not held behind a lost release
    # only strokes and undo retrain; a redraw (slice change) does not
    w.scribble_points(layer)  # what a retrain reads
    layer.paint((2, 30, 30), 1)
    assert len(strokes) == 1
    viewer.dims.set_point(0, 4 * layer.scale[0])
    viewer.dims.set_point(0, 1 * layer.scale[0])
    assert len(strokes) == 1
    layer.undo()
    assert len(strokes) == 2


def test_a_lazy_zarr_volume_is_shown_and_extracted_without_loading_it(make_napari_viewer, qtbot, ct_crop,
                                                                      tmp_path, monkeypatch):
    import dask.array as da
    import zarr

    from dinomed_napari._napari.layers import layer_volume
    from dinomed_napari._napari.session import SESSIONS
    from dinomed_napari._napari.widget_segment import SegmentWidget
    from dinomed_napari.io import lazy
    from dinomed_napari.live.display import display_sample

    data = np.asarray(ct_crop[0].data)
    arr = zarr.create_array(str(tmp_path / "ct.zarr"), shape=data.shape, dtype=data.dtype,
                            chunks=(1, *data.shape[1:]))
    arr[...] = data
    arr.attrs["spacing"] = list(ct_crop[0].spacing)
    monkeypatch.setattr(lazy, "LAZY_BYTES", 0)  # opened as a volume over 1 GiB would be
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(tmp_path / "ct.zarr"), plugin="dinomed-napari")
    assert isinstance(layer.data, da.Array)  # napari reads the planes it shows, nothing more
    assert layer_volume(layer).data is layer.data  # the widgets hand the core the lazy array
    sample = display_sample(layer.data)  # what the window and the contrast are chosen from
    assert isinstance(sample, np.ndarray) and sample.shape == data.shape  # 6 slices: every one
    memory = add_image(viewer, ct_crop[0])
    preds = []
    for image in (layer, memory):  # features, then scribbles on slice 3 and "Predict volume"
        compute(viewer, qtbot, image)
        w = SegmentWidget(viewer)
        w.image.value = image
        scribbles = w.add_scribble_layer()
        core, far = scribble_masks(ct_crop[1][3])
        for mask, value in ((core, 1), (far, 2)):
            strokes = np.zeros(data.shape, bool)
            strokes[3] = mask
            paint(scribbles, strokes, value)
        w.predict_volume()
        qtbot.waitUntil(lambda w=w: np.asarray(w.prediction_layer.data)[0].any(), timeout=WAIT)
        preds.append(np.asarray(w.prediction_layer.data).copy())
    lazy_fv, memory_fv = SESSIONS.get(layer).primary, SESSIONS.get(memory).primary
    for i in range(data.shape[0]):  # the same features as from the volume in memory
        np.testing.assert_array_equal(np.asarray(lazy_fv.slice(i)), np.asarray(memory_fv.slice(i)))
    assert isinstance(layer.data, da.Array)  # still lazy after segmenting with intensity features
    np.testing.assert_array_equal(preds[0], preds[1])  # and the same labels
    assert dice(preds[0] == 1, ct_crop[1]) > 0.6


def test_a_lazy_ome_zarr_shows_as_a_pyramid_and_computes_at_full_resolution(make_napari_viewer, qtbot,
                                                                             ct_crop, tmp_path, monkeypatch):
    import zarr

    from dinomed_napari._napari.layers import layer_array, layer_volume
    from dinomed_napari._napari.session import SESSIONS
    from dinomed_napari.io import lazy

    data = np.asarray(ct_crop[0].data)
    group = zarr.open_group(str(tmp_path / "ct.ome.zarr"), mode="w")
    group.create_array("0", shape=data.shape, dtype=data.dtype)[...] = data
    group.create_array("1", shape=(6, 51, 61), dtype=data.dtype)[...] = data[:, ::2, ::2]
    group.attrs["multiscales"] = [{"datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [5.0, 0.7, 0.7]}]},
        {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [5.0, 1.4, 1.4]}]}]}]
    monkeypatch.setattr(lazy, "LAZY_BYTES", 0)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(tmp_path / "ct.ome.zarr"), plugin="dinomed-napari")
    assert layer.multiscale and [lvl.shape for lvl in layer.data] == [(6, 101, 122), (6, 51, 61)]
    np.testing.assert_allclose(layer.scale, [5.0, 0.7, 0.7])  # of the full-resolution level
    assert layer_array(layer) is layer.data[0] and layer_volume(layer).shape == (6, 101, 122)
    compute(viewer, qtbot, layer)
    fv = SESSIONS.get(layer).primary
    assert fv.volume_shape == (6, 101, 122) and viewer.layers["PCA"].data.shape == (6, 7, 8, 3)


def test_em_cells_are_labelled_by_their_look_with_the_forest(make_napari_viewer, qtbot):
    """EM cell interiors painted against membranes in the widget: 'Predict volume' does not follow them
    as one structure; the note says the classifier, blended with the scribbles' forest, labelled them."""
    from dinomed_napari._napari.widget_segment import SegmentWidget
    from dinomed_napari.bench.scribbles import simulate_scribbles

    em = load_volume(sample_path("em"))
    crop = (slice(0, 12), slice(0, 128), slice(0, 128))  # the demo's crop
    vol = Volume(np.ascontiguousarray(np.asarray(em.data)[crop]), em.spacing, em.affine, "EM", em.units,
                 str(sample_path("em")), {})
    cells = np.asarray(load_volume(sample_path("em_labels")).data)[crop] == 255
    scr = simulate_scribbles(cells.astype(np.uint8), n_slices=1, seed=0)  # 1 membrane, 2 cell interior
    viewer = make_napari_viewer()
    image = add_image(viewer, vol)
    compute(viewer, qtbot, image)
    s = scr.slices[0]
    viewer.dims.set_point(0, s * image.scale[0])
    w = SegmentWidget(viewer)
    scribbles = w.add_scribble_layer()
    for value in (1, 2):
        n = w.trainings
        paint(scribbles, scr.labels == value, value)
        if value == 2:
            qtbot.waitUntil(lambda n=n: w.trainings > n, timeout=WAIT)
    w.predict_volume()
    qtbot.waitUntil(lambda: "not followed" in w.suggestion.value, timeout=WAIT)
    assert "blended with a filter-bank forest" in w.suggestion.value
    pred = np.asarray(w.prediction_layer.data)
    other = np.ones(cells.shape[0], bool)
    other[s] = False
    print(f"EM cells in the widget, Dice on unannotated sections {dice(pred[other] == 2, cells[other]):.3f}")
    assert dice(pred[other] == 2, cells[other]) > 0.85  # measured 0.91 (core, same strokes); 0.05 followed


def test_a_single_slice_image_is_segmented_in_the_viewer(make_napari_viewer, qtbot, ct_crop, notes):
    """One slice of (1, Y, X), as the reader gives a one-slice file: features, a live stroke's preview and
    'Predict volume' work (the scribbles' forest filters the plane), without an error notification."""
    from dinomed_napari._napari.widget_segment import SegmentWidget

    vol, gt = ct_crop
    one = Volume(np.ascontiguousarray(np.asarray(vol.data)[3:4]), vol.spacing, vol.affine, "CT", "HU",
                 vol.source, {})
    viewer = make_napari_viewer()
    image = add_image(viewer, one)
    compute(viewer, qtbot, image)
    w = SegmentWidget(viewer)
    scribbles = w.add_scribble_layer()
    core, far = scribble_masks(gt[3])
    paint(scribbles, core[None], 1)  # broad strokes, over 5 % of the plane: no "label volume?" question
    paint(scribbles, far[None], 2)
    qtbot.waitUntil(lambda: w.trainings >= 1, timeout=WAIT)
    assert not w.ask.visible and (core.sum() + far.sum()) > 0.05 * core.size
    w.predict_volume()
    qtbot.waitUntil(lambda: "prediction (previous)" in viewer.layers, timeout=WAIT)
    qtbot.waitUntil(lambda: not w._job.busy, timeout=WAIT)
    pred = np.asarray(w.prediction_layer.data)
    assert pred.shape == (1, *gt.shape[1:]) and not any("Error" in n for n in notes), notes
    print(f"single slice, volume prediction Dice {dice(pred[0] == 1, gt[3]):.3f}")
    assert dice(pred[0] == 1, gt[3]) > 0.6


@pytest.mark.parametrize("planes", [1, "tri"])
def test_features_of_a_single_slice_along_another_axis_are_refused_with_the_plane_size(
        make_napari_viewer, qtbot, ct_crop, notes, planes):
    """A (1, Y, X) image cut along axis 1 (or tri-planar) has 1-pixel-high planes: a notification names
    the plane size, no layer is added, and the same widget then computes the axial features."""
    vol, _ = ct_crop
    one = Volume(np.ascontiguousarray(np.asarray(vol.data)[3:4]), vol.spacing, vol.affine, "CT", "HU",
                 vol.source, {})
    viewer = make_napari_viewer()
    image = add_image(viewer, one)
    w = compute(viewer, qtbot, image, planes=planes)
    assert any("are 1 x 122 pixels; expected at least 2 x 2" in n for n in notes), notes
    assert [lyr.name for lyr in viewer.layers] == [image.name] and not w.running
    w.planes.value = 0
    w.run()
    qtbot.waitUntil(lambda: not w.running, timeout=WAIT)
    assert w.status.value.startswith("features ready"), w.status.value


def test_a_weights_file_that_fails_leaves_no_empty_layer(make_napari_viewer, qtbot, ct_crop, notes, tmp_path):
    """A run that fails before its first slice (an unreadable checkpoint) removes the hidden PCA layer it
    had made: the layer list is as before, and the notification names the file."""
    from dinomed_napari._napari.widget_features import FeaturesWidget

    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"\x00not a checkpoint" * 10)
    viewer = make_napari_viewer()
    image = add_image(viewer, ct_crop[0])
    w = FeaturesWidget(viewer)
    w.image.value, w.weights.value, w.resolution.value = image, "local file", 64
    w.weights_file.value = bad
    w.run()
    qtbot.waitUntil(lambda: not w.running, timeout=WAIT)
    assert any("broken.pth could not be read" in n for n in notes), notes
    assert [lyr.name for lyr in viewer.layers] == [image.name]


def test_the_image_chooser_starts_on_a_volume_not_on_a_2d_layer_listed_first(make_napari_viewer, ct_crop):
    from dinomed_napari._napari.widget_features import FeaturesWidget
    from dinomed_napari._napari.widget_isolate import IsolateWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.float32), name="photo")  # listed first, refused if chosen
    image = add_image(viewer, ct_crop[0])
    assert FeaturesWidget(viewer).image.value is image and IsolateWidget(viewer).image.value is image


def test_an_image_removed_while_its_features_run_gets_no_layers(make_napari_viewer, qtbot, ct_crop):
    """Removing the image during extraction: no PCA / affinity layers appear for it afterwards (they did,
    with 'features ready'), and the status says why nothing was added."""
    from dinomed_napari._napari.widget_features import FeaturesWidget

    viewer = make_napari_viewer()
    image = add_image(viewer, ct_crop[0])
    w = FeaturesWidget(viewer)
    w.image.value, w.weights.value, w.resolution.value = image, "random", 128
    w.run()
    viewer.layers.remove(image)
    qtbot.waitUntil(lambda: not w.running, timeout=WAIT)
    assert len(viewer.layers) == 0
    assert "removed from the viewer while its feature extraction ran: nothing was added" in w.status.value
