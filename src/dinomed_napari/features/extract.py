"""Slice-by-slice DINOv3 patch features of a volume, batched, cached on disk and resumable."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dinomed_napari.errors import CacheError, VolumeError, WeightsError
from dinomed_napari.io.lazy import volume_digest
from dinomed_napari.io.volume import Volume

from .batches import fill_store, head_slice
from .cache import (
    FeatureStore,
    cache_key,
    default_cache_dir,
    key_model_name,
    store_lock,
    weights_label,
)
from .cache_admin import mark_used
from .volume import PLANE_AXES, FeatureVolume


def as_volume(volume: Volume | np.ndarray) -> Volume:
    """Wrap a bare (Z, Y, X) array as a :class:`Volume` with unit spacing; a Volume passes through."""
    if isinstance(volume, Volume):
        return volume
    return Volume(volume if hasattr(volume, "shape") and hasattr(volume, "dtype") else np.asarray(volume))


def require_weights(weights: str | os.PathLike | None) -> None:
    """Raise :class:`WeightsError` when no weights were chosen (there is deliberately no default)."""
    if weights is None or str(weights).strip() == "":
        raise WeightsError(
            "no weights chosen: pass weights='hub' (or 'hub:<tag>') for the pretrained DINOv3 weights, "
            "a path to a .pth/.safetensors file, or 'random' to test the pipeline without pretrained weights "
            "(on the command line: --weights hub|hub:TAG|PATH|random)"
        )


@functools.lru_cache(maxsize=1)
def shared_backbone(model: str, weights: str, device: str | None, layers: tuple[int, ...] | None,
                    label: str):
    """:func:`~dinomed_napari.models.load_backbone`, keeping the last backbone built.

    Re-extracting with another window, axis or resolution (the viewer, :func:`extract_triplanar`) then
    reuses the network instead of rebuilding it. ``label`` (content hash for files) is part of the
    memo key so a changed weights file is reloaded.
    """
    from dinomed_napari.models import load_backbone

    return load_backbone(model, weights, device=device, layers=layers)


def _backbone_for_repair(model, weights, device, layers, label, repaired: list[int], path):
    """The shared backbone; when it cannot be built and slices were damaged, say which and where."""
    try:
        return shared_backbone(model, str(weights), device, layers, label)
    except WeightsError as exc:
        if not repaired:
            raise
        raise CacheError(f"feature store {path}: slice(s) {describe_slices(repaired)} are damaged and "
                         f"cannot be recomputed without the backbone ({exc})") from exc


def _check_backbone(backbone, spec, label: str, dim: int) -> None:
    """Raise :class:`WeightsError` when ``backbone`` is not the model, weights and width asked for."""
    if int(backbone.dim) != dim or backbone.weights_label != label:
        raise WeightsError(f"backbone {backbone!r} does not match the request "
                           f"({spec.timm_name} [{label}], {dim} features)")


def describe_slices(indices: list[int], limit: int = 12) -> str:
    """``[3, 4, 9]``, shortened to the first ``limit`` and a count for long lists."""
    shown = ", ".join(str(int(i)) for i in indices[:limit])
    return f"[{shown}{', ...' if len(indices) > limit else ''}] ({len(indices)} of them)" \
        if len(indices) > limit else f"[{shown}]"


def check_plane_axis(shape: tuple[int, ...], axis, source: str | None = None) -> None:
    """Raise :class:`VolumeError` unless ``axis`` cuts a (Z, Y, X) volume of ``shape`` into planes of at
    least 2 x 2 pixels (a one-slice volume cut across its slice has planes one pixel thick)."""
    if axis not in PLANE_AXES:
        raise VolumeError(f"axis must be 0, 1 or 2 for a (Z, Y, X) volume of shape {shape}; got {axis!r}")
    plane = tuple(n for i, n in enumerate(shape) if i != axis)
    if min(plane) < 2:
        raise VolumeError(f"axis {axis}: the planes of the {source or 'image'} volume of shape "
                          f"{tuple(shape)} along it are {plane[0]} x {plane[1]} pixels; expected at least "
                          "2 x 2 (slice a single-slice volume along axis 0)")


def extract_features(
    volume: Volume | np.ndarray,
    *,
    model: str = "S",
    weights: str | None = None,
    backbone: Any = None,
    axis: int = 0,
    prep: Any = None,
    layers: tuple[int, ...] | list[int] | None = None,
    batch_size: int | str = 4,
    cache_dir: str | os.PathLike | bool | None = None,
    progress: Callable[[int, int], Any] | None = None,
    cancel: Callable[[], bool] | None = None,
    first: int | None = None,
    device: str | None = None,
    on_batch: Callable[[np.ndarray, np.ndarray], Any] | None = None,
    scheduler: Any = None,
) -> FeatureVolume:
    """DINOv3 patch features of every slice of ``volume`` along ``axis``.

    Parameters
    ----------
    volume : Volume or np.ndarray
        (Z, Y, X) image; a bare array gets unit spacing and no modality.
    model : str
        Backbone name ("S", "S+", "B", "L", "H+" or a timm name); ignored when ``backbone`` is given.
    weights : str
        "hub", "hub:<tag>", "random" or a weights file. Required unless ``backbone`` is given: there is
        no default, so features never come from weights nobody chose.
    backbone : Backbone, optional
        An already loaded backbone (from :func:`dinomed_napari.models.load_backbone`); reused as is, and
        then ``model``, ``weights`` and ``device`` are ignored and ``layers`` must match its layers.
    axis : {0, 1, 2}
        Slicing axis: 0 axial (Y, X planes), 1 coronal (Z, X), 2 sagittal (Z, Y).
    prep : Preprocess, optional
        Intensity window, resolution, isotropic resampling, tiling; default ``Preprocess()``. Planes
        larger than the resolution may be tiled at native pixel size (``prep.tiling``); the patch grid
        is then (H / 16, W / 16) and the cache key records the tiling.
    layers : sequence of int, optional
        Blocks whose patch tokens are concatenated; None for the final normalised output.
    batch_size : int
        Slices (tiles, for tiled planes) per forward pass; peak memory grows with it, not with the volume.
        "auto": :func:`dinomed_napari.models.device.auto_batch_size` picks one from the device's free
        memory (2 on the CPU).
    cache_dir : path, None or False
        Folder holding one ``<key>.zarr`` store per request; None uses ``$DINOMED_CACHE`` or
        ``~/.cache/dinomed-napari``. False computes in memory (a NumPy result, nothing kept).
    progress : callable(done, total), optional
        Called once before the first batch and after every batch with slices done so far (cached ones
        included) and the slice count.
    cancel : callable() -> bool, optional
        Checked before every batch; when it returns True the finished slices are already stored and
        :class:`~dinomed_napari.errors.ExtractionCancelled` is raised. A rerun computes only the rest.
    first : int, optional
        Slice computed first (the viewer's current slice): its batch runs before the others.
    device : str, optional
        "cpu", "cuda", "mps" or "auto"/None; used when the backbone is loaded here.
    on_batch : callable(indices, features), optional
        Called after each computed batch with its slice indices and float16 features (B, h, w, C), so a
        viewer can show the first slice before the volume is done. Not called for cached slices.
    scheduler : str or distributed.Client, optional
        Compute the batches on a dask.distributed cluster: a scheduler address, a Client, or "local" (a
        LocalCluster of worker processes). Workers load the backbone by name (or get ``backbone``
        pickled); results are written here, into the same store, under its lock: the features equal
        the local run's. A cohort: call once per volume with the same Client.

    Returns
    -------
    FeatureVolume
        ``data`` (S, h, w, C) float16: the zarr array of the cache store (read lazily, slice by slice),
        or a NumPy array when ``cache_dir=False``.

    Raises
    ------
    WeightsError
        No weights chosen, or weights that cannot be loaded.
    VolumeError
        Not a usable 3D image (see :func:`dinomed_napari.io.check_image_volume`), or a bad ``axis``.
    ExtractionCancelled
        ``cancel()`` returned True.
    CacheError
        Damaged slices that cannot be recomputed (no backbone), or a cache folder that cannot be written
        when something must be computed.

    Notes
    -----
    Every stored slice is checked against the digest written with it before it is used; damaged slices
    are recomputed and listed in ``extra["repaired"]`` of the result.
    """
    from dinomed_napari.io.validate import check_image_volume
    from dinomed_napari.models.normalisation import weights_normalisation
    from dinomed_napari.models.registry import resolve_spec
    from dinomed_napari.preprocess import Preprocess, plane_input_size, tiles_plane

    from .tiles import TilePlan

    if backbone is None:
        require_weights(weights)
    vol = as_volume(volume)
    check_image_volume(vol)
    check_plane_axis(vol.shape, axis, vol.source)
    if batch_size != "auto" and (not isinstance(batch_size, int | np.integer) or int(batch_size) < 1):
        raise ValueError(f"batch_size must be an integer >= 1 or 'auto', got {batch_size!r}")
    prep = Preprocess() if prep is None else prep
    if backbone is not None:
        from dinomed_napari.models.backbone import _check_layers

        if layers and _check_layers(layers, backbone.spec.depth) != backbone.layers:
            raise ValueError(f"layers={tuple(layers)}, but the backbone given computes layers="
                             f"{backbone.layers}; build the backbone with the layers you want")
        spec, label, layers = backbone.spec, backbone.weights_label, backbone.layers
        patch, dim, norm = int(backbone.patch_size), int(backbone.dim), (backbone.mean, backbone.std)
    else:
        spec, label = resolve_spec(model), weights_label(model, weights)
        norm = weights_normalisation(weights, label).mean_std
        if layers:
            from dinomed_napari.models.backbone import _check_layers  # imports torch: only when needed

            layers = _check_layers(layers, spec.depth)  # the normalisation Backbone applies
        layers = layers or None
        patch, dim = spec.patch_size, spec.embed_dim * (len(layers) if layers else 1)

    a, b = PLANE_AXES[axis]
    plane, plane_spacing = (vol.shape[a], vol.shape[b]), (vol.spacing[a], vol.spacing[b])
    size = plane_input_size(plane, plane_spacing, prep, patch=patch)
    plan = TilePlan.build(size, prep.resolution, prep.halo, patch=patch) if tiles_plane(plane, prep) else None
    shape = (vol.shape[axis], size[0] // patch, size[1] // patch, dim)
    # cache_admin.KEY_PARTS names these keys: it hashes them again to tell reachable stores.
    parts = {
        "volume": volume_digest(vol.data, vol.spacing),  # slab by slab: lazy volumes stay lazy
        "model": key_model_name(spec.timm_name, label),
        "weights": label,
        "resolution": int(prep.resolution),
        "axis": int(axis),
        "prep": prep.key(vol),
        "norm": [list(norm[0]), list(norm[1])],
        "layers": list(layers) if layers else None,
        "input_size": list(size),
    }
    if plan is not None:  # shrunk planes keep the keys they had before tiling existed
        parts["tiling"] = {"tile": int(prep.resolution), "halo": int(prep.halo)}
    key = cache_key(parts)
    path = None if cache_dir is False else Path(cache_dir or default_cache_dir()) / f"{key}.zarr"
    attrs = {**parts, "key": key, "volume_shape": list(vol.shape), "source": vol.source}

    # A complete, intact store is read without the lock (a read-only shared cache works); anything else
    # (missing slices, damaged ones to repair) is done holding it.
    store = FeatureStore.peek(path, shape) if path is not None else None
    damaged = store.verify() if store is not None and store.complete else []
    repaired: list[int] = []
    head = to_unit = None
    if (on_batch is not None and first is not None and backbone is not None and scheduler is None
            and plan is None and batch_size == 1 and (store is None or not store.done[int(first)])
            and not (cancel is not None and cancel())):
        # A viewer's current slice, one per forward pass (the CPU): computed and shown before the store
        # is opened and locked (a new store costs about one forward pass beside a busy GUI thread).
        from dinomed_napari.preprocess import intensity_mapper

        _check_backbone(backbone, spec, label, dim)
        to_unit = intensity_mapper(vol, prep)  # volume-wide percentiles: once, for this slice and the rest
        head = head_slice(vol, prep, backbone, axis, size, int(first), to_unit)
        on_batch(*head)
    if store is None or not store.complete or damaged:
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(store_lock(path))
            except CacheError as exc:
                if damaged:
                    raise CacheError(f"feature store {path}: slice(s) {describe_slices(damaged)} are damaged "
                                     f"and cannot be repaired here: {exc}") from exc
                raise
            store = FeatureStore(path, shape, attrs)
            repaired = store.verify()
            if repaired:
                store.forget(repaired)
            if not store.complete and scheduler is not None:
                from .distributed import dask_client, fill_store_dask

                # Workers load the backbone themselves (once per process); this process may have no GPU.
                source = backbone if backbone is not None else (model, str(weights), device, layers, label)
                store.update_attrs(backbone=spec.timm_name, device=f"dask:{device or 'auto'}")
                per_task = 8 if batch_size == "auto" else int(batch_size)
                with dask_client(scheduler) as client:
                    fill_store_dask(store, vol, prep, source, axis, size, per_task, progress, cancel, first,
                                    on_batch, plan, key, client)
            elif not store.complete:
                if backbone is None:
                    backbone = _backbone_for_repair(model, weights, device, layers, label, repaired, path)
                _check_backbone(backbone, spec, label, dim)
                store.update_attrs(backbone=backbone.spec.timm_name, device=str(backbone.device),
                                   dtype=str(backbone.dtype).removeprefix("torch."))
                if batch_size == "auto":
                    from dinomed_napari.models.device import auto_batch_size

                    tile = size if plan is None else tuple(t * patch for t in plan.tile)
                    batch_size = auto_batch_size(backbone, tile) if hasattr(backbone, "spec") else 4
                fill_store(store, vol, prep, backbone, axis, size, int(batch_size), progress, cancel, first,
                           on_batch, plan, head, to_unit)
            elif progress is not None:
                progress(shape[0], shape[0])
    elif progress is not None:
        progress(shape[0], shape[0])

    mark_used(path)  # what `dinomed-napari cache --prune` goes by
    extra = {"prep": prep.key(vol), "input_size": size, "tiling": parts.get("tiling"),
             "path": None if path is None else str(path),
             "device": store.attrs.get("device"), "dtype": store.attrs.get("dtype"), "repaired": repaired}
    return FeatureVolume(
        data=store.read_only(), axis=int(axis), volume_shape=vol.shape,
        model=store.attrs.get("backbone", spec.timm_name), weights=label,
        resolution=int(prep.resolution), layers=layers, key=key, extra=extra,
    )
