"""The bench's simulated active user (fewclick3d): it follows the suggestion, leaks included."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from analysis_helpers import synthetic_features

from dinomed_napari.analysis.segment import ScribbleSegmenter
from dinomed_napari.bench.protocols.fewclick3d import _active


def test_the_active_user_paints_background_across_a_leak_the_suggestion_shows():
    """A tapering tube whose last six slices are not the structure: the walk from the largest slice leaks
    into them, the suggestion lands there, and the user's background stroke across the leak ends it."""
    rng = np.random.default_rng(5)
    z, y, x = np.indices((16, 64, 64))
    tube = (y - 32) ** 2 + (x - 30) ** 2 < (10 - 0.3 * (z - 5).clip(0)) ** 2
    image = (100.0 * tube + rng.normal(0, 8, tube.shape)).astype(np.float32) / 100.0
    truth = tube & (z <= 9)
    lc = SimpleNamespace(volume=SimpleNamespace(data=image), spacing=(2.0, 1.0, 1.0))
    fv = synthetic_features(tube.astype(np.uint8), grid=(8, 8))
    out = list(_active(ScribbleSegmenter(intensity="filters"), lc, fv, truth, 1, 1,
                       SimpleNamespace(axis=0, seed=0)))
    rows = [r for r, _ in out]
    assert len(rows) >= 2 and rows[0]["annotated_slices"] == [0]
    assert rows[0]["volume_ratio"] > 1.3  # measured 1.43: slices 10-15 leaked
    refuted = [s for s in rows[1]["annotated_slices"] if not truth[s].any()]
    assert len(refuted) == 1 and refuted[0] >= 10
    second = out[1][1] > 0
    assert not second[refuted[0]:].any()  # the walk ends on the slice painted "not here"
    assert rows[1]["volume_ratio"] < rows[0]["volume_ratio"] and rows[1]["dice"] > rows[0]["dice"]
