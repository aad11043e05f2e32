"""Checks that an image is a usable 3D volume, with messages that say what was found and what is expected."""

from __future__ import annotations

import numpy as np

from dinomed_napari.errors import VolumeError
from dinomed_napari.io.volume import Volume


def _name(source) -> str:
    return str(source) if source is not None else "image"


def check_shape(shape: tuple[int, ...], source=None) -> None:
    """Raise `VolumeError` unless ``shape`` is 3D (Z, Y, X) and not a colour image.

    Parameters
    ----------
    shape : tuple of int
        Array shape as read.
    source : str or Path, optional
        File the array came from (named in the message).
    """
    name = _name(source)
    rgb = len(shape) >= 3 and shape[-1] in (3, 4)
    if len(shape) < 2 or len(shape) > 4 or (len(shape) == 4 and not rgb):
        raise VolumeError(
            f"{name}: got a {len(shape)}D array of shape {tuple(shape)}; expected a 3D volume (Z, Y, X). "
            "For a time series or multi-channel image, save one 3D channel/time point per file."
        )
    if len(shape) == 2:
        raise VolumeError(
            f"{name}: got a 2D image of shape {tuple(shape)}; expected a 3D volume (Z, Y, X). "
            "Stack the slices into one volume (a single slice can be given as shape (1, Y, X))."
        )
    if len(shape) == 4:
        raise VolumeError(
            f"{name}: got an RGB/RGBA volume of shape {tuple(shape)} (last axis = {shape[-1]} colour "
            "channels); expected a greyscale 3D volume (Z, Y, X). Convert to grey or pick one channel."
        )
    if rgb and shape[-1] < 16 <= min(shape[0], shape[1]):
        # (Y, X, 3): a 2D colour picture, not a volume with 3 columns.
        raise VolumeError(
            f"{name}: shape {tuple(shape)} looks like a 2D RGB/RGBA image (Y, X, {shape[-1]}); expected a "
            "greyscale 3D volume (Z, Y, X)."
        )


def check_image_volume(volume_or_array, source=None, min_inplane: int = 16) -> None:
    """Raise `VolumeError` unless the image is a usable greyscale 3D volume.

    Parameters
    ----------
    volume_or_array : Volume or np.ndarray
        The image, (Z, Y, X).
    source : str or Path, optional
        Name used in messages; defaults to the Volume's ``source``.
    min_inplane : int
        Smallest allowed Y and X size: one ViT patch (16 px).

    Raises
    ------
    VolumeError
        For a 2D image, a 4D or RGB volume, a non-numeric dtype, NaN/inf values, a constant volume, or an
        in-plane size smaller than one patch. The message names the source, the shape and the expectation.
    """
    if isinstance(volume_or_array, Volume):
        data = volume_or_array.data
        source = source if source is not None else volume_or_array.source
    else:
        data = np.asarray(volume_or_array)
    name = _name(source)
    check_shape(tuple(data.shape), source)
    if data.dtype == bool or data.dtype.kind not in "iuf":
        raise VolumeError(f"{name}: data type {data.dtype} is not a numeric image type; expected integers or "
                          "floats (a greyscale intensity volume)")
    if data.shape[1] < min_inplane or data.shape[2] < min_inplane:
        raise VolumeError(
            f"{name}: in-plane size {data.shape[1]}x{data.shape[2]} (Y x X, volume shape "
            f"{tuple(data.shape)}) is smaller than one {min_inplane}x{min_inplane}-pixel patch; "
            f"expected Y and X >= {min_inplane}."
        )
    if np.issubdtype(data.dtype, np.floating):
        n_nan = int(np.isnan(data).sum())
        n_inf = int(np.isinf(data).sum())
        if n_nan or n_inf:
            raise VolumeError(
                f"{name}: contains {n_nan} NaN and {n_inf} inf values (shape {tuple(data.shape)}); expected "
                "finite intensities. Replace them (e.g. np.nan_to_num) or crop them away."
            )
    lo, hi = data.min(), data.max()
    if lo == hi:
        raise VolumeError(
            f"{name}: volume is constant (every voxel = {lo.item()}, shape {tuple(data.shape)}); expected an "
            "image with contrast. Was the wrong file or an empty mask loaded?"
        )


def check_same_grid(image: Volume, other: Volume, what: str, *, atol_mm: float = 1e-3) -> None:
    """Raise `VolumeError` unless ``other`` (scribbles, mask, channel ...) lies on ``image``'s voxel grid.

    Shapes must be equal. Affines must agree within ``atol_mm``; when one file has no orientation (TIFF,
    or npy/zarr without an affine) only the spacings are compared, and a file without any grid
    information (spacing unit "pixel") is taken as given.

    Parameters
    ----------
    image : Volume
        The reference image.
    other : Volume
        The volume that must overlay it.
    what : str
        How the message names ``other``, e.g. "--scribbles labels.nii.gz".
    """
    from dinomed_napari.io.plain_grid import affine_from_spacing

    if other.shape != image.shape:
        raise VolumeError(f"{what} has shape {other.shape} but image {image.source} has {image.shape} "
                          "(Z, Y, X); it must be on the image's voxel grid")
    a, b = np.asarray(image.affine, float), np.asarray(other.affine, float)
    if np.allclose(a, b, rtol=0, atol=atol_mm) or other.meta.get("spacing_unit") == "pixel":
        return
    def plain(v: Volume) -> bool:  # no orientation stored: TIFF, or npy/zarr with only a spacing
        fmt = v.meta.get("format")
        return fmt == "tiff" or (fmt not in ("nifti", "nrrd", "dicom") and
                                 np.allclose(v.affine, affine_from_spacing(v.spacing), atol=atol_mm))

    same_spacing = np.allclose(image.spacing, other.spacing, rtol=1e-4, atol=atol_mm)
    if (plain(image) or plain(other)) and same_spacing:
        return
    found = (f"spacing {tuple(round(float(s), 4) for s in other.spacing)} vs "
             f"{tuple(round(float(s), 4) for s in image.spacing)}" if not same_spacing
             else f"origin/orientation differ: affine {np.round(b, 3).tolist()} vs "
                  f"{np.round(a, 3).tolist()}")
    raise VolumeError(f"{what} has another affine than image {image.source} (same shape {image.shape}, "
                      f"{found}); it would be used misaligned: resample it onto the image grid")


def integer_labels(data, what: str, error: type[Exception] = VolumeError) -> np.ndarray:
    """``data`` (a label image: scribbles, a mask) with whole-number values, as integers.

    Parameters
    ----------
    data : array
        The label image; a float one is accepted when every value is a whole number (labels saved as
        float).
    what : str
        How the message names it, e.g. "--scribbles labels.tif".
    error : exception class
        What is raised (``VolumeError`` by default).

    Returns
    -------
    ndarray
        ``data`` itself when it is of an integer type, else its values as int64.

    Raises
    ------
    VolumeError (or ``error``)
        A NaN, an infinity or a fraction (a probability map or an interpolated mask, not labels): casting
        would label voxels silently with another class.
    """
    arr = np.asarray(data)
    if arr.dtype.kind in "iub":
        return arr
    bad = ~np.isfinite(arr) | (np.round(arr) != arr)
    if bad.any():
        example = arr[bad].ravel()[0]
        raise error(f"{what}: {int(np.count_nonzero(bad))} voxel(s) are not whole class numbers "
                    f"(e.g. {example:g}); expected labels 0 (unlabelled), 1, 2, ...")
    return arr.astype(np.int64)
