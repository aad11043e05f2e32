"""TIFF stacks with tifffile: spacing from ImageJ, OME or tifffile's JSON metadata, else 1.0."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dinomed_napari.errors import VolumeError
from dinomed_napari.io.plain_grid import affine_from_spacing
from dinomed_napari.io.validate import check_shape
from dinomed_napari.io.volume import Volume


def _spacing(tif) -> tuple[tuple[float, float, float], str, str]:
    """(spacing (z, y, x), unit, where it came from)."""
    import tifffile

    if tif.is_ome and tif.ome_metadata:
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
        pixels = (pixels[0] if isinstance(pixels, list) else pixels)["Pixels"]
        if any(f"PhysicalSize{a}" in pixels for a in "XYZ"):
            sp = tuple(float(pixels.get(f"PhysicalSize{a}", 1.0)) for a in "ZYX")
            return sp, str(pixels.get("PhysicalSizeXUnit", "µm")), "ome"
    ij = tif.imagej_metadata
    page = tif.pages[0]
    if ij is not None:
        def inv(tag):
            num, den = page.tags[tag].value if tag in page.tags else (1, 1)
            return float(den) / float(num) if num else 1.0

        return (float(ij.get("spacing", 1.0)), inv("YResolution"), inv("XResolution")), \
            str(ij.get("unit", "pixel")), "imagej"
    shaped = tif.shaped_metadata
    if shaped and isinstance(shaped[0], dict) and "spacing" in shaped[0]:
        return tuple(float(s) for s in shaped[0]["spacing"]), str(shaped[0].get("spacing_unit", "mm")), "json"
    # Plain TIFF resolution tags in pixels per inch / cm (microscopes write these): in-plane spacing only.
    unit = int(page.tags["ResolutionUnit"].value) if "ResolutionUnit" in page.tags else 1
    if unit in (2, 3) and "XResolution" in page.tags and "YResolution" in page.tags:
        um = 25400.0 if unit == 2 else 10000.0
        ys, xs = (um * den / num if num else 1.0 for num, den in (page.tags[t].value for t in
                                                                   ("YResolution", "XResolution")))
        return (1.0, float(ys), float(xs)), "µm", "resolution tags"
    return (1.0, 1.0, 1.0), "pixel", "none"


def _declared_shape(tif) -> tuple[int, ...] | None:
    """Shape the writer recorded (tifffile JSON or ImageJ image count), to detect missing pages."""
    shaped = tif.shaped_metadata
    if shaped and isinstance(shaped[0], dict) and "shape" in shaped[0]:
        return tuple(int(s) for s in shaped[0]["shape"])
    ij = tif.imagej_metadata
    if ij and int(ij.get("images", 1)) > len(tif.pages):
        return (int(ij["images"]), *tif.pages[0].shape)
    return None


def _lazy_array(tif, path: Path):
    """The first series without reading it: a read-only memory map when the pixels are stored contiguous
    and uncompressed (pages come from the OS cache on demand), else a dask array over tifffile's zarr view
    (one page per chunk)."""
    import tifffile

    series = tif.series[0]
    if series.dataoffset is not None:
        return tifffile.memmap(str(path), mode="r")
    import zarr

    from dinomed_napari.io.lazy import as_dask

    return as_dask(zarr.open(series.aszarr(), mode="r"))


def read_tiff(path: Path, lazy: bool | None = None) -> Volume:
    """Read the first series of a TIFF file as a (Z, Y, X) `Volume` (axis order as stored).

    ``lazy`` (True, or None for files above ``io.lazy.LAZY_BYTES``): ``data`` is a memory map (uncompressed
    files) or a dask array (compressed), read on demand.
    """
    import tifffile

    from dinomed_napari.io.lazy import want_lazy

    try:
        with tifffile.TiffFile(str(path)) as tif:
            series = tif.series[0]
            nbytes = int(np.prod(series.shape, dtype=np.int64)) * np.dtype(series.dtype).itemsize
            arr = _lazy_array(tif, path) if want_lazy(lazy, nbytes) else series.asarray()
            spacing, unit, origin = _spacing(tif)
            expected = _declared_shape(tif)
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error ... on bad files
        raise VolumeError(f"{path}: not a readable TIFF file or truncated data "
                          f"({type(exc).__name__}: {exc})") from exc
    if expected is not None and tuple(arr.shape) != expected:
        raise VolumeError(f"{path}: truncated TIFF file: its metadata declares shape {expected} but only "
                          f"{tuple(arr.shape)} could be read")
    check_shape(tuple(arr.shape), path)
    return Volume(
        data=arr,
        spacing=spacing,
        affine=affine_from_spacing(spacing),
        source=str(path),
        meta={"format": "tiff", "spacing_unit": unit, "spacing_from": origin,
              "lazy": type(arr) is not np.ndarray},
    )


def write_tiff(path: Path, labels_zyx: np.ndarray, like: Volume, provenance: dict | None = None) -> Path:
    """Write labels as an ImageJ hyperstack carrying ``like``'s spacing (TIFF has no orientation) and the
    provenance as JSON in the ImageJ ``Info`` field."""
    import tifffile

    arr = labels_zyx
    if arr.dtype not in (np.uint8, np.uint16, np.float32):  # the dtypes ImageJ files allow
        if arr.dtype.kind in "iu" and arr.min() >= 0 and arr.max() <= np.iinfo(np.uint16).max:
            arr = arr.astype(np.uint16)
        else:
            raise VolumeError(f"{path}: labels of dtype {arr.dtype} with range [{arr.min()}, {arr.max()}] "
                              "do not fit a TIFF label image; expected non-negative labels <= 65535")
    z, y, x = (float(s) for s in like.spacing)
    unit = like.meta.get("spacing_unit", "mm")
    meta = {"spacing": z, "unit": unit, "axes": "ZYX"}
    if provenance:
        meta["Info"] = json.dumps(provenance)
    tifffile.imwrite(str(path), arr, imagej=True, resolution=(1.0 / x, 1.0 / y), metadata=meta)
    return Path(path)
