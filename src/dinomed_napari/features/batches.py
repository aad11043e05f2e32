"""The batch loop of extraction: which slices go together, in which order, and how each batch is stored.

Memory is bounded by the batch, not the volume: slices are read (lazily for zarr/TIFF), windowed and
converted batch by batch. Three stages overlap (see :mod:`.overlap`): the prefetcher reads and windows
batch k+1 (and more ahead on a GPU), this thread runs the network on batch k (resize, 3 channels and
normalisation on the device), the writer stores batch k-1.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from dinomed_napari.errors import ExtractionCancelled
from dinomed_napari.io.lazy import read_block
from dinomed_napari.io.volume import Volume

from .cache import FeatureStore
from .overlap import Prefetcher, StoreWriter, return_large_buffers, start_host_copy, to_host

#: The batch holding ``first`` (a viewer's current slice) has at most this many slices, so that slice
#: shows after a short forward pass while the rest goes in large batches (e.g. 64 on a GPU).
FIRST_BATCH = 4

#: Batches read and windowed ahead, on as many threads, when the device runs asynchronously. 1: on the
#: H200 machine the writer (0.6-0.9 ms per ViT-S slice) bounded every run, not one thread's read + window
#: (0.4-0.6 ms), and on the stand-in's GPU path 3 ahead raised the added peak RSS from 73-81 MB to
#: 117-139 MB (N = 50-300). ``bench_pipeline.py --prefetch 3`` measures more.
PREFETCH_AHEAD = 1


def batch_order(todo: np.ndarray, batch_size: int, first: int | None = None) -> list[np.ndarray]:
    """Split the slice indices still to compute into batches; the batch holding ``first`` goes first.

    Batches are runs of ``batch_size`` consecutive entries of ``todo`` (sorted), so each one writes
    neighbouring chunks. With ``batch_size`` above :data:`FIRST_BATCH`, ``first`` comes in a batch of
    :data:`FIRST_BATCH` slices starting at it, before the others. If ``first`` is already done the order
    is unchanged.
    """
    todo = np.asarray(todo)
    if first is not None and batch_size > FIRST_BATCH and int(first) in todo:
        start = min(int(np.searchsorted(todo, int(first))), max(0, len(todo) - FIRST_BATCH))
        head = todo[start : start + FIRST_BATCH]
        rest = np.concatenate([todo[:start], todo[start + FIRST_BATCH :]])
        return [head] + [rest[i : i + batch_size] for i in range(0, len(rest), batch_size)]
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    if first is not None:
        hit = [i for i, b in enumerate(batches) if int(first) in b]
        if hit:
            batches.insert(0, batches.pop(hit[0]))
    return batches


def pipelined(device) -> bool:
    """Whether the device runs asynchronously (CUDA, MPS): then a writer thread stores batch k while the
    device computes k+1. On the CPU each batch is stored (and reported) before the next one starts, so a
    cancel requested from a progress callback stops right there."""
    return str(device).split(":")[0] != "cpu"


def pad_to(x, n: int):
    """Repeat the last item of ``x`` (first axis) up to ``n`` items: one batch shape for torch.compile."""
    import torch

    if x.shape[0] >= n:
        return x
    return torch.cat([x, x[-1:].expand(n - x.shape[0], *x.shape[1:])])


def forward(backbone, x, batch_size: int):
    """float16 patch features of a normalised batch; padded to ``batch_size`` for compiled backbones."""
    import torch

    n = x.shape[0]
    if getattr(backbone, "compiled", None) and n < batch_size:
        x = pad_to(x, batch_size)
    # Halve the bytes before leaving the device; the store holds float16 anyway.
    return backbone.patch_features(x)[:n].to(torch.float16)


def forward_tiled(backbone, unit, plan, batch_size: int):
    """Features (B, h, w, C) of resized unit-range planes (B, 1|3, H, W), ``batch_size`` tiles at a time."""
    import torch

    from dinomed_napari.preprocess import normalise

    tiles = plan.cut(unit)
    feats = torch.cat([forward(backbone, normalise(tiles[i : i + batch_size], backbone.mean, backbone.std),
                               batch_size) for i in range(0, tiles.shape[0], batch_size)])
    per_plane = feats.view(unit.shape[0], plan.n_tiles, *feats.shape[1:])
    return torch.stack([plan.stitch(f) for f in per_plane])


def overlapped(backbone) -> bool:
    """Asynchronous device, or a stand-in backbone that costs the host nothing (like a GPU)."""
    return pipelined(backbone.device) or bool(getattr(backbone, "asynchronous", False))


def batch_steps(vol: Volume, prep, backbone, axis: int, size: tuple[int, int], batch_size: int, plan=None,
                to_unit=None):
    """The two halves of computing one batch of slice indices: ``prepare(idx) -> host tensor`` (read,
    window; any thread) and ``run(host) -> float16 features`` (device work, inside inference mode).

    Shared by the local loop and the dask workers, so both compute the same values.
    """
    from dinomed_napari.preprocess import device_batch, host_batch, intensity_mapper, resize_unit

    dev = backbone.device
    # Volume-wide statistics (percentiles) once; the mapping itself runs per batch.
    to_unit = to_unit or intensity_mapper(vol, prep)
    half = overlapped(backbone)
    to_device = getattr(backbone, "prepare", None) or (
        lambda host, size: device_batch(host, size, backbone.mean, backbone.std, dev))

    buffers = threading.local()  # one float32 batch per thread, reused batch after batch

    def window(block: np.ndarray) -> np.ndarray:
        # Slice by slice into a reused batch: windowing's float32 temporaries are one slice each, served
        # again and again from the heap (see return_large_buffers), not fresh pages for every batch.
        first = to_unit(block[:1])
        out = getattr(buffers, "unit", None)
        if out is None or out.shape[0] < len(block) or out.shape[1:] != first.shape[1:]:
            out = buffers.unit = np.empty((len(block), *first.shape[1:]), np.float32)
        out = out[: len(block)]
        out[0] = first[0]
        for k in range(1, len(block)):
            out[k] = to_unit(block[k : k + 1])[0]
        return out

    def prepare(idx: np.ndarray):
        block = read_block(vol.data, idx, axis)
        if not half:  # the CPU tensor is a view of the windowed array: a new one per batch
            return host_batch(to_unit(block), dev, half=False)
        return host_batch(window(block), dev, half=True)  # copied to float16 here: the buffer is free again

    def run(host):
        if plan is None:
            return forward(backbone, to_device(host, size), batch_size)
        unit = resize_unit(host.to(dev, non_blocking=True).float(), size)
        return forward_tiled(backbone, unit, plan, batch_size)

    return prepare, run


def slices_per_batch(batch_size: int, plan=None) -> int:
    """Slices per outer batch: ``batch_size``, or as many whole tiled planes as ``batch_size`` tiles hold."""
    return batch_size if plan is None else max(1, batch_size // plan.n_tiles)


def cancelled(store: FeatureStore) -> ExtractionCancelled:
    """The error for a cancel request, saying how many slices are kept and where."""
    n, total = int(store.done.sum()), store.shape[0]
    where = f"kept in {store.path}; rerun to resume" if store.path else "in memory, not kept"
    return ExtractionCancelled(f"extraction cancelled after {n} of {total} slices ({where})")


def head_slice(vol: Volume, prep, backbone, axis: int, size: tuple[int, int], index: int, to_unit):
    """``(indices, float16 features)`` of slice ``index`` alone, computed before any feature store is
    opened or locked: a viewer waits for this one slice (see ``extract_features``' ``first``), and on a
    CPU beside a busy GUI thread opening a new store costs about as much as the slice's forward pass.
    ``to_unit`` is the volume's intensity mapping, passed on to :func:`fill_store` for the rest."""
    import torch

    prepare, run = batch_steps(vol, prep, backbone, axis, size, 1, to_unit=to_unit)
    idx = np.array([int(index)])
    with torch.inference_mode():
        return idx, to_host(run(prepare(idx)))


def fill_store(store: FeatureStore, vol: Volume, prep, backbone, axis: int, size: tuple[int, int],
               batch_size: int, progress, cancel, first, on_batch=None, plan=None, head=None,
               to_unit=None) -> None:
    """Compute the slices of ``store`` not yet done, batch by batch, storing each batch as it finishes.

    ``plan`` (a :class:`~.tiles.TilePlan`) extracts each plane in tiles at native pixel size; then
    ``batch_size`` counts tiles per forward pass and each outer batch holds as many whole planes as fit.
    ``head`` (from :func:`head_slice`, already given to ``on_batch``) is stored first and not computed again;
    ``to_unit`` (the intensity mapping it used) spares a second pass over the volume's percentiles.
    """
    import torch

    total = store.shape[0]
    todo = np.flatnonzero(~store.done)
    if head is not None and not np.isin(head[0], todo).all():
        head = None  # stored meanwhile (another process filled the store): nothing to add
    if head is not None:
        todo = np.setdiff1d(todo, head[0])
    prepare, run = batch_steps(vol, prep, backbone, axis, size, batch_size, plan, to_unit)
    if progress is not None:
        progress(total - len(todo) - (0 if head is None else len(head[0])), total)
    if len(todo) == 0 and head is None:
        return

    def after_write(idx: np.ndarray, feats16: np.ndarray) -> None:  # writer thread
        if on_batch is not None and (head is None or idx is not head[0]):
            on_batch(idx, feats16)
        if progress is not None:
            progress(int(store.done.sum()), total)

    batches = batch_order(todo, slices_per_batch(batch_size, plan), first)
    return_large_buffers()  # peak memory bounded by the batch, not by how many batches ran
    behind = store.behind_device = overlapped(backbone)
    writer = StoreWriter(store, after_write, depth=2 if behind else 0)
    if head is not None:
        writer.submit(*head)
    prefetch = Prefetcher(prepare, batches, ahead=PREFETCH_AHEAD if behind else 1)
    try:
        with torch.inference_mode():
            for idx, host in prefetch:
                if cancel is not None and cancel():
                    prefetch.close()
                    writer.close()
                    raise cancelled(store)
                writer.submit(idx, start_host_copy(run(host)))
    except BaseException:
        # A crash or Ctrl-C keeps what was computed: every submitted batch is stored before propagating.
        prefetch.close()
        if writer.open:
            with contextlib.suppress(Exception):
                writer.close()
        raise
    prefetch.close()
    writer.close()
