"""Flags and steps shared by the analysis commands (pca, affinity, isolate, segment): load the image,
build or reuse the feature cache, write results on the source grid."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dinomed_napari.errors import DinomedError


def _layers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated block indices, got {text!r}") from exc


def _points(text: str) -> list[int]:
    try:
        z, y, x = (int(round(float(v))) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a voxel as z,y,x (e.g. 33,79,81), got {text!r}") from exc
    return [z, y, x]


def add_image_and_feature_args(parser: argparse.ArgumentParser, axis_all: bool = False) -> None:
    """IMAGE plus the feature flags: --model --weights --resolution --axis --window --level --width
    --modality --layers --batch-size --device --cache-dir."""
    from dinomed_napari.preprocess import WINDOWS

    parser.add_argument("image", help="volume file or folder (NIfTI, NRRD, DICOM folder, TIFF, zarr, .npy)")
    parser.add_argument("--model", default="S", help="backbone: S, S+, B, L, H+ or a timm name (default S)")
    parser.add_argument("--weights", default=None,
                        help="REQUIRED: 'hub' or 'hub:TAG', a .pth/.safetensors PATH, or 'random' "
                             "(pipeline test only)")
    parser.add_argument("--resolution", type=int, default=512, help="long side fed to the network (x16)")
    choices = ["0", "1", "2", "all"] if axis_all else ["0", "1", "2"]
    tri = "; all = tri-planar fusion" if axis_all else ""
    parser.add_argument("--axis", default="0", choices=choices,
                        help=f"slicing axis: 0 axial, 1 coronal, 2 sagittal{tri}")
    parser.add_argument("--window", default="auto", choices=WINDOWS,
                        help="intensity window (auto: by modality)")
    parser.add_argument("--level", type=float, help="custom window level (volume units, e.g. HU)")
    parser.add_argument("--width", type=float, help="custom window width")
    parser.add_argument("--modality", choices=["CT", "MR", "PT", "EM"], help="modality of non-DICOM files")
    parser.add_argument("--layers", type=_layers, help="blocks to concatenate, e.g. 3,6,9,11 (default final)")
    parser.add_argument("--batch-size", type=int, default=4, help="slices per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--cache-dir", type=Path, help="feature cache folder (default $DINOMED_CACHE)")


def add_seed_arg(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--seed", dest="seeds", type=_points, action="append", required=required,
                        metavar="Z,Y,X", help="voxel (z,y,x) in the structure; repeat for several")


def load_image(args):
    """The input Volume (io.load_volume with --modality)."""
    from dinomed_napari.io import load_volume

    vol = load_volume(args.image, modality=args.modality)
    print(f"{args.image}: shape (Z, Y, X) {vol.shape}, modality {vol.modality}", flush=True)
    return vol


def features(args, vol, axes=None) -> dict:
    """axis -> FeatureVolume for ``axes`` (default: --axis), built or reused from the cache."""
    from dinomed_napari.features.extract import extract_features, require_weights
    from dinomed_napari.features.progress import TqdmProgress, sigint_cancels
    from dinomed_napari.preprocess import Preprocess

    require_weights(args.weights)
    if axes is None:
        axes = [0, 1, 2] if args.axis == "all" else [int(args.axis)]
    try:
        prep = Preprocess(window="custom" if args.level is not None else args.window, level=args.level,
                          width=args.width, resolution=args.resolution)
    except ValueError as exc:
        raise DinomedError(str(exc)) from exc
    out = {}
    # First Ctrl-C cancels between batches (finished slices stay cached; cli.main reports it).
    with sigint_cancels() as cancel:
        for axis in axes:
            t0 = time.perf_counter()
            with TqdmProgress(desc=f"features axis {axis}", file=sys.stderr) as bar:
                out[axis] = extract_features(vol, model=args.model, weights=args.weights, axis=axis,
                                             prep=prep, layers=args.layers, batch_size=args.batch_size,
                                             cache_dir=args.cache_dir, progress=bar, cancel=cancel,
                                             device=args.device)
            print(f"features axis {axis}: {out[axis].label()} {tuple(out[axis].data.shape)} "
                  f"in {time.perf_counter() - t0:.1f} s", flush=True)
    return out


def write(path, array: np.ndarray, vol, what: str) -> Path:
    """Write a (Z, Y, X) array on the source grid (io.save_labels; format from the suffix)."""
    from dinomed_napari.io import save_labels

    written = save_labels(path, array, vol)
    print(f"wrote {what}: {written}", flush=True)
    return written


def with_suffix_tag(path: Path, tag: str) -> Path:
    """OUT.nii.gz + 'pc1' -> OUT_pc1.nii.gz (keeps double suffixes)."""
    path = Path(path)
    name = path.name
    for ext in (".nii.gz", ".nii", ".nrrd", ".tiff", ".tif", ".npy", ".zarr"):
        if name.lower().endswith(ext):
            return path.with_name(f"{name[: -len(ext)]}_{tag}{name[-len(ext):]}")
    raise DinomedError(f"{path}: unsupported output type; use .nii.gz, .nii, .nrrd, .tif, .npy or .zarr")


def write_rgb_tiff(path: Path, rgb: np.ndarray, weights_label: str) -> Path:
    """(Z, Y, X, 3) floats in [0, 1] -> an 8-bit RGB TIFF stack (for viewing; not a label grid)."""
    import tifffile

    tifffile.imwrite(path, (np.clip(rgb, 0, 1) * 255).astype(np.uint8), photometric="rgb",
                     description=f"dinomed-napari PCA RGB; weights {weights_label}")
    print(f"wrote RGB: {path}", flush=True)
    return path
