"""``run_bench``: plan units, run them (here or on dask), write rows as they come, then plots and report."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .cases import Case, unique_names
from .grid import BenchConfigError, BenchSettings, plan_units
from .outputs import ResultsWriter
from .plots import write_plots
from .report import RANDOM_NOTE, random_weights_used, write_report


def finalize(writer: ResultsWriter, status: str) -> Path:
    """Close the run: the volume-level probe over the cases' embeddings, timings in the JSON, plots and
    report from every row written so far."""
    from .protocols.probe import volume_probe_rows

    s = writer.meta["settings"]
    for row in volume_probe_rows(writer.rows, folds=s["folds"], seed=s["seed"]):
        writer.add(row)
    writer.finish(status)
    note = "random weights: measures the pipeline, not DINOv3" if random_weights_used(
        writer.meta, writer.rows) else ""
    plots = write_plots(writer.rows, writer.out, note)
    writer.meta["plots"] = plots
    writer.finish(status)
    return write_report(writer.out, writer.meta, writer.rows, plots)


def run_bench(cases: list[Case], settings: BenchSettings, out_dir: str | os.PathLike, *,
              use_dask: bool = False, scheduler: str | None = None, cluster_kwargs: dict | None = None,
              progress: bool = True, extra_meta: dict[str, Any] | None = None) -> ResultsWriter:
    """Score every case with every selected protocol and backbone setting.

    Parameters
    ----------
    cases : list of Case
    settings : BenchSettings
    out_dir : path
        Receives ``results.csv``, ``results.json``, ``predictions/``, ``*.png`` and ``report.md``.
    use_dask : bool
        Run the units as dask.distributed tasks (a LocalCluster unless ``scheduler`` is given).
    scheduler : str, optional
        Address of an existing dask scheduler (implies ``use_dask``).
    cluster_kwargs : dict, optional
        LocalCluster arguments (e.g. ``processes=False, n_workers=1``).
    progress : bool
        Show a tqdm progress bar on stderr.
    extra_meta : dict, optional
        Added to the JSON meta (e.g. ``demo: True``).

    Returns
    -------
    ResultsWriter
        Its ``rows`` and ``meta`` are what was written. On Ctrl-C (KeyboardInterrupt) the files are
        finalised with status "interrupted" and the interrupt is re-raised.
    """
    if not cases:
        raise BenchConfigError("no cases: pass --demo, --config FILE or --image/--mask")
    cases = unique_names(list(cases))
    units = plan_units(cases, settings)
    use_dask = use_dask or bool(scheduler)
    meta = {"settings": settings.to_dict(), "cases": [c.to_dict() for c in cases],
            "runner": ("dask " + (scheduler or "LocalCluster")) if use_dask else "in-process",
            "units": len(units), **(extra_meta or {})}
    if random_weights_used(meta, []):
        # The models' "random" weights are one fixed untrained net (seed 0), whatever --seed says.
        meta["weights_note"] = RANDOM_NOTE.replace("**", "")
    writer = ResultsWriter(out_dir, meta)
    if random_weights_used(meta, []):
        print(f"WARNING: {RANDOM_NOTE.replace('**', '')}", file=sys.stderr)
    try:
        if use_dask:
            from .runner import run_dask

            run_dask(units, settings, writer, scheduler=scheduler, cluster_kwargs=cluster_kwargs,
                     progress=progress)
        else:
            from .runner import run_inprocess

            run_inprocess(units, settings, writer, progress=progress)
    except KeyboardInterrupt:
        finalize(writer, "interrupted")
        raise
    finalize(writer, "complete")
    return writer
