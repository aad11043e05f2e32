"""Dock widget "Scribble segmenter": paint a few strokes per class, see the current slice segmented.

Each finished stroke (the labels layer's ``paint`` event, or a replaced ``data``) retrains a
:class:`~dinomed_napari.analysis.segment.ScribbleSegmenter` off the GUI thread (debounced; strokes made
meanwhile collapse into one retrain) and predicts the current slice. The scribble layer is never
written; predictions go to a dedicated "prediction" layer (and an optional probability layer).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, PushButton

from .layers import aligned_kwargs, layer_volume, upsert_layer
from .notify import info
from .session import SESSIONS
from .widget_base import DinomedWidget, LayerChooser, LayerWatch
from .workers import Debouncer, LatestJob

CLASSIFIERS = (("linear (fast)", "linear"), ("random forest", "rf"))
INTENSITY = (("DINOv3 only", None), ("+ intensity", "raw"), ("+ intensity filters", "filters"))


class SegmentWidget(DinomedWidget):
    """Train on the scribble layer's labels (0 = unlabelled), predict the slice live or the volume."""

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer)
        self.scribbles = LayerChooser(self.viewer, "labels", "scribbles")
        self.new_scribbles = PushButton(text="New scribble layer")
        self.classifier = ComboBox(label="classifier", choices=CLASSIFIERS, value="linear")
        self.intensity = ComboBox(label="fusion", choices=INTENSITY, value=None)
        self.triplanar = CheckBox(text="tri-planar (needs tri-planar features)", value=False)
        self.probability = CheckBox(text="show probability layer", value=False)
        self.live = CheckBox(text="retrain after each stroke", value=True)
        self.predict_button = PushButton(text="Predict volume")
        self.seg_file = FileEdit(label="segmenter file", mode="w", filter="*.npz")
        self.save_button, self.load_button = PushButton(text="Save segmenter"), PushButton(text="Load")
        self.export_file = FileEdit(label="export labels", mode="w", filter="*.nii.gz *.nrrd *.tif")
        self.export_button = PushButton(text="Export prediction")
        row = Container(widgets=[self.save_button, self.load_button], layout="horizontal", labels=False)
        self.extend([self.scribbles, self.new_scribbles, self.classifier, self.intensity, self.triplanar,
                     self.probability, self.live, self.predict_button, self.seg_file, row,
                     self.export_file, self.export_button, self.status])
        self.new_scribbles.clicked.connect(self.add_scribble_layer)
        self.predict_button.clicked.connect(self.predict_volume)
        self.save_button.clicked.connect(self.save)
        self.load_button.clicked.connect(self.load)
        self.export_button.clicked.connect(self.export)
        self._debounce = Debouncer(self.retrain, 300)
        self._slice_debounce = Debouncer(self.predict_slice, 100)
        self._job = LatestJob(self._show, self._error)
        self._volume_wanted = False
        self._last_scribbles = None
        self.trainings = self.updates = 0  # finished retrains / predictions shown
        self.prediction_layer = self.probability_layer = None
        self.scribbles._refresh()
        # "paint" ends a stroke; "set_data" also covers undo/redo and replaced data (and plain redraws,
        # which retrain() recognises as unchanged scribbles).
        self._watch = LayerWatch(self.scribbles, ("paint", "set_data"), self._stroke)
        self.listen(self.viewer.dims.events.current_step, self._slice_changed)
        for func in (self._watch.close, self.scribbles.close_connections, self._debounce.stop,
                     self._slice_debounce.stop):
            self.on_close(func)

    # -- layers --------------------------------------------------------------------------------
    def add_scribble_layer(self) -> Any:
        """An empty labels layer on the image grid, in paint mode with label 1 selected."""
        image = self.image_layer_or_notify("scribbles")
        if image is None:
            return None
        layer = self.viewer.add_labels(np.zeros(image.data.shape, np.uint8),
                                       **aligned_kwargs(image, f"scribbles [{image.name}]"))
        layer.mode, layer.selected_label, layer.brush_size = "paint", 1, 5
        self.scribbles.value = layer
        return layer

    def _stroke(self, *_: Any) -> None:
        if self.live.value:
            self._debounce.trigger()

    def _slice_changed(self, *_: Any) -> None:
        if self.live.value:
            self._slice_debounce.trigger()

    def predict_slice(self) -> None:
        """A trained segmenter predicts the newly shown slice (no retrain, no notification if untrained)."""
        try:
            session = SESSIONS.get(self.image_layer())
            if session.segmenter is None:
                return
            req = self._request(scribbles=False, triplanar=session.segmenter_settings[2])
        except Exception:  # nothing usable to predict on: the next stroke reports why
            return
        self._job.submit(lambda: self._train_predict(req))

    # -- training / prediction -----------------------------------------------------------------
    def _request(self, scribbles: bool = True, triplanar: bool | None = None) -> dict:
        """Read everything a train/predict job needs on the GUI thread (raises on bad input)."""
        image = self.image_layer()
        session = SESSIONS.get(image)
        fv = session.primary
        tri = self.triplanar.value if triplanar is None else triplanar
        if tri and not session.triplanar:
            raise ValueError("tri-planar segmentation needs tri-planar features: choose 'tri-planar' in "
                             "the DINOv3 features widget and compute again")
        points, values = np.empty((0, 3), int), np.empty(0, int)
        if scribbles:
            layer = self.scribbles.value
            if layer is None:
                raise ValueError("no scribble layer: click 'New scribble layer' and paint two classes")
            data = np.asarray(layer.data)
            if data.shape != image.data.shape:
                raise ValueError(f"scribble layer {layer.name!r} has shape {data.shape}; expected the "
                                 f"image's {tuple(image.data.shape)}")
            # Sparse copy: painting may continue while the worker trains.
            points = np.argwhere(data > 0)
            values = data[tuple(points.T)]
        return dict(image=image, session=session, label=session.label, axis=session.axis,
                    features=session.features if tri else fv, scribbles=(points, values),
                    index=self.current_index(image, session.axis),
                    settings=(self.classifier.value, self.intensity.value, tri),
                    raw=np.asarray(image.data) if self.intensity.value else None,
                    volume=self._volume_wanted, train=scribbles)

    def retrain(self) -> None:
        """Retrain on the current scribbles and predict the current slice (or the volume if asked)."""
        try:
            req = self._request()
        except Exception as exc:  # no image / features / scribbles: tell the user
            self._volume_wanted = False
            self.fail(exc, "scribble segmenter")
            return
        last, session = self._last_scribbles, req["session"]
        same = last is not None and all(np.array_equal(a, b) for a, b in zip(last, req["scribbles"],
                                                                              strict=True))
        if same and session.segmenter_settings == req["settings"]:
            req["train"] = False  # nothing new painted, same settings: predict only
        elif same and session.segmenter is None and not req["volume"]:
            return  # the same scribbles already failed to train and the error was shown
        self._last_scribbles = req["scribbles"]
        self.status.value = f"training on {len(req['scribbles'][1])} scribbled voxels ..."
        self._job.submit(lambda: self._train_predict(req))

    @staticmethod
    def _train_predict(req: dict) -> dict:
        """Worker thread: fit (reusing the session's segmenter when the settings match) and predict."""
        from dinomed_napari.analysis.segment import ScribbleSegmenter

        session, (kind, intensity, _tri) = req["session"], req["settings"]
        seg = session.segmenter
        if req["train"] and (seg is None or session.segmenter_settings != req["settings"]):
            seg = ScribbleSegmenter(classifier=kind, intensity=intensity)  # settings changed: new one
        if req["train"]:
            seg.fit(req["features"], req["scribbles"], image=req["raw"])
        index = None if req["volume"] else req["index"]
        image = req["raw"] if req.get("new_image") else None  # a loaded segmenter needs the image once
        pred = seg.predict(index=index, axis=req["axis"], features=req["features"], image=image)
        return {**req, "segmenter": seg, "prediction": pred}

    def predict_volume(self) -> None:
        """Predict every voxel, after retraining on any stroke not trained on yet.

        If a job is running, this one waits behind it (and replaces any waiting live update).
        """
        self._volume_wanted = True
        self._debounce.stop()
        self.retrain()

    def _show(self, out: dict) -> None:
        image, pred, session = out["image"], out["prediction"], out["session"]
        session.segmenter, session.segmenter_settings = out["segmenter"], out["settings"]
        self.trainings += bool(out["train"])
        self.updates += 1
        name = f"prediction {out['label']}"
        layer = self.prediction_layer
        if layer is None or layer not in self.viewer.layers or layer.data.shape != image.data.shape:
            layer = upsert_layer(self.viewer, np.zeros(image.data.shape, np.uint8), "labels",
                                 aligned_kwargs(image, name, opacity=0.45))
            self.prediction_layer = layer
        self._write(layer, pred.labels, out)
        if self.probability.value:
            self._show_probability(image, pred, out)
        where = "volume" if out["volume"] else f"slice {out['index']}"
        self.status.value = (f"{where} predicted from {len(out['scribbles'][1])} scribbled voxels, "
                             f"classes {[int(c) for c in pred.classes]}: {out['label']}")
        if out["volume"]:
            self._volume_wanted = False
            info(f"{name}: whole volume predicted")

    def _write(self, layer: Any, values: np.ndarray, out: dict) -> None:
        """Put a slice (or the volume) into a dedicated result layer and redraw it."""
        if out["volume"]:
            layer.data = values.astype(layer.data.dtype, copy=False)
            return
        sl = [slice(None)] * 3
        sl[out["axis"]] = out["index"]
        layer.data[tuple(sl)] = values
        layer.refresh()

    def _show_probability(self, image: Any, pred: Any, out: dict) -> None:
        cls = int(pred.classes[0])
        layer = self.probability_layer
        if layer is None or layer not in self.viewer.layers or layer.data.shape != image.data.shape:
            kwargs = aligned_kwargs(image, f"probability of class {cls} {out['label']}", colormap="magma",
                                    contrast_limits=(0.0, 1.0), opacity=0.6, blending="additive")
            layer = upsert_layer(self.viewer, np.zeros(image.data.shape, np.float32), "image", kwargs)
            self.probability_layer = layer
        self._write(layer, pred.probabilities[..., 0].astype(np.float32), out)

    def _error(self, exc: BaseException) -> None:
        self._volume_wanted = False
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
        self.status.value = f"segmenter saved to {path}"

    def load(self) -> None:
        """Load a segmenter file and predict the current slice with this image's features."""
        from dinomed_napari.analysis.persist import load_segmenter

        try:
            seg = load_segmenter(self.seg_file.value)
            req = self._request(scribbles=False, triplanar=len(seg.models) > 1)
            seg.check_features(req["features"])
            req["session"].segmenter = seg
            req.update(raw=np.asarray(req["image"].data), new_image=True,
                       settings=(seg.kind, seg.intensity, len(seg.models) > 1))
            req["session"].segmenter_settings = req["settings"]
        except Exception as exc:  # missing file, other model/weights (FeatureMismatchError)
            self.fail(exc, "load segmenter")
            return
        self.status.value = f"segmenter loaded from {self.seg_file.value}"
        self._job.submit(lambda: self._train_predict(req))

    def export(self) -> None:
        """Save the prediction layer on the image's grid (NIfTI / NRRD / TIFF by suffix)."""
        from dinomed_napari.io import save_labels

        try:
            image = self.image_layer()
            layer = self.prediction_layer
            if layer is None or layer not in self.viewer.layers:
                raise ValueError("no prediction to export: paint scribbles, then 'Predict volume'")
            path = save_labels(self.export_file.value, np.asarray(layer.data), layer_volume(image))
        except Exception as exc:  # bad path / suffix / shape
            self.fail(exc, "export labels")
            return
        self.status.value = f"labels written to {path}"
