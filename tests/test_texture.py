"""A texture volume's probability: the classifier's blended with the scribbles' forest's (texture.py)."""

from __future__ import annotations

import numpy as np
import pytest

from dinomed_napari.analysis.texture import FOREST_SHARE, blend_forest
from dinomed_napari.errors import Cancelled


def _forest(value_of_class, shape):
    """forest(index, cls) -> (H, W, 1) planes whose value depends on the class and the index."""
    return lambda index, cls: np.full(shape + (1,), value_of_class[cls] + 0.01 * index, np.float32)


def test_planes_along_the_forest_axis_are_blended_with_its_share():
    proba = np.zeros((3, 4, 5, 2), np.float32)
    proba[..., 0] = 1.0  # the classifier says class 1 everywhere
    seen = []
    out = blend_forest(proba, [1, 2], _forest({1: 0.2, 2: 0.8}, (3, 5)), axis=1,  # planes along Y
                       progress=lambda done, total: seen.append((done, total)))
    assert out is proba and seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    w = FOREST_SHARE
    for y in range(4):
        assert np.allclose(proba[:, y, :, 0], (1 - w) + w * (0.2 + 0.01 * y))
        assert np.allclose(proba[:, y, :, 1], w * (0.8 + 0.01 * y))
    assert np.allclose(proba.sum(-1), 1 + w * 0.02 * np.arange(4)[None, :, None])
    # With the default share the forest's class wins where the classifier disagrees.
    assert (np.argmax(proba, -1) == 1).all()


def test_a_cancelled_blend_raises_and_says_how_far_it_got():
    proba = np.full((5, 4, 5, 2), 0.5, np.float32)
    calls = iter(range(100))
    with pytest.raises(Cancelled, match="after 2 of 5"):
        blend_forest(proba, [1, 2], _forest({1: 0.0, 2: 1.0}, (4, 5)), axis=0,
                     cancel=lambda: next(calls) >= 2)
