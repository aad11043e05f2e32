"""From scanner intensities to the (B, 3, H, W) ImageNet-normalised batches DINOv3 expects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from dinomed_napari import windows as W
from dinomed_napari.errors import VolumeError
from dinomed_napari.io.volume import Volume

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WINDOWS = ("auto", *W.CT_PRESETS, "custom", "ct3", "pet_suv", "percentile")


@dataclass(frozen=True)
class Preprocess:
    """How a volume becomes network input.

    Parameters
    ----------
    window : str
        "auto" (by modality: CT -> "soft_tissue", PT in SUV -> "pet_suv", else "percentile"),
        a CT preset ("soft_tissue" W400/L40, "lung" W1500/L-600, "bone" W1800/L400, "brain" W80/L40),
        "custom" (``level``/``width`` in the volume's units), "ct3" (soft tissue, lung and bone windows
        as R, G, B), "pet_suv" (clip to ``suv_range``) or "percentile" (clip to volume percentiles).
    level, width : float, optional
        Custom window; giving both with ``window="auto"`` means "custom".
    percentiles : (float, float)
        Lower/upper percentile for "percentile", computed once over the whole volume.
    suv_range : (float, float)
        SUV values mapped to 0 and 1 for "pet_suv".
    resolution : int
        Long side of each slice as fed to the network; a multiple of 16, at least 16.
    isotropic : bool
        Resize slices to their physical aspect (in-plane isotropic pixels) instead of the voxel-grid aspect.
    """

    window: str = "auto"
    level: float | None = None
    width: float | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)
    suv_range: tuple[float, float] = (0.0, 10.0)
    resolution: int = 512
    isotropic: bool = False

    def __post_init__(self):
        if self.window not in WINDOWS:
            raise ValueError(f"unknown window {self.window!r}; expected one of {', '.join(WINDOWS)}")
        custom = self.level is not None or self.width is not None
        if custom and self.window not in ("auto", "custom"):
            raise ValueError(f"level/width given with window={self.window!r}; use window='custom'")
        if self.window == "custom" or custom:
            if self.level is None or self.width is None or not float(self.width) > 0:
                raise ValueError(f"a custom window needs level and width > 0, got level={self.level}, "
                                 f"width={self.width}")
            object.__setattr__(self, "window", "custom")
            object.__setattr__(self, "level", float(self.level))  # 100 and 100.0: one cache key
            object.__setattr__(self, "width", float(self.width))
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        if not self.suv_range[0] < self.suv_range[1]:
            raise ValueError(f"suv_range must be (low, high) with low < high, got {self.suv_range}")
        r = self.resolution
        if not isinstance(r, int | np.integer) or r < 16 or r % 16:
            raise ValueError(f"resolution must be a multiple of 16 and at least 16, got {r}")
        object.__setattr__(self, "percentiles", (float(lo), float(hi)))
        object.__setattr__(self, "suv_range", tuple(float(v) for v in self.suv_range))
        object.__setattr__(self, "resolution", int(r))

    def resolve(self, volume: Volume) -> Preprocess:
        """The same settings with "auto" replaced by the window this volume's modality gets."""
        if self.window != "auto":
            return self
        mod = (volume.modality or "").upper()
        if mod == "CT":
            return replace(self, window="soft_tissue")
        if mod == "PT" and volume.units.upper().startswith("SUV"):
            return replace(self, window="pet_suv")
        return replace(self, window="percentile")

    @property
    def channels(self) -> int:
        """1 for grey windows, 3 for "ct3"."""
        return 3 if self.window == "ct3" else 1

    def key(self, volume: Volume | None = None) -> dict:
        """JSON-able description for cache keys: only the settings the chosen window uses.

        With ``volume``, "auto" is resolved first (so auto and its explicit equivalent share a key).
        """
        p = self.resolve(volume) if volume is not None else self
        out: dict = {"window": p.window, "resolution": p.resolution, "isotropic": p.isotropic}
        if p.window in ("custom", "auto"):
            out.update(level=p.level, width=p.width)
        if p.window in ("percentile", "auto"):
            out["percentiles"] = list(p.percentiles)
        if p.window in ("pet_suv", "auto"):
            out["suv_range"] = list(p.suv_range)
        return out


def intensity_mapper(volume: Volume, prep: Preprocess) -> Callable[[np.ndarray], np.ndarray]:
    """A function mapping any block of ``volume`` (one slice, a batch of slices, all of it) to [0, 1].

    Volume-wide statistics (percentiles) are computed here, once, so every slice gets the same mapping
    and extraction can window batch by batch (memory bounded by the batch, not the volume).

    Returns
    -------
    callable
        ``f(block) -> float32 array`` of the block's shape, plus a trailing axis of 3 for "ct3".
        Raises VolumeError on NaN/inf voxels in the block.
    """
    p = prep.resolve(volume)
    if p.window == "ct3":
        return _checked(W.ct3, volume)
    if p.window in W.CT_PRESETS:
        level, width = W.CT_PRESETS[p.window]
        lo, hi = level - width / 2.0, level + width / 2.0
    elif p.window == "custom":
        lo, hi = float(p.level) - float(p.width) / 2.0, float(p.level) + float(p.width) / 2.0
    elif p.window == "pet_suv":
        lo, hi = p.suv_range
    else:
        lo, hi = W.volume_percentiles(_finite(np.asarray(volume.data), volume), p.percentiles)
    return _checked(lambda block: W.apply_range(block, lo, hi), volume)


def _finite(data: np.ndarray, volume: Volume) -> np.ndarray:
    if not np.isfinite(data).all():
        raise VolumeError(f"volume {volume.source or ''} contains NaN or inf voxels; fix or mask them first")
    return data


def _checked(fn: Callable[[np.ndarray], np.ndarray], volume: Volume) -> Callable[[np.ndarray], np.ndarray]:
    return lambda block: fn(_finite(np.asarray(block), volume))


def intensity_to_unit(volume: Volume, prep: Preprocess) -> np.ndarray:
    """Map a whole volume's intensities to [0, 1] with ``prep``'s window.

    Returns
    -------
    np.ndarray
        float32, (Z, Y, X), or (Z, Y, X, 3) for "ct3".

    Raises
    ------
    VolumeError
        NaN/inf voxels, or a constant volume with a percentile window.
    """
    return intensity_mapper(volume, prep)(volume.data)


def input_size(plane_shape: tuple[int, int], plane_spacing: tuple[float, float] = (1.0, 1.0),
               resolution: int = 512, patch: int = 16, isotropic: bool = False) -> tuple[int, int]:
    """Network input size (rh, rw) of one slice: long side = ``resolution``, aspect kept.

    Parameters
    ----------
    plane_shape : (int, int)
        Slice shape (H, W) in voxels.
    plane_spacing : (float, float)
        Voxel size along (H, W); used only when ``isotropic``.
    resolution : int
        Long side in pixels (multiple of ``patch``).
    patch : int
        Patch size; both sides become multiples of it, at least one patch.
    isotropic : bool
        Keep the physical aspect (H * spacing_h : W * spacing_w) instead of the voxel aspect.
    """
    if resolution < patch or resolution % patch:
        raise ValueError(f"resolution must be a multiple of {patch} and at least {patch}, got {resolution}")
    h, w = (float(s) for s in plane_shape)
    if h <= 0 or w <= 0:
        raise ValueError(f"plane shape must be positive, got {tuple(plane_shape)}")
    if isotropic:
        h, w = h * float(plane_spacing[0]), w * float(plane_spacing[1])
    short = max(patch, int(round(resolution * min(h, w) / max(h, w) / patch)) * patch)
    return (resolution, short) if h >= w else (short, resolution)


def to_network_batch(slices: np.ndarray, size: tuple[int, int],
                     mean: tuple[float, float, float] = IMAGENET_MEAN,
                     std: tuple[float, float, float] = IMAGENET_STD):
    """Resize whole slices to ``size`` and normalise them as DINOv3 expects.

    Parameters
    ----------
    slices : np.ndarray
        (B, H, W) grey or (B, H, W, 3) colour, values in [0, 1].
    size : (int, int)
        Output (rh, rw), e.g. from :func:`input_size`.
    mean, std : 3-tuples
        Normalisation per channel (ImageNet by default; satellite-trained weights use their own).

    Returns
    -------
    torch.Tensor
        (B, 3, rh, rw) float32; grey is copied to the three channels.
    """
    import torch
    import torch.nn.functional as F

    arr = np.asarray(slices, dtype=np.float32)
    if arr.ndim == 3:
        x = torch.from_numpy(np.ascontiguousarray(arr))[:, None]
    elif arr.ndim == 4 and arr.shape[-1] == 3:
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
    else:
        raise ValueError(f"slices must be (B, H, W) or (B, H, W, 3), got shape {arr.shape}")
    if tuple(x.shape[-2:]) != tuple(size):
        # Resize before expanding grey to 3 channels: a third of the work.
        x = F.interpolate(x, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False,
                          antialias=True)
    x = x.expand(-1, 3, -1, -1)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous()
