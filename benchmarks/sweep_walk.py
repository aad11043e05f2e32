"""Sweep the 3D walk's constants on a fewclick3d config, computing each case's features once.

``dinomed-napari bench`` recomputes random-weight features on every run (their cache key cannot tell two
random draws apart), so a sweep of the walk (``dinomed_napari.analysis.propagate`` and the modules it
calls: ``BETA``, ``MAX_GROWTH``, ``FOREST_WEIGHT`` ...) spends most of its time on the backbone. This runs the
``fewclick3d`` protocol's default rows only (the same strokes, Dice on the unannotated slices, predicted /
true volume), with the bench's seeded random ViT-S (at 512 unless ``--resolution``), and keeps each
case's features in ``--keep`` (one ``.npy`` per case and resolution, read back only when its shape
matches the case and the model's patch grid, with the case's window as the bench's features have it; the
file's name carries a hash of the image path and the window).

Run (``demo`` instead of a config: the bundled crops of ``bench --demo``, at its 64 or 128 px)::

    .venv/bin/python benchmarks/sweep_walk.py benchmarks/fewclick3d_shared.yaml --set BETA=300
    .venv/bin/python benchmarks/sweep_walk.py demo --resolution 128

The last line reads ``<settings>: N pairs, mean Dice D, over 2x V``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np


def case_features(lc, keep: Path, seed: int, resolution: int = 512):
    """The case's features along axis 0 (random ViT-S at ``resolution``, the bench's seed), from ``keep``
    if there."""
    from dinomed_napari.bench.grid import BenchSettings
    from dinomed_napari.bench.protocols.fewclick import features, prep_for
    from dinomed_napari.bench.runner import get_backbone, seed_everything
    from dinomed_napari.features.volume import FeatureVolume
    from dinomed_napari.io.atomic import atomic_output

    # The window (and the image) name the file: a config that windows a case otherwise would read
    # features made under another window.
    prep = prep_for(lc.case, resolution).key(lc.volume)
    tag = hashlib.sha256(json.dumps([str(lc.case.image), prep], sort_keys=True).encode()).hexdigest()[:10]
    path = keep / f"{lc.case.name}_S_random{seed}_{resolution}_{tag}.npy"
    n_slices = lc.volume.data.shape[0]
    if path.is_file():
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:  # truncated or damaged: recomputed and replaced
            print(f"{path}: unreadable ({exc}); recomputing")
        else:
            if data.ndim == 4 and data.shape[0] == n_slices and data.shape[-1] == 384:
                # The window goes with them, as with the bench's features (the segmenter reads it).
                return FeatureVolume(data, 0, tuple(lc.volume.data.shape), "vit_small_patch16_dinov3",
                                     "random", resolution, extra={"prep": prep})
            print(f"{path}: shape {data.shape} does not fit {n_slices} slices of ViT-S features; recomputing")
    seed_everything(seed)
    settings = BenchSettings(weights="random", protocols=("fewclick3d",), resolutions=(resolution,),
                             seed=seed)
    fv = features(lc, get_backbone("S", "random", None), resolution, settings, axis=0)
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(fv.data))
    return fv


#: The modules of the walk, whose constants ``--set`` reaches (each constant is read where it is defined).
WALK_MODULES = ("propagate", "annotated", "redraw", "window", "walker")


def set_constants(pairs: list[str]) -> str:
    """Set ``NAME=VALUE`` constants of the walk's modules; returns them as one label."""
    from importlib import import_module

    modules = [import_module(f"dinomed_napari.analysis.{m}") for m in WALK_MODULES]
    for pair in pairs:
        name, _, value = pair.partition("=")
        owners = [m for m in modules if name.isupper() and name in vars(m)]
        if not owners:
            raise SystemExit(f"--set {pair}: the walk has no constant {name!r}")
        walk = owners[0]
        if name == "MAX_ANGLE":  # bound as propagate()'s default when the module loaded
            raise SystemExit(f"--set {pair}: MAX_ANGLE is the default of propagate(max_angle=...), not read "
                             "at run time")
        setattr(walk, name, type(getattr(walk, name))(float(value)))
    return ", ".join(pairs) or "defaults"


def default_pairs(config: Path | None, keep: Path, seed: int, resolution: int = 512):
    """Every few-click pair of a fewclick3d config (None: the demo's bundled crops at k = 1, 2, 3, 5) one
    structure's clicks can describe, with the default's result: yields ``(lc, fv, seg, k, label, truth,
    scribbles, prediction)`` per case, label and k."""
    from dinomed_napari.analysis.segment import ScribbleSegmenter
    from dinomed_napari.bench.cases import demo_cases, load_case, read_config
    from dinomed_napari.bench.protocols.fewclick3d import (
        not_one_structure,
        segment_default,
        structure_scribble_sets,
    )

    cfg = {"cases": demo_cases()} if config is None else read_config(config)
    slices = cfg.get("slices", [1, 2, 3, 5])
    for case in cfg["cases"]:
        lc = load_case(case)
        # Labels one structure's clicks can describe (EM cells cannot): no features for a case without one.
        labels = [(k, lab) for k, lab in enumerate(lc.labels, start=1)
                  if not not_one_structure(lc.truth == k, 0)]
        if not labels:
            continue
        fv = case_features(lc, keep, seed, resolution)
        seg = ScribbleSegmenter(intensity="filters")
        for k, lab in labels:
            truth = lc.truth == k
            for scr in structure_scribble_sets(truth, slices, 0, seed):
                pred, _ = segment_default(seg, fv, lc, scr.labels)
                yield lc, fv, seg, k, lab, truth, scr, pred


def main(argv=None) -> int:
    from dinomed_napari.bench.protocols.fewclick3d import score_row

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="a bench config with fewclick3d cases (e.g. fewclick3d_shared.yaml), or "
                                  "'demo' for the bundled crops of `bench --demo`")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a numeric constant of the walk (analysis/propagate.py, annotated.py, redraw.py, "
                        "window.py, walker.py; repeatable)")
    p.add_argument("--keep", default=str(Path(tempfile.gettempdir()) / "dinomed_sweep_walk"),
                   help="folder keeping each case's features between runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=512, help="feature resolution (the demo's: 64, 128)")
    args = p.parse_args(argv)
    label = set_constants(args.set)
    keep = Path(args.keep)
    keep.mkdir(parents=True, exist_ok=True)
    dice, over = [], 0
    for lc, _, _, k, lab, truth, scr, pred in default_pairs(
            None if args.config == "demo" else Path(args.config), keep, args.seed, args.resolution):
        row = score_row(pred, truth, lc, scr.slices, 0, "default", lab, k, 0.0)
        dice.append(row["dice"])
        over += row["volume_ratio"] > 2
        print(f"{lc.case.name} label {lab} k={len(scr.slices)}: Dice {row['dice']:.3f}, "
              f"volume {row['volume_ratio']:.2f}x", flush=True)
    print(f"{label}: {len(dice)} pairs, mean Dice {np.mean(dice):.4f}, over 2x {over}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
