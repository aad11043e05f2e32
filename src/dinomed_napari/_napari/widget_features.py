"""Dock widget "DINOv3 features": extract features of an image layer, show PCA RGB and affinity maps.

Extraction runs in a thread worker, one slice per forward pass on CPU, the viewer's current slice
first: its PCA colours show after about one forward pass, later slices fill in as they are computed
(only those slices are written on the GUI thread), and Cancel acts after the running slice. The
features go into the image's session, where the other widgets find them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, SpinBox

from dinomed_napari.errors import WeightsError
from dinomed_napari.features.grid import PLANE_AXES
from dinomed_napari.live.display import MODALITIES, choose_window, display_range, display_sample

from .layers import layer_array, layer_volume, patch_grid_kwargs
from .results import find_result, put_slice, result_layer
from .session import SESSIONS
from .widget_base import DinomedWidget, set_progress
from .workers import Debouncer, LatestJob, Relay

#: After the first preview slice is shown, the hidden affinity layer is made (off the first slice's path).
AFFINITY_DELAY_MS = 150
MODELS = ("S", "S+", "B", "L", "H+")
PLANES = (("axial (Z)", 0), ("coronal (Y)", 1), ("sagittal (X)", 2), ("tri-planar", "tri"))
WEIGHTS = ("local file", "hub", "random", "choose")
WINDOW_CHOICES = (
    ("auto (by modality)", "auto"), ("CT soft tissue", "soft_tissue"), ("CT lung", "lung"),
    ("CT bone", "bone"), ("CT brain", "brain"), ("CT 3 windows as RGB", "ct3"), ("PET SUV 0-10", "pet_suv"),
    ("percentile (MRI, EM)", "percentile"),
)
MODALITY_CHOICES = (("auto (file, else detect CT)", "auto"), *((m, m) for m in MODALITIES))


class FeaturesWidget(DinomedWidget):
    """Compute DINOv3 features of the chosen image and show "PCA" and "affinity" layers on its grid."""

    title = "Features"

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer)
        from dinomed_napari.live.weights import default_weights

        self.model = ComboBox(label="model", choices=MODELS, value="S",
                              tooltip="DINOv3 ViT size: S is fastest; bigger is not always better")
        offer = default_weights("S")
        self.weights = ComboBox(label="weights", choices=WEIGHTS, value=offer.kind,
                                tooltip="local file: a DINOv3 .pth/.safetensors on this machine; hub: "
                                        "download (needs network); random: tests the pipeline only")
        self.hub_tag = ComboBox(label="hub tag", choices=self._tags)
        if offer.kind == "hub":
            self.hub_tag.value = offer.value
        self.weights_file = FileEdit(label="weights file", mode="r", filter="*.pth *.pt *.safetensors",
                                     value=offer.value if offer.kind == "local file" else "")
        self.weights_note = Label(value=offer.reason)
        self.weights_note.native.setWordWrap(True)
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.batch = ComboBox(label="batch", choices=["auto", 1, 2, 4, 8, 16, 32, 64], value="auto",
                              tooltip="slices per forward pass; auto: 1 on a CPU (Cancel within one slice), "
                                      "from free memory on a GPU (the current slice still comes first)")
        self.resolution = SpinBox(label="resolution", min=16, max=4096, step=16, value=512,
                                  tooltip="long side of each slice fed to the network (multiple of 16)")
        self.planes = ComboBox(label="slicing", choices=PLANES, value=0,
                               tooltip="tri-planar: features along all three axes (needed for tri-planar "
                                       "segmentation; 3x the time)")
        self.modality = ComboBox(label="modality", choices=MODALITY_CHOICES, value="auto",
                                 tooltip="what the image is; auto = what the file says, else CT if the "
                                         "intensities look like Hounsfield units")
        self.window = ComboBox(label="window", choices=WINDOW_CHOICES, value="auto",
                               tooltip="intensity window fed to the network (also set as display contrast)")
        self.window_note = Label(value="")
        self.window_note.native.setWordWrap(True)
        self.run_button = PushButton(text="Compute features",
                                     tooltip="extract features (the current slice first)")
        self.cancel_button = PushButton(text="Cancel", enabled=False,
                                        tooltip="stop after the running slice; finished slices stay cached")
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.extend([self.model, self.weights, self.hub_tag, self.weights_file, self.weights_note,
                     self.device, self.batch, self.resolution, self.planes, self.modality, self.window,
                     self.window_note,
                     Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                               labels=False),
                     self.progress, self.status_box])
        self.model.changed.connect(lambda *_: self.hub_tag.reset_choices())
        self.weights.changed.connect(self._weights_changed)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        for w in (self.image, self.modality, self.window):
            w.changed.connect(self.update_window)
        self._weights_changed()
        self._relay = Relay()
        self._relay.progress.connect(self._on_progress)
        from qtpy.QtCore import QTimer

        self._progress_now = (0, 1)
        self._progress_timer = QTimer(self.native)  # dies with the widget: never fires into a deleted one
        self._progress_timer.setSingleShot(True)
        self._progress_timer.setInterval(250)
        self._progress_timer.timeout.connect(self._apply_progress)
        self.on_close(self._progress_timer.stop)
        self._relay.partial.connect(self._on_partial)
        self._first_shown, self._hidden_pca = False, None
        self._affinity_later = Debouncer(self._affinity_for, AFFINITY_DELAY_MS, self.native)
        self.on_close(self._affinity_later.stop)
        self._job = LatestJob(self._done, self._error, on_idle=self._finished)
        self.jobs.append(self._job)
        self._target = None
        self.pca_layer = None
        self.update_window()
        self._warm = LatestJob(lambda _: None, lambda _exc: None)  # errors show at Compute
        self.jobs.append(self._warm)
        for w in (self.model, self.weights, self.hub_tag, self.weights_file, self.device):
            w.changed.connect(self.warm_up)
        self.warm_up()

    def warm_up(self, *_: Any) -> None:
        """Load the chosen backbone in the background (not for hub: that may download), so that the first
        Compute shows its slice after about one forward pass."""
        if self.weights.value in ("hub", "choose"):
            return
        try:
            weights = self.weights_spec()
        except Exception:  # no usable weights chosen yet
            return
        from .compat import block_triton_after_gl

        block_triton_after_gl()
        model, device = self.model.value, None if self.device.value == "auto" else self.device.value

        def load(_cancel: Any) -> None:
            from dinomed_napari.live.backbones import warm_up

            warm_up(model, weights, device)

        self._warm.submit(load)

    def _tags(self, _widget: Any = None) -> list[str]:
        from dinomed_napari.models import REGISTRY

        return list(REGISTRY[self.model.value].hub_tags)

    def _weights_changed(self, *_: Any) -> None:
        self.hub_tag.visible = self.weights.value == "hub"
        self.weights_file.visible = self.weights.value == "local file"
        self.weights_note.visible = self.weights.value in ("choose", "random")
        if self.weights.value == "random":
            self.weights_note.value = "random weights: for testing the pipeline only (results are noise)"

    def weights_spec(self) -> str:
        """The ``weights`` argument for the core: "hub:<tag>", a file path or "random"."""
        choice = self.weights.value
        if choice == "random":
            return "random"
        if choice == "hub":
            return f"hub:{self.hub_tag.value}"
        if choice == "choose":
            raise WeightsError(self.weights_note.value or "choose weights: a local file, hub or random")
        path = self.weights_file.value
        if not str(path) or str(path) == "." or not path.is_file():
            raise WeightsError(f"weights file {str(path)!r} not found: choose a DINOv3 .pth or .safetensors "
                               "file, or pick 'hub' or 'random'")
        return str(path)

    # -- modality and window -------------------------------------------------------------------
    def window_choice(self, layer: Any = None) -> Any:
        """The :class:`~dinomed_napari.live.display.WindowChoice` for the chosen image."""
        layer = layer if layer is not None else self.image_layer()
        declared = layer.metadata.get("dinomed", {}).get("modality")
        return choose_window(display_sample(layer_array(layer)), declared, self.modality.value,
                             self.window.value)

    def update_window(self, *_: Any) -> None:
        """Show which modality and window will be used, and set the image's contrast to that window."""
        try:
            layer = self.image_layer()
            choice = self.window_choice(layer)
        except Exception:  # no usable image yet: nothing to show
            self.window_note.value = "open an image to see its modality and window"
            return
        self.window_note.value = f"using: {choice.reason}"
        layer.contrast_limits = display_range(choice.window, display_sample(layer_array(layer)))

    # -- extraction ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._job.busy

    def run(self) -> None:
        """Start the extraction for the chosen image (no-op while one is running)."""
        if self.running:
            return
        try:
            layer = self.image_layer()
            volume = layer_volume(layer)
            weights = self.weights_spec()
            choice = self.window_choice(layer)
            volume.modality = choice.modality or volume.modality
            from dinomed_napari.preprocess import Preprocess

            prep = Preprocess(window=choice.window, resolution=int(self.resolution.value))
            planes = self.planes.value
            axis = 0 if planes == "tri" else int(planes)
            from dinomed_napari.features.extract import check_plane_axis

            for a in (0, 1, 2) if planes == "tri" else (axis,):  # said here, before any layer is made
                check_plane_axis(volume.shape, a, volume.source)
            grid = self._grid(volume, axis, prep)  # a bad size is said here, not by the worker later
        except Exception as exc:  # every problem goes to a notification; the widget stays usable
            self.fail(exc, "DINOv3 features")
            return
        from .compat import block_triton_after_gl

        block_triton_after_gl()  # before timm is first imported (see compat)
        point = [self.current_index(layer, a) for a in range(3)]
        job = dict(volume=volume, model=self.model.value, weights=weights, prep=prep,
                   device=None if self.device.value == "auto" else self.device.value, batch=self.batch.value)
        self._target = (layer, axis, self.session_label(weights))
        set_progress(self.progress, 0, self.progress.max)
        self.say(f"computing {self.model.value} [{weights}], {choice.window} window, slice "
                 f"{point[axis]} first ...")
        self.run_button.enabled, self.cancel_button.enabled = False, True
        # The PCA layer is made (or reused) hidden before the worker starts, while the cores are idle, so
        # that the first slice only has to be copied in; the affinity layer follows once that slice is on
        # screen. A new layer costs the GUI thread ~70 ms alone, 0.15-0.27 s beside a forward pass on
        # every core (bench_gui: extraction gap 133-177 ms made during the first forward, 107-148 ms here).
        self._first_shown, self._hidden_pca = False, None
        self._pca_for(layer, self._target[2], axis, grid)
        self._job.submit(lambda cancel: self._compute(job, planes, axis, point, cancel))

    def _grid(self, volume: Any, axis: int, prep: Any) -> tuple[int, int]:
        """The patch grid of ``volume``'s planes along ``axis`` (what the first slice will have)."""
        from dinomed_napari.models import REGISTRY
        from dinomed_napari.preprocess import plane_input_size

        a, b = PLANE_AXES[axis]
        patch = REGISTRY[self.model.value].patch_size
        size = plane_input_size((volume.shape[a], volume.shape[b]), (volume.spacing[a], volume.spacing[b]),
                                prep, patch=patch)
        return size[0] // patch, size[1] // patch

    def _affinity_for(self) -> None:
        """The image's (hidden) affinity layer, made empty if it is missing, before the result needs it."""
        layer = self._target[0] if self._target is not None else None
        pca = self.pca_layer
        if self.running and layer in self.viewer.layers and pca in self.viewer.layers and \
                find_result(self.viewer, layer, "affinity") is None:
            result_layer(self.viewer, layer, "affinity", np.zeros(pca.data.shape, np.uint8), "image", "",
                         rgb=True, **patch_grid_kwargs(layer, pca.data.shape, self._target[1]), visible=False)

    @staticmethod
    def session_label(weights: str) -> str:
        return weights if len(weights) < 40 else "..." + weights[-37:]

    def _compute(self, job: dict, planes: Any, axis: int, point: list, cancel: Any) -> dict:
        """Worker thread: features, PCA and affinity maps as uint8 RGB. Only core calls here."""
        from dinomed_napari.analysis.affinity import affinity_patch
        from dinomed_napari.analysis.pca import pca_maps, to_uint8
        from dinomed_napari.features.grid import to_volume_order
        from dinomed_napari.live.jobs import first_batch_threads, interactive_batch_size, worker_threads
        from dinomed_napari.models.device import pick_device

        job = dict(job)
        batch = job.pop("batch", "auto")  # the dock's choice; the rest are extract_features arguments
        device = str(pick_device(job["device"]))
        preview = self._previewer(job["volume"].shape, axis, job["prep"].resolution)
        if device == "cpu":
            import torch

            # Every core for the first slice (the GUI only waits for it), then one left to the GUI, which
            # draws the arriving slices (process-wide, viewer only).
            torch.set_num_threads(first_batch_threads())
            show = preview

            def preview(indices: np.ndarray, feats: np.ndarray) -> None:
                torch.set_num_threads(worker_threads())
                show(indices, feats)
        from dinomed_napari.live.backbones import cached_backbone

        backbone = cached_backbone(job["model"], job["weights"], job["device"])
        common = dict(cancel=cancel, progress=self._relay.progress.emit, on_batch=preview,
                      batch_size=interactive_batch_size(device, batch), backbone=backbone, **job)
        if planes == "tri":
            from dinomed_napari.features.triplanar import extract_triplanar

            fvs = extract_triplanar(**common, first=point)
        else:
            from dinomed_napari.features.extract import extract_features

            fvs = {axis: extract_features(**common, axis=axis, first=point[axis])}
        fv = fvs[axis]
        pca = pca_maps(fv)
        # Maps stay on the patch grid (1/256 of the pixels at 16-pixel patches), placed over the image
        # by the layers' scale and translate: a long or large volume costs a few MB here, not 3 bytes
        # per voxel each. Negative cosines (rare) show as 0.
        aff = to_uint8(np.clip(to_volume_order(affinity_patch(fv), axis), 0.0, 1.0))
        return {"features": fvs, "pca": pca, "pca_rgb": pca.patch_rgb8(), "affinity": aff}

    def _on_progress(self, done: int, total: int) -> None:
        if self._job.cancelled:  # queued before the cancel: stale
            return
        # Each repaint of the dock costs a window composite (tens of ms under software OpenGL): at most
        # a few per second, the last one always shown.
        self._progress_now = (done, total)
        if done >= total or not self._progress_timer.isActive():
            self._apply_progress()
            self._progress_timer.start()

    def _apply_progress(self) -> None:
        set_progress(self.progress, *self._progress_now)

    def _previewer(self, shape: tuple, axis: int, resolution: int):
        """An ``on_batch`` callback (worker thread): PCA colours of each new slice of the main axis
        (:class:`~dinomed_napari.live.preview.SlicePreview`); the GUI thread only copies those slices."""
        from dinomed_napari.live.preview import SlicePreview

        preview = SlicePreview(shape, axis, resolution)
        seen = [0]

        def on_batch(indices: np.ndarray, feats: np.ndarray) -> None:
            if seen[0] >= shape[axis]:  # tri-planar: the other axes' passes are not previewed
                return
            seen[0] += len(indices)
            self._relay.partial.emit((axis, [int(i) for i in indices], preview.rgb(feats)))

        return on_batch

    def _on_partial(self, payload: Any) -> None:
        """New slices ready: write only them into the PCA layer (created empty on the first call)."""
        layer, _, label = self._target
        axis, indices, rgbs = payload
        if self._job.cancelled or layer not in self.viewer.layers:
            return
        made = self.pca_layer
        pca = self._pca_for(layer, label, axis, rgbs[0].shape[:2])
        if pca is not made:  # just made: its slices go in the next turn (two shorter stalls than one)
            from qtpy.QtCore import QTimer

            QTimer.singleShot(0, lambda: self._on_partial(payload))
            return
        for index, rgb in zip(indices, rgbs, strict=True):
            put_slice(pca, rgb, axis, index, self.viewer)  # redrawn only if on screen
        self._reveal_pca()  # made hidden (see _pca_for): drawn first here, with its first slice
        if not self._first_shown:  # after the first slice's redraw
            self._first_shown = True
            self._affinity_later.trigger()
        if self.progress.value <= 1:
            self.say(f"slice {indices[0]} ready; computing the rest ...")

    def _pca_for(self, layer: Any, label: str, axis: int, grid: tuple[int, int]) -> Any:
        """The image's PCA layer on the patch ``grid`` of slices along ``axis``, ready for slices to be
        written into (kept if it exists with that shape)."""
        shape = list(layer.data.shape)
        a, b = PLANE_AXES[axis]
        shape[a], shape[b] = grid
        # A new layer is made hidden: its controls now, its first draw (shader, texture) with the first
        # slice (see _reveal_pca), so that neither holds the GUI thread as long as both would.
        pca = self.pca_layer
        if pca is None or pca not in self.viewer.layers or pca.metadata.get("dinomed_image") != \
                layer.unique_id or pca.data.shape[:3] != tuple(shape):
            before = find_result(self.viewer, layer, "PCA")
            pca = self.pca_layer = result_layer(
                self.viewer, layer, "PCA", np.zeros((*shape, 3), np.uint8), "image", f"{label} (preview)",
                rgb=True, **patch_grid_kwargs(layer, shape, axis), opacity=0.8, visible=False)
            if pca is not before:  # a layer updated in place keeps the visibility the user gave it
                self._hidden_pca = pca
        return pca

    def _reveal_pca(self) -> None:
        """Show the PCA layer this run made hidden (a layer the user hid stays hidden)."""
        if self._hidden_pca is not None and self._hidden_pca is self.pca_layer:
            self.pca_layer.visible = True
        self._hidden_pca = None

    def _done(self, result: dict) -> None:
        layer, axis, _ = self._target
        if self.gone(layer, "feature extraction", " (the slices computed stay cached)"):
            self._drop_unshown_pca()  # no session and no layers for a removed image
            return
        session = SESSIONS.get(layer)
        session.set_features(result["features"], axis, result["pca"])
        label = session.label
        pca, aff = result["pca_rgb"], result["affinity"]
        self.pca_layer = result_layer(self.viewer, layer, "PCA", pca, "image", label,
                                      rgb=True, **patch_grid_kwargs(layer, pca.shape, axis), opacity=0.8)
        self._reveal_pca()  # even if no preview slice reached it
        result_layer(self.viewer, layer, "affinity", aff, "image", label,
                     rgb=True, **patch_grid_kwargs(layer, aff.shape, axis), visible=False)
        set_progress(self.progress, self.progress.max, self.progress.max)
        self.say(f"features ready: {label}")  # the status says it: no toast to go stale

    def _error(self, exc: BaseException) -> None:
        self._drop_unshown_pca()
        self.fail(exc, "DINOv3 features")

    def _drop_unshown_pca(self) -> None:
        """Remove the PCA layer this run made and never showed (it failed, or its image was removed,
        before its first slice)."""
        pca = self._hidden_pca
        if pca is not None and pca is self.pca_layer and not pca.visible and pca in self.viewer.layers:
            self.viewer.layers.remove(pca)
            self.pca_layer = None
        self._hidden_pca = None

    def _finished(self) -> None:
        self.run_button.enabled, self.cancel_button.enabled = True, False

    def cancel(self) -> bool:
        """Stop the running extraction after its current slice (finished slices stay cached)."""
        if not self._job.cancel():
            return False
        self.say("cancelled: the slices computed so far stay cached; Compute resumes from them")
        self._progress_timer.stop()  # a pending repaint would bring back the cancelled run's count
        self._progress_now = (0, self.progress.max)
        set_progress(self.progress, 0, self.progress.max)
        return True
