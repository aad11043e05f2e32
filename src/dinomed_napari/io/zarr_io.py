"""zarr (v2/v3) arrays and groups, including OME-Zarr multiscales (the full-resolution level is read)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dinomed_napari.errors import VolumeError
from dinomed_napari.io.plain_grid import grid_from_record, grid_record
from dinomed_napari.io.validate import check_shape
from dinomed_napari.io.volume import Volume


def _pick_array(group, path: Path):
    """The array to read from a group, and the grid record its metadata gives (OME-Zarr: with
    ``"levels"``, the paths of its resolution levels)."""
    attrs = dict(group.attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if multiscales:
        datasets = multiscales[0]["datasets"]
        level = datasets[0]
        record = {"levels": [str(d["path"]) for d in datasets]}
        for t in level.get("coordinateTransformations", []):
            if t.get("type") == "scale" and len(t.get("scale", [])) >= 3:
                record["spacing"] = [float(s) for s in t["scale"][-3:]]
        return group[level["path"]], record
    keys = sorted(group.array_keys())
    if len(keys) != 1:
        raise VolumeError(f"{path}: zarr group holds {len(keys)} arrays {keys}; expected exactly one array "
                          "or OME-Zarr 'multiscales' metadata. Give the path of the array itself.")
    return group[keys[0]], attrs


def read_zarr(path: Path, lazy: bool | None = None) -> Volume:
    """Read a zarr array (or the single/OME array of a group) as a (Z, Y, X) `Volume`.

    Spacing comes from the attribute ``"spacing"`` ([z, y, x]) and ``"affine"`` when present (both are
    written by `write_zarr`), or from OME-Zarr scale transforms; else 1.0. OME-Zarr: the full-resolution
    level. ``lazy`` (True, or None for volumes above ``io.lazy.LAZY_BYTES``): ``data`` is a dask array over
    the store, read chunk by chunk on demand (napari shows it, extraction reads it slice by slice).
    """
    import zarr

    from dinomed_napari.io.lazy import as_dask, want_lazy

    try:
        node = zarr.open(str(path), mode="r")
        if isinstance(node, zarr.Group):
            arr, record = _pick_array(node, path)
        else:
            arr, record = node, dict(node.attrs)
        record = {**record, **{k: v for k, v in dict(arr.attrs).items() if k in ("spacing", "affine")}}
        check_shape(tuple(arr.shape), path)
        nbytes = int(np.prod(arr.shape, dtype=np.int64)) * np.dtype(arr.dtype).itemsize
        data = as_dask(arr) if want_lazy(lazy, nbytes) else np.asarray(arr[...])
    except VolumeError:
        raise
    except Exception as exc:  # missing/corrupt metadata or chunks
        raise VolumeError(f"{path}: not a readable zarr store ({type(exc).__name__}: {exc})") from exc
    spacing, affine, unit = grid_from_record(record, path)
    meta = {"format": "zarr", "spacing_unit": unit, "lazy": not isinstance(data, np.ndarray)}
    if meta["lazy"] and len(record.get("levels", [])) > 1:
        meta["levels"] = list(record["levels"])  # a viewer can show the pyramid (:func:`zarr_levels`)
    return Volume(data=data, spacing=spacing, affine=affine, source=str(path), meta=meta)


def zarr_levels(vol: Volume) -> list | None:
    """The resolution levels of a lazily opened OME-Zarr volume as dask arrays (full resolution first),
    for a viewer's multiscale display; None when there are none, or when a level is not a downsampling of
    the one before it (every axis no larger, the same number of axes)."""
    import zarr

    from dinomed_napari.io.lazy import as_dask

    paths = (vol.meta or {}).get("levels")
    if not paths or not vol.source:
        return None
    group = zarr.open_group(str(vol.source), mode="r")
    levels = [as_dask(group[p]) for p in paths]
    for big, small in zip(levels, levels[1:], strict=False):
        if small.ndim != big.ndim or any(s > b for s, b in zip(small.shape, big.shape, strict=True)):
            return None
    return levels


def write_zarr(path: Path, labels_zyx: np.ndarray, like: Volume, provenance: dict | None = None) -> Path:
    """Write labels as a zarr array whose attributes hold ``like``'s spacing and affine (and provenance)."""
    import zarr

    arr = zarr.create_array(str(path), shape=labels_zyx.shape, dtype=labels_zyx.dtype,
                            chunks=(1, *labels_zyx.shape[1:]), overwrite=True)
    arr[...] = labels_zyx
    arr.attrs.update(grid_record(like))
    if provenance:
        arr.attrs["provenance"] = provenance
    return Path(path)
