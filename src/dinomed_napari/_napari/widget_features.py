"""Dock widget "DINOv3 features": extract features of an image layer, show PCA RGB and affinity maps.

Extraction runs in a thread worker (progress bar, Cancel); the viewer's current slice is computed first.
The features go into the image's session, where the other widgets find them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, ProgressBar, PushButton, SpinBox

from dinomed_napari.errors import ExtractionCancelled, WeightsError

from .layers import aligned_kwargs, layer_volume, upsert_layer
from .notify import info, warn
from .session import SESSIONS
from .widget_base import DinomedWidget
from .workers import CancelFlag, Relay, start_worker

MODELS = ("S", "S+", "B", "L", "H+")
PLANES = (("axial (Z)", 0), ("coronal (Y)", 1), ("sagittal (X)", 2), ("tri-planar", "tri"))
PREVIEW_NAME = "PCA preview (current slice, computing ...)"
WINDOW_CHOICES = (
    ("auto (by modality)", "auto"), ("CT soft tissue", "soft_tissue"), ("CT lung", "lung"),
    ("CT bone", "bone"), ("CT brain", "brain"), ("CT 3 windows as RGB", "ct3"), ("PET SUV 0-10", "pet_suv"),
    ("percentile (MRI, EM)", "percentile"),
)


def to_rgb8(rgb: np.ndarray) -> np.ndarray:
    """[0, 1] float RGB -> uint8 (a quarter of the memory, displayed the same)."""
    return np.clip(np.asarray(rgb) * 255.0 + 0.5, 0, 255).astype(np.uint8)


class FeaturesWidget(DinomedWidget):
    """Compute DINOv3 features of the chosen image and add "PCA" and "affinity" layers on its grid."""

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer)
        self.model = ComboBox(label="model", choices=MODELS, value="S")
        self.weights = ComboBox(label="weights", choices=["hub", "local file", "random"], value="hub")
        self.hub_tag = ComboBox(label="hub tag", choices=self._tags)
        self.weights_file = FileEdit(label="weights file", mode="r", filter="*.pth *.pt *.safetensors")
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.resolution = SpinBox(label="resolution", min=16, max=4096, step=16, value=512)
        self.planes = ComboBox(label="slicing", choices=PLANES, value=0)
        self.window = ComboBox(label="window", choices=WINDOW_CHOICES, value="auto")
        self.run_button = PushButton(text="Compute features")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.extend([self.model, self.weights, self.hub_tag, self.weights_file, self.device,
                     self.resolution, self.planes, self.window,
                     Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                               labels=False),
                     self.progress, self.status])
        self.model.changed.connect(lambda *_: self.hub_tag.reset_choices())
        self.weights.changed.connect(self._weights_changed)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self._weights_changed()
        self._cancel = CancelFlag()
        self._relay = Relay()
        self._relay.progress.connect(self._on_progress)
        self._relay.partial.connect(self._on_partial)
        self.worker = None
        self._target = None

    def _tags(self, _widget: Any = None) -> list[str]:
        from dinomed_napari.models import REGISTRY

        return list(REGISTRY[self.model.value].hub_tags)

    def _weights_changed(self, *_: Any) -> None:
        self.hub_tag.visible = self.weights.value == "hub"
        self.weights_file.visible = self.weights.value == "local file"

    def weights_spec(self) -> str:
        """The ``weights`` argument for the core: "hub:<tag>", a file path or "random"."""
        choice = self.weights.value
        if choice == "random":
            return "random"
        if choice == "hub":
            return f"hub:{self.hub_tag.value}"
        path = self.weights_file.value
        if not str(path) or str(path) == "." or not path.is_file():
            raise WeightsError(f"weights file {str(path)!r} not found: choose a DINOv3 .pth or .safetensors "
                               "file, or pick 'hub' or 'random'")
        return str(path)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def run(self) -> None:
        """Start the extraction for the chosen image (no-op while one is running)."""
        if self.running:
            return
        try:
            layer = self.image_layer()
            volume = layer_volume(layer)
            weights = self.weights_spec()
            from dinomed_napari.preprocess import Preprocess

            prep = Preprocess(window=self.window.value, resolution=int(self.resolution.value))
        except Exception as exc:  # every problem goes to a notification; the widget stays usable
            self.fail(exc, "DINOv3 features")
            return
        planes = self.planes.value
        axis = 0 if planes == "tri" else int(planes)
        point = [self.current_index(layer, a) for a in range(3)]
        first = point if planes == "tri" else point[axis]
        job = dict(volume=volume, model=self.model.value, weights=weights, prep=prep,
                   device=None if self.device.value == "auto" else self.device.value)
        self._target = (layer, axis)
        self._cancel.clear()
        self.progress.value = 0
        self.status.value = f"computing {self.model.value} [{weights}] ..."
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.worker = start_worker(self._compute, job, planes, axis, first, on_returned=self._done,
                                   on_error=self._error, on_finished=self._finished)

    def _compute(self, job: dict, planes: Any, axis: int, first: Any) -> dict:
        """Worker thread: features (+ PCA and affinity maps). Only core calls here."""
        from dinomed_napari.analysis.affinity import affinity_maps
        from dinomed_napari.analysis.pca import pca_maps

        index = first[axis] if planes == "tri" else first
        preview = self._previewer(job["volume"].shape, axis, index, job["prep"].resolution)
        common = dict(cancel=self._cancel, progress=self._relay.progress.emit, on_batch=preview, **job)
        if planes == "tri":
            from dinomed_napari.features.triplanar import extract_triplanar

            fvs = extract_triplanar(**common, first=first)
        else:
            from dinomed_napari.features.extract import extract_features

            fvs = {axis: extract_features(**common, axis=axis, first=first)}
        fv = fvs[axis]
        pca = pca_maps(fv)
        return {"features": fvs, "pca": pca, "affinity": affinity_maps(fv)}

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.max = max(1, total)
        self.progress.value = min(total, done)

    def _previewer(self, shape: tuple, axis: int, index: int, resolution: int):
        """An ``on_batch`` callback that, once, turns the current slice's features into PCA colours."""
        from dinomed_napari.analysis.pca import fit_pca, project_slice
        from dinomed_napari.features.volume import FeatureVolume

        done = []

        def on_batch(indices: np.ndarray, feats: np.ndarray) -> None:
            hit = np.flatnonzero(np.asarray(indices) == index)
            if done or not len(hit):
                return
            done.append(index)
            one = list(shape)
            one[axis] = 1  # a one-slice feature volume: the core's PCA works on it unchanged
            fv = FeatureVolume(feats[hit[0]: hit[0] + 1], axis, tuple(one), "preview", "preview", resolution)
            basis = fit_pca(fv)
            rgb = basis.to_rgb(project_slice(fv, basis, 0))
            self._relay.partial.emit((axis, index, to_rgb8(rgb)))

        return on_batch

    def _on_partial(self, payload: Any) -> None:
        """First slice ready: show its PCA colours before the rest of the volume is done."""
        layer, _ = self._target
        axis, index, rgb = payload
        full = np.zeros(tuple(layer.data.shape) + (3,), np.uint8)
        sl = [slice(None)] * 3
        sl[axis] = index
        full[tuple(sl)] = rgb
        self.preview_layer = upsert_layer(self.viewer, full, "image",
                                          aligned_kwargs(layer, PREVIEW_NAME, rgb=True, opacity=0.8))
        self.status.value = f"slice {index} ready; computing the rest ..."

    def _drop_preview(self) -> None:
        if PREVIEW_NAME in self.viewer.layers:
            self.viewer.layers.remove(PREVIEW_NAME)

    def _done(self, result: dict) -> None:
        layer, axis = self._target
        self._drop_preview()
        session = SESSIONS.get(layer)
        session.set_features(result["features"], axis, result["pca"])
        label = session.label
        pca_layer = upsert_layer(self.viewer, to_rgb8(result["pca"].rgb), "image",
                                 aligned_kwargs(layer, f"PCA {label}", rgb=True, opacity=0.8))
        aff = to_rgb8(np.clip(result["affinity"], 0.0, 1.0))  # cosines; negatives (rare) shown as 0
        upsert_layer(self.viewer, aff, "image",
                     aligned_kwargs(layer, f"affinity {label}", rgb=True, visible=False))
        self.progress.value = self.progress.max
        self.status.value = f"features ready: {label}"
        info(f"DINOv3 features of {layer.name}: {label}")
        self.pca_layer = pca_layer

    def _error(self, exc: BaseException) -> None:
        self._drop_preview()
        if isinstance(exc, ExtractionCancelled):
            warn(str(exc))
            self.status.value = "cancelled"
        else:
            self.fail(exc, "DINOv3 features")

    def _finished(self) -> None:
        self.worker = None
        self.run_button.enabled, self.cancel_button.enabled = True, False

    def cancel(self) -> None:
        """Ask the running extraction to stop after its current batch (finished slices stay cached)."""
        if self.running:
            self._cancel.set()
            self.status.value = "cancelling after the current batch ..."
