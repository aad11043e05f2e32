"""Run the bench units in-process or as dask.distributed tasks; both paths run :func:`run_unit`.

Every unit is self-contained (reads its case, seeds everything, builds or reuses its backbone), so the
results do not depend on where or in which order units run: the dask path equals the in-process path.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .cases import LoadedCase, load_case
from .grid import BenchSettings, Unit
from .outputs import ResultsWriter, peak_rss_mb

Record = tuple[dict[str, Any], "np.ndarray | None"]

# Per-process reuse (a dask worker runs many units): the last case read and the last backbone built.
_CASE: dict[Any, LoadedCase] = {}
_BACKBONE: dict[tuple, Any] = {}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (scikit-learn gets ``random_state=seed`` explicitly)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _loaded(unit: Unit) -> LoadedCase:
    if unit.case not in _CASE:
        _CASE.clear()
        _CASE[unit.case] = load_case(unit.case)
    return _CASE[unit.case]


def get_backbone(model: str, weights: str, device: str | None):
    """The backbone for ``model``/``weights``, built once per process (one kept at a time)."""
    from dinomed_napari.models import load_backbone

    key = (model, str(weights), device)
    if key not in _BACKBONE:
        _BACKBONE.clear()
        _BACKBONE[key] = load_backbone(model, weights, device=device)
    return _BACKBONE[key]


def _error_row(unit: Unit, protocol: str, exc: BaseException) -> dict[str, Any]:
    return {"protocol": protocol, "method": "-", "status": "error",
            "error": f"{type(exc).__name__}: {exc}".strip()}


def _stamp(unit: Unit, row: dict[str, Any], weights: str, t0: float, extra: dict) -> dict[str, Any]:
    base = {"case": unit.case.name, "model": unit.model or "-", "resolution": unit.resolution,
            "weights": weights, "seconds": round(time.perf_counter() - t0, 3), "peak_rss_mb": peak_rss_mb()}
    return {**base, **extra, **row}


def iter_unit(unit: Unit, settings: BenchSettings) -> Iterator[Record]:
    """Run one unit, yielding ``(row, predicted class map or None)`` as each result is ready.

    Every failure (unreadable file, mask on another grid, missing label, a protocol error) becomes an
    ``status="error"`` row with the message; the other protocols of the unit still run.
    """
    from .protocols import baseline, fewclick, probe

    t0 = time.perf_counter()
    seed_everything(settings.seed)
    try:
        lc = _loaded(unit)
    except Exception as exc:
        yield _stamp(unit, _error_row(unit, "load", exc), settings.weights, t0, {}), None
        return
    steps: list[tuple[str, Callable[[], Iterator[Record]]]] = []
    if unit.kind == "baseline":
        steps.append(("baseline", lambda: baseline.baseline_records(lc, settings)))
        yield from _run_steps(unit, steps, settings, "-", {})
        return
    try:
        backbone = get_backbone(unit.model, settings.weights, settings.device)
        t1 = time.perf_counter()
        fv = fewclick.features(lc, backbone, unit.resolution, settings, axis=settings.axis)
        extra = {"extract_seconds": round(time.perf_counter() - t1, 3), "n_slices_total": fv.n_slices,
                 "device": str(backbone.device)}
    except Exception as exc:
        yield _stamp(unit, _error_row(unit, "features", exc), settings.weights, t0, {}), None
        return
    if "fewclick" in settings.protocols:
        steps.append(("fewclick", lambda: fewclick.fewclick_records(lc, fv, backbone, unit.resolution,
                                                                    settings)))
    if "fewclick3d" in settings.protocols:
        from .protocols import fewclick3d

        steps.append(("fewclick3d", lambda: fewclick3d.fewclick3d_records(lc, fv, settings)))
    if "isolation" in settings.protocols:
        from .protocols import isolation

        steps.append(("isolation", lambda: isolation.isolation_records(lc, fv, settings)))
    if "probe" in settings.protocols:
        steps.append(("probe", lambda: ((r, None) for r in probe.probe_rows(
            fv, lc.truth, lc.labels, folds=settings.folds, seed=settings.seed))))
        if unit.case.target is not None:
            steps.append(("embedding", lambda: iter([(probe.embedding_row(fv, unit.case.target), None)])))
    yield from _run_steps(unit, steps, settings, backbone.weights_label, extra)


def _run_steps(unit: Unit, steps, settings: BenchSettings, weights: str, extra: dict) -> Iterator[Record]:
    """Run protocol steps one after the other; a failing step becomes one error row, the next ones run."""
    for name, step in steps:
        t0 = time.perf_counter()
        seed_everything(settings.seed)
        try:
            for row, pred in step():
                yield _stamp(unit, row, weights, t0, extra), pred
                t0 = time.perf_counter()
        except Exception as exc:
            row = _error_row(unit, name, exc)
            row["traceback"] = traceback.format_exc(limit=4)
            yield _stamp(unit, row, weights, t0, extra), None


def run_unit(unit: Unit, settings: BenchSettings) -> list[Record]:
    """All records of one unit as a list (the dask task)."""
    return list(iter_unit(unit, settings))


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="task", desc="bench", disable=not enabled, dynamic_ncols=True)


def run_inprocess(units: list[Unit], settings: BenchSettings, writer: ResultsWriter,
                  progress: bool = True) -> None:
    """Run the units one after the other here, writing each row as soon as it is ready."""
    with _progress(len(units), progress) as bar:
        for unit in units:
            bar.set_postfix_str(unit.label)
            for row, pred in iter_unit(unit, settings):
                writer.add(row, pred)
            bar.update(1)


def run_dask(units: list[Unit], settings: BenchSettings, writer: ResultsWriter, *,
             scheduler: str | None = None, cluster_kwargs: dict | None = None, progress: bool = True) -> None:
    """Run the units as dask.distributed tasks and write their rows as each task finishes.

    ``scheduler`` is the address of a running cluster (the workers must read the case files); without
    it a ``LocalCluster(**cluster_kwargs)`` is started (default: one single-threaded worker process per
    2 cores). Rows are written in the order tasks finish; their values equal the in-process run's.
    """
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        import os

        kw = {"n_workers": max(1, (os.cpu_count() or 2) // 2), "threads_per_worker": 1,
              "dashboard_address": None, **(cluster_kwargs or {})}
        cluster = LocalCluster(**kw)
        client = Client(cluster)
    writer.meta["dask"] = {"scheduler": scheduler or "LocalCluster", "dashboard": client.dashboard_link,
                           "workers": len(client.scheduler_info().get("workers", {}))}
    futures = {client.submit(run_unit, unit, settings, pure=False): unit for unit in units}
    try:
        with _progress(len(units), progress) as bar:
            for fut in as_completed(list(futures)):
                unit = futures[fut]
                try:
                    records = fut.result()
                except Exception as exc:  # a worker died: the unit fails, the run goes on
                    records = [(_stamp(unit, _error_row(unit, "task", exc), settings.weights,
                                       time.perf_counter(), {}), None)]
                for row, pred in records:
                    writer.add(row, pred)
                bar.set_postfix_str(unit.label)
                bar.update(1)
    finally:
        client.cancel(list(futures))
        client.close()
        if cluster is not None:
            cluster.close()
