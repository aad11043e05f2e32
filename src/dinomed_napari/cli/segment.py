"""`dinomed-napari segment IMAGE --scribbles SCRIBBLES --out LABELS`: few-click segmentation."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dinomed_napari.cli import args as A
from dinomed_napari.cli import common
from dinomed_napari.errors import DinomedError


def configure(parser: argparse.ArgumentParser) -> None:
    common.add_image_and_feature_args(parser, axis_all=True)
    parser.add_argument("--scribbles", type=Path,
                        help="label image on the image's grid: 0 unlabelled, 1..K classes (any readable "
                             "format)")
    parser.add_argument("--out", type=Path, required=True, help="predicted labels, on the source grid")
    # Training flags default to None so that --load-model can tell them given (and refuse them).
    parser.add_argument("--classifier", choices=["linear", "rf"], help="linear (default) or rf")
    parser.add_argument("--intensity", choices=["filters", "raw", "none"],
                        help="pixel features added to DINOv3's: filters (default), intensity, none")
    parser.add_argument("--spatial", choices=["auto", "propagate", "none"],
                        help="3D step: follow each painted structure slice by slice from its annotated "
                             "slices (propagate), the classifier alone everywhere (none), or propagate "
                             "when the strokes outline a structure rather than a texture (auto, default)")
    parser.add_argument("--cleanup", action="store_true",
                        help="keep per class only the 3D components touching its scribbles")
    parser.add_argument("--fill-holes", action="store_true", help="(also on a loaded segmenter)")
    parser.add_argument("--min-size", type=A.int_in(0, None, "minimum size"), default=0,
                        help="drop pieces smaller than this (voxels; also on a loaded segmenter)")
    parser.add_argument("--proba-out", type=Path, help="also write per-class probabilities: OUT_p<class>")
    parser.add_argument("--save-model", type=Path, help="save the trained segmenter (.npz + JSON, no pickle)")
    parser.add_argument("--load-model", type=Path, help="apply a saved segmenter instead of training")


def run(args: argparse.Namespace) -> int:
    from dinomed_napari.analysis.annotated import NOT_ONE_STRUCTURE
    from dinomed_napari.analysis.persist import (
        check_request,
        load_segmenter,
        save_segmenter,
        segmenter_path,
        stored_preprocess,
    )
    from dinomed_napari.analysis.segment import ScribbleSegmenter
    from dinomed_napari.errors import ScribbleError
    from dinomed_napari.features.extract import require_weights

    # Every input and output checked before the features (minutes) are computed.
    if args.load_model is None and args.scribbles is None:
        raise ScribbleError("pass --scribbles LABELS (or --load-model MODEL.npz)")
    check_training_flags(args)
    require_weights(args.weights)  # before the image and the scribbles are read
    common.label_output(args.out)
    if args.proba_out is not None:
        common.label_output(args.proba_out, "--proba-out")
    saved = None if args.save_model is None else segmenter_path(args.save_model)
    vol = common.load_image(args, [("--out", args.out), ("--save-model", saved)],
                            [("--scribbles", args.scribbles), ("--load-model", args.load_model)])
    prep = None
    if args.load_model is not None:
        from dinomed_napari.features.cache import weights_label

        seg = load_segmenter(args.load_model)
        seg.fill_holes = seg.fill_holes or args.fill_holes  # post-processing chosen now applies too
        seg.min_size = args.min_size or seg.min_size
        axes = sorted(seg.models)
        args.layers = check_request(seg, args.load_model, model=args.model,
                                    weights_label=weights_label(args.model, args.weights), layers=args.layers)
        prep = stored_preprocess(seg, args.load_model, resolution=args.resolution, window=args.window,
                                 level=args.level, width=args.width)
        classes = list(seg.classes_)
    else:
        from dinomed_napari.io.validate import integer_labels

        scr = common.load_on_grid(args.scribbles, vol, "--scribbles").data  # may be empty: our own error
        scr = integer_labels(scr, f"--scribbles {args.scribbles}")
        if scr.size and scr.min() < 0:  # the core's own message cannot name the file
            raise ScribbleError(f"--scribbles {args.scribbles}: {int(np.count_nonzero(scr < 0))} voxel(s) "
                                f"hold negative values (e.g. {int(scr.min())}); expected labels 0 "
                                "(unlabelled), 1, 2, ...")
        seg = ScribbleSegmenter(classifier=args.classifier,
                                intensity=None if args.intensity == "none" else args.intensity,
                                spatial=args.spatial, cleanup=args.cleanup, fill_holes=args.fill_holes,
                                min_size=args.min_size)
        axes = None
        classes = [c for c in np.unique(scr) if c != 0]
    if args.proba_out is not None:
        common.check_outputs(args, [(f"--proba-out (class {int(c)})",
                                     common.with_suffix_tag(args.proba_out, f"p{int(c)}")) for c in classes])
    fvs = common.features(args, vol, axes, prep)
    if args.load_model is not None:
        result = seg.predict(features=fvs, image=vol.data)
    else:
        seg.fit(fvs, scr, image=vol.data, spacing=vol.spacing)  # any integer dtype: no int64 copy
        n = int(np.count_nonzero(scr))
        print(f"trained {args.classifier} on {n} scribbled voxels, classes {[int(c) for c in seg.classes_]}, "
              f"passes {sorted(fvs)}")
        result = seg.predict(probabilities=args.proba_out is not None)
        report_propagation(result, vol.spacing)
    if result.propagation is None:
        why = "a saved segmenter has no scribbles" if args.load_model is not None else (
            "--spatial none" if args.spatial == "none" else
            f"{NOT_ONE_STRUCTURE}: a texture or instances, which the classifier labels; "
            "--spatial propagate forces the 3D step")
        by = "the classifier" if not result.forest_share else (
            f"the classifier blended with the scribbles' filter-bank forest (share {result.forest_share:g})")
        print(f"3D step: none ({why}); every voxel labelled by {by}")
    first = next(iter(fvs.values()))
    print(f"segmented with {first.label()}; voxels per class "
          f"{ {int(c): int(np.count_nonzero(result.labels == c)) for c in result.classes} }")
    common.write(args.out, result.labels, vol, "labels", first, classifier=seg.kind)
    if args.proba_out is not None:
        for k, c in enumerate(result.classes):
            common.write(common.with_suffix_tag(args.proba_out, f"p{int(c)}"), result.probabilities[..., k],
                         vol, f"probability of class {int(c)}", first)
    if args.save_model is not None:
        print(f"saved segmenter: {save_segmenter(seg, args.save_model)}")
    return 0


def check_training_flags(args: argparse.Namespace) -> None:
    """Refuse the flags that only shape training together with ``--load-model`` (a loaded segmenter keeps
    its own), and fill in their defaults otherwise."""
    if args.load_model is not None:
        given = [flag for flag, value in (("--scribbles", args.scribbles), ("--classifier", args.classifier),
                                          ("--intensity", args.intensity), ("--spatial", args.spatial),
                                          ("--cleanup", args.cleanup or None)) if value is not None]
        if given:
            raise DinomedError(f"--load-model {args.load_model} applies a trained segmenter, which keeps "
                               "its own classifier, pixel features and clean-up and has no scribbles to "
                               f"follow in 3D: {', '.join(given)} would be ignored. Drop them, or train "
                               "again from --scribbles without --load-model")
    args.classifier = args.classifier or "linear"
    args.intensity = args.intensity or "filters"
    args.spatial = args.spatial or "auto"


def report_propagation(result, spacing) -> None:
    """Per-slice confidence and the slice to annotate next, as the user reads them."""
    prop = result.propagation
    if prop is None:
        return
    conf = prop.confidence
    reached = [f"{s}:{c:.2f}" for s, c in enumerate(conf) if np.isfinite(c) and s not in prop.annotated]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    sizes = {int(c): round(int(np.count_nonzero(result.labels == c)) * voxel_ml, 2)
             for c in np.unique(result.labels) if c != prop.background}
    print(f"3D step: propagated from annotated slices {list(prop.annotated)} (axis {prop.axis}); "
          f"volume per class (ml) {sizes}")
    print("confidence per slice (slice:confidence, 1 = sure): " + (" ".join(reached) or "none reached"))
    if prop.stops:
        print(f"the walk ended on {prop.ended()}")
    nxt = prop.suggest()
    if nxt is not None:
        print(f"annotate slice {nxt} next (axis {prop.axis}; confidence {conf[nxt]:.2f} there: the most "
              "structure in doubt, far from the annotated slices)")
