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
    if text == "otsu":
        return text
    if text.endswith("%"):
        try:
            share = float(text[:-1])
        except ValueError:
            share = float("nan")
        if not 0 < share <= 100:  # NaN too
            raise argparse.ArgumentTypeError(f"expected a share of the maximum above 0% and at most 100% "
                                             f"(e.g. 41%), got {text!r}")
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected 'otsu', a finite number or NN%, got {text!r}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    common.add_image_and_feature_args(parser)
    common.add_seed_arg(parser)
    parser.add_argument("--out", type=Path, required=True, help="label file (1 = isolated), source grid")
    parser.add_argument("--channel", default="auto",
                        help="auto (default: threshold picked around the seed, PC1 foreground only when "
                             "it contains the seed), or a channel thresholded inside the PC1 foreground: "
                             "pc1, pc2, ..., similarity, intensity (the image itself, e.g. HU or SUV) or "
                             "a PATH to a volume on the same grid")
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
    named = channel in ("auto", "intensity", "similarity") or re.fullmatch(r"pc\d+", channel)
    if channel == "auto":  # auto picks its own threshold: an explicit rule would be ignored, silently
        given = [f"--inner-threshold {args.inner_threshold}" if args.inner_threshold != "otsu" else "",
                 "--below" if args.below else "",
                 f"--fg-threshold {args.fg_threshold:g}" if args.fg_threshold is not None else ""]
        if any(given):
            flags = " ".join(g for g in given if g)
            raise DinomedError(f"{flags} applies to an explicit --channel; --channel auto (the default) "
                               "picks its own threshold around the seed. Add --channel intensity (the image "
                               "itself: 41% of a PET's SUVmax), pc1, similarity or a PATH")
    if named and channel.startswith("pc") and not 1 <= int(channel[2:]) <= 3:
        raise DinomedError(f"--channel {channel}: the PCA channels are pc1, pc2 and pc3")
    common.label_output(args.out)
    vol = common.load_image(args, [("--out", args.out)], [] if named else [("--channel", channel)])
    axis = int(args.axis)
    A.check_voxels(args.seeds, vol.shape)
    if args.slice is not None and not 0 <= args.slice < vol.shape[axis]:
        raise DinomedError(f"--slice {args.slice} is outside the volume: axis {axis} has slices "
                           f"0..{vol.shape[axis] - 1}")
    if channel == "auto":
        return run_auto(args, vol, axis)
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
    dropped = th.pop("dropped")
    made = f" from {source.label()}" if source is not None else " (intensity only, no features)"
    ml = float(labels.sum()) * float(np.prod(vol.spacing)) / 1000.0
    print(f"isolated {int(labels.sum())} voxels ({ml:.2f} ml){made}; thresholds "
          f"{ {k: None if v is None else round(float(v), 4) for k, v in th.items()} }")
    if dropped:
        print("warning: a seed is not in the result: " + missing_seed_reason(dropped, th))
    common.write(args.out, labels, vol, "isolated structure", source, channel=args.channel, thresholds=th)
    return 0


def missing_seed_reason(dropped: str, th: dict) -> str:
    """The step that dropped the seed (:func:`~dinomed_napari.analysis.isolate.dropping_step`), and what
    to try, in this command's flags."""
    if dropped == "foreground":
        return (f"the PC1 foreground step (PC1 > {th['foreground']:.3g}) removed it; try --channel auto or "
                "--no-foreground")
    if dropped == "inner":
        return (f"its value is on the other side of the inner threshold {th['inner']:.4g}; try --below, "
                "another --inner-threshold or --channel auto")
    return "its piece is smaller than --min-size; lower --min-size"


def run_auto(args, vol, axis: int) -> int:
    """--channel auto: the seed's neighbourhood picks the threshold (and PC1 when it holds the seed)."""
    from dinomed_napari.analysis.isolate_auto import auto_isolate
    from dinomed_napari.errors import DinomedError

    if not args.seeds:
        raise DinomedError("--channel auto needs at least one --seed z,y,x inside the structure")
    pc1 = None
    made = " (intensity only, no features)"
    fv = None
    if not args.no_foreground:
        from dinomed_napari.analysis.pca import pca_maps

        fv = common.features(args, vol, [axis])[axis]
        pc1 = pca_maps(fv, n_components=1).component(0)  # read in the box around the seeds only
        made = f" from {fv.label()}"
    res = auto_isolate(vol.data, args.seeds, vol.spacing, pc1=pc1, fill_holes=not args.no_fill,
                       min_size=args.min_size)
    labels = res.mask
    if args.slice is not None:  # the plane of the 3D result: what the widget's preview shows
        labels = np.zeros_like(res.mask)
        np.moveaxis(labels, axis, 0)[args.slice] = res.plane(args.slice, axis)
    print(f"isolated {int(res.mask.sum())} voxels ({res.volume_ml:.2f} ml){made}; recipe: {res.recipe}")
    if res.note:
        print(f"note: {res.note}")
    common.write(args.out, labels, vol, "isolated structure", fv, channel="auto", recipe=res.recipe,
                 volume_ml=round(res.volume_ml, 3))
    return 0
