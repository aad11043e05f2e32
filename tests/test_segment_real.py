"""Few clicks on real volumes: the default pipeline against the classic filter-bank random forest given
the same scribbles, and against the same pipeline with the DINOv3 features shuffled across voxels.

A RANDOM-weight ViT-S/16 runs here (DINOv3 weights cannot be downloaded in this workplace), block 1
(``layers=(1,)``), at small resolution, so each case stays well under 30 s on 2 CPU cores. Scribbles are
what a person gives a structure (``structure_scribbles``: one medial stroke through it and background
strokes near and far, on the slices where it is largest); Dice on the slices nobody annotated.
"""

from __future__ import annotations

import numpy as np
import pytest
from analysis_helpers import dice

from dinomed_napari.analysis.sampling import normalise_image
from dinomed_napari.analysis.segment import ScribbleSegmenter
from dinomed_napari.bench.scribbles import structure_scribbles


@pytest.fixture(scope="module")
def backbone():
    from dinomed_napari.models import load_backbone

    return load_backbone("S", "random", layers=(1,))


def _load(key):
    from dinomed_napari.io import load_volume
    from dinomed_napari.samples import sample_path

    return load_volume(sample_path(key))


def _shuffled(fv, seed=0):
    """The same feature values, shuffled across all patches of the volume: no spatial meaning left."""
    from dataclasses import replace

    data = np.asarray(fv.data)
    flat = data.reshape(-1, data.shape[-1]).copy()
    np.random.default_rng(seed).shuffle(flat)
    return replace(fv, data=flat.reshape(data.shape), key=fv.key + "-shuffled")


def _compare(backbone, vol, truth, n_slices, resolution=128):
    """Dice on unannotated slices: (ours, ours on shuffled features, filter bank RF)."""
    from dinomed_napari.bench.protocols.baseline import FilterBankRF
    from dinomed_napari.features.extract import extract_features
    from dinomed_napari.preprocess import Preprocess

    fv = extract_features(vol, backbone=backbone, prep=Preprocess(resolution=resolution), cache_dir=False)
    assert fv.weights == "random"
    scr = structure_scribbles(truth, n_slices=n_slices, seed=0)
    other = np.ones(truth.shape[0], bool)
    other[list(scr.slices)] = False

    def ours(features):
        seg = ScribbleSegmenter(intensity="filters").fit(features, scr.labels, image=vol.data,
                                                          spacing=vol.spacing)
        return seg.predict().labels == 2

    pred, shuf = ours(fv), ours(_shuffled(fv))
    classic = FilterBankRF(normalise_image(vol.data)[0]).segment(scr.labels) == 2
    d = [dice(p[other], truth[other]) for p in (pred, shuf, classic)]
    ratio = pred[other].sum() / truth[other].sum()
    print(f"{fv.label()}: Dice ours {d[0]:.3f} | shuffled DINOv3 {d[1]:.3f} | filter bank RF {d[2]:.3f}; "
          f"predicted/true volume {ratio:.2f}")
    return d, ratio


def test_lung_nodule_from_one_annotated_slice(backbone):
    vol, mask = _load("lung_ct"), _load("lung_mask")
    (ours, shuffled, classic), ratio = _compare(backbone, vol, mask.data > 0, n_slices=1)
    # Measured: ours 0.79, shuffled 0.85, filter bank 0.08 (it fires on all soft tissue), ratio 1.52.
    assert ours > classic + 0.3 and ratio < 2.0
    assert ours >= shuffled - 0.1  # random-weight features carry little; they must not hurt either


@pytest.mark.parametrize("organ", [1, 5])  # spleen, liver
def test_ct_organs_from_one_and_three_slices(backbone, organ):
    vol = _load("ct_organs")
    truth = _load("ct_organs_seg").data == organ
    gains = []
    for k in (1, 3):
        (ours, shuffled, classic), ratio = _compare(backbone, vol, truth, n_slices=k)
        assert ours > classic and ratio < 2.0  # measured: +0.04 to +0.49, ratio 0.65-1.62
        assert ours >= shuffled - 0.1
        gains.append(ours - classic)
    assert np.mean(gains) > 0.1  # measured: spleen +0.48, liver +0.14


def test_walk_outlines_redrawn_on_the_edges_beat_the_appearance_model(backbone, monkeypatch):
    """Each reached slice's outline is redrawn by a band walker (``EDGE_BAND``): without it the walk lost
    about a pixel of rim per slice. Spleen, kidney and liver of the bundled CT, from 1 and 3 slices."""
    import dinomed_napari.analysis.redraw as walk
    from dinomed_napari.features.extract import extract_features
    from dinomed_napari.preprocess import Preprocess

    vol = _load("ct_organs")
    seg = _load("ct_organs_seg").data
    fv = extract_features(vol, backbone=backbone, prep=Preprocess(resolution=128), cache_dir=False)
    gains = []
    for organ in (1, 2, 5):
        truth = seg == organ
        for k in (1, 3):
            scr = structure_scribbles(truth, n_slices=k, seed=0)
            other = np.ones(truth.shape[0], bool)
            other[list(scr.slices)] = False
            d = []
            for band in (0, walk.EDGE_BAND):
                monkeypatch.setattr(walk, "EDGE_BAND", band)
                res = ScribbleSegmenter(intensity="filters").fit(fv, scr.labels, image=vol.data,
                                                                 spacing=vol.spacing).predict()
                d.append(dice((res.labels == 2)[other], truth[other]))
            gains.append(d[1] - d[0])
    # Measured: +0.016 to +0.076 on 5 of the 6 and -0.015 on the spleen from 3 slices (since the CT window
    # reaches towards the background, WINDOW_TO_BACKGROUND; before, +0.015 to +0.056 on each), mean +0.026.
    assert min(gains) > -0.03 and np.mean(gains) > 0.02


def _em_case(backbone, crop, truth_of, n_slices, resolution):
    """A crop of the bundled EM stack, ``simulate_scribbles`` of ``truth_of(labels)`` (painted as 1 for
    its complement, 2 for it), and ``run(spatial)`` -> (segmenter, result, Dice on unannotated slices)."""
    from dataclasses import replace

    from dinomed_napari.bench.scribbles import simulate_scribbles
    from dinomed_napari.features.extract import extract_features
    from dinomed_napari.preprocess import Preprocess

    vol = _load("em")
    vol = replace(vol, data=np.asarray(vol.data)[crop])
    truth = truth_of(_load("em_labels").data[crop])
    fv = extract_features(vol, backbone=backbone, prep=Preprocess(resolution=resolution), cache_dir=False)
    scr = simulate_scribbles(truth.astype(np.uint8), n_slices=n_slices, seed=0)
    other = np.ones(truth.shape[0], bool)
    other[list(scr.slices)] = False

    def run(spatial):
        seg = ScribbleSegmenter(intensity="filters", spatial=spatial).fit(fv, scr.labels, image=vol.data,
                                                                          spacing=vol.spacing)
        res = seg.predict()
        return seg, res, dice((res.labels == 2)[other], truth[other])

    return vol, truth, scr, other, run


def test_em_membranes_from_strokes_in_several_cells(backbone):
    """EM: strokes in several cells and on several membranes describe classes by their look. The default
    labels every voxel by the classifier (no structure is followed), which beats forcing the 3D step."""
    # Before the one-object check, these strokes (a box under half the plane) were propagated.
    from dinomed_napari.bench.protocols.baseline import FilterBankRF

    # Membranes painted as 2, cell interiors as 1.
    vol, truth, scr, other, run = _em_case(backbone, slice(0, 6), lambda lab: lab == 0, 2, 352)
    _, auto, d_auto = run("auto")
    _, forced, d_forced = run("propagate")
    _, _, d_alone = run("none")  # the classifier alone, without the forest's share (texture.py)
    classic = FilterBankRF(normalise_image(vol.data)[0]).segment(scr.labels) == 2
    d_classic = dice(classic[other], truth[other])
    print(f"EM membranes, Dice on unannotated slices: auto {d_auto:.3f}, forced 3D step {d_forced:.3f}, "
          f"classifier alone {d_alone:.3f}, filter bank RF {d_classic:.3f}")
    assert auto.propagation is None and forced.propagation is not None
    # Measured: auto 0.633, forced 0.423, classifier alone 0.504, filter bank 0.630 (random features;
    # the paper too finds DINOv3 weaker on EM).
    assert d_auto > d_forced and d_auto > d_alone + 0.08 and d_auto > d_classic - 0.02


def test_em_cell_interiors_painted_against_membranes_are_not_followed_as_one_structure(backbone):
    """Strokes in three cells against strokes on membranes (the membranes the wider class, so the
    background): the walker's outline of the cells is one or two regions (thin membranes merge at this
    grid), but the scribbles' forest labels cells on most of the slice, so the default leaves the volume
    to the classifier. Followed as one structure, the cells were a few blobs (Dice 0.05)."""
    from dinomed_napari.analysis.cover import MAX_COVER

    crop = (slice(0, 12), slice(0, 128), slice(0, 128))  # the demo's
    _, cells, scr, _, run = _em_case(backbone, crop, lambda lab: lab == 255, 1, 128)
    assert cells.mean() > MAX_COVER  # cell interiors are most of each section

    seg, auto, d_auto = run("auto")
    _, forced, d_forced = run("propagate")
    print(f"EM cells, Dice on unannotated slices: auto {d_auto:.3f}, forced 3D step {d_forced:.3f}")
    assert seg._background() == 1 and forced.propagation is not None
    assert auto.propagation is None
    assert d_auto > 0.85 and d_auto > d_forced + 0.5  # measured 0.910 (0.77 unblended) against 0.054
    # The painted slice's preview is the classifier's too (it covers 0.64 of the slice), not the outline.
    s = scr.slices[0]
    preview = seg.predict(index=s).labels
    assert np.array_equal(preview, seg.classes_[np.argmax(seg.logits(s, 0), axis=-1)])
    assert (preview == 2).mean() > MAX_COVER
