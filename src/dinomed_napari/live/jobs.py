"""How interactive jobs are scheduled: batch size, debounce delays, and retrain-or-predict decisions.

The viewer's wishes differ from a batch run's: the current slice must show after about one forward pass,
Cancel must act within about a second, and a stroke must not wait behind a debounce longer than it takes.
"""

from __future__ import annotations

import numpy as np

#: napari's ``paint`` event fires once per finished stroke: a short delay only merges undo bursts.
STROKE_DELAY_MS = 30
#: Slice changes arrive on every wheel step: wait for the user to settle on a slice.
SLICE_DELAY_MS = 80
#: Slider / seed changes for the isolation preview.
PREVIEW_DELAY_MS = 120
#: A live result arriving while the mouse is down (a stroke being painted) waits for the release, at most
#: this long: its redraw would add to napari's redraws of the stroke on the GUI thread.
HOLD_MS = 1000
#: A live update's Cancel button is offered only once its job has run this long (most end sooner).
CANCEL_DELAY_MS = 400


def interactive_batch_size(device: str | None, choice: int | str = "auto") -> int | str:
    """Slices per forward pass in the viewer: the user's ``choice``, or for "auto" 1 on CPU (first slice
    and Cancel after one slice's forward pass) and "auto" on accelerators (from the device's free memory;
    the current slice still comes first in a batch of
    :data:`~dinomed_napari.features.batches.FIRST_BATCH`)."""
    if choice != "auto":
        return int(choice)
    return 1 if device in (None, "cpu") or str(device).startswith("cpu") else "auto"


def worker_threads(cpus: int | None = None) -> int:
    """Compute threads for jobs started from the viewer: one core is left to the GUI thread, which
    (under software OpenGL especially) needs it to draw; with all cores busy it stalls for 0.3-1 s."""
    import os

    cpus = os.cpu_count() if cpus is None else cpus
    return max(1, int(cpus or 1) - 1)


def first_batch_threads(cpus: int | None = None) -> int:
    """Compute threads for the first batch of an extraction started from the viewer: every core, since
    the GUI has nothing to draw until that batch's slice arrives; later batches get
    :func:`worker_threads`."""
    import os

    return max(1, int((os.cpu_count() if cpus is None else cpus) or 1))


def retrain_action(previous: tuple | None, scribbles: tuple[np.ndarray, np.ndarray], same_settings: bool,
                   trained: bool) -> str:
    """``"train"``, ``"predict"`` (nothing new painted, same settings) or ``"skip"`` (the same scribbles
    already failed to train: their message was shown).

    Parameters
    ----------
    previous : (points, values) or None
        The scribbles of the last request.
    scribbles : (points, values)
        The scribbles now.
    same_settings : bool
        Classifier / fusion / tri-planar unchanged since the last fit.
    trained : bool
        The session has a trained segmenter.
    """
    same = previous is not None and all(np.array_equal(a, b)
                                        for a, b in zip(previous, scribbles, strict=True))
    if same and same_settings and trained:
        return "predict"
    if same and not trained:
        return "skip"
    return "train"


def scribble_points(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sparse copy ``(points (N, 3), values (N,))`` of a scribble volume (painting may go on meanwhile)."""
    data = np.asarray(data)
    points = np.argwhere(data > 0)
    return points, data[tuple(points.T)]
