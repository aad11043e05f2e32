"""One scribble-segmenter job as the viewer runs it (Qt-free): fit if needed, predict a slice or the
volume slice by slice (progress, cancel between slices). The CLI and the GUI benchmark call it too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dinomed_napari.analysis.annotated import NOT_ONE_STRUCTURE
from dinomed_napari.errors import DinomedError


class JobCancelled(DinomedError):
    """The user cancelled a running job."""


@dataclass
class SegmentRequest:
    """Everything a train / predict job needs, read on the GUI thread.

    ``segmenter`` is reused when ``settings`` match the ones it was made with (incremental fit);
    ``index`` None = whole volume.
    """

    features: Any
    axis: int
    index: int | None
    settings: tuple  # (classifier, intensity, tri-planar)
    scribbles: tuple[np.ndarray, np.ndarray] | None = None  # None = predict only
    image: np.ndarray | None = None
    segmenter: Any = None
    segmenter_settings: tuple | None = None
    new_image: bool = False
    extra: dict = field(default_factory=dict)


@dataclass
class SegmentResult:
    segmenter: Any
    labels: np.ndarray
    probabilities: np.ndarray | None  # of the first class, same shape as labels
    classes: np.ndarray
    trained: bool
    propagation: Any = None  # analysis.propagate.Propagation of a propagated volume
    note: str = ""  # what the user reads about the 3D step when there is no propagation to describe


def run_segment_job(req: SegmentRequest, cancel: Callable[[], bool] | None = None,
                    progress: Callable[[int, int], Any] | None = None,
                    want_probability: bool = False) -> SegmentResult:
    """Fit (when scribbles are given) and predict; raises :class:`JobCancelled` between slices."""
    from dinomed_napari.analysis.segment import ScribbleSegmenter

    kind, intensity, _tri = req.settings
    seg = req.segmenter
    trained = req.scribbles is not None
    volume_scribbles = req.extra.get("scribble_volume")
    propagated = req.index is None and volume_scribbles is not None and req.image is not None
    if trained:
        if seg is None or req.segmenter_settings != req.settings:
            seg = ScribbleSegmenter(classifier=kind, intensity=intensity)  # settings changed: a new one
        if not propagated:  # a propagated volume fits once, on the scribble volume itself
            seg.fit(req.features, req.scribbles, image=req.image)
    image = req.image if req.new_image else None  # a loaded segmenter needs the image once
    # Features only when the segmenter has none (loaded from a file): passing them again would drop
    # its cached tri-planar scores.
    features = None if seg.features else req.features
    if req.index is not None:
        pred = seg.predict(index=req.index, axis=req.axis, features=features, image=image)
        prob = pred.probabilities[..., 0].astype(np.float32) if want_probability else None
        return SegmentResult(seg, pred.labels, prob, pred.classes, trained)
    if propagated:
        return _propagated(seg, req, volume_scribbles, cancel, progress, want_probability)
    first = next(iter(req.features.values())) if isinstance(req.features, dict) else req.features
    shape = tuple(first.volume_shape)
    n = shape[req.axis]
    labels = probs = classes = None
    for i in range(n):
        if cancel is not None and cancel():
            raise JobCancelled(f"volume prediction cancelled after {i} of {n} slices")
        pred = seg.predict(index=i, axis=req.axis, features=features, image=image)
        image = features = None
        if labels is None:
            labels = np.zeros(shape, pred.labels.dtype)
            probs = np.zeros(shape, np.float32) if want_probability else None
            classes = pred.classes
        np.moveaxis(labels, req.axis, 0)[i] = pred.labels
        if probs is not None:
            np.moveaxis(probs, req.axis, 0)[i] = pred.probabilities[..., 0]
        if progress is not None:
            progress(i + 1, n)
    return SegmentResult(seg, labels, probs, classes, trained)


def _propagated(seg, req: SegmentRequest, scribbles: np.ndarray, cancel, progress,
                want_probability: bool) -> SegmentResult:
    """The whole volume from the scribble volume: each painted structure followed from its annotated
    slices (``spatial="auto"``), with the per-slice confidence and the slice to annotate next."""
    from dinomed_napari.errors import Cancelled

    seg.fit(req.features, scribbles, image=req.image, spacing=req.extra.get("spacing"))
    try:
        # No axis: the walk goes along the axis the strokes were painted on (a coronal view's strokes
        # are followed coronally), whichever axis the features were computed along.
        pred = seg.predict(cancel=cancel, progress=progress, probabilities=want_probability)
    except Cancelled as exc:
        raise JobCancelled(str(exc)) from exc
    probs = pred.probabilities[..., 0].astype(np.float32) if pred.probabilities is not None else None
    note = "" if pred.propagation is not None else NOT_FOLLOWED + (BLENDED if pred.forest_share else "")
    return SegmentResult(seg, pred.labels, probs, pred.classes, True, pred.propagation, note)


#: Why a volume predicted from a scribble volume was not followed in 3D (see ``spatial="auto"``).
NOT_FOLLOWED = (f"3D: not followed: {NOT_ONE_STRUCTURE} (a texture or instances, e.g. EM), so the "
                "classifier labelled every voxel")
#: Added when the scribbles' filter-bank forest had a share of that volume (analysis/texture.py).
BLENDED = ", blended with a filter-bank forest trained on the same strokes"


def suggestion_text(propagation) -> str:
    """What the user reads after a propagated volume: where it came from and which slice to paint next."""
    if propagation is None:
        return ""
    nxt = propagation.suggest()
    along = f" along axis {propagation.axis}" if propagation.axis != 0 else ""  # slices of another view
    text = f"3D: followed from annotated slices {list(propagation.annotated)}{along}"
    if propagation.stops:
        text += f"; ended on {propagation.ended()}"
    if nxt is None:
        return text
    conf = propagation.confidence[nxt]
    return f"{text}; most in doubt on slice {nxt} ({conf:.2f}): annotate slice {nxt} next"
