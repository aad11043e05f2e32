"""The patch-feature volume that extraction returns and the analysis core consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

PLANE_AXES = {0: (1, 2), 1: (0, 2), 2: (0, 1)}


@dataclass
class FeatureVolume:
    """DINOv3 patch features of every slice of a volume along one axis.

    Attributes
    ----------
    data : array-like
        Shape (S, h, w, C), float16 (a zarr array from the cache, or a NumPy array). S is the number of
        slices along ``axis``; (h, w) the patch grid of one slice; C the feature dimension.
    axis : int
        Slicing axis of the (Z, Y, X) volume: 0 axial, 1 coronal, 2 sagittal.
    volume_shape : tuple of int
        (Z, Y, X) shape of the source volume.
    model : str
        timm model name of the backbone.
    weights : str
        Human-readable weights label ("random", "hub:lvd1689m", "file:<name>#<sha8>"); goes into every
        layer name and report.
    resolution : int
        Long side of each slice as fed to the network, in pixels.
    layers : tuple of int or None
        Which blocks were concatenated; None for the final normalised output.
    key : str
        Cache key (hash of everything the features depend on).
    extra : dict
        Anything else worth recording (preprocessing, input size, device, dtype).

    Notes
    -----
    Each slice is resized whole (no padding, no crop) to the input size, so the patch grid covers the
    slice exactly: patch (i, j) is centred at pixel ((i + 0.5) * H / h - 0.5, (j + 0.5) * W / w - 0.5).
    Tiled extraction (``extra["tiling"]`` set) keeps this mapping: the input is the slice at native pixel
    size rounded to multiples of 16, cut into overlapping tiles and stitched back on the patch grid.
    """

    data: Any
    axis: int
    volume_shape: tuple[int, int, int]
    model: str
    weights: str
    resolution: int
    layers: tuple[int, ...] | None = None
    key: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def n_slices(self) -> int:
        return int(self.data.shape[0])

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.data.shape[1]), int(self.data.shape[2])

    @property
    def dim(self) -> int:
        return int(self.data.shape[3])

    @property
    def plane_shape(self) -> tuple[int, int]:
        a, b = PLANE_AXES[self.axis]
        return int(self.volume_shape[a]), int(self.volume_shape[b])

    def slice(self, index: int) -> np.ndarray:
        """Features of one slice as float32, shape (h, w, C)."""
        return np.asarray(self.data[index], dtype=np.float32)

    def label(self) -> str:
        """Short description for layer names and reports, e.g. ``vit_small_patch16_dinov3 [random] @512``."""
        return f"{self.model} [{self.weights}] @{self.resolution}"
