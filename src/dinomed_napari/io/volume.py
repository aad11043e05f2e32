"""The in-memory volume every reader returns and every writer takes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Volume:
    """A 3D image on a voxel grid, in (Z, Y, X) axis order.

    Attributes
    ----------
    data : np.ndarray
        Array of shape (Z, Y, X). For NIfTI/NRRD this is the file's stored (i, j, k) grid reversed, so
        writing labels back is an exact transpose onto the same grid (no resampling, no reorientation).
    spacing : tuple of float
        Voxel size along (Z, Y, X), in millimetres unless ``meta["spacing_unit"]`` says otherwise.
    affine : np.ndarray
        4x4 matrix mapping the file's voxel index (i, j, k) = (x, y, z) to world RAS millimetres, the
        NIfTI convention. Identity-scaled for formats without orientation (TIFF, npy, zarr).
    modality : str or None
        "CT", "MR", "PT", "EM", or None when unknown.
    units : str
        Intensity units: "HU", "SUVbw", "BQML", "a.u." ...
    source : str or None
        Path the volume was read from.
    meta : dict
        JSON-serialisable reader details needed to write results back (format, header fields, notes such
        as why SUV conversion was not possible).
    """

    data: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    modality: str | None = None
    units: str = "a.u."
    source: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]
