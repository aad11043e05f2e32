"""`dinomed-napari models`: the DINOv3 backbones, their sizes, and which weights this machine has."""

from __future__ import annotations

import argparse
import json

from dinomed_napari.models.availability import hub_cache_dir, hub_cached, local_files, weights_dir
from dinomed_napari.models.registry import REGISTRY, BackboneSpec


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per line instead of a table")
    parser.add_argument("--all", action="store_true",
                        help="also list the '-qkvb' twins (picked when a checkpoint needs them)")


def describe(spec: BackboneSpec) -> dict:
    """One row of the listing: sizes, hub tags, and the weights found locally."""
    cached = [t for t in spec.hub_tags if hub_cached(spec, t) is not None]
    files = [f.name for f in local_files(spec)]
    return {"short": spec.short, "timm_name": spec.timm_name, "dim": spec.embed_dim, "depth": spec.depth,
            "params_m": spec.params_m, "hub_tags": list(spec.hub_tags), "hub_cached": cached,
            "local_files": files, "huge": spec.huge}


def _local(row: dict) -> str:
    parts = [f"hub:{t}" for t in row["hub_cached"]] + row["local_files"]
    return ", ".join(parts) if parts else "-"


def run(args: argparse.Namespace) -> int:
    rows = [describe(s) for s in REGISTRY.values() if args.all or not s.short.endswith("-qkvb")]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    header = ("model", "timm name", "dim", "depth", "params (M)", "hub tags", "local weights")
    table = [header] + [(r["short"] + (" *" if r["huge"] else ""), r["timm_name"], str(r["dim"]),
                         str(r["depth"]), f"{r['params_m']:.1f}", ",".join(r["hub_tags"]), _local(r))
                        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    from dinomed_napari.models.device import compute_dtype, pick_device

    dev = pick_device()
    dtype = str(compute_dtype(dev)).removeprefix("torch.")
    print(f"\ndevice: {dev} ({dtype})   hub cache: {hub_cache_dir()}   "
          f"local weights folder ($DINOMED_WEIGHTS): {weights_dir()}")
    if any(r["huge"] for r in rows):
        print("* 7B: listed for completeness; needs ~27 GB of memory for fp32 weights alone.")
    print("Use: --model SHORT --weights {hub,hub:TAG,PATH,random}. 'random' only tests the pipeline.")
    return 0
