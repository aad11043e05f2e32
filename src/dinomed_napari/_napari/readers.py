"""npe2 reader: NIfTI, NRRD, DICOM series folders, TIFF, zarr and npy volumes with their spacing.

Reading itself is :func:`dinomed_napari.io.load_volume`; this module only decides whether a path is
ours and turns the Volume into layer data (:mod:`.layers`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .layers import is_label_volume, volume_layer_data

_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".dcm", ".tif", ".tiff", ".npy")


def _is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _is_dicom_folder(path: Path, probe: int = 20) -> bool:
    # Cheap test: napari asks every reader about every folder, so look at a few files only.
    files = (p for p in sorted(path.iterdir()) if p.is_file())
    return any(_is_dicom_file(p) for _, p in zip(range(probe), files, strict=False))


def supported(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like a volume this plugin reads (by suffix, or a DICOM/zarr folder)."""
    p = Path(path)
    name = p.name.lower()
    if p.is_dir():
        return name.endswith(".zarr") or (p / "zarr.json").exists() or _is_dicom_folder(p)
    return name.endswith(_SUFFIXES)


def is_picture(path: str | os.PathLike) -> bool:
    """A .npy or TIFF file whose header shape is no volume (a 2D or colour picture): napari's own readers
    show those, so this plugin leaves them to them instead of claiming them to refuse them."""
    from dinomed_napari.errors import VolumeError
    from dinomed_napari.io.validate import check_shape

    name = Path(path).name.lower()
    try:
        if name.endswith(".npy"):
            import numpy as np

            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape  # the header only
        elif name.endswith((".tif", ".tiff")):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.series[0].shape
        else:
            return False
    except Exception:  # unreadable: claimed, so that load_volume names the fault
        return False
    try:
        check_shape(tuple(shape), path)
    except VolumeError:
        return True
    return False


def get_reader(path: str | list[str]) -> Callable | None:
    """npe2 ``napari_get_reader``: a reader function for ``path``, or None if it is not ours (another
    format, or a .npy / TIFF picture that napari's own readers show)."""
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    if not paths or not all(supported(p) for p in paths) or any(is_picture(p) for p in paths):
        return None
    return read_layers


def read_layers(path: str | list[str]) -> list[tuple]:
    """Read one or several volumes; each becomes an image (or, for masks, labels) layer.

    Layers get ``scale`` = voxel spacing (Z, Y, X) and ``metadata['dinomed']`` with the affine and
    reader details, so a labels layer drawn on them is written back on the same grid.
    """
    from dinomed_napari.io import check_image_volume, load_volume

    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    layers = []
    for p in paths:
        # Image checks reject constant volumes, but an empty mask or scribble file is a valid labels layer.
        vol = load_volume(p, check=False)
        if not is_label_volume(vol, Path(p).name):
            check_image_volume(vol, source=p)
        layers.append(volume_layer_data(vol))
    return layers
