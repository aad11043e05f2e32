"""Dock widget "Feature similarity": click points on the image, see where its features look alike.

Every change of the points layer recomputes :func:`dinomed_napari.analysis.similarity.similarity_patch`
off the GUI thread (a burst of clicks collapses into one run) and refreshes the result layer, which stays on
the patch grid (one value per patch, placed over the image, shown with linear interpolation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from magicgui.widgets import PushButton

from .layers import patch_grid_kwargs
from .results import add_aligned_points, find_result, place_below, result_layer
from .session import SESSIONS
from .widget_base import DinomedWidget, LayerChooser, LayerWatch
from .workers import LatestJob


def points_to_voxels(points_layer: Any, image_layer: Any) -> np.ndarray:
    """(N, 3) voxel (z, y, x) positions of a points layer in the image's data grid (via world coords)."""
    data = np.asarray(points_layer.data, dtype=float).reshape(-1, points_layer.ndim)
    out = [image_layer.world_to_data(points_layer.data_to_world(p))[-3:] for p in data]
    return np.asarray(out, dtype=float).reshape(-1, 3)


class SimilarityWidget(DinomedWidget):
    """Similarity map of the chosen image's features to the mean feature at the clicked points."""

    title = "Similarity"

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer)
        self.points = LayerChooser(self.viewer, "points", "points",
                                   tooltip="points whose mean feature is compared with every voxel")
        self.new_points = PushButton(text="New points layer", tooltip="then click on the image to add points")
        self.extend([self.points, self.new_points, self.status_box])
        self.new_points.clicked.connect(self.add_points_layer)
        self._job = LatestJob(self._show, lambda exc: self.fail(exc, "similarity"))
        self.jobs.append(self._job)
        self.result_layer = None
        self.points._refresh()
        self._watch = LayerWatch(self.points, ("data",), self.update)
        self.on_close(self._watch.close)
        self.on_close(self.points.close_connections)

    def add_points_layer(self) -> Any:
        """A points layer on the image's grid, selected in add mode so that clicks add query points."""
        image = self.image_layer_or_notify("similarity")
        if image is None:
            return None
        layer = add_aligned_points(self.viewer, image, "similarity points")
        self.points.value = layer
        return layer

    def update(self, event: Any = None) -> None:
        """Recompute the similarity map for the current points (off the GUI thread)."""
        if str(getattr(event, "action", "")).endswith("ing"):
            return  # napari announces "adding" before "added": act once, on the finished change
        try:
            image = self.image_layer()
            session = SESSIONS.get(image)
            fv = session.primary
            label = session.label
            if self.points.value is None or len(self.points.value.data) == 0:
                self._clear(image)  # every point deleted: no stale map
                return
            pts = points_to_voxels(self.points.value, image)
        except Exception as exc:  # no image / no features: tell the user, stay usable
            self.fail(exc, "similarity")
            return
        from dinomed_napari.analysis.similarity import similarity_patch
        from dinomed_napari.features.grid import to_volume_order

        self.say(f"similarity to {len(pts)} point(s) ...")
        self._job.submit(lambda _cancel: (image, label, len(pts), fv.axis,
                                          to_volume_order(similarity_patch(fv, pts), fv.axis)))

    def _clear(self, image: Any) -> None:
        self._job.cancel()
        layer = find_result(self.viewer, image, "similarity")
        if layer is not None:
            self.viewer.layers.remove(layer)
        self.result_layer = None
        self.say("no points: click on the image to add one")

    def _show(self, result: tuple) -> None:
        image, label, n, axis, sim = result
        # Contrast from the median to the maximum: the most similar half stands out whatever the
        # features' overall cosine level (random or shallow features are similar everywhere).
        lo, hi = float(np.percentile(sim, 50)), float(sim.max())
        if self.gone(image, "similarity map"):
            return
        self.result_layer = result_layer(self.viewer, image, "similarity", sim, "image", label,
                                         colormap="turbo", opacity=0.6,
                                         contrast_limits=(lo, hi if hi > lo else lo + 1e-3),
                                         **patch_grid_kwargs(image, sim.shape, axis))
        place_below(self.viewer, self.result_layer, self.points.value)  # the points stay visible
        self.say(f"similarity to {n} point(s): {label}")
