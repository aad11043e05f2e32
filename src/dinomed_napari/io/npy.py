"""NumPy .npy volumes (no pickles), with an optional JSON side-car ``<file>.json`` holding the grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dinomed_napari.errors import VolumeError, load_failure
from dinomed_napari.io.plain_grid import grid_from_record, grid_record
from dinomed_napari.io.validate import check_shape
from dinomed_napari.io.volume import Volume


def sidecar(path: Path) -> Path:
    """The grid side-car of an .npy file: ``labels.npy`` -> ``labels.npy.json``."""
    return Path(str(path) + ".json")


def read_npy(path: Path) -> Volume:
    """Read an .npy array (Z, Y, X); spacing/affine from the side-car when present, else 1.0."""
    try:
        arr = np.load(str(path), allow_pickle=False)  # never unpickle user files
    except Exception as exc:  # ValueError (pickled/object, truncated), EOFError, OSError
        raise VolumeError(f"{path}: not a readable .npy array or truncated data "
                          f"({load_failure(exc)})") from exc
    check_shape(tuple(arr.shape), path)
    record = {}
    car = sidecar(path)
    if car.is_file():
        try:
            record = json.loads(car.read_text())
        except (OSError, ValueError) as exc:
            raise VolumeError(f"{car}: unreadable grid side-car of {path} ({exc}); expected JSON") from exc
    spacing, affine, unit = grid_from_record(record, car)
    return Volume(data=arr, spacing=spacing, affine=affine, source=str(path),
                  meta={"format": "npy", "spacing_unit": unit})


def write_npy(path: Path, labels_zyx: np.ndarray, like: Volume, provenance: dict | None = None) -> Path:
    """Write labels as .npy (the side-car is written by :func:`write_sidecar`, named after the target)."""
    np.save(str(path), np.ascontiguousarray(labels_zyx), allow_pickle=False)
    return Path(path)


def write_sidecar(path: Path, like: Volume, provenance: dict | None = None) -> Path:
    """The side-car of ``path``: ``like``'s spacing and affine (and the provenance), written atomically."""
    from dinomed_napari.io.atomic import write_text

    record = grid_record(like)
    if provenance:
        record["provenance"] = provenance
    return write_text(sidecar(path), json.dumps(record))
