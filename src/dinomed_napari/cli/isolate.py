"""`dinomed-napari isolate IMAGE --seed z,y,x`: threshold isolation of the structure under the seed(s)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from dinomed_napari.cli import args as A
from dinomed_napari.cli import common
from dinomed_napari.errors import DinomedError


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
    parser.add_argument("--min-size", type=A.int_in(0, None, "minimum size"), default=0,
                        help="drop pieces smaller than this (voxels)")
    parser.add_argument("--no-fill", action="store_true", help="do not fill holes")
    parser.add_argument("--slice", type=int, help="only this slice along --axis (2D components)")


def run(args: argparse.Namespace) -> int:
    from dinomed_napari.analysis.isolate import isolate

    channel = args.channel
    named = channel in ("intensity", "similarity") or re.fullmatch(r"pc\d+", channel)
    if named and channel.startswith("pc") and not 1 <= int(channel[2:]) <= 3:
        raise DinomedError(f"--channel {channel}: the PCA channels are pc1, pc2 and pc3")
    common.label_output(args.out)
    vol = common.load_image(args, [("--out", args.out)], [] if named else [("--channel", channel)])
    axis = int(args.axis)
    A.check_voxels(args.seeds, vol.shape)
    if args.slice is not None and not 0 <= args.slice < vol.shape[axis]:
        raise DinomedError(f"--slice {args.slice} is outside the volume: axis {axis} has slices "
                           f"0..{vol.shape[axis] - 1}")
    if channel == "intensity":
        channel = np.asarray(vol.data, np.float32)
    elif not named:  # a path: must lie on the image's grid
        channel = np.asarray(common.load_on_grid(channel, vol, "--channel").data, np.float32)
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
    common.write(args.out, labels, vol, "isolated structure", source, channel=args.channel, thresholds=th)
    return 0
