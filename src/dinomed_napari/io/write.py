"""`save_labels`: write a label image on the grid of the volume it annotates (the reader's exact inverse)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dinomed_napari.errors import VolumeError
from dinomed_napari.io.atomic import atomic_output
from dinomed_napari.io.volume import Volume

LABEL_FORMATS = ".nii, .nii.gz, .nrrd, .tif, .tiff, .npy, .zarr"


def _label_dtype(labels: np.ndarray, path: Path) -> np.ndarray:
    """Smallest standard dtype holding the labels exactly (nibabel refuses int64 without a header dtype)."""
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if labels.dtype.kind == "f":
        return labels.astype(np.float32)  # probability maps
    if labels.dtype.kind not in "iu":
        raise VolumeError(f"{path}: labels of dtype {labels.dtype}; expected integers, bool or floats")
    if labels.size == 0:
        return labels.astype(np.uint8)
    lo, hi = int(labels.min()), int(labels.max())
    for dtype in (np.uint8, np.uint16, np.int16, np.int32):
        if np.iinfo(dtype).min <= lo and hi <= np.iinfo(dtype).max:
            return labels.astype(dtype, copy=False)
    raise VolumeError(f"{path}: label values [{lo}, {hi}] do not fit 32-bit integers")


def label_writer(path):
    """The writer for ``path``'s suffix, or a `VolumeError` listing the supported ones (check outputs
    with it before slow work)."""
    name = Path(path).name.lower()
    if name.endswith((".nii", ".nii.gz")):
        from dinomed_napari.io.nifti import write_nifti as writer
    elif name.endswith(".nrrd"):
        from dinomed_napari.io.nrrd import write_nrrd as writer
    elif name.endswith((".tif", ".tiff")):
        from dinomed_napari.io.tiff import write_tiff as writer
    elif name.endswith(".npy"):
        from dinomed_napari.io.npy import write_npy as writer
    elif name.endswith(".zarr"):
        from dinomed_napari.io.zarr_io import write_zarr as writer
    else:
        raise VolumeError(f"{path}: unsupported label file type; expected one of {LABEL_FORMATS}")
    return writer


def save_labels(path, labels, like: Volume, provenance: dict | None = None, *,
                overwrite: bool = True) -> Path:
    """Write ``labels`` (Z, Y, X) on the grid of ``like`` so it overlays the source image.

    Parameters
    ----------
    path : str or Path
        Output file; the suffix picks the format: .nii/.nii.gz (same affine, q/sform codes and zooms as
        a NIfTI source; else the source's RAS affine with code 1), .nrrd (same space, directions,
        origin), .tif/.tiff (ImageJ hyperstack with the spacing), .npy (+ ``.npy.json`` side-car with
        spacing and affine), .zarr (spacing and affine in the attributes).
    labels : array-like
        Integer, bool or float array with exactly ``like.shape``.
    like : Volume
        The volume the labels belong to (as returned by `load_volume`).
    provenance : dict, optional
        What made the labels (model, weights, resolution, window ...): JSON in the NIfTI ``descrip`` (short
        form) and a comment extension, the TIFF ImageJ ``Info``, an NRRD ``dinomed_provenance`` field, the
        zarr attributes or the .npy side-car.
    overwrite : bool
        False refuses to replace an existing file (:class:`~dinomed_napari.errors.OutputError`).

    Returns
    -------
    Path
        The written file; `load_volume` reads it back with ``like``'s shape, spacing and affine.

    Notes
    -----
    The file is written under a temporary name in the same folder and renamed when complete: a failed
    write (disk full, Ctrl-C) leaves an existing file untouched and never a partial file under ``path``.
    """
    path = Path(path).expanduser()
    labels = np.asarray(labels)
    if labels.shape != like.shape:
        raise VolumeError(f"{path}: labels have shape {labels.shape}; expected the source volume's shape "
                          f"{like.shape} (Z, Y, X) from {like.source}")
    labels = _label_dtype(labels, path)
    writer = label_writer(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        writer(tmp, labels, like, provenance)
    if writer.__name__ == "write_npy":  # the grid side-car goes with it (after: never a side-car alone)
        from dinomed_napari.io.npy import write_sidecar

        write_sidecar(path, like, provenance)
    return path
