"""`dinomed-napari affinity`: cosine affinity of features to their x, y, z neighbours, on the image grid."""

from __future__ import annotations

import argparse
from pathlib import Path

from dinomed_napari.cli import common


def configure(parser: argparse.ArgumentParser) -> None:
    common.add_image_and_feature_args(parser)
    parser.add_argument("--out", type=Path, required=True,
                        help="output like OUT.nii.gz: writes OUT_x, OUT_y, OUT_z (float32, source grid)")


def run(args: argparse.Namespace) -> int:
    from dinomed_napari.analysis.affinity import affinity_maps

    outs = {name: common.with_suffix_tag(args.out, name) for name in "xyz"}
    vol = common.load_image(args, [(f"--out ({n})", p) for n, p in outs.items()])
    fv = common.features(args, vol)[int(args.axis)]
    aff = affinity_maps(fv)
    for k, name in enumerate("xyz"):
        common.write(outs[name], aff[..., k], vol, f"affinity along {name}", fv)
    return 0
