"""Segmenter save / load: npz + JSON, no pickle, same predictions, refuses other features."""

from __future__ import annotations

import json

import numpy as np
import pytest
from analysis_helpers import blob_volume, synthetic_features

from dinomed_napari.analysis.persist import load_segmenter, save_segmenter
from dinomed_napari.analysis.segment import ScribbleSegmenter
from dinomed_napari.bench.scribbles import simulate_scribbles
from dinomed_napari.errors import FeatureMismatchError


@pytest.fixture(scope="module")
def trained():
    lab = blob_volume()
    scr = simulate_scribbles(lab, n_slices=2, seed=1)
    image = lab * 50.0 + 10
    return lab, scr, image


@pytest.mark.parametrize("options", [{}, {"intensity": "raw", "cleanup": True},
                                     {"classifier": "rf", "n_estimators": 20}])
def test_roundtrip_same_predictions(tmp_path, trained, options):
    lab, scr, image = trained
    fvs = {0: synthetic_features(lab, axis=0), 2: synthetic_features(lab, axis=2)}
    seg = ScribbleSegmenter(**options).fit(fvs, scr.labels, image=image)
    path = save_segmenter(seg, tmp_path / "seg")
    assert path.name == "seg.npz"
    with np.load(path, allow_pickle=False) as z:  # no object arrays anywhere
        meta = json.loads(str(z["meta"]))
        assert all(z[k].dtype != object for k in z.files)
    assert meta["signature"] == {"model": "synthetic", "weights": "random", "dim": 32, "layers": None}
    assert meta["axes"] == [0, 2] and meta["classes"] == [1, 2, 3]
    assert meta["settings"]["resolution"] == 128 and "key" in meta["settings"]
    loaded = load_segmenter(path)
    loaded.scribbles = scr.labels  # clean-up needs the scribbles (they are not stored)
    a = seg.predict(probabilities=True)
    b = loaded.predict(features=fvs, image=image, probabilities=True)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
    assert np.array_equal(a.labels, b.labels)


def test_loaded_segmenter_refuses_other_features(tmp_path, trained):
    lab, scr, _ = trained
    seg = ScribbleSegmenter().fit(synthetic_features(lab), scr.labels)
    loaded = load_segmenter(save_segmenter(seg, tmp_path / "s.npz"))
    with pytest.raises(FeatureMismatchError, match="no features"):
        loaded.predict()
    with pytest.raises(FeatureMismatchError, match="'dim': 32.*'dim': 64"):
        loaded.predict(features=synthetic_features(lab, dim=64))
    with pytest.raises(FeatureMismatchError, match="'weights': 'random'.*'weights': 'hub:lvd1689m'"):
        loaded.predict(features=synthetic_features(lab, weights="hub:lvd1689m"))
    with pytest.raises(FeatureMismatchError, match=r"passes \[0\], features only \[1\]"):
        loaded.predict(features={1: synthetic_features(lab, axis=1)})
    # A loaded segmenter can be refitted on new strokes.
    loaded.fit(synthetic_features(lab), scr.labels)
    assert loaded.predict(3).labels.shape == lab.shape[1:]


def test_not_a_segmenter_file(tmp_path):
    bad = tmp_path / "x.npz"
    np.savez(bad, a=np.zeros(3))
    with pytest.raises(FeatureMismatchError, match="not a dinomed segmenter file"):
        load_segmenter(bad)
    with pytest.raises(FeatureMismatchError, match="untrained"):
        save_segmenter(ScribbleSegmenter(), tmp_path / "y.npz")
