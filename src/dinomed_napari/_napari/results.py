"""Result layers: one layer per kind and image, updated in place, the previous result kept as an undo.

A result layer carries ``metadata["dinomed_kind"]`` (e.g. "PCA", "prediction") and
``metadata["dinomed_image"]`` (the image layer's ``unique_id``); its name is the short kind, so the
layer list does not cut it, and the weights that made it are in ``metadata["dinomed_label"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .layers import aligned_kwargs

KIND, IMAGE, LABEL = "dinomed_kind", "dinomed_image", "dinomed_label"


def find_result(viewer: Any, image: Any, kind: str) -> Any:
    """The result layer of ``kind`` made for ``image``, or None."""
    for layer in viewer.layers:
        md = layer.metadata
        if md.get(KIND) == kind and md.get(IMAGE) == image.unique_id:
            return layer
    return None


def result_layer(viewer: Any, image: Any, kind: str, data: Any, layer_type: str, label: str = "",
                 **kwargs: Any) -> Any:
    """Show ``data`` in the ``kind`` layer of ``image``: its data replaced in place, or a new layer.

    Keeps the user's active layer (painting, adding points) selected.
    """
    layer = find_result(viewer, image, kind)
    if layer is not None and _fits(layer, data, layer_type):
        layer.data = data
        layer.metadata[LABEL] = label
        for key in ("contrast_limits", "scale", "translate"):  # a map on another grid moves with it
            if key in kwargs:
                setattr(layer, key, kwargs[key])
        return layer
    if layer is not None:
        viewer.layers.remove(layer)
    kw = aligned_kwargs(image, kind, **kwargs)
    kw["metadata"] = {**kw["metadata"], KIND: kind, IMAGE: image.unique_id, LABEL: label}
    return _add_unselected(viewer, lambda: getattr(viewer, f"add_{layer_type}")(data, **kw))


def _fits(layer: Any, data: Any, layer_type: str) -> bool:
    """Whether ``data`` can replace ``layer``'s data in place: same layer type, number of dimensions,
    dtype and colour channels. A map on another patch grid only changes the shape: replacing it in
    place costs ~10 ms, removing and remaking the layer ~175 ms of frozen GUI under software OpenGL."""
    old = layer.data
    if type(layer).__name__.lower() != layer_type or np.ndim(old) != np.ndim(data) or \
            getattr(old, "dtype", None) != getattr(data, "dtype", None):
        return False
    return not getattr(layer, "rgb", False) or np.shape(old)[-1] == np.shape(data)[-1]


def _add_unselected(viewer: Any, add: Any) -> Any:
    """``add()`` a layer leaving the selection as it was. napari selects a new layer (and the layer
    controls follow it, then follow the re-selection back): each swap holds the GUI thread for tens of
    ms, so where this napari has the switch, the new layer is simply not selected."""
    layers = viewer.layers
    if isinstance(getattr(layers, "_activate_on_insert", None), bool):
        before, layers._activate_on_insert = layers._activate_on_insert, False
        try:
            return add()
        finally:
            layers._activate_on_insert = before
    active = layers.selection.active
    layer = add()
    if active is not None and active in layers:
        layers.selection.active = active
    return layer


def keep_previous(viewer: Any, image: Any, kind: str) -> Any:
    """Copy the current ``kind`` result into a hidden "<kind> (previous)" layer before it is replaced."""
    layer = find_result(viewer, image, kind)
    if layer is None or not np.asarray(layer.data).any():
        return None
    prev = result_layer(viewer, image, f"{kind} (previous)", np.array(layer.data, copy=True),
                        type(layer).__name__.lower(), layer.metadata.get(LABEL, ""), visible=False)
    if hasattr(layer, "colormap") and hasattr(prev, "colormap"):
        prev.colormap = layer.colormap
    return prev


def put_slice(layer: Any, values: np.ndarray, axis: int, index: int, viewer: Any = None) -> bool:
    """Write one slice of a result layer in place (no full-volume copy on the GUI thread) and redraw it
    if it is on screen; returns whether it was redrawn.

    With ``viewer``, a slice that the 2D view does not show is only written: napari reads it when the
    user moves there, and a redraw (tens of ms of window compositing under software OpenGL) is saved.
    """
    sl = [slice(None)] * 3
    sl[axis] = index
    layer.data[tuple(sl)] = values
    if viewer is not None and shown_index(viewer, layer, axis) not in (None, index):
        return False
    layer.refresh()
    return True


def shown_index(viewer: Any, layer: Any, axis: int) -> int | None:
    """Index along data ``axis`` of the slice ``viewer`` shows of ``layer`` in 2D, or None when every
    index along it is on screen (the axis is displayed, or the view is 3D)."""
    dims = viewer.dims
    world_axis = dims.ndim - layer.ndim + axis
    if dims.ndisplay != 2 or world_axis in tuple(dims.displayed):
        return None
    point = layer.world_to_data(dims.point[-layer.ndim:])
    return int(np.clip(round(float(point[axis])), 0, layer.data.shape[axis] - 1))


def show_index(viewer: Any, layer: Any, axis: int, index: int) -> None:
    """Move ``viewer`` to slice ``index`` along data ``axis`` of ``layer`` (through the layer's scale and
    translate: the world position of that voxel plane), the other axes where they are."""
    dims = viewer.dims
    point = np.asarray(layer.world_to_data(dims.point[-layer.ndim:]), float)
    point[axis] = int(np.clip(index, 0, layer.data.shape[axis] - 1))
    world = layer.data_to_world(point)
    dims.set_point(dims.ndim - layer.ndim + axis, float(world[axis]))


def label_colormap(colours: dict) -> Any:
    """A napari DirectLabelColormap from ``{label: RGBA}`` (``None`` = every other label)."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict=colours)


def place_below(viewer: Any, layer: Any, other: Any) -> None:
    """Move ``layer`` just below ``other`` in the layer list (drawn under it)."""
    if other is None or other not in viewer.layers or layer not in viewer.layers:
        return
    src, dst = viewer.layers.index(layer), viewer.layers.index(other)
    if src > dst:
        viewer.layers.move(src, dst)


def add_aligned_points(viewer: Any, image_layer: Any, name: str, color: str = "yellow") -> Any:
    """An empty 3D points layer on ``image_layer``'s grid, in add mode, so that clicks add points."""
    kwargs = aligned_kwargs(image_layer, name)
    kwargs.pop("metadata")
    extent = np.asarray(image_layer.data.shape[-2:]) * np.asarray(image_layer.scale[-2:])
    layer = viewer.add_points(np.empty((0, 3)), ndim=3, size=0.025 * float(extent.max()),
                              face_color=color, **kwargs)
    layer.mode = "add"
    return layer
