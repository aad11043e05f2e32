"""Volume <-> napari layer data: scale = voxel spacing, metadata keeps what writing back needs.

A layer made here carries ``metadata["dinomed"]`` = {spacing, affine, modality, units, source, meta, and
``display_flip`` when the data were flipped for radiological display};
:func:`layer_volume` rebuilds the :class:`~dinomed_napari.io.volume.Volume` from it, so results are
written on the source grid, and :func:`aligned_kwargs` gives derived layers the image's placement.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from dinomed_napari.errors import VolumeError
from dinomed_napari.io.lazy import as_dask, is_lazy
from dinomed_napari.io.volume import Volume

META_KEY = "dinomed"
# A whole word of the file name ("ct_seg.nii.gz", "tumor_mask"), not a substring ("totalseg_example_ct").
_LABEL_HINT = re.compile(r"(^|[_.\- ])(mask|seg|segmentation|labels?|annotations?|cells)([_.\- ]|$)",
                         re.IGNORECASE)


def volume_meta(vol: Volume) -> dict:
    """The JSON-friendly part of a Volume that a layer keeps in ``metadata[META_KEY]``."""
    return {
        "spacing": [float(s) for s in vol.spacing],
        "affine": np.asarray(vol.affine, dtype=float).tolist(),
        "modality": vol.modality,
        "units": vol.units,
        "source": vol.source,
        "meta": dict(vol.meta),
    }


def _display_limits(vol: Volume) -> tuple[float, float]:
    # The window the features widget will use by default (CT soft tissue, SUV 0-10, else percentiles),
    # so the user sees what the network sees.
    from dinomed_napari.live.display import choose_window, display_range, display_sample

    sample = display_sample(vol.data)
    return display_range(choose_window(sample, vol.modality).window, sample)


#: Formats whose affine says where the patient is (others have an identity placeholder).
_ORIENTED = ("nifti", "nrrd", "dicom")


def radiological_flips(vol: Volume) -> tuple[int, ...]:
    """(Z, Y, X) data axes to flip so that a slice shows radiologically (patient's right on the screen's
    left, anterior / superior up): in-plane axes pointing to R, A or S are flipped; the slice axis never.
    """
    if (vol.meta or {}).get("format") not in _ORIENTED:
        return ()
    import nibabel as nib

    codes = nib.aff2axcodes(np.asarray(vol.affine, float))  # per stored axis (i, j, k) = data (2, 1, 0)
    return tuple(ax for ax in (1, 2) if codes[2 - ax] in "RAS")


def to_source_grid(array: np.ndarray, meta: dict) -> np.ndarray:
    """Undo the display flips recorded in a layer's ``metadata`` (labels back on the file's grid)."""
    flips = tuple((meta or {}).get(META_KEY, {}).get("display_flip", ()))
    return np.flip(np.asarray(array), flips) if flips else np.asarray(array)


def is_label_volume(vol: Volume, name: str = "") -> bool:
    """True for integer volumes whose file name says mask/seg/label (opened as a Labels layer)."""
    return np.issubdtype(np.dtype(vol.data.dtype), np.integer) and bool(_LABEL_HINT.search(name))


def volume_layer_data(vol: Volume, name: str | None = None, layer_type: str | None = None) -> tuple:
    """A napari LayerDataTuple ``(data, kwargs, type)`` for ``vol``.

    Parameters
    ----------
    vol : Volume
    name : str, optional
        Layer name; defaults to the source file name.
    layer_type : {"image", "labels"}, optional
        Default: labels for integer masks named like one (see :func:`is_label_volume`), else image.
    """
    name = name or (Path(vol.source).name if vol.source else "volume")
    layer_type = layer_type or ("labels" if is_label_volume(vol, name) else "image")
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": tuple(float(s) for s in vol.spacing),
        "metadata": {META_KEY: volume_meta(vol)},
    }
    # A lazy volume (zarr, dask: larger than memory) stays lazy: napari reads the planes it shows.
    lazy = is_lazy(vol.data)
    data = as_dask(vol.data) if lazy else np.asarray(vol.data)
    flips = radiological_flips(vol)
    if flips:  # shown radiologically; writers flip back (:func:`to_source_grid`)
        data = np.flip(data, flips) if lazy else np.ascontiguousarray(np.flip(data, flips))
        kwargs["metadata"][META_KEY]["display_flip"] = list(flips)
    elif lazy and layer_type == "image" and (vol.meta or {}).get("levels"):
        from dinomed_napari.io.zarr_io import zarr_levels

        levels = zarr_levels(vol)  # an OME-Zarr pyramid: napari reads the level that fits the screen
        if levels is not None:
            data, kwargs["multiscale"] = levels, True
    if layer_type == "image":
        kwargs["contrast_limits"] = _display_limits(vol)
        kwargs["colormap"] = "inferno" if vol.modality == "PT" else "gray"
    else:
        data = data.astype(np.int32) if data.dtype.kind == "u" and data.dtype.itemsize > 2 else data
    return data, kwargs, layer_type


def layer_array(layer: Any) -> Any:
    """A layer's data for the core: NumPy when it is in memory; a lazy (dask, zarr) array stays lazy, and
    of a multiscale layer the full-resolution level, so that nothing loads a volume whole."""
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    return data if is_lazy(data) else np.asarray(data)


def layer_volume(layer: Any) -> Volume:
    """The Volume behind a 3D image or labels layer (spacing from metadata, else the layer's scale).

    ``data`` is the layer's (displayed) array; ``affine`` and ``meta`` stay the file's, so results are
    written with :func:`to_source_grid` applied first.

    Raises
    ------
    VolumeError
        If the layer is not a single-channel 3D array.
    """
    data = layer_array(layer)
    if data.ndim != 3 or getattr(layer, "rgb", False):
        raise VolumeError(
            f"layer {layer.name!r} has shape {data.shape}; expected a 3D single-channel (Z, Y, X) volume")
    info = dict(layer.metadata.get(META_KEY, {}))
    spacing = tuple(float(s) for s in info.get("spacing", layer.scale[-3:]))
    affine = np.asarray(info["affine"], dtype=float) if "affine" in info else np.diag([*spacing[::-1], 1.0])
    return Volume(
        data=data, spacing=spacing, affine=affine, modality=info.get("modality"),
        units=info.get("units", "a.u."), source=info.get("source"), meta=dict(info.get("meta", {})),
    )


def grid_volume(meta: dict, shape: tuple[int, ...], scale: Any = None) -> Volume:
    """An empty Volume describing the grid in a layer's ``metadata`` (for writers)."""
    info = dict((meta or {}).get(META_KEY, {}))
    spacing = tuple(float(s) for s in info.get("spacing", scale[-3:] if scale is not None else (1, 1, 1)))
    affine = np.asarray(info["affine"], dtype=float) if "affine" in info else np.diag([*spacing[::-1], 1.0])
    return Volume(
        data=np.zeros(shape, dtype=np.uint8), spacing=spacing, affine=affine, modality=info.get("modality"),
        units=info.get("units", "a.u."), source=info.get("source"), meta=dict(info.get("meta", {})),
    )


def aligned_kwargs(image_layer: Any, name: str, **extra: Any) -> dict:
    """Layer kwargs placing a derived layer exactly on ``image_layer`` (same scale, translate, metadata)."""
    kwargs = {
        "name": name,
        "scale": tuple(image_layer.scale[-3:]),
        "translate": tuple(image_layer.translate[-3:]),
        "metadata": {META_KEY: dict(image_layer.metadata.get(META_KEY, {}))},
    }
    kwargs.update(extra)
    return kwargs


def patch_grid_kwargs(image_layer: Any, shape: tuple, axis: int) -> dict:
    """Layer kwargs of a map of ``shape`` (Z', Y', X'[, 3]) on the patch grid of slices of
    ``image_layer`` along ``axis``: scale and translate that centre each patch on its pixels
    (:func:`~dinomed_napari.features.grid.patch_transform`), shown with linear interpolation."""
    from dinomed_napari.features.grid import PLANE_AXES, patch_transform

    a, b = PLANE_AXES[axis]
    scale, translate = patch_transform(tuple(image_layer.data.shape[-3:]), (shape[a], shape[b]), axis,
                                       tuple(image_layer.scale[-3:]))
    translate = tuple(t + float(o) for t, o in zip(translate, image_layer.translate[-3:], strict=True))
    return dict(scale=scale, translate=translate, interpolation2d="linear")
