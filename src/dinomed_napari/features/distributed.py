"""Extraction of one volume on a dask.distributed cluster: batches run on the workers, the store stays here.

The calling process holds the cache store and its lock; each batch of slices is a task that a worker
computes with the same code as the local loop (:func:`~.batches.batch_steps`) and returns as float16.
Results are written as they arrive, so progress, ``on_batch``, cancel and resume behave as locally and
the stored features are the local run's. Workers load the backbone once per process (by model name and
weights, or a pickled backbone object) and see one GPU each when the cluster gives them one (dask-cuda).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import numpy as np

from .batches import batch_order, batch_steps, cancelled, slices_per_batch

# Per worker process: the last intensity mapping (percentile windows scan the volume once per worker).
_MAPPERS: dict[str, Any] = {}


@contextmanager
def dask_client(scheduler):
    """A ``distributed.Client`` for ``scheduler``: a Client (used as is), an address, or "local"
    (a LocalCluster of worker processes, one thread each, closed afterwards)."""
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if str(scheduler) == "local":
        import os

        with LocalCluster(n_workers=max(1, (os.cpu_count() or 2) // 2), threads_per_worker=1,
                          processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
            yield client
        return
    with Client(str(scheduler)) as client:
        yield client


def _backbone(source):
    """The backbone a task uses: a backbone object as given, or one loaded (once per process) by name."""
    if not isinstance(source, tuple):
        return source
    from .extract import shared_backbone

    return shared_backbone(*source)


def compute_batch(vol, prep, source, axis: int, size: tuple[int, int], batch_size: int, plan, key: str,
                  idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Worker task: float16 features (B, h, w, C) of slices ``idx`` along ``axis``."""
    import torch

    from dinomed_napari.preprocess import intensity_mapper

    from .overlap import return_large_buffers

    return_large_buffers()  # each worker process, once: its memory bounded by the batch too
    backbone = _backbone(source)
    if key not in _MAPPERS:
        _MAPPERS.clear()
        _MAPPERS[key] = intensity_mapper(vol, prep)
    prepare, run = batch_steps(vol, prep, backbone, axis, size, batch_size, plan, to_unit=_MAPPERS[key])
    with torch.inference_mode():
        feats = run(prepare(idx))
    return idx, feats.cpu().numpy()


def fill_store_dask(store, vol, prep, source, axis: int, size: tuple[int, int], batch_size: int, progress,
                    cancel, first, on_batch, plan, key: str, client) -> None:
    """Like :func:`~.batches.fill_store`, with every batch computed as a task on ``client``'s workers.

    ``source`` is a backbone object or the ``shared_backbone`` arguments (model, weights, device, layers,
    label) that each worker loads once.
    """
    from distributed import as_completed

    total = store.shape[0]
    todo = np.flatnonzero(~store.done)
    if progress is not None:
        progress(total - len(todo), total)
    if len(todo) == 0:
        return
    batches = batch_order(todo, slices_per_batch(batch_size, plan), first)
    # Sent once per worker, not once per task (a lazy volume travels as its dask graph, read by workers).
    [vol_f] = client.scatter([vol], broadcast=True)
    futures = [client.submit(compute_batch, vol_f, prep, source, axis, size, batch_size, plan, key, idx,
                             pure=False, priority=-k) for k, idx in enumerate(batches)]
    try:
        for fut in as_completed(futures):
            idx, feats = fut.result()
            store.write(idx, feats)
            if on_batch is not None:
                on_batch(idx, feats)
            if progress is not None:
                progress(int(store.done.sum()), total)
            if cancel is not None and cancel():
                raise cancelled(store)
    finally:
        client.cancel(futures)


def extract_cohort(volumes, scheduler, **kwargs) -> list:
    """Features of several volumes (Volume objects, arrays or paths) on one dask cluster.

    One client for the whole cohort; each volume's batches are spread over the workers in turn (see
    :func:`~.extract.extract_features`, whose keyword arguments ``kwargs`` takes). Paths are opened with
    :func:`~dinomed_napari.io.load_volume` here (lazily when large); the workers read the slices.

    Returns
    -------
    list of FeatureVolume, in the order of ``volumes``
    """
    from dinomed_napari.io.load import load_volume

    from .extract import extract_features

    with dask_client(scheduler) as client:
        return [extract_features(v if hasattr(v, "shape") else load_volume(v), scheduler=client, **kwargs)
                for v in volumes]
