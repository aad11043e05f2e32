"""`dinomed-napari isolate IMAGE --seed z,y,x`: threshold isolation of the structure under the seed(s)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dinomed_napari.cli import common


def _threshold(text: str):
    if text == "otsu" or text.endswith("%"):
        return text
    try:
        return float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected 'otsu', a number or NN%, got {text!r}") from exc


def configure(parser: argparse.ArgumentParser) -> None:
    common.add_image_and_feature_args(parser)
    common.add_seed_arg(parser)
    parser.add_argument("--out", type=Path, required=True, help="label file (1 = isolated), source grid")
    parser.add_argument("--channel", default="intensity",
                        help="channel thresholded inside the foreground: pc1, pc2, ..., similarity, "
                             "intensity (the image itself, e.g. HU or SUV) or a PATH to a volume "
                             "on the same grid")
    parser.add_argument("--inner-threshold", type=_threshold, default="otsu",
                        help="otsu (default), a value, or NN%% of the maximum near the seeds (e.g. 41%%)")
    parser.add_argument("--below", action="store_true", help="keep values below the inner threshold")
    parser.add_argument("--fg-threshold", type=float, help="PC1 foreground threshold (default Otsu)")
    parser.add_argument("--no-foreground", action="store_true",
                        help="skip the PC1 foreground step (no features needed with --channel intensity)")
    parser.add_argument("--min-size", type=int, default=0, help="drop pieces smaller than this (voxels)")
    parser.add_argument("--no-fill", action="store_true", help="do not fill holes")
    parser.add_argument("--slice", type=int, help="only this slice along --axis (2D components)")


def run(args: argparse.Namespace) -> int:
    from dinomed_napari.analysis.isolate import isolate

    vol = common.load_image(args)
    axis = int(args.axis)
    channel = args.channel
    if channel == "intensity":
        channel = np.asarray(vol.data, np.float32)
    elif not (channel.startswith("pc") or channel == "similarity"):
        from dinomed_napari.io import load_volume

        channel = np.asarray(load_volume(channel, check=False).data, np.float32)
    needs_features = not args.no_foreground or isinstance(channel, str)
    source = common.features(args, vol, [axis])[axis] if needs_features else None
    labels, th = isolate(source, channel, seeds=args.seeds, fg_threshold=args.fg_threshold,
                         inner_threshold=args.inner_threshold, foreground=not args.no_foreground,
                         inner_side="below" if args.below else "above", index=args.slice, axis=axis,
                         fill_holes=not args.no_fill, min_size=args.min_size, return_thresholds=True)
    if args.slice is not None:  # a plane result goes back into an otherwise empty volume
        full = np.zeros(vol.shape, np.uint8)
        np.moveaxis(full, axis, 0)[args.slice] = labels
        labels = full
    made = f" from {source.label()}" if source is not None else " (intensity only, no features)"
    print(f"isolated {int(labels.sum())} voxels{made}; thresholds {th}")
    common.write(args.out, labels, vol, "isolated structure")
    return 0
