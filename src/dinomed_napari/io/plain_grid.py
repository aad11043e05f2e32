"""Grid records for formats without orientation (TIFF, npy, zarr): spacing -> affine, and back."""

from __future__ import annotations

import numpy as np

from dinomed_napari.errors import VolumeError


def affine_from_spacing(spacing_zyx) -> np.ndarray:
    """Diagonal (i, j, k) = (x, y, z) -> world affine for a grid with no orientation."""
    z, y, x = (float(s) for s in spacing_zyx)
    return np.diag([x, y, z, 1.0])


def grid_record(volume) -> dict:
    """JSON-ready record of a volume's grid, stored next to written labels (zarr attrs, npy side-car)."""
    return {
        "spacing": [float(s) for s in volume.spacing],
        "affine": np.asarray(volume.affine, float).tolist(),
        "spacing_unit": volume.meta.get("spacing_unit", "mm"),
    }


def grid_from_record(record: dict, source) -> tuple[tuple[float, float, float], np.ndarray, str]:
    """(spacing, affine, spacing_unit) from a record written by `grid_record` (or just {"spacing": ...})."""
    try:
        spacing = tuple(float(s) for s in record.get("spacing", (1.0, 1.0, 1.0)))
        if len(spacing) != 3 or min(spacing) <= 0:
            raise ValueError(f"spacing {spacing} is not 3 positive numbers")
        affine = np.asarray(record["affine"], float) if "affine" in record else affine_from_spacing(spacing)
        if affine.shape != (4, 4):
            raise ValueError(f"affine has shape {affine.shape}, not 4x4")
    except (TypeError, ValueError) as exc:
        raise VolumeError(f"{source}: bad grid metadata {record!r} ({exc}); expected 'spacing': [z, y, x] "
                          "and optionally a 4x4 'affine'") from exc
    return spacing, affine, str(record.get("spacing_unit", "pixel" if "spacing" not in record else "mm"))
