"""NIfTI-1/2 (.nii, .nii.gz) reading and label writing with nibabel, on the file's own voxel grid."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np

from dinomed_napari.errors import VolumeError
from dinomed_napari.io.provenance import short_provenance
from dinomed_napari.io.validate import check_shape
from dinomed_napari.io.volume import Volume

_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error)


def memory_bytes() -> int | None:
    """Physical memory of this machine in bytes (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_declared_size(path: Path, shape: tuple[int, ...], dtype, offset: int) -> None:
    """Refuse a header whose voxel count cannot be real: more bytes than an uncompressed file holds, or
    more than this machine's memory (instead of a MemoryError or minutes of swapping)."""
    nbytes = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
    size = "x".join(map(str, shape))
    gib = nbytes / 2**30
    if not path.name.lower().endswith(".gz") and path.stat().st_size < offset + nbytes:
        raise VolumeError(f"{path}: truncated or corrupt NIfTI data: the header declares {size} voxels of "
                          f"{np.dtype(dtype)} ({gib:.2f} GiB) but the file holds {path.stat().st_size} bytes")
    mem = memory_bytes()
    if mem is not None and nbytes > mem:
        raise VolumeError(f"{path}: header declares {size} voxels of {np.dtype(dtype)} ({gib:.1f} GiB), more "
                          f"than this machine's memory ({mem / 2**30:.1f} GiB): corrupt header or a volume "
                          "too large to open here")


def read_nifti(path: Path) -> Volume:
    """Read a NIfTI file as a (Z, Y, X) `Volume` (the stored (i, j, k) grid reversed, no reorientation).

    The header's scale slope/intercept is applied by nibabel; the qform/sform essentials go to
    ``meta["nifti"]`` so `write_nifti` can write labels with the identical header geometry.
    """
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    try:
        img = nib.load(str(path))
    except (ImageFileError, *_READ_ERRORS) as exc:
        raise VolumeError(f"{path}: not a readable NIfTI file ({exc})") from exc
    shape = tuple(int(s) for s in img.shape)
    # Drop trailing singleton dims (X, Y, Z, 1) that some writers add; keep real 4D for the error.
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    check_shape(shape[::-1], path)  # in (Z, Y, X) order, like every other reader
    check_declared_size(path, shape, img.get_data_dtype(), int(img.header.get("vox_offset", 0)))
    try:
        arr = np.asanyarray(img.dataobj).reshape(shape)
    except _READ_ERRORS as exc:
        raise VolumeError(
            f"{path}: truncated or corrupt NIfTI data ({type(exc).__name__}: {exc}); expected "
            f"{'x'.join(map(str, shape))} voxels of {img.get_data_dtype()}"
        ) from exc
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    hdr = img.header
    qform, qcode = hdr.get_qform(coded=True)
    sform, scode = hdr.get_sform(coded=True)
    zooms = [float(z) for z in hdr.get_zooms()[:3]]
    meta = {
        "format": "nifti",
        "nifti": {
            "qform": np.asarray(hdr.get_qform(), float).tolist(),
            "qform_code": int(qcode),
            "sform": np.asarray(hdr.get_sform(), float).tolist(),
            "sform_code": int(scode),
            "zooms": zooms,
            "xyzt_units": list(hdr.get_xyzt_units()),
        },
    }
    return Volume(
        data=np.ascontiguousarray(arr.transpose(2, 1, 0)),
        spacing=(zooms[2], zooms[1], zooms[0]),
        affine=np.asarray(img.affine, dtype=float),
        source=str(path),
        meta=meta,
    )


def write_nifti(path: Path, labels_zyx: np.ndarray, like: Volume, provenance: dict | None = None) -> Path:
    """Write a (Z, Y, X) label array as NIfTI on ``like``'s grid (same affine, q/sform codes, zooms).

    ``provenance`` goes, short, into ``descrip`` (80 bytes) and, complete, into a JSON comment extension.
    """
    import nibabel as nib

    img = nib.Nifti1Image(labels_zyx.transpose(2, 1, 0), affine=None)
    hdr = img.header
    info = like.meta.get("nifti") if like.meta.get("format") == "nifti" else None
    if info is not None:
        img.set_qform(np.array(info["qform"]), code=int(info["qform_code"]))
        img.set_sform(np.array(info["sform"]), code=int(info["sform_code"]))
        hdr.set_zooms(tuple(info["zooms"]))
        hdr.set_xyzt_units(*info["xyzt_units"])
    else:
        # Other sources (DICOM, NRRD, TIFF ...): their affine is already (i, j, k) -> RAS mm.
        img.set_qform(np.asarray(like.affine, float), code=1)
        img.set_sform(np.asarray(like.affine, float), code=1)
        hdr.set_xyzt_units("mm")
    if provenance:
        hdr["descrip"] = short_provenance(provenance).encode("ascii", "replace")[:79]
        hdr.extensions.append(nib.nifti1.Nifti1Extension(6, json.dumps(provenance).encode()))
    nib.save(img, str(path))
    return Path(path)
