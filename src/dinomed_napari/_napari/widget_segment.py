"""Dock widget "Scribble segmenter": paint a few strokes per class, see the current slice segmented.

Each finished stroke (the labels layer's ``paint`` event, or a replaced ``data``) retrains a
:class:`~dinomed_napari.analysis.segment.ScribbleSegmenter` off the GUI thread (strokes made meanwhile
collapse into one retrain) and predicts the current slice. The policy (ready to train? absurd input?
train or only predict?) is :mod:`dinomed_napari.live`; this module wires it to napari. The scribble
layer is never written; the prediction goes to a "prediction" layer drawn *below* the scribbles, as
contours or a light fill in colours the scribbles do not use, the background class transparent.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
)

from dinomed_napari.live.jobs import (
    CANCEL_DELAY_MS,
    HOLD_MS,
    SLICE_DELAY_MS,
    STROKE_DELAY_MS,
    retrain_action,
)
from dinomed_napari.live.scribble_index import ScribbleIndex
from dinomed_napari.live.scribbles import (
    DEFAULT_CLASSES,
    check_scribbles,
    class_name,
    label_colours,
    parse_class_names,
    subsample,
)
from dinomed_napari.live.segment_job import SegmentRequest, run_segment_job, suggestion_text

from .layers import layer_array, layer_volume, to_source_grid
from .results import (
    find_result,
    keep_previous,
    label_colormap,
    place_below,
    put_slice,
    result_layer,
    show_index,
)
from .session import SESSIONS
from .widget_base import DinomedWidget, LayerChooser, LayerWatch, set_progress
from .workers import Debouncer, LatestJob, Relay

CLASSIFIERS = (("linear (fast)", "linear"), ("random forest", "rf"))
INTENSITY = (("DINOv3 only", None), ("+ intensity", "raw"), ("+ intensity filters", "filters"))
SHOW = (("contours", "contours"), ("light fill", "fill"))
#: Keyboard shortcuts (viewer-wide, bound by the dock): what they do is in the widget's tooltips.
SHORTCUTS = {"train": "Shift-T", "predict": "Shift-P", "toggle": "Shift-V", "next_class": "Shift-N"}


def _limited(func: Any, *args: Any) -> Any:
    """``func(*args)`` with BLAS / OpenMP pools leaving a core to the GUI thread (worker thread)."""
    from dinomed_napari.blas import limited
    from dinomed_napari.live.jobs import worker_threads

    with limited(worker_threads()):
        return func(*args)


def _drag_tracker(widget: SegmentWidget) -> Any:
    """A viewer drag callback running ``widget._track_mouse`` that does not keep the widget alive (the
    viewer outlives a closed dock)."""
    ref = weakref.ref(widget)

    def track(viewer: Any, event: Any) -> Any:
        w = ref()
        if w is not None:
            yield from w._track_mouse(viewer, event)

    return track


def _history(layer: Any) -> Any:
    """napari's undo history of a labels layer (None if this napari keeps it elsewhere)."""
    history = getattr(layer, "_undo_history", None)
    return history if hasattr(history, "__getitem__") and hasattr(history, "__len__") else None


class SegmentWidget(DinomedWidget):
    """Train on the scribble layer's labels (0 = unlabelled), predict the slice live or the volume."""

    title = "Segment"

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer)
        self.scribbles = LayerChooser(self.viewer, "labels", "scribbles",
                                      tooltip="labels layer you paint on (0 = unlabelled)")
        self.new_scribbles = PushButton(text="New scribble layer")
        self.classes = LineEdit(label="classes", value=", ".join(DEFAULT_CLASSES),
                                tooltip="names of labels 1, 2, ... ('background' is drawn transparent in "
                                        "the prediction)")
        self.paint_class = ComboBox(label="paint", choices=self._class_choices,
                                    tooltip=f"label the brush paints ({SHORTCUTS['next_class']}: next class)")
        self.classifier = ComboBox(label="classifier", choices=CLASSIFIERS, value="linear")
        self.intensity = ComboBox(label="fusion", choices=INTENSITY, value=None,
                                  tooltip="also use the image intensity at each voxel")
        self.triplanar = CheckBox(text="tri-planar (needs tri-planar features)", value=False)
        self.show_as = ComboBox(label="prediction", choices=SHOW, value="contours",
                                tooltip=f"how the prediction is drawn ({SHORTCUTS['toggle']}: show/hide)")
        self.probability = CheckBox(text="show probability layer", value=False)
        self.live = CheckBox(text="retrain after each stroke", value=True)
        self.train_button = PushButton(text="Train", tooltip=f"train and predict this slice "
                                       f"({SHORTCUTS['train']})")
        self.predict_button = PushButton(
            text="Predict volume", tooltip=f"every slice ({SHORTCUTS['predict']}); the previous volume "
                                           "result is kept as 'prediction (previous)'")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0, visible=False)
        self.question = Label(value="")
        self.question.native.setWordWrap(True)
        self.yes_button, self.no_button = PushButton(text="Train anyway"), PushButton(text="No")
        self.ask = Container(widgets=[self.question, Container(widgets=[self.yes_button, self.no_button],
                                                               layout="horizontal", labels=False)],
                             labels=False, visible=False)
        #: Where a suggestion such as "annotate slice N next" goes (:meth:`show_suggestion`).
        self.suggestion = Label(value="", visible=False)
        self.suggestion.native.setWordWrap(True)
        self.status_box.append(self.suggestion)
        #: Shows the suggested slice (:meth:`go_to_suggestion`); hidden while there is none.
        self.go_button = PushButton(text="Go to that slice", visible=False)
        self.status_box.append(self.go_button)
        self._suggested: tuple | None = None  # (image layer, axis, slice) of the last suggestion
        self.seg_file = FileEdit(label="segmenter file", mode="w", filter="*.npz")
        self.save_button, self.load_button = PushButton(text="Save segmenter"), PushButton(text="Load")
        self.export_file = FileEdit(label="export labels", mode="w", filter="*.nii.gz *.nrrd *.tif")
        self.export_button = PushButton(text="Export prediction")
        row = Container(widgets=[self.save_button, self.load_button], layout="horizontal", labels=False)
        buttons = Container(widgets=[self.train_button, self.predict_button, self.cancel_button],
                            layout="horizontal", labels=False)
        self.extend([self.scribbles, self.new_scribbles, self.classes, self.paint_class, self.classifier,
                     self.intensity, self.triplanar, self.show_as, self.probability, self.live, buttons,
                     self.progress, self.ask, self.status_box, self.seg_file, row,
                     self.export_file, self.export_button])
        self.new_scribbles.clicked.connect(self.add_scribble_layer)
        self.train_button.clicked.connect(self.retrain)
        self.predict_button.clicked.connect(self.predict_volume)
        self.cancel_button.clicked.connect(self.cancel)
        self.yes_button.clicked.connect(lambda: self._answer(True))
        self.no_button.clicked.connect(lambda: self._answer(False))
        self.save_button.clicked.connect(self.save)
        self.load_button.clicked.connect(self.load)
        self.export_button.clicked.connect(self.export)
        self.go_button.clicked.connect(self.go_to_suggestion)
        self.classes.changed.connect(self._classes_changed)
        self.paint_class.changed.connect(self._paint_class_changed)
        self.show_as.changed.connect(lambda *_: self._style_prediction())
        self._debounce = Debouncer(lambda: self.retrain(live=True), STROKE_DELAY_MS, self.native)
        # A live stroke's job ends within a fraction of a second: Cancel lights up only if it runs on
        # (each dock repaint composites the whole window, tens of ms under software OpenGL).
        self._cancel_later = Debouncer(self._offer_cancel, CANCEL_DELAY_MS, self.native)
        self._slice_debounce = Debouncer(self.predict_slice, SLICE_DELAY_MS, self.native)
        self._relay = Relay()
        self._relay.progress.connect(self._on_progress)
        self._job = LatestJob(self._returned, self._error, on_idle=self._idle)
        # While a mouse button is down (a stroke being painted) a live result waits for the release, at
        # most HOLD_MS: its redraw would come on top of napari's own redraws of the stroke.
        self._mouse_down, self._deferred = False, None
        self._hold = Debouncer(self._hold_expired, HOLD_MS, self.native)
        drags, track = self.viewer.mouse_drag_callbacks, _drag_tracker(self)
        drags.append(track)
        self.jobs.append(self._job)
        self._last_scribbles = None
        self._confirmed: set = set()  # scribble layers the user said "train anyway" for
        self._trained_on = 0
        self.trainings = self.updates = 0  # finished retrains / predictions shown
        self.prediction_layer = self.probability_layer = None
        self.scribbles._refresh()
        #: The scribbled voxels, updated from each stroke's voxels (no scan of the layer per stroke).
        self.index, self._index_layer = ScribbleIndex(), None
        # "paint" ends a stroke (its voxels go to the index); "data" replaces the data (rescan);
        # "set_data" (every redraw, e.g. a slice change) matters only after undo/redo, which move the
        # layer's history (the index then rescans).
        self._watches = [LayerWatch(self.scribbles, ("paint",), self._painted),
                         LayerWatch(self.scribbles, ("data",), self._replaced),
                         LayerWatch(self.scribbles, ("set_data",), self._redrawn)]
        self.listen(self.viewer.dims.events.current_step, self._slice_changed)
        self.scribbles.changed.connect(self._scribbles_chosen)
        for func in (*(w.close for w in self._watches), self.scribbles.close_connections,
                     self._debounce.stop, self._slice_debounce.stop, self._cancel_later.stop,
                     self._hold.stop, self._drop_deferred, lambda: drags.remove(track)):
            self.on_close(func)

    # -- classes -------------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return parse_class_names(self.classes.value)

    def _class_choices(self, _widget: Any = None) -> list[tuple[str, int]]:
        names = parse_class_names(self.classes.value) if hasattr(self, "classes") else DEFAULT_CLASSES
        return [(class_name(names, v), v) for v in range(1, len(names) + 1)]

    def _classes_changed(self, *_: Any) -> None:
        self.paint_class.reset_choices()
        layer = self.scribbles.value
        if layer is not None:
            layer.colormap = label_colormap(label_colours(self.class_names, prediction=False))
        self._style_prediction()

    def _paint_class_changed(self, *_: Any) -> None:
        layer = self.scribbles.value
        if layer is not None and self.paint_class.value is not None:
            layer.selected_label = int(self.paint_class.value)

    def next_class(self) -> None:
        """Paint the next class (wraps around)."""
        n = len(self.class_names)
        current = int(self.paint_class.value or 1)
        self.paint_class.value = current % n + 1

    def show_suggestion(self, text: str, where: tuple | None = None) -> None:
        """Show a suggestion (e.g. "annotate slice 12 next") under the status; empty text hides it.
        ``where`` = (image layer, axis, slice) also offers a button that shows that slice."""
        self.suggestion.value = text
        self.suggestion.visible = bool(text)
        # A weak reference: a suggestion must not keep a removed image alive.
        self._suggested = None if where is None else (weakref.ref(where[0]), *where[1:])
        self.go_button.text = f"Go to slice {where[2]}" if where else "Go to that slice"
        self.go_button.visible = where is not None

    def go_to_suggestion(self) -> None:
        """Show the suggested slice in the viewer (the image may have been removed since)."""
        if self._suggested is None:
            return
        ref, axis, index = self._suggested
        image = ref()
        if image is None or image not in self.viewer.layers:
            self.show_suggestion("")
            return
        show_index(self.viewer, image, axis, index)

    # -- layers --------------------------------------------------------------------------------
    def add_scribble_layer(self) -> Any:
        """An empty labels layer on the image grid, in paint mode with label 1 selected."""
        image = self.image_layer_or_notify("scribbles")
        if image is None:
            return None
        from .layers import aligned_kwargs

        layer = self.viewer.add_labels(np.zeros(image.data.shape, np.uint8),
                                       **aligned_kwargs(image, "scribbles"))
        layer.colormap = label_colormap(label_colours(self.class_names, prediction=False))
        layer.mode, layer.selected_label, layer.brush_size, layer.opacity = "paint", 1, 5, 1.0
        self.scribbles.value = layer
        self.paint_class.value = 1
        # The (empty) prediction layer now: adding a layer builds its controls and shaders (a few hundred
        # ms on the GUI thread), which would otherwise stall the first stroke's prediction.
        self._prediction(image)
        self.say(f"paint some {class_name(self.class_names, 1)}, then some {class_name(self.class_names, 2)}")
        return layer

    def _scribbles_chosen(self, *_: Any) -> None:
        self.ask.visible = False
        self._last_scribbles = None
        if self.live.value and self.scribbles.value is not None:
            self._debounce.trigger()

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

    def _stroke(self, *_: Any) -> None:
        if self.live.value:
            self._debounce.trigger()

    def _painted(self, event: Any) -> None:
        layer = self.scribbles.value
        if layer is self._index_layer and layer is not None:
            self.index.painted(getattr(event, "value", None) or (), _history(layer))
        self._stroke()

    def _redrawn(self, *_: Any) -> None:
        layer = self.scribbles.value
        history = _history(layer)
        if history is None:  # no history to tell undo/redo from a redraw: rescan
            self.index.invalidate()
        elif layer is self._index_layer and not self.index.moved(history):
            return  # a plain redraw (slice change: the slice debouncer predicts)
        self._stroke()

    def _replaced(self, *_: Any) -> None:
        self.index.invalidate()
        self._stroke()

    def scribble_points(self, layer: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(points (N, 3), values (N,))`` of ``layer``'s scribbled voxels, from the stroke index (a
        full scan only for a new layer, replaced data, undo/redo)."""
        if layer is not self._index_layer:
            self.index, self._index_layer = ScribbleIndex(), layer
        return self.index.sync(np.asarray(layer.data), _history(layer))

    def _slice_changed(self, *_: Any) -> None:
        if self.live.value:
            self._slice_debounce.trigger()

    # -- training / prediction -----------------------------------------------------------------
    def _base_request(self, index: int | None, triplanar: bool | None = None) -> tuple:
        """(image layer, session, SegmentRequest without scribbles), read on the GUI thread (raises on
        bad input)."""
        image = self.image_layer()
        session = SESSIONS.get(image)
        fv = session.primary
        tri = self.triplanar.value if triplanar is None else triplanar
        if tri and not session.triplanar:
            raise ValueError("tri-planar segmentation needs tri-planar features: choose 'tri-planar' in "
                             "the DINOv3 features widget and compute again")
        settings = (self.classifier.value, self.intensity.value, tri)
        req = SegmentRequest(features=session.features if tri else fv, axis=session.axis,
                             index=self.current_index(image, session.axis) if index is None else index,
                             settings=settings,
                             image=layer_array(image) if self.intensity.value else None,
                             segmenter=session.segmenter, segmenter_settings=session.segmenter_settings)
        return image, session, req

    def predict_slice(self) -> None:
        """A trained segmenter predicts the newly shown slice (no retrain, no notification if untrained)."""
        try:
            image, session, req = self._base_request(None)
            if session.segmenter is None:
                return
            req.settings = session.segmenter_settings
        except Exception:  # nothing usable to predict on: the next stroke reports why
            return
        self._submit(image, session, req, volume=False)

    def retrain(self, volume: bool = False, live: bool = False) -> None:
        """Train on the current scribbles and predict the current slice (or the volume).

        ``live`` (after a stroke) reads the scribbles from the stroke index; otherwise (Train, Predict
        volume) the layer is rescanned, so edits made without napari's history are seen too.
        """
        if not live:
            self.index.invalidate()
        try:
            image, session, req = self._base_request(None)
            layer = self.scribbles.value
            if layer is None:
                self.say("no scribble layer: click 'New scribble layer' and paint")
                return
            data = np.asarray(layer.data)
            if data.shape != image.data.shape:
                raise ValueError(f"scribble layer {layer.name!r} has shape {data.shape}; expected the "
                                 f"image's {tuple(image.data.shape)}")
        except Exception as exc:  # no image / features: tell the user
            self.fail(exc, "scribble segmenter")
            return
        points, values = self.scribble_points(layer)
        check = check_scribbles(values, data.size, self.class_names, layer_name=layer.name,
                                confirmed=layer.unique_id in self._confirmed)
        if check.question:
            self.question.value = check.question
            self.ask.visible = True
            self.say(check.hint)
            return
        self.ask.visible = False
        if not check.ready:  # nothing or one class painted: a hint, not an error
            self._last_scribbles = None
            self.say(check.hint)
            self._clear_prediction_slice(image, req)
            return
        if volume:  # the 3D step follows the painted structures from the whole scribble volume
            req.extra.update(scribble_volume=data.copy(), spacing=tuple(float(v) for v in image.scale[-3:]))
            req.image = layer_array(image)
        points, values = subsample(points, values)
        action = retrain_action(self._last_scribbles, (points, values),
                                session.segmenter_settings == req.settings, session.segmenter is not None)
        if action == "skip" and not volume:
            return
        self._last_scribbles = (points, values)
        req.scribbles = (points, values) if action == "train" or session.segmenter is None else None
        if volume or not self.live.value:  # live strokes: the result's line follows within ~0.3 s, and
            self.say(check.hint if req.scribbles is not None else "predicting ...")  # each repaint costs
        self._submit(image, session, req, volume=volume, voxels=len(values))

    def _answer(self, yes: bool) -> None:
        self.ask.visible = False
        layer = self.scribbles.value
        if yes and layer is not None:
            self._confirmed.add(layer.unique_id)
            self.retrain()
        else:
            self.say("not trained: choose or create a scribble layer ('New scribble layer')")

    def _submit(self, image: Any, session: Any, req: SegmentRequest, volume: bool, voxels: int = -1) -> None:
        if volume:
            req.index = None
        want_prob = bool(self.probability.value)
        progress = self._relay.progress.emit if volume else None
        meta = dict(image=image, session=session, volume=volume, axis=req.axis, index=req.index,
                    settings=req.settings, voxels=voxels)
        if volume:
            self.cancel_button.enabled = True
        else:
            self._cancel_later.trigger()
        self.progress.visible = volume
        self._job.submit(lambda cancel: (meta, _limited(run_segment_job, req, cancel, progress,
                                                        want_prob)))

    def predict_volume(self) -> None:
        """Predict every slice (progress, Cancel), after retraining on any stroke not trained on yet."""
        self._debounce.stop()
        if self.scribbles.value is None and self._has_segmenter():
            try:
                image, session, req = self._base_request(None)
            except Exception as exc:
                self.fail(exc, "scribble segmenter")
                return
            req.settings = session.segmenter_settings
            self._submit(image, session, req, volume=True)
            return
        self.retrain(volume=True)

    def _has_segmenter(self) -> bool:
        try:
            return SESSIONS.get(self.image_layer()).segmenter is not None
        except Exception:
            return False

    def cancel(self) -> None:
        """Stop the running job (a volume prediction stops between slices; its result is dropped)."""
        if self._job.cancel():
            self.say("cancelled")
        self.progress.visible = False

    def _on_progress(self, done: int, total: int) -> None:
        set_progress(self.progress, done, total)

    def _offer_cancel(self) -> None:
        if self._job.busy:
            self.cancel_button.enabled = True

    def _idle(self) -> None:
        self._cancel_later.stop()
        self.cancel_button.enabled = False
        self.progress.visible = False

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
        if image not in self.viewer.layers:
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

    def _error(self, exc: BaseException) -> None:
        self.fail(exc, "scribble segmenter")

    # -- files ---------------------------------------------------------------------------------
    def save(self) -> None:
        """Write the trained segmenter (npz + JSON, no pickle) to the chosen file."""
        from dinomed_napari.analysis.persist import save_segmenter

        try:
            session = self.session()
            if session.segmenter is None:
                raise ValueError("nothing to save: paint scribbles of two classes first")
            path = save_segmenter(session.segmenter, self.seg_file.value)
        except Exception as exc:  # unwritable path, untrained segmenter
            self.fail(exc, "save segmenter")
            return
        self.say(f"segmenter saved to {path}")

    def load(self) -> None:
        """Load a segmenter file and predict the current slice with this image's features."""
        from dinomed_napari.analysis.persist import load_segmenter

        try:
            seg = load_segmenter(self.seg_file.value)
            tri = len(seg.models) > 1
            image, session, req = self._base_request(None, triplanar=tri)
            seg.check_features(req.features)
            req.settings = (seg.kind, seg.intensity, tri)
            session.segmenter, session.segmenter_settings = seg, req.settings
            req.segmenter, req.segmenter_settings = seg, req.settings
            req.image, req.new_image = layer_array(image), True
        except Exception as exc:  # missing file, other model/weights (FeatureMismatchError)
            self.fail(exc, "load segmenter")
            return
        self.say(f"segmenter loaded from {self.seg_file.value}")
        self._submit(image, session, req, volume=False)

    def export(self) -> None:
        """Save the prediction layer on the image's grid (NIfTI / NRRD / TIFF by suffix)."""
        from dinomed_napari.io import save_labels

        try:
            image = self.image_layer()
            layer = find_result(self.viewer, image, "prediction")
            if layer is None:
                raise ValueError("no prediction to export: paint scribbles, then 'Predict volume'")
            labels = to_source_grid(np.asarray(layer.data), image.metadata)
            path = save_labels(self.export_file.value, labels, layer_volume(image))
        except Exception as exc:  # bad path / suffix / shape
            self.fail(exc, "export labels")
            return
        self.say(f"labels written to {path}")
