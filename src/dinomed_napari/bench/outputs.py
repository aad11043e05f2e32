"""Bench outputs written as results arrive: ``results.csv``, ``results.json`` and the predicted masks.

Every finished row is appended to the CSV (flushed) and the JSON is rewritten atomically, so an interrupted
run (Ctrl-C, a crash) keeps every result finished before it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import re
import resource
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from dinomed_napari.errors import plain_message
from dinomed_napari.io.atomic import atomic_output, write_text

# CSV columns, in order; rows may carry more keys (kept in the JSON only).
COLUMNS = [
    "case", "protocol", "method", "model", "resolution", "weights", "n_slices", "label", "class_index",
    "dice", "iou", "hd95_mm", "assd_mm", "auc", "accuracy", "n_eval_slices", "annotated_slices",
    "n_scribbled", "seconds", "extract_seconds", "peak_rss_mb", "status", "error", "prediction",
]
PACKAGES = ["dinomed-napari", "numpy", "scipy", "torch", "timm", "scikit-learn", "scikit-image", "dask",
            "distributed", "zarr", "nibabel", "tifffile", "matplotlib"]


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages the numbers depend on (read from metadata, nothing imported)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_info() -> dict[str, Any]:
    """Platform, CPU count and the torch device / threads this process computes with."""
    info: dict[str, Any] = {"platform": platform.platform(), "processor": platform.machine(),
                            "cpu_count": os.cpu_count()}
    try:
        import torch

        from dinomed_napari.models.device import pick_device

        info.update(device=str(pick_device(None)), torch_threads=torch.get_num_threads(),
                    cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    except Exception as exc:  # the report must still be written if torch is broken
        info["device_error"] = str(exc)
    return info


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def _clean(value: Any) -> Any:
    """JSON-safe values: NaN/inf -> None, NumPy scalars -> Python, tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(text)).strip("_") or "x"


class ResultsWriter:
    """Collects result rows and writes them to ``out_dir`` as they come.

    Parameters
    ----------
    out_dir : path
        Created if needed; holds ``results.csv`` (every row), ``cases/<case>.csv`` (that case's rows),
        ``results.json`` and ``predictions/<case>/*.npy``.
    meta : dict
        Run description (settings, seeds, weights, cases); versions, machine and timings are added here.
    """

    def __init__(self, out_dir: str | os.PathLike, meta: dict[str, Any]):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, Any]] = []
        self._case_csvs: set[Path] = set()  # started by this run: never appended to an older run's file
        self.t0 = time.perf_counter()
        self.meta = {**meta, "versions": package_versions(), "machine": machine_info(),
                     "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "status": "running"}
        self.csv_path, self.json_path = self.out / "results.csv", self.out / "results.json"
        self._new_csv(self.csv_path)
        self._write_json()

    def add(self, row: dict[str, Any], prediction: np.ndarray | None = None) -> dict[str, Any]:
        """Record one result row (and its predicted class map, saved as ``.npy``); returns the stored row."""
        row = dict(row)
        if row.get("error"):
            row["error"] = plain_message(row["error"])
        if prediction is not None:
            parts = [row.get("protocol"), row.get("method"), row.get("model"), row.get("resolution"),
                     f"n{row.get('n_slices')}", f"label{row.get('label')}"]
            name = safe_name("_".join(map(str, parts))) + ".npy"
            rel = Path("predictions") / safe_name(row["case"]) / name
            with atomic_output(self.out / rel) as tmp, open(tmp, "wb") as fh:
                np.save(fh, np.asarray(prediction))
            row["prediction"] = str(rel)
        self.rows.append(row)
        per_case = self.out / "cases" / f"{safe_name(row.get('case', 'run'))}.csv"
        if per_case not in self._case_csvs:
            self._new_csv(per_case)
            self._case_csvs.add(per_case)
        cells = {k: _cell(row.get(k)) for k in COLUMNS}
        for path in (self.csv_path, per_case):
            with open(path, "a", newline="") as fh:
                csv.DictWriter(fh, COLUMNS, extrasaction="ignore").writerow(cells)
        self._write_json()
        return row

    @staticmethod
    def _new_csv(path: Path) -> None:
        with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
            csv.DictWriter(fh, COLUMNS).writeheader()

    def finish(self, status: str = "complete") -> None:
        """Mark the run ``complete`` or ``interrupted`` and record the wall time and peak memory."""
        self.meta.update(status=status, wall_seconds=round(time.perf_counter() - self.t0, 2),
                         peak_rss_mb_client=peak_rss_mb(),
                         peak_rss_mb_max=max([peak_rss_mb()] + [r.get("peak_rss_mb") or 0
                                                                for r in self.rows]))
        self._write_json()

    def _write_json(self) -> None:
        # Write-then-rename: a reader (or a Ctrl-C) never sees half a file.
        write_text(self.json_path, json.dumps(_clean({"meta": self.meta, "rows": self.rows}), indent=1))


def read_results(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Load ``results.json`` of a bench run (``meta`` and ``rows``)."""
    return json.loads((Path(out_dir) / "results.json").read_text())
