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
TILINGS = ("auto", "shrink", "tile")
#: With ``tiling="auto"``, planes whose long side exceeds this many times the resolution are tiled: shrinking
#: them would make one patch cover more than 48 pixels (membranes vanish); milder shrinking (a 512 CT at 224)
#: keeps the whole-slice view the resolution sweeps of the paper use.
AUTO_TILE_FACTOR = 3.0


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
    tiling : {"auto", "shrink", "tile"}
        "shrink": resize each slice whole to ``resolution``. "tile": keep the native pixel size (rounded to
        a multiple of the patch) and run the network on ``resolution``-pixel tiles with a ``halo``,
        stitched on the patch grid. "auto": tile when the plane's long side exceeds ``AUTO_TILE_FACTOR``
        times ``resolution``.
    halo : int, optional
        Context in pixels around each tile's kept core (multiple of 16); default ``resolution // 8``
        rounded down to 16 (64 px at 512).
    """

    window: str = "auto"
    level: float | None = None
    width: float | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)
    suv_range: tuple[float, float] = (0.0, 10.0)
    resolution: int = 512
    isotropic: bool = False
    tiling: str = "auto"
    halo: int | None = None

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
        if self.tiling not in TILINGS:
            raise ValueError(f"unknown tiling {self.tiling!r}; expected one of {', '.join(TILINGS)}")
        halo = max(0, r // 8 // 16 * 16) if self.halo is None else self.halo
        if not isinstance(halo, int | np.integer) or halo < 0 or halo % 16 or 2 * halo >= r:
            raise ValueError(f"halo must be a multiple of 16 in pixels with 2 * halo < resolution ({r}), "
                             f"got {self.halo}")
        object.__setattr__(self, "halo", int(halo))
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
        from dinomed_napari.io.lazy import all_finite

        if not all_finite(volume.data):
            _finite(np.full(1, np.nan), volume)  # the same error for the whole volume as for a block
        lo, hi = W.volume_percentiles(volume.data, p.percentiles)
    return _checked(lambda block: W.apply_range(block, lo, hi), volume)


def _finite(data: np.ndarray, volume: Volume) -> np.ndarray:
    if data.dtype.kind not in "iub" and not np.isfinite(data).all():  # integers are always finite
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


def tiles_plane(plane_shape: tuple[int, int], prep: Preprocess) -> bool:
    """Whether ``prep`` extracts planes of this shape in tiles at native pixel size (see ``tiling``)."""
    if prep.tiling != "auto":
        return prep.tiling == "tile"
    return max(plane_shape) > AUTO_TILE_FACTOR * prep.resolution


def native_size(plane_shape: tuple[int, int], plane_spacing: tuple[float, float] = (1.0, 1.0),
                patch: int = 16, isotropic: bool = False) -> tuple[int, int]:
    """Network input size (rh, rw) of one slice at its native pixel size, for tiled extraction.

    Each side is rounded to the nearest multiple of ``patch`` (at least one patch), so the slice is
    resized by less than half a patch and patch (i, j) keeps the half-pixel mapping of
    :class:`~dinomed_napari.features.volume.FeatureVolume`. With ``isotropic`` the coarser axis is
    upsampled to the finer spacing.
    """
    h, w = (float(s) for s in plane_shape)
    if isotropic:
        fine = min(float(plane_spacing[0]), float(plane_spacing[1]))
        h, w = h * float(plane_spacing[0]) / fine, w * float(plane_spacing[1]) / fine
    return tuple(max(patch, int(round(v / patch)) * patch) for v in (h, w))  # type: ignore[return-value]


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


def plane_input_size(plane_shape: tuple[int, int], plane_spacing: tuple[float, float], prep: Preprocess,
                     patch: int = 16) -> tuple[int, int]:
    """Network input size (rh, rw) of one plane under ``prep``: native pixel size where the plane is
    tiled (:func:`tiles_plane`), else resized to ``prep.resolution`` (:func:`input_size`). The patch grid
    is this size divided by ``patch``."""
    if tiles_plane(plane_shape, prep):
        size = native_size(plane_shape, plane_spacing, patch=patch, isotropic=prep.isotropic)
    else:
        size = input_size(plane_shape, plane_spacing, prep.resolution, patch=patch, isotropic=prep.isotropic)
    return int(size[0]), int(size[1])


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

    arr = np.asarray(slices, dtype=np.float32)
    if not (arr.ndim == 3 or (arr.ndim == 4 and arr.shape[-1] == 3)):
        raise ValueError(f"slices must be (B, H, W) or (B, H, W, 3), got shape {arr.shape}")
    return normalise(resize_unit(torch.from_numpy(np.ascontiguousarray(arr)), size), mean, std)


def host_batch(unit: np.ndarray, device, half: bool | None = None):
    """The CPU tensor a batch of unit-range slices is sent to ``device`` from.

    On the CPU: a float32 view (no copy, bit-identical to :func:`to_network_batch`). On GPUs (or with
    ``half=True``): float16, page-locked when CUDA is there, so the copy is half the bytes and asynchronous
    (unit range: error <= 2.5e-4, within the features' float16 storage).
    """
    import torch

    t = torch.from_numpy(np.ascontiguousarray(unit, dtype=np.float32))
    cuda = torch.device(device).type == "cuda"
    if not (cuda if half is None else half):
        return t
    out = torch.empty(t.shape, dtype=torch.float16, pin_memory=cuda and torch.cuda.is_available())
    return out.copy_(t)


def device_batch(host, size: tuple[int, int], mean: tuple[float, float, float] = IMAGENET_MEAN,
                 std: tuple[float, float, float] = IMAGENET_STD, device=None):
    """:func:`to_network_batch` of a :func:`host_batch`, with resize, 3 channels and normalisation done on
    ``device`` (a non-blocking copy of the one-channel slices)."""
    x = host.to(device if device is not None else host.device, non_blocking=True).float()
    return normalise(resize_unit(x, size), mean, std)


def resize_unit(x, size: tuple[int, int]):
    """(B, H, W) or (B, H, W, 3) unit-range tensor -> (B, 1 or 3, rh, rw), bilinear with antialiasing."""
    import torch.nn.functional as F

    x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
    if tuple(x.shape[-2:]) != tuple(size):
        # Resize before expanding grey to 3 channels: a third of the work.
        x = F.interpolate(x, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False,
                          antialias=True)
    return x


def normalise(x, mean: tuple[float, float, float] = IMAGENET_MEAN,
              std: tuple[float, float, float] = IMAGENET_STD):
    """(B, 1 or 3, H, W) unit range -> (B, 3, H, W) normalised per channel, grey copied to 3 channels."""
    import torch

    x = x.expand(-1, 3, -1, -1)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous()
