"""Mapping between the patch grid of a slice and its pixel grid."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .volume import PLANE_AXES


def upsample_patches(patch: np.ndarray | torch.Tensor, plane_shape: tuple[int, int]) -> np.ndarray:
    """Bilinearly upsample patch-grid maps to the pixel grid of the slice.

    Parameters
    ----------
    patch : array, shape (h, w, K) or (S, h, w, K)
        Values on the patch grid (features, logits, PCA components).
    plane_shape : (H, W)
        Pixel shape of the slice.

    Returns
    -------
    np.ndarray, float32, shape (H, W, K) or (S, H, W, K)
        Half-pixel-centre bilinear interpolation (``align_corners=False``), consistent with the whole-slice
        resize done before the network.
    """
    t = torch.as_tensor(np.asarray(patch, dtype=np.float32))
    single = t.ndim == 3
    if single:
        t = t[None]
    out = F.interpolate(t.permute(0, 3, 1, 2), size=tuple(plane_shape), mode="bilinear", align_corners=False)
    out = out.permute(0, 2, 3, 1).contiguous().numpy()
    return out[0] if single else out


def patch_coords(pixels: np.ndarray, plane_shape: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """Continuous patch-grid coordinates of pixel positions (row, col), inverse of the half-pixel mapping."""
    pixels = np.asarray(pixels, dtype=np.float64)
    scale = np.array([grid[0] / plane_shape[0], grid[1] / plane_shape[1]])
    return (pixels + 0.5) * scale - 0.5


def sample_bilinear(patch: np.ndarray, pixels: np.ndarray, plane_shape: tuple[int, int]) -> np.ndarray:
    """Sample patch-grid maps at pixel positions with the same bilinear rule as :func:`upsample_patches`.

    Parameters
    ----------
    patch : array, shape (h, w, K)
    pixels : array, shape (N, 2)
        (row, col) pixel positions in the slice.
    plane_shape : (H, W)

    Returns
    -------
    np.ndarray, float32, shape (N, K)
    """
    patch = np.asarray(patch, dtype=np.float32)
    h, w = patch.shape[:2]
    rc = patch_coords(pixels, plane_shape, (h, w))
    # Clamp like F.interpolate does at the borders (edge replication).
    r = np.clip(rc[:, 0], 0, h - 1)
    c = np.clip(rc[:, 1], 0, w - 1)
    r0 = np.floor(r).astype(int)
    c0 = np.floor(c).astype(int)
    r1 = np.minimum(r0 + 1, h - 1)
    c1 = np.minimum(c0 + 1, w - 1)
    fr = (r - r0)[:, None].astype(np.float32)
    fc = (c - c0)[:, None].astype(np.float32)
    top = patch[r0, c0] * (1 - fc) + patch[r0, c1] * fc
    bot = patch[r1, c0] * (1 - fc) + patch[r1, c1] * fc
    return top * (1 - fr) + bot * fr


def to_volume_order(stack: np.ndarray, axis: int) -> np.ndarray:
    """Move a per-slice stack (S, H, W, ...) along ``axis`` back to (Z, Y, X, ...) order."""
    a, b = PLANE_AXES[axis]
    order = [axis, a, b]
    inverse = np.argsort(order)
    return np.transpose(stack, tuple(inverse) + tuple(range(3, stack.ndim)))


def slice_of(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The 2D plane ``index`` of a (Z, Y, X, ...) array along ``axis``, in (H, W, ...) order.

    NumPy arrays give a copy; other array-likes (zarr, a lazily normalised image) read that plane only.
    """
    if isinstance(volume, np.ndarray):
        return np.take(volume, index, axis=axis)
    return volume[(slice(None),) * int(axis) + (int(index),)]


def patch_transform(volume_shape: tuple[int, int, int], grid: tuple[int, int], axis: int,
                    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)):
    """napari ``scale`` and ``translate`` that place a patch-grid map over its image.

    A map of shape (S, h, w[, K]) along ``axis``, moved to (Z, Y, X) order with :func:`to_volume_order`,
    covers the image exactly when its layer gets these (world units = the image layer's ``spacing``):
    patch i of a plane of H pixels is centred at pixel ``(i + 0.5) * H / h - 0.5``.

    Returns
    -------
    (scale, translate) : two 3-tuples of float, in (Z, Y, X) order
    """
    a, b = PLANE_AXES[axis]
    scale, translate = [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]
    for ax, g in ((a, grid[0]), (b, grid[1])):
        step = float(volume_shape[ax]) / float(g)
        scale[ax], translate[ax] = step, 0.5 * step - 0.5
    return (tuple(s * float(sp) for s, sp in zip(scale, spacing, strict=True)),
            tuple(t * float(sp) for t, sp in zip(translate, spacing, strict=True)))
