"""What every dinomed widget shares: the viewer, an image-layer chooser, the session, error reporting."""

from __future__ import annotations

from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label

from dinomed_napari.errors import VolumeError

from .notify import report_error
from .results import KIND
from .session import SESSIONS, ImageSession
from .workers import wait_for_workers


def layers_of(viewer: Any, kind: str) -> list:
    """Layers of one napari type ("image", "labels", "points") in the viewer, in layer-list order."""
    return [lyr for lyr in viewer.layers if type(lyr).__name__.lower() == kind]


class LayerChooser(ComboBox):
    """A combo box of the viewer's layers of one kind that follows layers being added/removed/renamed."""

    def __init__(self, viewer: Any, kind: str, label: str, *, inputs_only: bool = False, **kwargs):
        self._viewer = viewer
        self._kind = kind
        self._inputs_only = inputs_only
        super().__init__(label=label, choices=self._choices, nullable=True, **kwargs)
        for emitter in self._emitters():
            emitter.connect(self._refresh)

    def _emitters(self) -> tuple:
        ev = self._viewer.layers.events
        return ev.inserted, ev.removed, ev.reordered

    def close_connections(self) -> None:
        for emitter in self._emitters():
            emitter.disconnect(self._refresh)

    def _choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        out = []
        for layer in layers_of(self._viewer, self._kind):
            # Our result layers (PCA, prediction, isolated ...) are no inputs; nor are RGB images.
            if layer.metadata.get(KIND) or (self._inputs_only and getattr(layer, "rgb", False)):
                continue
            out.append((layer.name, layer))
        return out

    def _refresh(self, *_: Any) -> None:
        self.reset_choices()
        layers = [c for c in self.choices if c is not None]
        # Only the image is pre-selected: a labels/points layer becomes an input when the user picks it
        # (or a widget creates one), never by accident (e.g. a ground-truth mask as scribbles).
        if self.value is None and layers and self._inputs_only:
            # A volume the tools can use first: a 2D or 4D layer listed before it would only be refused.
            self.value = next((lyr for lyr in layers if getattr(lyr, "ndim", 3) == 3), layers[0])


def stop_jobs(jobs: list, msecs: int = 3000) -> None:
    """Cancel every job and wait (briefly) for their threads, so none emits into deleted Qt objects."""
    running = [job.close() for job in jobs]
    if any(running):
        wait_for_workers(msecs)


def run_closers(closers: list) -> None:
    """Call and forget every function in ``closers`` (each at most once)."""
    while closers:
        try:
            closers.pop()()
        except (RuntimeError, ValueError):  # Qt object already gone / not connected: nothing to undo
            pass


class DinomedWidget(Container):
    """Base container: ``self.viewer``, an image chooser and helpers to get the image's session."""

    title = "dinomed"

    def __init__(self, napari_viewer: Any):
        super().__init__(labels=True)
        # npe2 hands widgets a PublicOnlyProxy; the real viewer avoids proxied layers in comparisons.
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.image = LayerChooser(self.viewer, "image", "image", inputs_only=True)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)  # long messages wrap instead of widening the dock
        # Full dock width (a labelled container would squeeze it into the value column).
        self.status_box = Container(widgets=[self.status], labels=False)
        self.max_width = 440
        self.append(self.image)
        self.image._refresh()
        self.image.tooltip = "The 3D image this tool works on"
        self.last_error: str | None = None
        self.jobs: list = []  # objects with .cancel(): stopped when the widget closes
        closers: list = [self.image.close_connections]
        self._closers = closers
        # Viewer events outlive a closed dock widget: drop our connections when its Qt side goes (the
        # lambda holds the lists, not self, which may be half torn down by then).
        jobs = self.jobs
        self.native.destroyed.connect(lambda *_: (stop_jobs(jobs), run_closers(closers)))
        # A removed image's features go with it (memory); its own lambda, so closing one widget does not
        # disconnect the others'.
        self.listen(self.viewer.layers.events.removed, lambda event: SESSIONS.drop(event.value))

    def on_close(self, func: Any) -> None:
        """Register ``func()`` to run when the widget is destroyed (disconnect viewer/layer events)."""
        self._closers.append(func)

    def listen(self, emitter: Any, callback: Any) -> None:
        """``emitter.connect(callback)``, disconnected again when the widget is destroyed."""
        emitter.connect(callback)
        self.on_close(lambda: emitter.disconnect(callback))

    def close_connections(self) -> None:
        """Stop this widget's jobs and disconnect it from the viewer (also run when it is destroyed)."""
        stop_jobs(self.jobs)
        run_closers(self._closers)

    def say(self, message: str) -> None:
        """Show ``message`` in the status area (no notification): hints, progress, results."""
        self.last_error = None
        self.status.value = message

    def image_layer(self) -> Any:
        """The chosen image layer, or a VolumeError that says why there is none usable."""
        layer = self.image.value
        if layer is None or layer not in self.viewer.layers:
            raise VolumeError("no image layer: open a 3D volume (File > Open or File > Open Sample) first")
        if layer.ndim != 3 or getattr(layer, "rgb", False):
            raise VolumeError(f"layer {layer.name!r} has shape {layer.data.shape}; expected a 3D (Z, Y, X) "
                              "single-channel volume")
        return layer

    def image_layer_or_notify(self, action: str) -> Any:
        """:meth:`image_layer`, or None after showing why there is none (the widget stays usable)."""
        try:
            return self.image_layer()
        except Exception as exc:
            self.fail(exc, action)
            return None

    def session(self) -> ImageSession:
        return SESSIONS.get(self.image_layer())

    def current_index(self, layer: Any, axis: int) -> int:
        """Index of the viewer's current slice along ``axis``, in the layer's voxel coordinates."""
        point = layer.world_to_data(self.viewer.dims.point[-layer.ndim:])
        return int(np.clip(round(float(point[axis])), 0, layer.data.shape[axis] - 1))

    def gone(self, image: Any, what: str, more: str = "") -> bool:
        """Whether ``image`` left the viewer while ``what`` (a job) ran for it; the status then says that
        nothing was added for it (no layer for an image that is no longer there)."""
        if image in self.viewer.layers:
            return False
        name = getattr(image, "name", "the image")
        self.say(f"{name!r} was removed from the viewer while its {what} ran: nothing was added{more}")
        return True

    def fail(self, exc: BaseException, action: str = "") -> None:
        """Show ``exc`` as a notification and in the status line; the widget stays usable."""
        self.last_error = report_error(exc, action)
        self.status.value = self.last_error  # wraps: never cut


def set_progress(bar: Any, done: int, total: int) -> None:
    """Set a magicgui ProgressBar without the synchronous repaint QProgressBar does on a new value: under
    software OpenGL each one composites the whole window (tens of ms) on top of the scheduled redraw."""
    bar.native.setUpdatesEnabled(False)
    try:
        bar.max = max(1, int(total))
        bar.value = max(0, min(int(total), int(done)))
    finally:
        bar.native.setUpdatesEnabled(True)  # schedules one ordinary update


class LayerWatch:
    """Call ``callback`` on events (e.g. "data", "paint") of whichever layer ``chooser`` selects."""

    def __init__(self, chooser: LayerChooser, events: tuple[str, ...], callback: Any):
        self._chooser, self._events, self._callback = chooser, events, callback
        self.layer = None
        chooser.changed.connect(self.rewire)
        self.rewire()

    def close(self) -> None:
        """Stop following (disconnect from the watched layer)."""
        self._chooser.changed.disconnect(self.rewire)
        self._chooser = None
        for name in self._events if self.layer is not None else ():
            getattr(self.layer.events, name).disconnect(self._callback)
        self.layer = None

    def rewire(self, *_: Any) -> None:
        if self._chooser is None:
            return
        layer = self._chooser.value
        if layer is self.layer:
            return
        for name in self._events if self.layer is not None else ():
            getattr(self.layer.events, name).disconnect(self._callback)
        self.layer = layer
        for name in self._events if layer is not None else ():
            getattr(layer.events, name).connect(self._callback)
