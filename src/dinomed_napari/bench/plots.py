"""Bench figures (matplotlib, Agg backend: no display needed): scaling grid, Dice vs annotated slices,
per-case bars."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .grid import scaling_table


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path, title_note: str) -> Path:
    """Caption (the random-weights warning), lay out, write and free the figure."""
    if title_note:
        fig.suptitle(title_note, fontsize=9, color="crimson")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def method_name(row: dict[str, Any]) -> str:
    """Legend name of a segmentation row: ``baseline (filter-bank RF)`` or ``linear S@224``."""
    if row.get("protocol") == "baseline":
        return "baseline (filter-bank RF)"
    return f"{row.get('method')} {row.get('model')}@{row.get('resolution')}"


def seg_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Successful few-click and baseline rows (the ones with a Dice against the mask)."""
    return [r for r in rows if r.get("protocol") in ("fewclick", "baseline") and r.get("status") == "ok"
            and r.get("dice") is not None]


def mean_dice(rows: list[dict[str, Any]]) -> dict[tuple, float]:
    """Mean Dice over labels per (case, method name, n_slices)."""
    acc: dict[tuple, list[float]] = defaultdict(list)
    for r in seg_rows(rows):
        acc[(r["case"], method_name(r), int(r["n_slices"]))].append(float(r["dice"]))
    return {k: float(np.mean(v)) for k, v in acc.items()}


def plot_scaling(rows: list[dict[str, Any]], path: Path, title_note: str = "") -> Path | None:
    """Mean few-click Dice and extraction time per slice against input resolution, one line per model."""
    table = scaling_table(rows)
    if not table:
        return None
    times: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get("protocol") == "fewclick" and r.get("extract_seconds") is not None \
                and r.get("n_slices_total"):
            times[str(r["model"])][int(r["resolution"])].append(r["extract_seconds"] / r["n_slices_total"])
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for model, d in table.items():
        axes[0].plot(list(d), list(d.values()), "o-", label=model)
        t = times.get(model, {})
        if t:
            axes[1].plot(sorted(t), [np.mean(t[k]) for k in sorted(t)], "o-", label=model)
    axes[0].set(xlabel="input resolution (px, long side)", ylabel="mean Dice (linear, most slices)",
                title="few-click Dice vs resolution", ylim=(0, 1))
    axes[1].set(xlabel="input resolution (px, long side)", ylabel="s / slice (extraction)",
                title="feature time vs resolution")
    resolutions = sorted({res for d in table.values() for res in d})
    for ax in axes:
        ax.set_xticks(resolutions)
        ax.legend(title="model", fontsize=8)
        ax.grid(alpha=0.3)
    return _save(plt, fig, path, title_note)


def plot_dice_vs_slices(rows: list[dict[str, Any]], path: Path, title_note: str = "") -> Path | None:
    """Dice (mean over labels) against the number of annotated slices, one panel per case."""
    md = mean_dice(rows)
    if not md:
        return None
    cases = sorted({k[0] for k in md})
    plt = _plt()
    fig, axes = plt.subplots(1, len(cases), figsize=(3.8 * len(cases), 3.4), squeeze=False)
    for ax, case in zip(axes[0], cases, strict=True):
        methods = sorted({k[1] for k in md if k[0] == case})
        for m in methods:
            pts = sorted((n, v) for (c, mm, n), v in md.items() if c == case and mm == m)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "s--" if m.startswith("baseline") else "o-",
                    label=m)
        ax.set(title=case, xlabel="annotated slices", ylabel="Dice (unannotated slices)", ylim=(0, 1),
               xticks=sorted({k[2] for k in md if k[0] == case}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(plt, fig, path, title_note)


def plot_per_case(rows: list[dict[str, Any]], path: Path, title_note: str = "") -> Path | None:
    """Grouped bars: Dice per case for each method, at the largest number of annotated slices."""
    md = mean_dice(rows)
    if not md:
        return None
    n = max(k[2] for k in md)
    cases = sorted({k[0] for k in md})
    methods = sorted({k[1] for k in md if k[2] == n})
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(cases) * max(1, len(methods)) / 2), 3.6))
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(cases))
    for i, m in enumerate(methods):
        vals = [md.get((c, m, n), np.nan) for c in cases]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, vals, width, label=m,
               hatch="//" if m.startswith("baseline") else None)
    ax.set_xticks(x, cases)
    ax.set(ylabel=f"Dice ({n} annotated slices)", ylim=(0, 1), title="per-case Dice")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return _save(plt, fig, path, title_note)


def write_plots(rows: list[dict[str, Any]], out_dir: Path, title_note: str = "") -> dict[str, str]:
    """All figures that the rows allow; returns {name: file name} of those written."""
    out = {}
    for name, fn in (("scaling", plot_scaling), ("dice_vs_slices", plot_dice_vs_slices),
                     ("per_case", plot_per_case)):
        p = fn(rows, Path(out_dir) / f"{name}.png", title_note)
        if p is not None:
            out[name] = p.name
    return out
