"""Test helpers for the analysis tests: synthetic feature volumes with a known answer, and Dice."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dinomed_napari.features.grid import slice_of
from dinomed_napari.features.volume import PLANE_AXES, FeatureVolume


def synthetic_features(labels: np.ndarray, axis: int = 0, grid=(8, 8), dim: int = 32, noise: float = 0.3,
                       seed: int = 0, model: str = "synthetic", weights: str = "random") -> FeatureVolume:
    """Patch features that encode the label under each patch (area-averaged one-hot times a random
    embedding per class) plus Gaussian noise: a stand-in for DINO features with a known answer."""
    rng = np.random.default_rng(seed)
    values = np.unique(labels)
    emb = rng.normal(size=(len(values), dim)).astype(np.float32)
    planes = []
    for s in range(labels.shape[axis]):
        plane = slice_of(labels, axis, s)
        onehot = np.stack([plane == v for v in values]).astype(np.float32)
        pooled = F.adaptive_avg_pool2d(torch.from_numpy(onehot)[None], grid)[0].permute(1, 2, 0).numpy()
        planes.append(pooled @ emb + noise * rng.normal(size=grid + (dim,)).astype(np.float32))
    data = np.stack(planes).astype(np.float16)
    return FeatureVolume(data=data, axis=axis, volume_shape=tuple(labels.shape), model=model, weights=weights,
                         resolution=grid[0] * 16, key=f"synthetic-{axis}")


def blob_volume(shape=(12, 48, 40), seed: int = 0) -> np.ndarray:
    """Labels 0 background, 1 a ball, 2 a box, on a (Z, Y, X) grid."""
    z, y, x = np.indices(shape)
    lab = np.zeros(shape, np.uint8)
    lab[((z - shape[0] / 2) / (shape[0] / 3)) ** 2 + ((y - 16) / 10) ** 2 + ((x - 14) / 9) ** 2 < 1] = 1
    lab[:, 30:42, 24:36] = 2
    return lab


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * np.count_nonzero(a & b) / total)


__all__ = ["synthetic_features", "blob_volume", "dice", "PLANE_AXES"]


def two_blobs(shape=(16, 64, 64), seed=0):
    """Two equally bright balls in a noisy dark background: only the first is the user's structure."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    a = ((z - 8) / 5.5) ** 2 + ((y - 20) / 10) ** 2 + ((x - 20) / 10) ** 2 < 1
    b = ((z - 8) / 5.5) ** 2 + ((y - 44) / 10) ** 2 + ((x - 44) / 10) ** 2 < 1
    image = 100.0 * (a | b) + rng.normal(0, 12, shape)
    return image.astype(np.float32), a, b
