"""One dock for every tool: tabs (Features, Similarity, Isolate, Segment), each in a scroll area, so the
window fits a 1920 x 1080 screen with everything open. Also binds the segmenter's keyboard shortcuts
and keeps the tools on the same image."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QScrollArea, QTabWidget, QVBoxLayout, QWidget

from .widget_base import stop_jobs
from .widget_features import FeaturesWidget
from .widget_isolate import IsolateWidget
from .widget_segment import SHORTCUTS, SegmentWidget
from .widget_similarity import SimilarityWidget

DOCK_WIDTH = 420


def scrolled(widget: QWidget) -> QScrollArea:
    """``widget`` in a vertical scroll area (no horizontal scrolling: text wraps instead)."""
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return area


class DinomedDock(QWidget):
    """All dinomed tools in one tabbed, scrollable dock widget (``.features``, ``.similarity``,
    ``.isolate``, ``.segment`` are the tools)."""

    def __init__(self, napari_viewer: Any):
        super().__init__()
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.features = FeaturesWidget(self.viewer)
        self.similarity = SimilarityWidget(self.viewer)
        self.isolate = IsolateWidget(self.viewer)
        self.segment = SegmentWidget(self.viewer)
        self.tools = (self.features, self.similarity, self.isolate, self.segment)
        self.tabs = QTabWidget()
        for tool in self.tools:
            tool.native.setMinimumWidth(DOCK_WIDTH - 40)
            tool.native.layout().addStretch(1)  # controls packed at the top, not spread over the height
            self.tabs.addTab(scrolled(tool.native), tool.title)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        self.setMinimumWidth(DOCK_WIDTH)
        self.setMaximumWidth(DOCK_WIDTH + 120)
        # One image for every tool: choosing it in one tab chooses it everywhere.
        for tool in self.tools:
            tool.image.changed.connect(self._sync_image)
        self._bindings = self._bind_keys()
        jobs = [job for tool in self.tools for job in tool.jobs]
        viewer, bindings = self.viewer, self._bindings
        self.destroyed.connect(lambda *_: (stop_jobs(jobs), _unbind(viewer, bindings)))

    def _sync_image(self, value: Any) -> None:
        for tool in self.tools:
            if tool.image.value is not value and value in [c for c in tool.image.choices if c is not None]:
                tool.image.value = value

    def _bind_keys(self) -> list[str]:
        seg = self.segment
        actions = {"train": seg.retrain, "predict": seg.predict_volume, "toggle": seg.toggle_prediction,
                   "next_class": seg.next_class}
        bound = []
        for name, key in SHORTCUTS.items():
            func = actions[name]
            self.viewer.bind_key(key, lambda _viewer, f=func: f(), overwrite=True)
            bound.append(key)
        return bound

    def close_tools(self) -> None:
        """Stop every job and disconnect every tool (what closing the dock does)."""
        for tool in self.tools:
            tool.close_connections()


def _unbind(viewer: Any, keys: list[str]) -> None:
    for key in keys:
        try:
            viewer.bind_key(key, None, overwrite=True)
        except (KeyError, RuntimeError, ValueError):  # already unbound / viewer gone
            pass
