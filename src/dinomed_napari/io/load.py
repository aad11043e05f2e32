"""`load_volume`: one entry point that picks the reader from the path (suffix, or folder contents)."""

from __future__ import annotations

from pathlib import Path

from dinomed_napari.errors import VolumeError
from dinomed_napari.io.validate import check_image_volume
from dinomed_napari.io.volume import Volume

FORMATS = ".nii, .nii.gz, .nrrd, .nhdr, .tif, .tiff, .npy, .zarr folder, DICOM series folder (or one .dcm)"
_UNITS = {"CT": "HU"}


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _is_zarr(folder: Path) -> bool:
    return folder.suffix.lower() == ".zarr" or any(
        (folder / f).is_file() for f in ("zarr.json", ".zarray", ".zgroup"))


def _read(path: Path, modality: str | None, series: str | None, lazy: bool | None) -> Volume:
    if path.is_dir():
        if _is_zarr(path):
            from dinomed_napari.io.zarr_io import read_zarr

            return read_zarr(path, lazy=lazy)
        if not any(path.iterdir()):
            raise VolumeError(f"{path}: empty folder; expected a DICOM series or a zarr store")
        from dinomed_napari.io.dicom import read_dicom_series

        return read_dicom_series(path, series_uid=series, modality=modality)
    if path.stat().st_size == 0:
        raise VolumeError(f"{path}: empty file (0 bytes); expected an image volume ({FORMATS})")
    suffix = _suffix(path)
    if suffix in (".nii", ".nii.gz"):
        from dinomed_napari.io.nifti import read_nifti as reader
    elif suffix in (".nrrd", ".nhdr"):
        from dinomed_napari.io.nrrd import read_nrrd as reader
    elif suffix in (".tif", ".tiff"):
        from dinomed_napari.io.tiff import read_tiff

        return read_tiff(path, lazy=lazy)
    elif suffix == ".npy":
        from dinomed_napari.io.npy import read_npy as reader
    elif suffix in (".dcm", ".ima", ""):
        # One DICOM file stands for its whole series in the same folder.
        import pydicom

        from dinomed_napari.io.dicom import read_dicom_series

        try:
            uid = str(pydicom.dcmread(str(path), stop_before_pixels=True).SeriesInstanceUID)
        except Exception as exc:
            raise VolumeError(f"{path}: not a readable DICOM file ({type(exc).__name__}: {exc}); "
                              f"supported: {FORMATS}") from exc
        return read_dicom_series(path.parent, series_uid=series or uid)
    else:
        raise VolumeError(f"{path}: unsupported file type {suffix!r}; supported: {FORMATS}")
    return reader(path)


def load_volume(path, *, modality: str | None = None, units: str | None = None, series: str | None = None,
                check: bool = True, lazy: bool | None = None) -> Volume:
    """Read an image volume in (Z, Y, X) order with its spacing and affine.

    Parameters
    ----------
    path : str or Path
        NIfTI, NRRD, TIFF, .npy file; a zarr store; a DICOM series folder (or one of its files).
    modality : {"CT", "MR", "PT", "EM"}, optional
        Files other than DICOM do not say their modality: give it here (default None = unknown). For a
        DICOM folder holding several series it also picks the series with that Modality tag.
    units : str, optional
        Intensity units when known ("HU", "SUVbw", ...). Default: "HU" for CT, the DICOM-derived units for
        DICOM, else "a.u.".
    series : str, optional
        SeriesInstanceUID to read from a DICOM folder with several series.
    check : bool
        Run `check_image_volume` (NaN/inf, constant, smaller than a patch). Use False for label images,
        which may legitimately be all zeros. On a lazy volume the checks read it chunk by chunk.
    lazy : bool, optional
        zarr / OME-Zarr and TIFF only: True opens the volume without reading it (``data`` is a dask array
        or a read-only memory map, read on demand); False loads it; None (default) is lazy above
        ``dinomed_napari.io.lazy.LAZY_BYTES`` (1 GiB). Other formats are always loaded.

    Returns
    -------
    Volume

    Raises
    ------
    VolumeError
        Missing path, unsupported/empty/truncated file, wrong dimensionality, failed checks.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise VolumeError(f"{path}: no such file or folder; expected an image volume ({FORMATS})")
    vol = _read(path, modality, series, lazy)
    if modality is not None and vol.modality is None:
        vol.modality = modality
        vol.units = _UNITS.get(modality, vol.units)
        if modality == "PT" and units is None:
            fmt = vol.meta.get("format", "this")
            vol.meta["suv_note"] = (f"{fmt} files carry no PET dose/weight tags: values used as stored "
                                    "(give units='SUVbw' or 'BQML' if known)")
    if units is not None:
        vol.units = units
    if check:
        check_image_volume(vol)
    return vol
