"""`dinomed-napari pca`: PCA feature maps (raw components and RGB) on the image grid."""

from __future__ import annotations

import argparse
from pathlib import Path

from dinomed_napari.cli import args as A
from dinomed_napari.cli import common
from dinomed_napari.errors import DinomedError


def configure(parser: argparse.ArgumentParser) -> None:
    common.add_image_and_feature_args(parser)
    parser.add_argument("--out", type=Path, required=True,
                        help="output like OUT.nii.gz: writes OUT_pc1.nii.gz ... (float32, source grid)")
    parser.add_argument("--components", type=A.int_in(1, 32, "number of components"), default=3,
                        help="number of components, 1..32 (default 3); one file each")
    parser.add_argument("--rgb", type=Path, help="also write the RGB map of PC1-3 as an 8-bit RGB TIFF")
    parser.add_argument("--max-tokens", type=A.int_in(2, None, "token count"), default=10000,
                        help="tokens sampled to fit the basis")
    parser.add_argument("--pca-seed", type=int, default=0, help="seed of the token sample and the SVD")


def run(args: argparse.Namespace) -> int:
    from dinomed_napari.analysis.pca import pca_maps

    outs = [(f"--out (PC{k})", common.with_suffix_tag(args.out, f"pc{k}"))
            for k in range(1, args.components + 1)]
    vol = common.load_image(args, outs + [("--rgb", args.rgb)])
    fv = common.features(args, vol)[int(args.axis)]
    if args.components > fv.dim:
        raise DinomedError(f"--components {args.components}: the features have only {fv.dim} dimensions")
    maps = pca_maps(fv, n_components=args.components, max_tokens=args.max_tokens, seed=args.pca_seed)
    if maps.components.shape[-1] < args.components:  # fewer tokens than components: say so, write nothing
        raise DinomedError(f"--components {args.components}: only {maps.components.shape[-1]} components "
                           f"exist for {fv.n_slices * fv.grid[0] * fv.grid[1]} feature tokens; ask for fewer")
    evr = ", ".join(f"{v:.3f}" for v in maps.basis.explained_variance_ratio)
    print(f"PCA of {fv.label()}: explained variance ratio {evr}; PC1 > 0 on the minority of tokens")
    for k in range(maps.components.shape[-1]):
        path = common.with_suffix_tag(args.out, f"pc{k + 1}")
        common.write(path, maps.components[..., k], vol, f"PC{k + 1}", fv)
    if args.rgb is not None:
        common.write_rgb_tiff(args.rgb, maps.rgb, fv.weights)
    return 0
