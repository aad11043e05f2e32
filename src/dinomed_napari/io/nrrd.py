"""NRRD (.nrrd, .nhdr) reading and label writing with pynrrd; geometry as a NIfTI-style RAS affine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dinomed_napari.errors import VolumeError
from dinomed_napari.io.validate import check_shape
from dinomed_napari.io.volume import Volume

# Sign flips that take each NRRD world space to RAS (the same matrix takes RAS back: it is its own inverse).
_TO_RAS = {
    "left-posterior-superior": (-1.0, -1.0, 1.0),
    "right-anterior-superior": (1.0, 1.0, 1.0),
    "left-anterior-superior": (-1.0, 1.0, 1.0),
}
_ALIASES = {"LPS": "left-posterior-superior", "RAS": "right-anterior-superior",
            "LAS": "left-anterior-superior"}


def _space(header: dict) -> str:
    space = str(header.get("space", "right-anterior-superior"))
    return _ALIASES.get(space.upper(), space.lower())


def read_nrrd(path: Path) -> Volume:
    """Read an NRRD file as a (Z, Y, X) `Volume`; 'space directions'/'space origin' give the affine."""
    import nrrd

    try:
        arr, header = nrrd.read(str(path), index_order="F")
    except Exception as exc:  # pynrrd raises NRRDError, ValueError, EOFError, zlib.error ... on bad files
        raise VolumeError(f"{path}: not a readable NRRD file or truncated data "
                          f"({type(exc).__name__}: {exc})") from exc
    check_shape(tuple(arr.shape)[::-1], path)  # in (Z, Y, X) order, like every other reader
    space = _space(header)
    flip = np.diag(_TO_RAS.get(space, (1.0, 1.0, 1.0)))
    if "space directions" in header:
        dirs = np.asarray(header["space directions"], dtype=float)  # row a = step of file axis a
        origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=float)
    else:
        dirs = np.diag(np.asarray(header.get("spacings", (1.0, 1.0, 1.0)), dtype=float))
        origin = np.zeros(3)
    if dirs.shape != (3, 3) or not np.all(np.isfinite(dirs)):
        raise VolumeError(f"{path}: 'space directions' {dirs.tolist()} do not describe 3 spatial axes; "
                          "expected a 3x3 matrix for a 3D volume")
    affine = np.eye(4)
    affine[:3, :3] = flip @ dirs.T
    affine[:3, 3] = flip @ origin
    step = np.linalg.norm(dirs, axis=1)
    meta = {"format": "nrrd", "nrrd": {"space": space}}
    if space not in _TO_RAS:
        meta["nrrd"]["note"] = f"space {space!r} taken as RAS (no anatomical orientation in the file)"
    return Volume(
        data=np.ascontiguousarray(arr.transpose(2, 1, 0)),
        spacing=(float(step[2]), float(step[1]), float(step[0])),
        affine=affine,
        source=str(path),
        meta=meta,
    )


def write_nrrd(path: Path, labels_zyx: np.ndarray, like: Volume, provenance: dict | None = None) -> Path:
    """Write a (Z, Y, X) label array as NRRD on ``like``'s grid (same space, directions and origin); the
    provenance goes into a ``dinomed_provenance`` JSON field."""
    import nrrd

    space = like.meta.get("nrrd", {}).get("space", "left-posterior-superior")
    if space not in _TO_RAS:
        space = "right-anterior-superior"
    flip = np.diag(_TO_RAS[space])
    affine = np.asarray(like.affine, dtype=float)
    header = {
        "space": space,
        "space directions": (flip @ affine[:3, :3]).T,
        "space origin": flip @ affine[:3, 3],
        "kinds": ["domain", "domain", "domain"],
    }
    if provenance:
        header["dinomed_provenance"] = json.dumps(provenance)
    nrrd.write(str(path), np.asarray(labels_zyx).transpose(2, 1, 0), header, index_order="F")
    return Path(path)
