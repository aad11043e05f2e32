"""ScribbleSegmenter on synthetic features: exactness of patch-level prediction, tri-planar fusion,
fast retrain, clean-up, random forest, and bad-input errors."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_helpers import blob_volume, dice, synthetic_features

from dinomed_napari.analysis.cleanup import clean_labels
from dinomed_napari.analysis.segment import ScribbleSegmenter
from dinomed_napari.bench.scribbles import simulate_scribbles
from dinomed_napari.errors import FeatureMismatchError, ScribbleError, VolumeError
from dinomed_napari.features.grid import slice_of, upsample_patches
from dinomed_napari.features.volume import FeatureVolume


@pytest.fixture(scope="module")
def case():
    lab = blob_volume()
    scr = simulate_scribbles(lab, n_slices=2, strokes_per_class=3, seed=0)
    image = lab.astype(np.float32) * 100 + np.random.default_rng(0).normal(0, 20, lab.shape)
    return lab, scr, image


@pytest.mark.parametrize("axis", [0, 2])
def test_patch_logits_equal_pixel_classification_of_upsampled_features(case, axis):
    lab, scr, image = case
    fv = synthetic_features(lab, axis=axis, grid=(7, 6))
    for intensity in (None, "filters"):
        seg = ScribbleSegmenter(intensity=intensity).fit(fv, scr.labels, image=image)
        clf = seg.models[axis]
        got = seg.logits(index=4, axis=axis)
        pix = upsample_patches(fv.slice(4), fv.plane_shape)  # pixel-level features (what we avoid)
        if intensity:
            pix = np.concatenate([pix, seg._pixel_term(axis).plane(4)], axis=-1)
        want = pix @ clf.weights + clf.bias
        assert got.shape == fv.plane_shape + (3,)
        np.testing.assert_allclose(got, want, atol=1e-4)
        # The folded weights reproduce sklearn's own standardised model on the training samples.
        X, _ = seg.samples[axis]
        skl = clf._lr.predict_proba((X - X.mean(0)) / np.maximum(X.std(0), 1e-6))
        np.testing.assert_allclose(clf.predict_proba(X), skl, atol=1e-4)


def test_volume_and_slice_predictions_agree_and_segment(case):
    lab, scr, _ = case
    fv = synthetic_features(lab)
    seg = ScribbleSegmenter().fit(fv, scr.labels)
    vol = seg.predict()
    assert vol.labels.shape == lab.shape and vol.probabilities.shape == lab.shape + (3,)
    assert list(vol.classes) == [1, 2, 3]
    assert np.allclose(vol.probabilities.sum(-1), 1, atol=1e-5)
    one = seg.predict(6)
    # The slice is computed in float32, the volume's matmul in float16 (documented ~1e-3 relative error).
    np.testing.assert_allclose(one.probabilities, vol.probabilities[6], atol=1e-2)
    assert np.mean(one.labels == vol.labels[6]) > 0.999
    other = [s for s in range(lab.shape[0]) if s not in scr.slices]
    for k, v in enumerate(scr.classes):  # synthetic features are near-perfect: Dice close to 1
        assert dice(vol.labels[other] == k + 1, lab[other] == v) > 0.85


def test_triplanar_fusion_is_mean_of_passes(case):
    lab, scr, image = case
    fvs = {a: synthetic_features(lab, axis=a, grid=(6, 6), noise=0.6, seed=a) for a in (0, 1, 2)}
    tri = ScribbleSegmenter().fit(fvs, scr.labels)
    singles = [ScribbleSegmenter().fit(fvs[a], scr.labels).logits() for a in (0, 1, 2)]
    fused = tri.logits()
    np.testing.assert_allclose(fused, np.mean(singles, axis=0), atol=1e-4)
    # A tri-planar slice prediction is the same plane of the fused volume, along any axis.
    np.testing.assert_allclose(tri.logits(index=20, axis=1), slice_of(fused, 1, 20), atol=2e-2)
    np.testing.assert_allclose(tri.logits(index=3, axis=0), fused[3], atol=2e-2)
    d_tri = dice(tri.predict().labels == 2, lab == 1)
    d_ax = dice(ScribbleSegmenter().fit(fvs[0], scr.labels).predict().labels == 2, lab == 1)
    print(f"tri-planar Dice {d_tri:.3f} vs axial only {d_ax:.3f}")
    assert d_tri > 0.8


class CountingFV(FeatureVolume):
    reads: list

    def slice(self, index):
        self.reads.append(int(index))
        return super().slice(index)


def test_one_more_stroke_samples_only_its_voxels_and_warm_starts(case):
    lab, scr, _ = case
    base = synthetic_features(lab)
    fv = CountingFV(**{k: getattr(base, k) for k in ("data", "axis", "volume_shape", "model", "weights",
                                                       "resolution")})
    fv.reads = []
    seg = ScribbleSegmenter()
    seg.fit(fv, scr.labels)
    assert sorted(set(fv.reads)) == sorted(scr.slices)
    fv.reads.clear()
    model = seg.models[0]
    more = scr.labels.copy()
    more[9, 14:18, 12:16] = 2  # one more stroke on an unannotated slice, inside the ball
    seg.fit(fv, more)
    assert fv.reads == [9]  # only the new stroke's slice was read
    assert seg.models[0] is model  # refitted from its last solution
    fresh = ScribbleSegmenter().fit(base, more)
    # Warm start + kept standardisation statistics: the same model up to the optimiser's tolerance.
    a, b = seg.predict(9), fresh.predict(9)
    assert np.mean(a.labels == b.labels) > 0.98 and np.abs(a.probabilities - b.probabilities).mean() < 0.02
    # Erasing voxels drops them from the training set.
    seg.fit(fv, scr.labels)
    assert len(seg.samples[0][1]) == np.count_nonzero(scr.labels)


def test_a_refit_on_other_scribbles_does_not_start_from_the_last_ones(case):
    """Strokes of another structure, or strokes erased: the result is the fit of these scribbles alone,
    whatever was painted before (a warm start from another solution stops the solver elsewhere)."""
    lab, scr, image = case
    fv = synthetic_features(lab, noise=0.8)
    other = simulate_scribbles(lab, n_slices=3, strokes_per_class=2, seed=5).labels
    seg = ScribbleSegmenter(intensity="filters").fit(fv, scr.labels, image=image)
    first = seg.models[0]
    seg.fit(fv, other, image=image)
    fresh = ScribbleSegmenter(intensity="filters").fit(fv, other, image=image)
    assert seg.models[0] is not first
    np.testing.assert_allclose(seg.models[0].weights, fresh.models[0].weights, rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(seg.predict(9).labels, fresh.predict(9).labels)
    erased = other.copy()
    erased[erased == 2] = 0  # class 2's strokes erased: a cold fit again
    erased[other.nonzero()[0][0], 0, 0] = 2
    before = seg.models[0]
    seg.fit(fv, erased, image=image)
    assert seg.models[0] is not before


def test_cleanup_keeps_only_scribbled_components():
    labels = np.ones((10, 30, 30), np.uint8)
    labels[2:8, 5:12, 5:12] = 2  # the structure, scribbled
    labels[2:8, 20:26, 20:26] = 2  # a look-alike elsewhere, not scribbled
    labels[4, 8, 8] = 1  # a hole
    scr = np.zeros_like(labels)
    scr[5, 6:10, 7] = 2
    scr[0, 0, :5] = 1
    out = clean_labels(labels, scr, fill_holes=True)
    assert out[2:8, 20:26, 20:26].max() == 1 and out[4, 8, 8] == 2
    assert np.count_nonzero(out == 2) == 6 * 7 * 7
    small = clean_labels(labels, None, min_size=250, fill_holes=True)
    assert np.count_nonzero(small == 2) == 6 * 7 * 7  # 216-voxel look-alike < 250 removed


def test_cleanup_option_removes_far_false_positives(case):
    lab, scr, _ = case
    # A decoy ball: same features as the ball but never scribbled (features cannot tell them apart).
    lab2 = lab.copy()
    lab2[4:8, 4:10, 30:38] = 1
    fv = synthetic_features(lab2)
    raw = ScribbleSegmenter().fit(fv, scr.labels).predict().labels
    cleaned = ScribbleSegmenter(cleanup=True).fit(fv, scr.labels).predict().labels
    assert (raw[4:8, 5:9, 31:37] == 2).mean() > 0.8
    assert (cleaned[4:8, 5:9, 31:37] == 2).mean() == 0
    assert dice(cleaned == 2, lab == 1) > dice(raw == 2, lab == 1)


def test_random_forest_option(case):
    lab, scr, image = case
    fv = synthetic_features(lab, grid=(6, 6))
    seg = ScribbleSegmenter(classifier="rf", intensity="raw", n_estimators=30)
    seg.fit(fv, scr.labels, image=image)
    res = seg.predict(probabilities=True)
    assert res.probabilities.shape == lab.shape + (3,)
    assert dice(res.labels == 2, lab == 1) > 0.8
    assert np.mean(seg.predict(5).labels == res.labels[5]) > 0.999


def test_bad_inputs_raise_specific_errors(case):
    lab, scr, _ = case
    fv = synthetic_features(lab)
    seg = ScribbleSegmenter()
    with pytest.raises(ScribbleError, match="no scribbles"):
        seg.fit(fv, np.zeros(lab.shape, np.uint8))
    one = np.where(scr.labels == 2, 2, 0)
    with pytest.raises(ScribbleError, match=r"only class 2 \(\d+ voxels\).*other class"):
        seg.fit(fv, one)
    with pytest.raises(ScribbleError, match=r"shape \(12, 48, 41\) but the image/features are \(12, 48, 40"):
        seg.fit(fv, np.zeros((12, 48, 41), np.uint8))
    with pytest.raises(ScribbleError, match=r"outside the volume of shape \(12, 48, 40\)"):
        seg.fit(fv, (np.array([[1, 2, 3], [5, 60, 3]]), np.array([1, 2])))
    with pytest.raises(ScribbleError, match="not trained"):
        seg.predict()
    with pytest.raises(VolumeError, match="needs the image"):
        ScribbleSegmenter(intensity="raw").fit(fv, scr.labels)
    with pytest.raises(ScribbleError, match=r"scribbles: \d+ voxel\(s\) are not whole .*\(e.g. 1.5"):
        seg.fit(fv, np.where(scr.labels == 2, 1.5, scr.labels.astype(np.float32)))
    with pytest.raises(ScribbleError, match=r"scribble values: 1 voxel\(s\) are not whole class numbers"):
        seg.fit(fv, (np.array([[1, 2, 3], [5, 6, 3]]), np.array([1.0, 2.5])))
    holed = case[2].copy()
    holed[3, 5, 5] = np.nan  # e.g. NaN padding of a resampled scan: named, not a failure deep in the filters
    with pytest.raises(VolumeError, match=r"image of shape \(12, 48, 40\) holds NaN/inf values"):
        ScribbleSegmenter(intensity="filters").fit(fv, scr.labels, image=holed)
    for bad in ((0, 1, 1), (np.nan, 1.0, 1.0), (1.0, 1.0)):
        with pytest.raises(VolumeError, match=r"spacing .*expected three positive, finite voxel sizes"):
            ScribbleSegmenter(intensity="filters").fit(fv, scr.labels, image=case[2], spacing=bad)
    seg.fit(fv, scr.labels)
    other = synthetic_features(lab, dim=48, model="vit_base_patch16_dinov3")
    with pytest.raises(FeatureMismatchError, match="'model': 'synthetic'.*'model': 'vit_base_patch16"):
        seg.predict(features=other)
    with pytest.raises(FeatureMismatchError, match="'dim': 32.*'dim': 48"):
        seg.predict(features=synthetic_features(lab, dim=48))


def test_a_single_slice_volume_is_segmented():
    """A (1, Y, X) volume (one slice, as an X-ray is read): the pixel filters and the scribbles' forest work
    on the plane (3D filters need two slices), and the painted disk comes out."""
    yy, xx = np.indices((48, 40))
    disk = ((yy - 24) ** 2 + (xx - 20) ** 2) < 10 ** 2
    lab = (disk[None] + 1).astype(np.uint8)  # 1 background, 2 the disk
    image = lab * 100.0 + np.random.default_rng(0).normal(0, 10, lab.shape)
    scr = np.zeros(lab.shape, np.uint8)
    scr[0, 24, 14:27] = 2
    scr[0, 3, 3:30] = 1
    scr[0, 45, 5:35] = 1
    seg = ScribbleSegmenter(intensity="filters").fit(synthetic_features(lab), scr, image=image,
                                                     spacing=(5.0, 1.0, 1.0))
    assert seg.image is not None
    pred = seg.predict().labels
    assert pred.shape == (1, 48, 40)
    assert dice(pred[0] == 2, disk) > 0.9
