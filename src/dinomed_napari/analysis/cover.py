"""Whether a painted class covers most of the slices it is painted on: a background-like class (EM cell
interiors between membranes), which a classifier labels by its look, not one structure to follow in 3D.

Strokes in a few cells are local, and the 2D walker's outline of them can be one or two regions where
thin membranes merge at a coarse grid, so neither check of ``spatial="auto"`` (strokes spread over the
plane, an outline of many regions) sees them; followed as one structure they gave a few cells (Dice
0.03-0.12 on the bundled EM crop, 0.84 with the classifier).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .strokes import painted_classes

#: A class the scribbles' forest labels on more than this fraction of a slice it is painted on covers
#: most of it. Measured (random ViT-S): the 84 structure pairs of the fewclick3d sweeps (lesions,
#: abdominal organs, aorta, vertebrae; CT and MRI) at most 0.26; EM cell interiors painted against
#: membranes 0.64-0.91 (bundled crop at 64 and 128 px, the shared ISBI crop at 224, 4 seeds, k = 1-5).
MAX_COVER = 0.5
#: The forest is asked only on slices where the classifier gives the class more than this fraction (its
#: full-plane pass costs about a second on 512 x 512): structures read up to 0.42 with it, EM cells
#: at least 0.48.
COVER_GATE = 0.25


def cover(labels: np.ndarray, cls: int) -> float:
    """Fraction of a label plane that is class ``cls``."""
    return float(np.mean(np.asarray(labels) == cls))


def background_like(scribbles: np.ndarray, axis: int, background: int,
                    classifier: Callable[[int], np.ndarray],
                    forest: Callable[[int, int], np.ndarray] | None = None) -> int | None:
    """A painted class (other than ``background``) that covers most of a slice it is painted on.

    Parameters
    ----------
    scribbles : (Z, Y, X) int
        0 unlabelled, else class values.
    axis : int
        Slicing axis of the annotated slices.
    background : int
        The background class (never reported).
    classifier : callable
        ``classifier(index)`` -> (H, W) class labels of that slice.
    forest : callable, optional
        ``forest(index, cls)`` -> (H, W) probability of ``cls`` there; when given it decides, on slices
        where the classifier's cover passes ``COVER_GATE``, else the classifier decides alone.

    Returns
    -------
    int or None
        The class, or None when every painted class covers at most ``MAX_COVER`` of its slices.
    """
    for s, values in painted_classes(scribbles, axis).items():
        for c in (int(v) for v in values if v != background):
            share = cover(classifier(s), c)
            if forest is not None and share > COVER_GATE:
                share = float(np.mean(forest(s, c) > 0.5))
            if share > MAX_COVER:
                return c
    return None

