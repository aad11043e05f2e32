"""A classic pixel classifier: skimage filter bank + random forest on scribbles (the ilastik recipe).

Used as the baseline of the bench and, in :mod:`.propagate`, as one more input of the slice-to-slice model.
"""

from __future__ import annotations

import numpy as np

from ..features.grid import slice_of

#: Above this many voxels the filter bank runs per 2D slice (~24 float32 filters per voxel: 8 M voxels
#: ~ 0.8 GB in 3D), so memory stays bounded by one slice on real-sized volumes.
MAX_3D_VOXELS = 8_000_000


class FilterBankRF:
    """``skimage.feature.multiscale_basic_features`` + a random forest, trained on scribbled voxels.

    Parameters
    ----------
    image : np.ndarray, (Z, Y, X)
        Intensities already windowed to [0, 1] (the same preprocessing the backbone gets).
    axis : int
        Slicing axis of the 2D mode.
    sigma_max : float
        Largest Gaussian scale of the filter bank, in voxels (capped at half the smallest side).
    max_voxels_3d : int
        3D filters (ilastik's default for volumes) up to this size, per-slice 2D filters above it.
    clip : (float, float), optional
        Clip intensities to this range before filtering, plane by plane (no clipped copy of the volume).

    Notes
    -----
    Intensity, edges and texture at scales 0.5..sigma_max, then ``skimage.future.fit_segmenter`` /
    ``predict_segmenter`` with a class-balanced forest: what ilastik's pixel classification does by default.
    The filters do not depend on the scribbles, so they are computed once per case (3D mode).
    """

    def __init__(self, image: np.ndarray, axis: int = 0, sigma_max: float = 16.0,
                 max_voxels_3d: int = MAX_3D_VOXELS, clip: tuple[float, float] | None = None):
        self.clip = clip
        self.axis = int(axis)
        # 3D filters need two samples along every axis (gradients): one slice is filtered as a plane.
        small = int(np.prod(np.shape(image))) <= max_voxels_3d
        self.mode = "3d" if small and min(np.shape(image)) >= 2 else "2d"
        # Large volumes are read plane by plane, each cast to float32 where read: an array-like (a lazily
        # normalised image, zarr, dask) stays lazy and no float32 copy of the volume is made.
        lazy = self.mode == "2d" and hasattr(image, "shape") and hasattr(image, "__getitem__")
        self.image = image if lazy else np.asarray(image, dtype=np.float32)
        shape = self.image.shape if self.mode == "3d" else np.delete(self.image.shape, self.axis)
        self.sigma_max = float(min(sigma_max, max(1.0, min(shape) / 2)))
        self.features = self._filters(self.image) if self.mode == "3d" else None
        self.clf = None

    def _filters(self, data: np.ndarray) -> np.ndarray:
        from skimage.feature import multiscale_basic_features

        if self.clip is not None:
            data = np.clip(data, *self.clip)
        return multiscale_basic_features(data, sigma_min=0.5, sigma_max=self.sigma_max).astype(np.float32)

    def fit(self, scribbles: np.ndarray, *, seed: int = 0, n_estimators: int = 50) -> FilterBankRF:
        """Train the forest on ``scribbles`` (0 unlabelled, 1..K) of the image's grid."""
        from sklearn.ensemble import RandomForestClassifier

        from dinomed_napari.errors import ScribbleError

        scribbles = np.asarray(scribbles)  # no whole-volume int64 copy: labels are cast where read
        if scribbles.shape != self.image.shape:
            raise ScribbleError(f"scribbles of shape {scribbles.shape} do not match the image "
                                f"{self.image.shape}")
        self.clf = RandomForestClassifier(n_estimators=n_estimators, max_depth=10, max_samples=0.5, n_jobs=1,
                                          random_state=seed, class_weight="balanced")
        if self.mode == "3d":
            mask = scribbles > 0
            if not mask.any():
                raise ScribbleError("no scribbles to train the filter-bank classifier on")
            self.clf.fit(self.features[mask], scribbles[mask].astype(np.int64))
            return self
        other = tuple(a for a in range(3) if a != self.axis)
        xs, ys = [], []
        for s in np.flatnonzero(np.any(scribbles > 0, axis=other)):
            lab = slice_of(scribbles, self.axis, int(s))
            xs.append(self._plane_filters(int(s))[lab > 0])
            ys.append(lab[lab > 0].astype(np.int64))
        if not xs:
            raise ScribbleError("no scribbles to train the filter-bank classifier on")
        self.clf.fit(np.concatenate(xs), np.concatenate(ys))
        return self

    def _plane_filters(self, index: int, box: tuple[slice, slice] | None = None) -> np.ndarray:
        if self.mode == "3d":
            feats = slice_of(self.features, self.axis, index)
            return feats if box is None else feats[box]
        plane = np.asarray(slice_of(self.image, self.axis, index), dtype=np.float32)
        if box is None:
            return self._filters(plane)
        # The filters of a box equal the whole plane's there when computed with a margin past the
        # largest Gaussian's support (scipy truncates at 4 sigma; edges and texture add a few pixels).
        margin = int(np.ceil(4 * self.sigma_max)) + 4
        outer = tuple(slice(max(b.start - margin, 0), min(b.stop + margin, n))
                      for b, n in zip(box, plane.shape, strict=True))
        inner = tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(box, outer, strict=True))
        return self._filters(plane[outer])[inner]

    def plane_proba(self, index: int, box: tuple[slice, slice] | None = None) -> np.ndarray:
        """(H, W, K) class probabilities of plane ``index`` along ``axis`` (``clf.classes_`` order);
        with ``box`` (two slices of the plane), those of that box only."""
        feats = self._plane_filters(int(index), box)
        p = self.clf.predict_proba(feats.reshape(-1, feats.shape[-1]))
        return p.reshape(feats.shape[:-1] + (p.shape[-1],)).astype(np.float32)

    def segment(self, scribbles: np.ndarray, *, seed: int = 0, n_estimators: int = 50) -> np.ndarray:
        """Train on ``scribbles`` (0 unlabelled, 1..K); the predicted class (1..K) of every voxel."""
        from skimage.future import predict_segmenter

        self.fit(scribbles, seed=seed, n_estimators=n_estimators)
        if self.mode == "3d":
            return predict_segmenter(self.features, self.clf).astype(np.uint8)
        out = np.empty(self.image.shape, np.uint8)
        for s in range(self.image.shape[self.axis]):
            np.moveaxis(out, self.axis, 0)[s] = predict_segmenter(self._plane_filters(s), self.clf)
        return out
