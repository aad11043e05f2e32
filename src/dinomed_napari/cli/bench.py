"""`dinomed-napari bench`: score backbones, resolutions and protocols headless on cases with masks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dinomed_napari.cli import args as A

# Demo: bundled real crops, a random ViT-S at low resolutions, everything in a few minutes on 2 CPU cores.
DEMO = {"models": "S", "resolutions": "64,128", "slices": "1,2,3,5", "strokes": 3,
        "protocols": "fewclick,fewclick3d,isolation,probe,baseline",
        "variants": "linear,fusion,hybrid,default"}
DEFAULTS = {"models": "S", "resolutions": "224", "slices": "1,2,3", "strokes": 3, "seed": 0, "axis": 0,
            "folds": 5, "protocols": "fewclick,fewclick3d,isolation,probe,baseline",
            "variants": "linear,default", "batch_size": "auto"}


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--demo", action="store_true",
                   help="bundled real crops (CTA aorta, CT spleen/liver, EM), random ViT-S at 64/128 px: "
                        "measures the pipeline, not DINOv3")
    p.add_argument("--config", help="YAML/TOML file with `cases:` (name, image, mask, labels, modality, "
                                    "window, crop) and optionally any option below")
    p.add_argument("--image", help="one case: image file or DICOM folder")
    p.add_argument("--mask", help="one case: mask on the image's grid")
    p.add_argument("--labels", help="mask values to score, e.g. 1,2 (default: every non-zero value)")
    p.add_argument("--modality", help="CT, MR, PT or EM for --image (default: from the file)")
    p.add_argument("--window", help="window preset for --image (default auto)")
    p.add_argument("--protocols", help=f"comma list (default {DEFAULTS['protocols']})")
    p.add_argument("--models", help="comma list of backbones, e.g. S,B,L (default S)")
    p.add_argument("--resolutions", help="comma list of input resolutions, e.g. 224,448 (default 224)")
    p.add_argument("--weights", help="hub, hub:<tag>, random or a weights file (required except with --demo)")
    p.add_argument("--variants", help="few-click segmenter variants: linear,rf,fusion,hybrid,triplanar,"
                                      "default (the pipeline `segment` runs) (default linear,default)")
    p.add_argument("--slices", help="numbers of annotated slices for the Dice curve (default 1,2,3)")
    p.add_argument("--strokes", type=A.int_in(1, 1000, "stroke count"),
                   help="strokes per class on each annotated slice (default 3)")
    p.add_argument("--seed", type=int, help="seed of scribbles, classifiers and folds (default 0)")
    p.add_argument("--axis", type=int, choices=(0, 1, 2), help="slicing / annotation axis (default 0)")
    p.add_argument("--folds", type=A.int_in(2, 100, "fold count"),
                   help="linear-probe CV folds (default 5)")
    p.add_argument("--batch-size", dest="batch_size", type=A.int_in_or(1, 1024, "batch size", "auto"),
                   help="slices per forward pass, or 'auto' (default: from free GPU memory; 2 on a CPU)")
    p.add_argument("--device", help="cpu, cuda, mps (default: best available)")
    p.add_argument("--cache", help="feature cache folder (default $DINOMED_CACHE or ~/.cache/dinomed-napari)")
    p.add_argument("--out", default="bench_out", help="output folder (default bench_out)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a previous run in --out (once the new run has finished)")
    p.add_argument("--dask", action="store_true", help="run cases as tasks on a dask LocalCluster")
    p.add_argument("--scheduler", help="address of an existing dask scheduler (implies --dask)")
    p.add_argument("--workers", type=A.int_in(1, 1024, "worker count"),
                   help="LocalCluster worker processes (default cores/2)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _ints(v) -> tuple[int, ...]:
    return tuple(int(x) for x in (v.split(",") if isinstance(v, str) else v))


def _batch(v) -> int | str:
    """A batch size from a flag or a config file: 'auto' or an integer >= 1."""
    if str(v).strip() == "auto":
        return "auto"
    from dinomed_napari.bench.grid import BenchConfigError

    try:
        return A.int_in(1, 1024, "batch size")(str(v))
    except argparse.ArgumentTypeError as exc:
        raise BenchConfigError(f"batch_size: {exc} (or 'auto')") from exc


def _strs(v) -> tuple[str, ...]:
    return tuple(str(x).strip() for x in (v.split(",") if isinstance(v, str) else v) if str(x).strip())


def build(args: argparse.Namespace):
    """(cases, settings, extra meta) from flags, then the config file, then the demo/defaults."""
    from dinomed_napari.bench.cases import Case, demo_cases, parse_labels, read_config
    from dinomed_napari.bench.grid import BenchConfigError, BenchSettings

    config = read_config(args.config) if args.config else {}
    unknown = sorted(set(config) - set(DEFAULTS) - {"cases", "weights", "device", "cache"})
    if unknown:
        raise BenchConfigError(f"{args.config}: unknown option(s) {unknown}; known: cases, weights, device, "
                               f"cache, {', '.join(DEFAULTS)}")
    cases = list(config.get("cases", []))
    if args.demo:
        cases += demo_cases()
    if args.image or args.mask:
        if not (args.image and args.mask):
            raise BenchConfigError("--image and --mask go together (one case)")
        cases.append(Case(name=Path(args.image).name.split(".")[0], image=args.image, mask=args.mask,
                          labels=parse_labels(args.labels), modality=args.modality,
                          window=args.window or "auto"))
    base = {**DEFAULTS, **(DEMO if args.demo else {})}

    def pick(name):
        v = getattr(args, name, None)
        return v if v is not None else config.get(name, base.get(name))

    weights = pick("weights")
    if weights is None:
        if not args.demo:
            raise BenchConfigError("choose the weights: --weights hub (or hub:<tag>), --weights PATH to a "
                                   ".pth/.safetensors file, or --weights random to test the pipeline only")
        weights = "random"
    settings = BenchSettings(
        weights=str(weights), protocols=_strs(pick("protocols")), models=_strs(pick("models")),
        resolutions=_ints(pick("resolutions")), slices=_ints(pick("slices")),
        variants=_strs(pick("variants")),
        strokes=int(pick("strokes")), seed=int(pick("seed") or 0), axis=int(pick("axis") or 0),
        folds=int(pick("folds")), batch_size=_batch(pick("batch_size")), device=pick("device"),
        cache_dir=pick("cache"))
    return cases, settings, {"demo": bool(args.demo)}


def run_folder(out: Path, overwrite: bool) -> Path:
    """Where this run writes: ``out`` itself when it holds no earlier run; with ``overwrite`` a fresh
    hidden folder next to it that replaces it when the run ends (so an earlier run is never mixed with
    this one, nor lost if this one crashes); else a usage error."""
    from dinomed_napari.bench.grid import BenchConfigError
    from dinomed_napari.io.atomic import temp_sibling

    if out.exists() and not out.is_dir():
        raise BenchConfigError(f"--out {out} is a file; expected an output folder")
    earlier = out.is_dir() and any((out / n).exists() for n in ("results.json", "results.csv", "cases"))
    if not earlier:
        return out
    if not overwrite:
        raise BenchConfigError(f"--out {out} already holds a bench run; choose another --out or pass "
                               "--overwrite to replace it once the new run has finished")
    return temp_sibling(out, "run")


def run(args: argparse.Namespace) -> int:
    from dinomed_napari.bench.run import run_bench
    from dinomed_napari.io.atomic import replace_path

    cases, settings, meta = build(args)
    out = Path(args.out).expanduser()
    folder = run_folder(out, args.overwrite)
    kw = {"n_workers": args.workers} if args.workers else None
    try:
        writer = run_bench(cases, settings, folder, use_dask=args.dask, scheduler=args.scheduler,
                           cluster_kwargs=kw, progress=args.progress, extra_meta=meta)
    except KeyboardInterrupt:  # finalised as "interrupted": it replaces the earlier run like a finished one
        if folder != out:
            replace_path(folder, out)
        raise
    except BaseException:
        if folder != out:
            print(f"the earlier run in {out} is kept; this run's partial results are in {folder}",
                  file=sys.stderr)
        raise
    if folder != out:
        replace_path(folder, out)
    n_err = sum(r.get("status") == "error" for r in writer.rows)
    print(f"bench: {len(writer.rows)} rows ({n_err} errors) in {writer.meta.get('wall_seconds')} s -> "
          f"{out / 'report.md'}", file=sys.stderr)
    if n_err:
        cases_failed = sorted({str(r.get("case")) for r in writer.rows if r.get("status") == "error"})
        print(f"error: {n_err} result(s) failed, in case(s) {', '.join(cases_failed)}; see the 'error' "
              f"column of {out / 'results.csv'}", file=sys.stderr)
        return 1
    return 0
