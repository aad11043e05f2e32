"""How the scribble segmenter dock (:class:`~.widget_segment.SegmentWidget`) shows a result: the
prediction and probability layers, the suggestion after a volume, and a live result held while a stroke
is still being painted."""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from dinomed_napari.live.scribbles import class_name, label_colours
from dinomed_napari.live.segment_job import SegmentRequest, suggestion_text

from .results import find_result, keep_previous, label_colormap, place_below, put_slice, result_layer


def drag_tracker(widget: Any) -> Any:
    """A viewer drag callback running ``widget._track_mouse`` that does not keep the widget alive (the
    viewer outlives a closed dock)."""
    ref = weakref.ref(widget)

    def track(viewer: Any, event: Any) -> Any:
        w = ref()
        if w is not None:
            yield from w._track_mouse(viewer, event)

    return track


class ResultDisplay:
    """The result side of :class:`~.widget_segment.SegmentWidget`: its prediction and probability layers
    and the results held during a stroke (``_mouse_down``, ``_deferred``, ``_hold``)."""

    def toggle_prediction(self) -> None:
        layer = self.prediction_layer
        if layer is not None and layer in self.viewer.layers:
            layer.visible = not layer.visible

    def _style_prediction(self) -> None:
        layer = self.prediction_layer
        if layer is None or layer not in self.viewer.layers:
            return
        layer.colormap = label_colormap(label_colours(self.class_names, prediction=True))
        contours = self.show_as.value == "contours"
        layer.contour = 2 if contours else 0
        layer.opacity = 0.9 if contours else 0.3

    def _prediction(self, image: Any) -> Any:
        layer = find_result(self.viewer, image, "prediction")
        if layer is None or layer.data.shape != image.data.shape:
            layer = result_layer(self.viewer, image, "prediction", np.zeros(image.data.shape, np.uint8),
                                 "labels", "")
            self.prediction_layer = layer
            self._style_prediction()  # once: a new colormap re-colours the whole layer (slow)
        self.prediction_layer = layer
        place_below(self.viewer, layer, self.scribbles.value)  # scribbles stay on top
        return layer

    def _clear_prediction_slice(self, image: Any, req: SegmentRequest) -> None:
        layer = find_result(self.viewer, image, "prediction")
        if layer is not None and layer.data.shape == image.data.shape and req.index is not None:
            put_slice(layer, 0, req.axis, req.index, self.viewer)

    def _track_mouse(self, _viewer: Any, event: Any) -> Any:
        """Viewer drag callback: notes that a button is down until its release, then shows any result
        that waited."""
        self._mouse_down = True
        yield
        while event.type == "mouse_move":
            yield
        self._mouse_down = False
        try:
            self._release_deferred()
        except (AttributeError, RuntimeError):  # the widget went away during the drag: nothing to show
            pass

    def _returned(self, out: tuple) -> None:
        if self._mouse_down and not out[0]["volume"]:
            if self._deferred is None:
                self._hold.trigger()  # the longest wait counts from the first result held
            self._deferred = out  # a newer result replaces a held one
            return
        self._show(out)

    def _release_deferred(self) -> None:
        out, self._deferred = self._deferred, None
        if out is not None:  # (None after the widget closed: nothing of it is touched)
            self._hold.stop()
            self._show(out)

    def _hold_expired(self) -> None:
        # No release seen within HOLD_MS (a long stroke, or a drag napari ended without one): show it, and
        # stop holding until the next press, so a lost release cannot delay every later result.
        self._mouse_down = False
        self._release_deferred()

    def _drop_deferred(self) -> None:
        self._deferred = None

    def _show(self, out: tuple) -> None:
        meta, res = out
        image, session = meta["image"], meta["session"]
        if self.gone(image, "prediction"):
            return
        session.segmenter, session.segmenter_settings = res.segmenter, meta["settings"]
        self.trainings += bool(res.trained)
        self.updates += 1
        if res.trained:
            self._trained_on = meta["voxels"]
        layer = self._prediction(image)
        label = session.label
        layer.metadata["dinomed_label"] = label
        if meta["volume"]:
            keep_previous(self.viewer, image, "prediction")
            layer.data = res.labels.astype(layer.data.dtype, copy=False)
        else:
            put_slice(layer, res.labels, meta["axis"], meta["index"], self.viewer)
        if res.probabilities is not None:
            self._show_probability(image, res, meta, label)
        if meta["volume"]:
            nxt = None if res.propagation is None else res.propagation.suggest()
            self.show_suggestion(suggestion_text(res.propagation) or res.note,
                                 None if nxt is None else (image, res.propagation.axis, nxt))
        names = ", ".join(class_name(self.class_names, c) for c in res.classes)
        where = "volume" if meta["volume"] else f"slice {meta['index']}"
        self.say(f"{where} predicted ({names}); trained on {self._trained_on} scribbled voxels; "
                 f"features {label}")

    def _show_probability(self, image: Any, res: Any, meta: dict, label: str) -> None:
        shape = tuple(image.data.shape)
        layer = find_result(self.viewer, image, "probability")
        if meta["volume"] or layer is None or layer.data.shape != shape:
            data = res.probabilities if meta["volume"] else np.zeros(shape, np.float32)
            layer = result_layer(self.viewer, image, "probability", data, "image", label, colormap="magma",
                                 contrast_limits=(0.0, 1.0), opacity=0.6, blending="additive")
        if not meta["volume"]:
            put_slice(layer, res.probabilities, meta["axis"], meta["index"], self.viewer)
        layer.name = layer.name if layer.name.startswith("probability") else "probability"
        self.probability_layer = layer
        place_below(self.viewer, layer, self.prediction_layer)
