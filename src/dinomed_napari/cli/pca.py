"""`dinomed-napari pca`: PCA feature maps (raw components and RGB) on the image grid."""

from __future__ import annotations

import argparse
from pathlib import Path

from dinomed_napari.cli import common


def configure(parser: argparse.ArgumentParser) -> None:
    common.add_image_and_feature_args(parser)
    parser.add_argument("--out", type=Path, required=True,
                        help="output like OUT.nii.gz: writes OUT_pc1.nii.gz ... (float32, source grid)")
    parser.add_argument("--components", type=int, default=3, help="number of components (default 3)")
    parser.add_argument("--rgb", type=Path, help="also write the RGB map of PC1-3 as an 8-bit RGB TIFF")
    parser.add_argument("--max-tokens", type=int, default=10000, help="tokens sampled to fit the basis")
    parser.add_argument("--pca-seed", type=int, default=0, help="seed of the token sample and the SVD")


def run(args: argparse.Namespace) -> int:
    from dinomed_napari.analysis.pca import pca_maps

    vol = common.load_image(args)
    fv = common.features(args, vol)[int(args.axis)]
    maps = pca_maps(fv, n_components=args.components, max_tokens=args.max_tokens, seed=args.pca_seed)
    evr = ", ".join(f"{v:.3f}" for v in maps.basis.explained_variance_ratio)
    print(f"PCA of {fv.label()}: explained variance ratio {evr}; PC1 > 0 on the minority of tokens")
    for k in range(maps.components.shape[-1]):
        path = common.with_suffix_tag(args.out, f"pc{k + 1}")
        common.write(path, maps.components[..., k], vol, f"PC{k + 1}")
    if args.rgb is not None:
        common.write_rgb_tiff(args.rgb, maps.rgb, fv.weights)
    return 0
