"""The Qt-free policy of the interactive tools (dinomed_napari.live): hints, guards, window choice."""

from __future__ import annotations

import numpy as np
import pytest

from dinomed_napari.live import display, jobs, scribbles
from dinomed_napari.live.weights import default_weights


def test_one_class_is_a_hint_naming_the_class_to_paint():
    names = scribbles.parse_class_names("liver, background")
    check = scribbles.check_scribbles(np.ones(40, int), 10_000, names)
    assert not check.ready and check.question is None
    assert check.hint == "40 voxels of liver (1); now paint some background (2)"
    empty = scribbles.check_scribbles(np.zeros(0, int), 10_000, names)
    assert not empty.ready and "paint some liver (1) and some background (2)" in empty.hint
    both = scribbles.check_scribbles(np.array([1] * 5 + [2] * 7), 10_000, names)
    assert both.ready and both.hint == "training on 12 voxels (liver (1): 5, background (2): 7)"


def test_full_label_volume_gets_a_question_until_confirmed():
    organs = np.arange(1, 42).repeat(100)  # 41 classes
    check = scribbles.check_scribbles(organs, 1_000_000, layer_name="organs")
    assert not check.ready and "'organs' has 41 classes" in check.question and "anyway?" in check.question
    dense = scribbles.check_scribbles(np.array([1, 2] * 30_000), 100_000)
    assert "60,000 labelled voxels (60.0 % of the image)" in dense.question
    assert scribbles.check_scribbles(np.array([1, 2] * 30_000), 100_000, confirmed=True).ready
    # The same share on a few slices is strokes painted with a broad brush; on most slices of a volume it
    # is a segmentation; on a single-slice image only the voxel cap asks.
    def on_slices(n: int, k: int, shape: tuple[int, int, int]) -> dict:
        """``n`` labelled voxels on the first ``k`` slices, spread over their rows and columns."""
        i = np.arange(n)
        points = np.stack([i % k, (i // k) % shape[1], (i // (k * shape[1])) % shape[2]], axis=1)
        return dict(points=points, shape=shape)

    pair = np.array([1, 2] * 30_000)
    few = scribbles.check_scribbles(pair, 100_000, **on_slices(60_000, 3, (10, 100, 100)))
    most = scribbles.check_scribbles(pair, 100_000, **on_slices(60_000, 8, (10, 100, 100)))
    one = scribbles.check_scribbles(pair, 100_000, **on_slices(60_000, 1, (1, 250, 400)))
    assert few.ready and one.ready and not most.ready and "on 8 of 10 slices" in most.question
    assert not scribbles.check_scribbles(np.array([1, 2] * 200_000), 500_000,
                                         **on_slices(400_000, 1, (1, 500, 1000))).ready


def test_painted_planes_counts_the_slices_of_the_view_painted_in():
    pts = np.array([[4, y, x] for y in range(5, 40) for x in (3, 9, 20)] + [[6, 10, 11]])
    assert scribbles.painted_planes(pts, (12, 64, 64)) == (2, 12)  # axial strokes on slices 4 and 6
    assert scribbles.painted_planes(pts[:, [1, 0, 2]], (64, 12, 64)) == (2, 12)  # coronal ones


def test_subsample_keeps_every_class_in_proportion():
    values = np.array([1] * 9000 + [2] * 1000 + [3] * 2)
    points = np.arange(len(values) * 3).reshape(-1, 3)
    p, v = scribbles.subsample(points, values, limit=1000)
    counts = dict(zip(*np.unique(v, return_counts=True), strict=True))
    assert counts[1] == 900 and counts[2] == 100 and counts[3] == 1 and len(p) == len(v)
    assert len(np.unique(p[:, 0])) == len(p)  # no voxel twice


def test_prediction_colours_differ_from_scribbles_and_background_is_transparent():
    names = ["lesion", "background"]
    scr = scribbles.label_colours(names, prediction=False)
    pred = scribbles.label_colours(names, prediction=True)
    assert pred[2][3] == 0 and scr[2][3] == 1 and pred[0][3] == 0
    assert all(pred[v] != scr[v] for v in range(1, 7) if v != 2)


def test_retrain_action():
    pts, vals = np.array([[0, 1, 2]]), np.array([1])
    assert jobs.retrain_action(None, (pts, vals), True, False) == "train"
    assert jobs.retrain_action((pts, vals), (pts, vals), True, True) == "predict"
    assert jobs.retrain_action((pts, vals), (pts, vals), False, True) == "train"
    assert jobs.retrain_action((pts, vals), (pts, vals), True, False) == "skip"
    # "auto": one slice at a time on a CPU, free memory on a GPU; a number chosen in the widget wins.
    assert jobs.interactive_batch_size("cpu") == 1 and jobs.interactive_batch_size("cuda:0") == "auto"
    assert jobs.interactive_batch_size("cpu", 8) == 8 and jobs.interactive_batch_size("cuda", "16") == 16
    # The first slice gets every core (the GUI waits for it), later ones leave one to the GUI.
    assert [jobs.first_batch_threads(n) for n in (1, 2, 16)] == [1, 2, 16]
    assert [jobs.worker_threads(n) for n in (1, 2, 16)] == [1, 1, 15]


def test_ct_is_detected_from_hounsfield_range_and_says_so():
    rng = np.random.default_rng(0)
    ct = rng.integers(-1024, 1500, size=(4, 32, 32)).astype(np.int16)
    choice = display.choose_window(ct)
    assert choice.modality == "CT" and choice.window == "soft_tissue"
    assert "auto" in choice.reason and "Hounsfield" in choice.reason
    assert display.display_range("soft_tissue", ct) == (-160.0, 240.0)
    em = rng.integers(0, 255, size=(4, 32, 32)).astype(np.uint8)
    em_choice = display.choose_window(em)
    assert em_choice.modality is None and em_choice.window == "percentile"
    assert display.choose_window(em, "PT").window == "pet_suv"
    assert display.choose_window(ct, modality="MR").window == "percentile"
    assert display.choose_window(ct, window="lung").reason.endswith("window lung (chosen)")


@pytest.mark.parametrize("with_file", [False, True])
def test_default_weights_is_what_is_on_this_machine(tmp_path, monkeypatch, with_file):
    monkeypatch.setenv("DINOMED_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    if with_file:
        (tmp_path / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth").write_bytes(b"x")
    offer = default_weights("S")
    if with_file:
        assert offer.kind == "local file" and offer.value.endswith("-08c60483.pth")
    else:
        assert offer.kind == "choose" and str(tmp_path) in offer.reason and "'random'" in offer.reason


def test_a_volume_from_texture_strokes_says_why_it_was_not_followed_in_3d():
    """Predict volume with strokes in more separate objects than one structure has parts (four cells): the
    classifier labels every voxel and the result carries the reason the user reads (no silent switch of
    method)."""
    from analysis_helpers import synthetic_features

    from dinomed_napari.live.segment_job import (
        BLENDED,
        NOT_FOLLOWED,
        SegmentRequest,
        run_segment_job,
        suggestion_text,
    )

    rng = np.random.default_rng(0)
    z, y, x = np.indices((6, 64, 64))
    centres = [(16, 16), (16, 34), (40, 20), (44, 46)]  # bright "cells", apart from each other
    cells = np.zeros(z.shape, bool)
    for cy, cx in centres:
        cells |= (y - cy) ** 2 + (x - cx) ** 2 < 6 ** 2
    image = (100.0 * cells + rng.normal(0, 5, cells.shape)).astype(np.float32)
    scr = np.zeros(cells.shape, np.uint8)
    scr[2, 16, 13:20] = 2  # strokes in four separate cells (two are one structure seen in two parts)
    scr[2, 16, 31:38] = 2
    scr[2, 40, 17:24] = 2
    scr[2, 44, 43:50] = 2
    scr[2, 2, 2:62] = 1  # background around them
    scr[2, 60, 2:62] = 1
    scr[2, 26, 10:40] = 1
    fv = synthetic_features(cells.astype(np.uint8), grid=(12, 12))
    req = SegmentRequest(features=fv, axis=0, index=None, settings=("linear", None, False),
                         scribbles=(np.argwhere(scr), scr[scr > 0]), image=image,
                         extra={"scribble_volume": scr, "spacing": (1.0, 1.0, 1.0)})
    res = run_segment_job(req)
    assert res.propagation is None and res.note == NOT_FOLLOWED + BLENDED  # the forest has a share
    assert suggestion_text(res.propagation) == "" and "not followed" in res.note
    assert res.labels.shape == cells.shape and set(np.unique(res.labels)) == {1, 2}


def test_the_suggestion_says_where_and_why_the_walk_ended():
    from dinomed_napari.analysis.propagate import REGROWS, Propagation
    from dinomed_napari.live.segment_job import suggestion_text

    labels = np.zeros((12, 8, 8), np.uint8)
    labels[3:8, 2:6, 2:6] = 1
    conf = np.full(12, np.nan)
    conf[3:9] = [0.9, 0.8, 1.0, 0.7, 0.6, 0.5]
    prop = Propagation(labels=labels, confidence=conf, annotated=(5,), axis=0, background=0,
                       stops={8: REGROWS})
    text = suggestion_text(prop)
    assert f"ended on slice 8: {REGROWS}" in text and text.endswith(f"annotate slice {prop.suggest()} next")
    prop.stops = {}
    assert "ended" not in suggestion_text(prop) and "along axis" not in suggestion_text(prop)
    coronal = Propagation(labels=np.moveaxis(labels, 0, 1), confidence=conf, annotated=(5,), axis=1,
                          background=0, stops={})  # strokes painted in a coronal view
    assert suggestion_text(coronal).startswith("3D: followed from annotated slices [5] along axis 1;")


def test_the_widgets_volume_is_followed_along_the_painted_axis():
    """Features along axis 1 (the session's), strokes painted in the axial view: 'Predict volume' walks
    the axial slices, as the CLI does."""
    from analysis_helpers import dice, synthetic_features, two_blobs

    from dinomed_napari.bench.scribbles import structure_scribbles
    from dinomed_napari.live.segment_job import SegmentRequest, run_segment_job, suggestion_text

    image, a, b = two_blobs()
    scr = structure_scribbles(a, n_slices=1, axis=0, seed=0).labels
    fv = synthetic_features((a | b).astype(np.uint8), axis=1, grid=(8, 8))
    req = SegmentRequest(features=fv, axis=1, index=None, settings=("linear", None, False),
                         scribbles=(np.argwhere(scr), scr[scr > 0]), image=image,
                         extra={"scribble_volume": scr, "spacing": (2.0, 1.0, 1.0)})
    res = run_segment_job(req)
    assert res.propagation is not None and res.propagation.axis == 0
    assert "along axis" not in suggestion_text(res.propagation)
    assert dice(res.labels == 2, a) > 0.8 and not (res.labels == 2)[b].any()
