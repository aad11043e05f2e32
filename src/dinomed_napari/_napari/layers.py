"""Volume <-> napari layer data: scale = voxel spacing, metadata keeps what writing back needs.

A layer made here carries ``metadata["dinomed"]`` = {spacing, affine, modality, units, source, meta};
:func:`layer_volume` rebuilds the :class:`~dinomed_napari.io.volume.Volume` from it, so results are
written on the source grid, and :func:`aligned_kwargs` gives derived layers the image's placement.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from dinomed_napari.errors import VolumeError
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
    # Display only (the network input window is chosen in the features widget): robust percentiles.
    data = np.asarray(vol.data)
    sample = data[:: max(1, data.shape[0] // 16)]
    lo, hi = np.percentile(sample, [0.5, 99.5])
    return (float(lo), float(hi)) if hi > lo else (float(sample.min()), float(sample.max()) + 1.0)


def is_label_volume(vol: Volume, name: str = "") -> bool:
    """True for integer volumes whose file name says mask/seg/label (opened as a Labels layer)."""
    return np.issubdtype(np.asarray(vol.data).dtype, np.integer) and bool(_LABEL_HINT.search(name))


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
    data = np.asarray(vol.data)
    if layer_type == "image":
        kwargs["contrast_limits"] = _display_limits(vol)
        kwargs["colormap"] = "inferno" if vol.modality == "PT" else "gray"
    else:
        data = data.astype(np.int32) if data.dtype.kind == "u" and data.dtype.itemsize > 2 else data
    return data, kwargs, layer_type


def layer_volume(layer: Any) -> Volume:
    """The Volume behind a 3D image or labels layer (spacing from metadata, else the layer's scale).

    Raises
    ------
    VolumeError
        If the layer is not a single-channel 3D array.
    """
    data = np.asarray(layer.data)
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


def upsert_layer(viewer: Any, data: Any, kind: str, kwargs: dict) -> Any:
    """Add a result layer, or replace the data of the dedicated layer of that name (never a user layer).

    A layer is reused only when it is one this plugin made (``metadata['dinomed_result']``) and has the
    same kind; otherwise a new layer with a fresh name is added.
    """
    name = kwargs["name"]
    if name in viewer.layers:
        layer = viewer.layers[name]
        if layer.metadata.get("dinomed_result") and type(layer).__name__.lower() == kind:
            layer.data = data
            return layer
    kwargs = {**kwargs, "metadata": {**kwargs.get("metadata", {}), "dinomed_result": True}}
    active = viewer.layers.selection.active
    layer = getattr(viewer, f"add_{kind}")(data, **kwargs)
    if kind == "labels":
        # Once the user paints on a result it is theirs: the next result goes to a new layer.
        layer.events.paint.connect(lambda *_: layer.metadata.update(dinomed_result=False))
    if active is not None:  # keep the user's tool (painting, adding points) on the layer they were using
        viewer.layers.selection.active = active
    return layer


def add_aligned_points(viewer: Any, image_layer: Any, name: str, color: str = "yellow") -> Any:
    """An empty 3D points layer on ``image_layer``'s grid, in add mode, so that clicks add points."""
    kwargs = aligned_kwargs(image_layer, name)
    kwargs.pop("metadata")
    extent = np.asarray(image_layer.data.shape[-2:]) * np.asarray(image_layer.scale[-2:])
    layer = viewer.add_points(np.empty((0, 3)), ndim=3, size=0.025 * float(extent.max()),
                              face_color=color, **kwargs)
    layer.mode = "add"
    return layer
