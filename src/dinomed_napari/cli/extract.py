"""`dinomed-napari extract`: compute (or reuse cached) DINOv3 patch features of a volume."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dinomed_napari.cli import args as A
from dinomed_napari.cli import common
from dinomed_napari.errors import ExtractionCancelled


def configure(parser: argparse.ArgumentParser) -> None:
    from dinomed_napari.preprocess import WINDOWS

    parser.add_argument("image", help="volume file or folder (NIfTI, NRRD, DICOM folder, TIFF, zarr, .npy)")
    parser.add_argument("--model", default="S", help="backbone: S, S+, B, L, H+ or a timm name (default S)")
    parser.add_argument("--weights", default=None,
                        help="REQUIRED: 'hub' or 'hub:TAG' (pretrained from the Hugging Face hub/cache), a "
                             ".pth/.safetensors PATH, or 'random' (pipeline test only)")
    parser.add_argument("--axis", default="0", choices=["0", "1", "2", "all"],
                        help="slicing axis of the (Z, Y, X) volume: 0 axial, 1 coronal, 2 sagittal; all")
    parser.add_argument("--resolution", type=A.resolution, default=512,
                        help=f"long side fed to the network (x16, {A.MIN_RESOLUTION}..{A.MAX_RESOLUTION})")
    parser.add_argument("--window", choices=WINDOWS,
                        help="intensity window (auto: by modality; CT presets; custom needs --level/--width)")
    parser.add_argument("--level", type=float, help="custom window level (volume units, e.g. HU)")
    parser.add_argument("--width", type=float, help="custom window width")
    parser.add_argument("--isotropic", action="store_true", help="resize slices to their physical aspect")
    parser.add_argument("--scheduler", help="compute the batches on a dask.distributed cluster: scheduler "
                        "address, or 'local' for a LocalCluster of worker processes")
    parser.add_argument("--tiling", choices=["auto", "shrink", "tile"], default="auto",
                        help="planes larger than --resolution: tile at native pixel size or shrink whole "
                        "(auto: tile above 3x the resolution)")
    parser.add_argument("--modality", choices=["CT", "MR", "PT", "EM"],
                        help="modality of non-DICOM files (picks the 'auto' window)")
    parser.add_argument("--series", help="SeriesInstanceUID to read from a DICOM folder with several series")
    parser.add_argument("--layers", type=A.layers,
                        help="blocks to concatenate, e.g. 3,6,9,11 (default final)")
    parser.add_argument("--batch-size", type=A.int_in_or(1, 1024, "batch size", "auto"), default="auto",
                        help="slices per forward pass, or 'auto' (default): from the device's free memory on "
                        "a GPU, 2 on a CPU (measured fastest there)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--threads", type=A.int_in(1, 1024, "thread count"),
                        help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the backbone: ~1 min start-up, then ~1.5x faster on CPU "
                             "(worth it from a few dozen slices at 512)")
    parser.add_argument("--cache-dir", type=Path,
                        help="feature cache folder (default $DINOMED_CACHE or ~/.cache/dinomed-napari)")
    parser.add_argument("--out", type=Path,
                        help="also copy the feature store here (FEATURES.zarr; with --axis all a folder "
                             "receiving axis0.zarr, axis1.zarr, axis2.zarr)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out (only once the new copy is complete)")


def run(args: argparse.Namespace) -> int:
    from dinomed_napari.features.extract import extract_features, require_weights
    from dinomed_napari.features.progress import TqdmProgress, sigint_cancels
    from dinomed_napari.io import load_volume

    require_weights(args.weights)  # fail before the slow volume loading
    A.check_model_and_layers(args.model, args.layers)
    prep = common.preprocess(args)
    common.check_outputs(args, [("--out", args.out)])
    if args.out is not None and args.out.exists():
        _check_replaceable(args.out)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    vol = load_volume(args.image, modality=args.modality, series=args.series)
    axes = [0, 1, 2] if args.axis == "all" else [int(args.axis)]
    print(f"{args.image}: shape (Z, Y, X) {vol.shape}, spacing {tuple(round(s, 3) for s in vol.spacing)}, "
          f"window {prep.resolve(vol).window}{common.series_note(vol)}", flush=True)

    backbone = None
    if args.compile:  # built here (compilation itself happens lazily, at the first batch)
        from dinomed_napari.models import load_backbone

        backbone = load_backbone(args.model, args.weights, device=args.device, layers=args.layers,
                                 compile=True)
    results = {}
    with sigint_cancels() as cancel:
        for axis in axes:
            t0 = time.perf_counter()
            try:
                with TqdmProgress(desc=f"axis {axis}", file=sys.stderr) as bar:
                    fv = extract_features(vol, model=args.model, weights=args.weights, backbone=backbone,
                                          axis=axis, prep=prep, layers=args.layers,
                                          batch_size=args.batch_size, cache_dir=args.cache_dir,
                                          progress=bar, cancel=cancel, device=args.device,
                                          scheduler=args.scheduler)
            except ExtractionCancelled as exc:
                print(f"cancelled: {exc}", file=sys.stderr)
                return 130
            results[axis] = fv
            print(f"axis {axis}: features {tuple(fv.data.shape)} float16 from {fv.model} "
                  f"[weights: {fv.weights}] @{fv.resolution} in {time.perf_counter() - t0:.1f} s\n"
                  f"  cache key {fv.key}\n  store {fv.extra['path']}", flush=True)
            common.report_repairs(fv)
    if args.out is not None:
        _copy_out(results, args.out, several=len(axes) > 1)
    return 0


def _check_replaceable(out: Path) -> None:
    """--overwrite replaces earlier feature copies only: a zarr store, or a folder of axisN.zarr stores."""
    from dinomed_napari.errors import OutputError

    def store(p: Path) -> bool:
        return p.is_dir() and any((p / f).is_file() for f in ("zarr.json", ".zgroup", ".zarray"))

    axes = ("axis0.zarr", "axis1.zarr", "axis2.zarr")
    if store(out) or (out.is_dir() and any(out.iterdir()) and
                      all(p.name in axes and store(p) for p in out.iterdir())):
        return
    raise OutputError(f"--out {out} exists and is not a feature store written by extract; refusing to "
                      "replace it even with --overwrite. Choose another --out.")


def _copy_out(results: dict, out: Path, several: bool) -> None:
    """Copy the cache stores to ``out`` (a copy, so clearing the cache never breaks it).

    The copy is made next to ``out`` and replaces it only when complete: a failed copy (disk full) leaves
    an existing ``out`` as it was.
    """
    import shutil

    from dinomed_napari.io.atomic import atomic_output

    with atomic_output(out) as tmp:
        for axis, fv in results.items():
            shutil.copytree(fv.extra["path"], tmp / f"axis{axis}.zarr" if several else tmp)
    for axis in results:
        print(f"wrote {out / f'axis{axis}.zarr' if several else out}")
