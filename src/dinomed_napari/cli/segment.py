"""`dinomed-napari segment IMAGE --scribbles SCRIBBLES --out LABELS`: few-click segmentation."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dinomed_napari.cli import common


def configure(parser: argparse.ArgumentParser) -> None:
    common.add_image_and_feature_args(parser, axis_all=True)
    parser.add_argument("--scribbles", type=Path,
                        help="label image on the image's grid: 0 unlabelled, 1..K classes (any readable "
                             "format)")
    parser.add_argument("--out", type=Path, required=True, help="predicted labels, on the source grid")
    parser.add_argument("--classifier", choices=["linear", "rf"], default="linear")
    parser.add_argument("--intensity", choices=["raw", "filters"], help="also use pixel intensity / filters")
    parser.add_argument("--cleanup", action="store_true",
                        help="keep per class only the 3D components touching its scribbles")
    parser.add_argument("--fill-holes", action="store_true")
    parser.add_argument("--min-size", type=int, default=0)
    parser.add_argument("--proba-out", type=Path, help="also write per-class probabilities: OUT_p<class>")
    parser.add_argument("--save-model", type=Path, help="save the trained segmenter (.npz + JSON, no pickle)")
    parser.add_argument("--load-model", type=Path, help="apply a saved segmenter instead of training")


def run(args: argparse.Namespace) -> int:
    from dinomed_napari.analysis.persist import load_segmenter, save_segmenter
    from dinomed_napari.analysis.segment import ScribbleSegmenter
    from dinomed_napari.errors import ScribbleError

    vol = common.load_image(args)
    if args.load_model is not None:
        seg = load_segmenter(args.load_model)
        axes = sorted(seg.models)
    elif args.scribbles is None:
        raise ScribbleError("pass --scribbles LABELS (or --load-model MODEL.npz)")
    else:
        seg = ScribbleSegmenter(classifier=args.classifier, intensity=args.intensity, cleanup=args.cleanup,
                                fill_holes=args.fill_holes, min_size=args.min_size)
        axes = None
    fvs = common.features(args, vol, axes)
    if args.load_model is not None:
        result = seg.predict(features=fvs, image=vol.data)
    else:
        from dinomed_napari.io import load_volume

        scr = load_volume(args.scribbles, check=False).data  # labels may be empty: our own error then
        if scr.dtype.kind == "f":
            scr = np.rint(scr)
        seg.fit(fvs, scr.astype(np.int64), image=vol.data)
        n = int(np.count_nonzero(scr))
        print(f"trained {args.classifier} on {n} scribbled voxels, classes {list(seg.classes_)}, "
              f"passes {sorted(fvs)}")
        result = seg.predict()
    first = next(iter(fvs.values()))
    print(f"segmented with {first.label()}; voxels per class "
          f"{ {int(c): int(np.count_nonzero(result.labels == c)) for c in result.classes} }")
    common.write(args.out, result.labels, vol, "labels")
    if args.proba_out is not None:
        for k, c in enumerate(result.classes):
            common.write(common.with_suffix_tag(args.proba_out, f"p{int(c)}"), result.probabilities[..., k],
                         vol, f"probability of class {int(c)}")
    if args.save_model is not None:
        print(f"saved segmenter: {save_segmenter(seg, args.save_model)}")
    return 0
