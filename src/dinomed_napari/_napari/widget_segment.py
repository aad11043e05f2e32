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
from dinomed_napari.live.segment_job import SegmentRequest, run_segment_job

from .layers import layer_array
from .results import label_colormap, show_index
from .session import SESSIONS
from .widget_base import DinomedWidget, LayerChooser, LayerWatch, set_progress
from .widget_segment_files import SegmenterFiles
from .widget_segment_results import ResultDisplay, drag_tracker
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


def _history(layer: Any) -> Any:
    """napari's undo history of a labels layer (None if this napari keeps it elsewhere)."""
    history = getattr(layer, "_undo_history", None)
    return history if hasattr(history, "__getitem__") and hasattr(history, "__len__") else None


class SegmentWidget(SegmenterFiles, ResultDisplay, DinomedWidget):
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
        drags, track = self.viewer.mouse_drag_callbacks, drag_tracker(self)
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
                                confirmed=layer.unique_id in self._confirmed, points=points,
                                shape=data.shape)
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

    def _error(self, exc: BaseException) -> None:
        self.fail(exc, "scribble segmenter")
