"""Per-image state shared by the widgets (Qt-free): features computed once, used by every widget.

The features widget fills a session; similarity, isolation and the scribble segmenter read from it.
Sessions are keyed by the napari layer's ``unique_id`` (stable across renames and viewer proxies).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dinomed_napari.errors import DinomedError
from dinomed_napari.features.volume import FeatureVolume
from dinomed_napari.io.volume import Volume


class NoFeaturesError(DinomedError):
    """A widget needs features of an image that were not computed yet."""


@dataclass
class ImageSession:
    """Everything computed for one image layer.

    Attributes
    ----------
    volume : Volume
        The image as the core sees it (spacing, affine, modality).
    name : str
        Layer name (for messages).
    features : dict of int -> FeatureVolume
        One entry (the chosen axis) or three (tri-planar: 0, 1, 2).
    axis : int
        Main slicing axis (the one similarity and isolation use).
    pca : PCAMaps or None
        PCA maps of the main-axis features, computed once.
    segmenter : ScribbleSegmenter or None
        The last trained (or loaded) scribble segmenter for this image.
    segmenter_settings : tuple or None
        (classifier, intensity fusion, tri-planar) it was made with; other settings start a new one.
    data_id : int
        ``id`` of the layer data the session was made for (replaced data -> new session).
    """

    volume: Volume
    name: str = ""
    features: dict[int, FeatureVolume] = field(default_factory=dict)
    axis: int = 0
    pca: Any = None
    segmenter: Any = None
    segmenter_settings: tuple | None = None
    data_id: int = 0

    @property
    def ready(self) -> bool:
        return self.axis in self.features

    @property
    def triplanar(self) -> bool:
        return len(self.features) == 3

    @property
    def primary(self) -> FeatureVolume:
        """Main-axis features; raises :class:`NoFeaturesError` naming the image if there are none."""
        if not self.ready:
            name = self.name or self.volume.source or "this image"
            raise NoFeaturesError(f"no DINOv3 features for {name!r} yet: run 'Compute features' in the "
                                  "DINOv3 features widget first")
        return self.features[self.axis]

    @property
    def label(self) -> str:
        """Model, weights and resolution of the features (goes into every result layer name)."""
        suffix = " tri-planar" if self.triplanar else ""
        return self.primary.label() + suffix

    def set_features(self, features: dict[int, FeatureVolume], axis: int, pca: Any = None) -> None:
        """Replace the features (a new model or weights): everything derived from the old ones goes."""
        self.features = dict(features)
        self.axis = int(axis)
        self.pca = pca
        self.segmenter = self.segmenter_settings = None

    def pca_maps(self) -> Any:
        """PCA maps of the main-axis features (fitted once per session)."""
        if self.pca is None:
            from dinomed_napari.analysis.pca import pca_maps

            self.pca = pca_maps(self.primary)
        return self.pca


class SessionStore:
    """Sessions by image layer; a session is rebuilt when the layer's data changes shape."""

    def __init__(self) -> None:
        self._sessions: dict[Any, ImageSession] = {}

    def get(self, layer: Any, volume: Volume | None = None) -> ImageSession:
        """The session of ``layer``; ``volume`` (from :func:`layers.layer_volume`) is used to create it."""
        key = layer.unique_id
        session = self._sessions.get(key)
        shape = tuple(layer.data.shape)
        # New data (even of the same shape) -> a fresh session: features of the old data are wrong.
        if session is None or session.volume.shape != shape or session.data_id != id(layer.data):
            if volume is None:
                from .layers import layer_volume

                volume = layer_volume(layer)
            session = self._sessions[key] = ImageSession(volume, name=layer.name)
            session.data_id = id(layer.data)
        return session

    def drop(self, layer: Any) -> None:
        """Forget ``layer``'s session (its layer was removed: free the features' memory)."""
        self._sessions.pop(layer.unique_id, None)


#: One store per process: every widget in every viewer looks sessions up here.
SESSIONS = SessionStore()
