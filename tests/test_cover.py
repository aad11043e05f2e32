"""A painted class that covers most of the slices it is painted on is background-like (cover.py)."""

from __future__ import annotations

import numpy as np

from dinomed_napari.analysis.cover import COVER_GATE, MAX_COVER, background_like


def _labels(share: float, cls: int = 2, other: int = 1, shape=(20, 20)) -> np.ndarray:
    """A label plane whose first ``share`` of pixels are ``cls``."""
    flat = np.full(shape[0] * shape[1], other)
    flat[: int(round(share * flat.size))] = cls
    return flat.reshape(shape)


def test_a_class_covering_most_of_its_painted_slice_is_reported():
    scr = np.zeros((4, 20, 20), np.uint8)
    scr[1, 5, 5:9] = 2
    scr[1, 15, 2:18] = 1
    scr[3, 2, 2:6] = 1  # background alone on another slice: never asked about
    asked = []

    def classifier(index):
        asked.append(index)
        return _labels(0.3)

    # The classifier passes the gate; the forest decides (0.6 of the slice, over MAX_COVER).
    forest_calls = []

    def forest(index, cls):
        forest_calls.append((index, cls))
        return _labels(0.6).astype(float) * (cls == 2)

    assert COVER_GATE < 0.3 < MAX_COVER < 0.6
    assert background_like(scr, 0, 1, classifier, forest) == 2
    assert asked == [1] and forest_calls == [(1, 2)]
    # The classifier alone (no forest) at 0.3 covers too little.
    assert background_like(scr, 0, 1, classifier) is None


def test_the_forest_is_not_asked_under_the_gate_and_decides_over_it():
    scr = np.zeros((3, 20, 20), np.uint8)
    scr[0, 5, 5:9] = 3
    scr[2, 5, 5:9] = 3
    scr[0, 15, 2:18] = 1

    def forest(index, cls):
        raise AssertionError("the forest must not run where the classifier gives under the gate")

    assert background_like(scr, 0, 1, lambda i: _labels(0.1, cls=3), forest) is None
    # Over the gate on slice 2 only, where the forest finds the class on 0.4 of it: not most.
    planes = {0: _labels(0.1, cls=3), 2: _labels(0.45, cls=3)}
    assert background_like(scr, 0, 1, planes.__getitem__,
                           lambda i, c: (_labels(0.4, cls=3) == 3).astype(float)) is None
    assert background_like(scr, 0, 1, planes.__getitem__,
                           lambda i, c: (_labels(0.55, cls=3) == 3).astype(float)) == 3
