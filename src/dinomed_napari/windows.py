"""Intensity windows that map scanner units to [0, 1]: CT Hounsfield presets, PET SUV range, percentiles."""

from __future__ import annotations

import numpy as np

from dinomed_napari.errors import VolumeError

# name -> (level, width) in Hounsfield units (radiology standard presets).
CT_PRESETS: dict[str, tuple[float, float]] = {
    "soft_tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
# The "ct3" preset puts these three windows into R, G, B: together they span air to cortical bone, so the
# network sees lung, soft-tissue and bone contrast at once instead of one window copied three times.
CT3_WINDOWS: tuple[str, str, str] = ("soft_tissue", "lung", "bone")

# Above this many voxels, percentiles are estimated on an evenly strided subsample (error << 1 grey level).
_PERCENTILE_SAMPLES = 4_000_000


def hounsfield_like(minimum: float, low: float, high: float) -> bool:
    """Whether intensities look like CT Hounsfield units: nothing below about -1000 (air), a 0.5th
    percentile ``low`` under -500 and a 99.5th percentile ``high`` of 50-4000 (soft tissue to bone)."""
    return -1100 <= minimum and low <= -500 and 50 <= high <= 4000


def apply_range(data: np.ndarray, low: float, high: float) -> np.ndarray:
    """Linear map ``low`` -> 0, ``high`` -> 1, clipped to [0, 1]; float32 output."""
    if not high > low:
        raise ValueError(f"intensity range must have high > low, got ({low}, {high})")
    lo = np.float32(low)
    out = np.asarray(data, dtype=np.float32) - lo
    out /= np.float32(high) - lo  # same float32 operations as for data == high: exactly 1 there
    return np.clip(out, 0.0, 1.0, out=out)


def apply_window(data: np.ndarray, level: float, width: float) -> np.ndarray:
    """Radiology window: ``level - width/2`` -> 0, ``level + width/2`` -> 1, clipped; float32 output."""
    if not width > 0:
        raise ValueError(f"window width must be > 0, got {width}")
    return apply_range(data, level - width / 2.0, level + width / 2.0)


def ct3(data: np.ndarray, windows: tuple[str, str, str] = CT3_WINDOWS) -> np.ndarray:
    """Three CT windows stacked on a last axis of length 3 (float32 in [0, 1])."""
    return np.stack([apply_window(data, *CT_PRESETS[w]) for w in windows], axis=-1)


def volume_percentiles(data, percentiles: tuple[float, float]) -> tuple[float, float]:
    """Intensity percentiles of a whole volume (computed once, so every slice shares one mapping).

    Above ``_PERCENTILE_SAMPLES`` voxels they are estimated on the evenly strided subsample
    ``data.ravel()[::step]``, gathered slab by slab: a lazy (zarr, dask) or transposed volume is never
    copied whole. Falls back to min/max when the two percentiles coincide (e.g. mostly-background volumes).

    Raises
    ------
    VolumeError
        The volume is constant (nothing to normalise).
    """
    from dinomed_napari.io.lazy import iter_slabs, strided_sample

    size = int(np.prod(data.shape, dtype=np.int64))
    sample = strided_sample(data, max(1, size // _PERCENTILE_SAMPLES))
    lo, hi = (float(v) for v in np.percentile(sample, percentiles))
    if hi <= lo:
        lo = min(float(b.min()) for _, b in iter_slabs(data))
        hi = max(float(b.max()) for _, b in iter_slabs(data))
    if hi <= lo:
        raise VolumeError(f"volume is constant (every voxel = {lo}); there is nothing to normalise")
    return lo, hi
