"""One-page Markdown report of a bench run: settings, Dice table, every protocol's table, errors, plots."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .plots import mean_dice, method_name

RANDOM_NOTE = ("**Random weights: these numbers measure the pipeline (code paths, speed, plumbing), NOT "
               "DINOv3.** The backbone was untrained; rerun with `--weights hub` or `--weights PATH` to "
               "score DINOv3 itself.")


def random_weights_used(meta: dict[str, Any], rows: list[dict[str, Any]]) -> bool:
    """True when any backbone ran with random weights."""
    return str(meta.get("settings", {}).get("weights", "")).startswith("random") or any(
        str(r.get("weights", "")).startswith("random") for r in rows)


def _f(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _table(header: list[str], body: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_f(c) for c in row) + " |" for row in body]
    return lines


def dice_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Case x method table of mean Dice (over labels) at the largest number of annotated slices."""
    md = mean_dice(rows)
    if not md:
        return [], []
    n = max(k[2] for k in md)
    cases = sorted({k[0] for k in md})
    methods = sorted({k[1] for k in md if k[2] == n}, key=lambda m: (m.startswith("baseline"), m))
    body = [[c] + [md.get((c, m, n), float("nan")) for m in methods] for c in cases]
    body.append(["**mean**"] + [float(np.nanmean([md.get((c, m, n), np.nan) for c in cases]))
                                for m in methods])
    return [f"case ({n} annotated slices)"] + methods, body


def fewclick3d_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Per (case, label, k): the default's Dice beside the filter bank with clean-up and the active user,
    the default's predicted / true volume and HD95; a last row of means over the pairs all three have."""
    three = [r for r in rows if r.get("protocol") == "fewclick3d" and r.get("status") == "ok"]
    cells: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in three:
        cells[(r["case"], r["label"], int(r["n_slices"]))][r["method"]] = r
    methods = ("default", "filterbank_rf_cleanup", "active")
    body, means = [], defaultdict(list)
    for key in sorted(cells):
        got = cells[key]
        de = got.get("default", {})
        body.append(list(key) + [got.get(m, {}).get("dice") for m in methods]
                    + [de.get("volume_ratio"), de.get("hd95_mm"), de.get("fit_predict_seconds")])
        if all(got.get(m, {}).get("dice") is not None for m in methods[:2]):
            for m in methods[:2]:
                means[m].append(float(got[m]["dice"]))
    if body:
        body.append(["**mean**", "", len(means["default"])]
                    + [float(np.mean(means[m])) if means[m] else None for m in methods[:2]] + [None] * 4)
    header = ["case", "label", "k", "default Dice", "filter bank + clean-up Dice", "active Dice",
              "default predicted / true volume", "default HD95", "default s"]
    return header, body


def write_report(out_dir: str | Path, meta: dict[str, Any], rows: list[dict[str, Any]],
                 plots: dict[str, str]) -> Path:
    """Write ``report.md`` in ``out_dir`` and return its path."""
    out = Path(out_dir)
    s = meta.get("settings", {})
    lines = ["# dinomed-napari bench report", ""]
    if random_weights_used(meta, rows):
        lines += [f"> {RANDOM_NOTE}", ""]
    if meta.get("status") != "complete":
        lines += [f"> Run status: **{meta.get('status')}**; the tables hold every result finished before it "
                  "stopped.", ""]
    m = meta.get("machine", {})
    lines += [
        f"- Weights: `{s.get('weights')}`; models {s.get('models')}; resolutions {s.get('resolutions')}; "
        f"protocols {s.get('protocols')}; variants {s.get('variants')}",
        f"- Scribbles: {s.get('strokes')} strokes per class on {s.get('slices')} annotated slices "
        f"(axis {s.get('axis')}); seed {s.get('seed')}",
        f"- Cases: {', '.join(c['name'] for c in meta.get('cases', []))}",
        f"- Device {m.get('device')}, {m.get('cpu_count')} CPUs, torch threads {m.get('torch_threads')}; "
        f"wall time {_f(meta.get('wall_seconds'), 1)} s; "
        f"peak memory {_f(meta.get('peak_rss_mb_max'), 0)} MiB; "
        f"runner {meta.get('runner')}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items() if v),
        "- Metrics on the slices NOT annotated; HD95/ASSD in the spacing's units (mm for CT/MR, voxels "
        "where a file has no spacing). Full rows: `results.csv`, `results.json`; masks: `predictions/`.", "",
    ]
    header, body = dice_table(rows)
    if body:
        lines += ["## Few-click Dice (mean over labels)", ""] + _table(header, body) + [""]
    seg = [r for r in rows if r.get("protocol") in ("fewclick", "baseline") and r.get("status") == "ok"]
    if seg:
        n = max(int(r["n_slices"]) for r in seg)
        lines += [f"## Segmentation per label ({n} annotated slices)", ""]
        lines += _table(["case", "label", "method", "Dice", "IoU", "HD95", "ASSD"],
                        [[r["case"], r["label"], method_name(r), r["dice"], r["iou"], r.get("hd95_mm"),
                          r.get("assd_mm")] for r in seg if int(r["n_slices"]) == n]) + [""]
    header, body = fewclick3d_table(rows)
    if body:
        lines += ["## Few clicks, whole structure (`fewclick3d`: Dice on the unannotated slices)", "",
                  "k = annotated slices; \"active\" = a user who paints the suggested slice each round "
                  "(its k is the round). The mean row is over the pairs scored by both the default and "
                  "the filter bank (its k column counts them).", ""]
        lines += _table(header, body) + [""]
    iso = [r for r in rows if r.get("protocol") == "isolation" and r.get("status") == "ok"]
    if iso:
        lines += ["## PC1 threshold isolation from a seed", ""]
        lines += _table(["case", "label", "channel", "model@res", "seed (z,y,x)", "Dice", "HD95"],
                        [[r["case"], r["label"], r["method"], f"{r['model']}@{r['resolution']}",
                          tuple(r.get("seed_zyx") or ()), r["dice"], r.get("hd95_mm")] for r in iso]) + [""]
    probe = [r for r in rows if r.get("protocol") == "probe" and r.get("status") in ("ok", "skipped")]
    if probe:
        lines += ["## Linear probe (logistic regression on mean-pooled embeddings, stratified k-fold)", "",
                  "slice: does the slice contain the label; volume: the cases' `target` from the config.", ""]
        lines += _table(["case", "level", "label", "model@res", "AUC", "accuracy", "folds", "note"],
                        [[r["case"], r["method"], r["label"], f"{r['model']}@{r['resolution']}", r.get("auc"),
                          r.get("accuracy"), r.get("folds", ""), r.get("error") or ""] for r in probe]) + [""]
    errors = [r for r in rows if r.get("status") == "error"]
    if errors:
        lines += ["## Errors (the other results are unaffected)", ""]
        lines += _table(["case", "protocol", "model@res", "message"],
                        [[r["case"], r["protocol"], f"{r.get('model')}@{r.get('resolution')}",
                          str(r.get("error")).replace("|", "/")] for r in errors]) + [""]
    for name, title in (("scaling", "Scaling grid (models x resolutions)"),
                        ("dice_vs_slices", "Dice vs annotated slices"), ("per_case", "Per-case Dice")):
        if name in plots:
            lines += [f"## {title}", "", f"![{title}]({plots[name]})", ""]
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r.get("status", "?")] += 1
    lines += [f"Rows: {dict(counts)}.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
