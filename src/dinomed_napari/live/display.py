"""Which modality an image is, which network window that implies, and the display contrast to match.

The file's modality wins; without one, Hounsfield-like intensities (air at about -1000) say CT. Every
choice comes with the reason, so the viewer can show what it did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dinomed_napari.windows import CT_PRESETS, hounsfield_like

MODALITIES = ("CT", "MR", "PT", "EM")
_DEFAULT_WINDOW = {"CT": "soft_tissue", "PT": "pet_suv"}


@dataclass(frozen=True)
class WindowChoice:
    """The modality and network window chosen for an image, and why."""

    modality: str | None
    window: str
    reason: str


def _sample(data: np.ndarray, limit: int = 2_000_000) -> np.ndarray:
    flat = np.asarray(data).reshape(-1)
    return flat[:: max(1, flat.size // limit)]


#: Planes read (evenly spaced along the first axis, at most twice this many) to choose a window and the
#: display contrast.
SAMPLE_PLANES = 16


def display_sample(data) -> np.ndarray:
    """Every ``Z // SAMPLE_PLANES``-th plane of a volume, as what :func:`choose_window` and
    :func:`display_range` read. A NumPy volume gives a view; a lazy one (zarr, dask) reads those planes
    only, so an image too large for memory is never loaded to pick its contrast."""
    from dinomed_napari.io.lazy import is_lazy, read_block

    step = max(1, int(data.shape[0]) // SAMPLE_PLANES)
    if not is_lazy(data):
        return np.asarray(data)[::step]
    return read_block(data, np.arange(0, int(data.shape[0]), step))


def detect_modality(data: np.ndarray, declared: str | None = None) -> tuple[str | None, str]:
    """``(modality or None, reason)``: the declared one, else CT when the intensities look like HU."""
    if declared:
        return declared.upper(), f"{declared.upper()} (from the file)"
    s = _sample(data)
    lo, hi = (float(v) for v in np.percentile(s, [0.5, 99.5]))
    if hounsfield_like(float(s.min()), lo, hi):
        return "CT", f"CT (auto: intensities {lo:.0f}..{hi:.0f} look like Hounsfield units)"
    return None, f"unknown modality (intensities {lo:.3g}..{hi:.3g})"


def choose_window(data: np.ndarray, declared: str | None = None, modality: str = "auto",
                  window: str = "auto") -> WindowChoice:
    """The network window for an image.

    Parameters
    ----------
    data : array
        The image (a strided sample is enough).
    declared : str, optional
        Modality the file says.
    modality : {"auto", "CT", "MR", "PT", "EM"}
        The user's choice; "auto" detects.
    window : str
        The user's window; "auto" = by modality (CT soft tissue, PET SUV 0-10, else percentiles).
    """
    if modality == "auto":
        mod, why = detect_modality(data, declared)
    else:
        mod, why = modality, f"{modality} (chosen)"
    if window != "auto":
        return WindowChoice(mod, window, f"{why}; window {window} (chosen)")
    chosen = _DEFAULT_WINDOW.get(mod or "", "percentile")
    return WindowChoice(mod, chosen, f"{why}; window {chosen} (default for it)")


def display_range(window: str, data: np.ndarray) -> tuple[float, float]:
    """Contrast limits showing what the network sees: the CT preset's range, SUV 0-10, or percentiles."""
    if window in CT_PRESETS:
        level, width = CT_PRESETS[window]
        return level - width / 2.0, level + width / 2.0
    if window == "ct3":
        return -1000.0, 1000.0
    if window == "pet_suv":
        return 0.0, 10.0
    lo, hi = (float(v) for v in np.percentile(_sample(data), [0.5, 99.5]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)
