"""The batch loop of extraction: which slices go together, in which order, and how each batch is stored."""

from __future__ import annotations

import contextlib

import numpy as np

from dinomed_napari.errors import ExtractionCancelled
from dinomed_napari.io.volume import Volume

from .cache import FeatureStore


def batch_order(todo: np.ndarray, batch_size: int, first: int | None = None) -> list[np.ndarray]:
    """Split the slice indices still to compute into batches; the batch holding ``first`` goes first.

    Batches are runs of ``batch_size`` consecutive entries of ``todo`` (sorted), so each one writes
    neighbouring chunks. If ``first`` is already done the order is unchanged.
    """
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    if first is not None:
        hit = [i for i, b in enumerate(batches) if int(first) in b]
        if hit:
            batches.insert(0, batches.pop(hit[0]))
    return batches


def pipelined(device) -> bool:
    """Whether batches are pipelined (launch k+1 before storing k): on asynchronous devices (CUDA, MPS)."""
    return str(device).split(":")[0] != "cpu"


def fill_store(store: FeatureStore, vol: Volume, prep, backbone, axis: int, size: tuple[int, int],
               batch_size: int, progress, cancel, first, on_batch=None) -> None:
    """Compute the slices of ``store`` not yet done, batch by batch, storing each batch as it finishes.

    On a GPU the forward pass is asynchronous: batch k+1 is launched before batch k is written, so the
    float16 copy, zarr compression and callbacks of k overlap the GPU work of k+1. On the CPU every batch
    is stored right after its forward (same result, no lag in progress).
    """
    import torch

    from dinomed_napari.preprocess import intensity_to_unit, to_network_batch

    total = store.shape[0]
    todo = np.flatnonzero(~store.done)
    overlap = pipelined(backbone.device)
    # Window / normalise once for the whole volume (percentile windows need all of it), then slice.
    unit = intensity_to_unit(vol, prep)
    if progress is not None:
        progress(total - len(todo), total)

    def save(idx: np.ndarray, feats16: np.ndarray) -> None:
        store.write(idx, feats16)
        if on_batch is not None:
            on_batch(idx, feats16)
        if progress is not None:
            progress(int(store.done.sum()), total)

    pending = None  # (indices, float16 features still on the device)

    def take():  # the pending batch as host arrays (waits for its kernels only), and nothing pending
        nonlocal pending
        out, pending = pending, None
        return None if out is None else (out[0], out[1].cpu().numpy())

    with torch.inference_mode():
        try:
            for idx in batch_order(todo, batch_size, first):
                if cancel is not None and cancel():
                    if (ready := take()) is not None:
                        save(*ready)
                    n = int(store.done.sum())
                    where = f"kept in {store.path}; rerun to resume" if store.path else "in memory, not kept"
                    raise ExtractionCancelled(f"extraction cancelled after {n} of {total} slices ({where})")
                slices = np.moveaxis(np.take(unit, idx, axis=axis), axis, 0)
                x = to_network_batch(np.ascontiguousarray(slices), size, backbone.mean, backbone.std)
                ready = take()
                try:
                    # Halve the bytes before leaving the device; the store holds float16 anyway.
                    pending = (idx, backbone.patch_features(x.to(backbone.device)).to(torch.float16))
                finally:  # the previous batch is kept even when this forward fails
                    if ready is not None:
                        save(*ready)
                if not overlap:
                    save(*take())
            if (ready := take()) is not None:
                save(*ready)
        except BaseException:
            # A crash (or Ctrl-C) keeps what was computed: store a launched batch before propagating.
            if pending is not None:
                with contextlib.suppress(Exception):
                    save(*take())
            raise
