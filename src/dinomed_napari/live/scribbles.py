"""Scribbles as the user paints them: class names, colours, and whether they are ready to train.

Painting one class is a normal state (the hint says what to paint next); a layer that looks like a full
label volume (too many labelled voxels or classes) gets a question instead of a minutes-long fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_CLASSES = ("structure", "background")
#: Above either limit the "scribbles" are most likely a segmentation, not strokes (asked before training).
#: The fraction counts only where the labels lie on more than ``MAX_PAINTED_SHARE`` of the slices of a
#: volume of at least 3: strokes sit on a few slices, however thick the brush, while a segmentation spans
#: the structure's slices (on a single-slice image a few broad strokes passed 5 % and were asked about).
MAX_SCRIBBLED_FRACTION = 0.05
MAX_PAINTED_SHARE = 0.5
MAX_SCRIBBLED_VOXELS = 250_000
MAX_CLASSES = 8

# RGBA. Scribbles: saturated; predictions: other hues (never a scribble colour), background transparent.
SCRIBBLE_COLOURS = ((1.0, 0.15, 0.15, 1.0), (0.2, 0.55, 1.0, 1.0), (0.1, 0.9, 0.2, 1.0),
                    (1.0, 0.6, 0.0, 1.0), (0.8, 0.2, 1.0, 1.0), (1.0, 1.0, 1.0, 1.0))
PREDICTION_COLOURS = ((1.0, 0.95, 0.0, 1.0), (0.0, 1.0, 1.0, 1.0), (1.0, 0.0, 1.0, 1.0),
                      (0.6, 1.0, 0.5, 1.0), (1.0, 0.75, 0.8, 1.0), (0.6, 0.4, 0.2, 1.0))
TRANSPARENT = (0.0, 0.0, 0.0, 0.0)


def parse_class_names(text: str) -> list[str]:
    """``"liver, background"`` -> ``["liver", "background"]`` (label 1, 2 ...); empty -> the defaults."""
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    return names or list(DEFAULT_CLASSES)


def class_name(names: list[str] | tuple[str, ...], value: int) -> str:
    """Name of label ``value`` (1-based), e.g. "background (2)"; unnamed labels are "class N"."""
    value = int(value)
    return f"{names[value - 1]} ({value})" if 1 <= value <= len(names) else f"class {value}"


def is_background(names: list[str] | tuple[str, ...], value: int) -> bool:
    """Whether label ``value`` is named "background" (its prediction is drawn transparent)."""
    return 1 <= int(value) <= len(names) and names[int(value) - 1].lower() == "background"


def label_colours(names: list[str] | tuple[str, ...], prediction: bool, n: int | None = None) -> dict:
    """``{label: RGBA}`` for labels 1..n (n = max(len(names), 6)); 0 and unknown labels transparent."""
    palette = PREDICTION_COLOURS if prediction else SCRIBBLE_COLOURS
    n = max(len(names), len(palette)) if n is None else n
    out: dict = {0: TRANSPARENT, None: TRANSPARENT}
    for v in range(1, n + 1):
        out[v] = TRANSPARENT if prediction and is_background(names, v) else palette[(v - 1) % len(palette)]
    return out


@dataclass(frozen=True)
class ScribbleCheck:
    """What to do with the scribbles as they are now.

    Attributes
    ----------
    ready : bool
        Train now.
    hint : str
        One line for the status area (what to paint next, or what was found).
    question : str or None
        Set when the input looks absurd: ask before training (``ready`` is False).
    """

    ready: bool
    hint: str
    question: str | None = None


def check_scribbles(values: np.ndarray, volume_size: int,
                    names: list[str] | tuple[str, ...] = DEFAULT_CLASSES, *,
                    layer_name: str = "scribbles", confirmed: bool = False,
                    points: np.ndarray | None = None, shape: tuple[int, ...] | None = None) -> ScribbleCheck:
    """Decide whether the scribbled voxels' class ``values`` (> 0) can train a segmenter.

    Parameters
    ----------
    values : (N,) int array
        Class of every scribbled voxel (0 excluded).
    volume_size : int
        Voxels in the volume (for the "full label volume" test).
    names : sequence of str
        Class names, label 1 first.
    layer_name : str
        For the question.
    confirmed : bool
        The user already said "train anyway" for this layer: no question.
    points, shape : (N, 3) int array and tuple of int, optional
        The scribbled voxels and the volume's shape: the labelled fraction then counts only when the
        labels lie on most slices (:func:`painted_planes`). Without them, the fraction alone.
    """
    values = np.asarray(values).reshape(-1)
    classes, counts = np.unique(values[values > 0], return_counts=True)
    if len(classes) == 0:
        return ScribbleCheck(False, f"paint some {class_name(names, 1)} and some "
                                    f"{class_name(names, 2)} to start")
    if not confirmed:
        n = int(counts.sum())
        # The slices are counted only where the share could ask: three sorts of every scribbled voxel
        # would cost each stroke 4-30 ms (35k-250k voxels).
        planes = painted_planes(points, shape) if points is not None and \
            n > MAX_SCRIBBLED_FRACTION * max(1, volume_size) else None
        reason = label_volume_reason(n, len(classes), volume_size, planes)
        if reason:
            return ScribbleCheck(False, f"{layer_name!r} {reason}",
                                 f"{layer_name!r} {reason}: it looks like a full label volume, "
                                 "not scribbles. "
                                 f"Train on a random subsample of {MAX_SCRIBBLED_VOXELS:,} voxels anyway?")
    if len(classes) == 1:
        other = 2 if classes[0] == 1 else 1
        return ScribbleCheck(False, f"{counts[0]} voxels of {class_name(names, classes[0])}; now paint some "
                                    f"{class_name(names, other)}")
    parts = ", ".join(f"{class_name(names, c)}: {n}" for c, n in zip(classes, counts, strict=True))
    return ScribbleCheck(True, f"training on {int(counts.sum())} voxels ({parts})")


def label_volume_reason(n_labelled: int, n_classes: int, volume_size: int,
                        planes: tuple[int, int] | None = None) -> str | None:
    """Why a labels layer looks like a segmentation rather than scribbles, or None if it does not
    (``planes``: see :func:`check_scribbles`)."""
    if n_classes > MAX_CLASSES:
        return f"has {n_classes} classes"
    spread = planes is None or (planes[1] >= 3 and planes[0] > MAX_PAINTED_SHARE * planes[1])
    dense = n_labelled > MAX_SCRIBBLED_FRACTION * max(1, volume_size) and spread
    if n_labelled > MAX_SCRIBBLED_VOXELS or dense:
        share = 100 * n_labelled / max(1, volume_size)
        where = f" on {planes[0]} of {planes[1]} slices" if planes is not None else ""
        return f"has {n_labelled:,} labelled voxels ({share:.1f} % of the image{where})"
    return None


def painted_planes(points: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int]:
    """(slices holding a labelled voxel, slices) along the axis whose planes hold the fewest of them:
    the view the strokes were painted in (``points``: (N, 3) voxel coordinates)."""
    from dinomed_napari.analysis.strokes import painted_axis

    pts = np.asarray(points).reshape(-1, len(shape))
    a = painted_axis(pts)
    return len(np.unique(pts[:, a])), int(shape[a])


def subsample(points: np.ndarray, values: np.ndarray, limit: int = MAX_SCRIBBLED_VOXELS,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """At most ``limit`` scribbled voxels, every class kept in proportion (at least one voxel each)."""
    if len(values) <= limit:
        return points, values
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(values):
        idx = np.flatnonzero(values == c)
        n = max(1, round(limit * len(idx) / len(values)))
        keep.append(rng.choice(idx, size=min(n, len(idx)), replace=False))
    keep = np.sort(np.concatenate(keep))
    return points[keep], values[keep]
