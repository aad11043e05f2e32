"""Threshold isolation: lung nodule CT (real) and synthetic PET/CT phantom from a seed; PC1 foreground
and seed-component logic on synthetic features."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_helpers import dice, synthetic_features

from dinomed_napari.analysis.isolate import isolate
from dinomed_napari.analysis.pca import pca_maps
from dinomed_napari.errors import ScribbleError


def _centre(mask: np.ndarray) -> list[int]:
    zz, yy, xx = np.nonzero(mask)
    return [int(np.median(zz)), int(np.median(yy)), int(np.median(xx))]


def test_lung_nodule_from_one_click():
    from dinomed_napari.io import load_volume
    from dinomed_napari.samples import sample_path

    ct = load_volume(sample_path("lung_ct")).data.astype(np.float32)
    truth = load_volume(sample_path("lung_mask")).data > 0
    seed = [_centre(truth)]
    # HU channel, Otsu threshold over the volume, keep the clicked 3D component, fill holes.
    # Measured Dice 0.888 (the nodule touches a vessel on one slice); 0.8 leaves room for seeds a voxel off.
    lab, th = isolate(None, ct, seeds=seed, foreground=False, return_thresholds=True)
    assert lab.shape == ct.shape and lab.dtype == np.uint8
    d = dice(lab, truth)
    print(f"lung nodule Dice {d:.3f}, HU threshold {th['inner']:.0f}")
    assert d > 0.8
    # One slice only: 2D components on that plane.
    z = seed[0][0]
    lab2 = isolate(None, ct, seeds=seed, foreground=False, index=z, axis=0)
    assert lab2.shape == ct.shape[1:] and dice(lab2, truth[z]) > 0.8


def test_pet_phantom_lesions_from_a_seed():
    from dinomed_napari.phantom import make_pet_ct_phantom

    ph = make_pet_ct_phantom()  # SYNTHETIC PET/CT (labelled as such by the phantom module)
    for les in ph.lesions:
        truth = ph.lesion_mask == les["id"]
        seed = [np.rint(les["centre_zyx"]).astype(int)]
        # 50 % of the local SUVmax (the fixed-fraction PET rule); measured Dice 0.96 nodule, 0.90 liver.
        d = dice(isolate(None, ph.pet.data, seeds=seed, foreground=False, inner_threshold="50%"), truth)
        print(f"{les['name']}: Dice {d:.3f}")
        assert d > 0.85
    # Without seeds the largest hot component wins, which is not a lesion (the bladder): Dice 0.
    assert dice(isolate(None, ph.pet.data, foreground=False, inner_threshold=4.0), ph.lesion_mask > 0) < 0.1


def test_pc1_foreground_then_channel_then_seed_component():
    lab = np.zeros((10, 40, 40), np.uint8)
    lab[2:8, 8:20, 8:20] = 1  # body part 1 (body + lesions are the token minority -> PC1 positive)
    lab[2:8, 24:36, 24:36] = 1  # body part 2
    lab[3:7, 10:16, 10:16] = 2  # a "lesion" inside part 1
    lab[3:7, 26:32, 26:32] = 2  # another lesion inside part 2
    fv = synthetic_features(lab, grid=(10, 10), noise=0.05)
    pm = pca_maps(fv)
    intensity = (lab == 2).astype(np.float32) * 10 + (lab == 1) * 3
    got = isolate(pm, intensity, seeds=[[5, 13, 13]])
    want = np.zeros(lab.shape, bool)
    want[3:7, 10:16, 10:16] = True
    assert dice(got, want) > 0.8 and got[:, 24:, 24:].sum() == 0  # only the clicked lesion
    both = isolate(pm, intensity, seeds=[[5, 13, 13], [5, 29, 29]])
    assert dice(both, lab == 2) > 0.8
    assert isolate(pm, intensity, seeds=[[0, 0, 0]]).sum() == 0  # click far from anything: empty
    # The same through a FeatureVolume (PCA computed inside) and on one slice.
    assert np.array_equal(isolate(fv, intensity, seeds=[[5, 13, 13]]), got)
    assert dice(isolate(fv, intensity, seeds=[[5, 13, 13]], index=5), want[5]) > 0.8


def test_the_step_that_dropped_the_seed_is_named():
    lab = np.zeros((10, 40, 40), np.uint8)
    lab[2:8, 8:20, 8:20] = 1  # body (PC1 foreground)
    lab[3:7, 10:16, 10:16] = 2  # lesion inside it
    pm = pca_maps(synthetic_features(lab, grid=(10, 10), noise=0.05))
    intensity = (lab == 2).astype(np.float32) * 10 + (lab == 1) * 3
    ok, th = isolate(pm, intensity, seeds=[[5, 13, 13]], return_thresholds=True)
    assert ok[5, 13, 13] == 1 and th["dropped"] is None
    # Both steps run; the inner threshold (over the lesion's 10) removes the seed, not the foreground.
    out, th = isolate(pm, intensity, seeds=[[5, 13, 13]], inner_threshold=11.0, return_thresholds=True)
    assert out.sum() == 0 and th["foreground"] is not None and th["dropped"] == "inner"
    out, th = isolate(pm, intensity, seeds=[[5, 30, 30]], return_thresholds=True)  # outside the body
    assert out[5, 30, 30] == 0 and th["dropped"] == "foreground"
    out, th = isolate(pm, intensity, seeds=[[5, 13, 13]], min_size=1000, return_thresholds=True)
    assert out.sum() == 0 and th["dropped"] == "min_size"  # the 144-voxel lesion


def test_isolate_bad_inputs():
    fv = synthetic_features(np.indices((6, 32, 32))[2] > 16)
    with pytest.raises(ScribbleError, match="outside the volume"):
        isolate(fv, "pc2", seeds=[[10, 5, 5]])
    with pytest.raises(ValueError, match="channel must be"):
        isolate(fv, "hounsfield")
    with pytest.raises(ValueError, match="needs PCA components"):
        isolate(None, "pc2", foreground=False)


def test_isolation_from_pca_maps_never_assembles_all_components_and_gives_the_same_result():
    from dinomed_napari.features.volume import FeatureVolume

    rng = np.random.default_rng(0)
    for axis in (0, 1):
        shape = (6, 40, 48)
        feats = rng.normal(size=(shape[axis], 5, 6, 16)).astype(np.float32)
        fv = FeatureVolume(feats, axis, shape, "m", "w", 96)
        lazy, whole = pca_maps(fv), pca_maps(fv)
        assert whole.components.shape == (*shape, 3)  # assembled float32: what isolation used to read
        seed, kept = np.array([[3, 20, 24]]), []
        runs = [dict(channel="pc2"), dict(channel="pc1", foreground=False),
                dict(channel="pc3", index=3, axis=axis)]
        for kw in runs:
            a, b = isolate(lazy, seeds=seed, **kw), isolate(whole, seeds=seed, **kw)
            assert a.shape == (shape if "index" not in kw else tuple(np.delete(shape, axis)))
            np.testing.assert_array_equal(a, b)
            kept.append(int(a.sum()))
        assert lazy._components is None  # a volume read PC1 and PC2 one at a time; a plane only itself
        assert max(kept) > 100  # not three empty results agreeing
