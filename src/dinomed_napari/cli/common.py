"""Flags and steps shared by the analysis commands (pca, affinity, isolate, segment): load the image,
build or reuse the feature cache, write results on the source grid."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dinomed_napari.cli import args as A
from dinomed_napari.errors import DinomedError


def add_image_and_feature_args(parser: argparse.ArgumentParser, axis_all: bool = False) -> None:
    """IMAGE plus the feature flags: --model --weights --resolution --axis --window --level --width
    --modality --layers --batch-size --device --cache-dir."""
    from dinomed_napari.preprocess import WINDOWS

    parser.add_argument("image", help="volume file or folder (NIfTI, NRRD, DICOM folder, TIFF, zarr, .npy)")
    parser.add_argument("--model", default="S", help="backbone: S, S+, B, L, H+ or a timm name (default S)")
    parser.add_argument("--weights", default=None,
                        help="REQUIRED: 'hub' or 'hub:TAG', a .pth/.safetensors PATH, or 'random' "
                             "(pipeline test only)")
    parser.add_argument("--resolution", type=A.resolution,
                        help=f"long side fed to the network (x16, {A.MIN_RESOLUTION}..{A.MAX_RESOLUTION}; "
                             "default 512, or the one stored in a loaded model)")
    choices = ["0", "1", "2", "all"] if axis_all else ["0", "1", "2"]
    tri = "; all = tri-planar fusion" if axis_all else ""
    parser.add_argument("--axis", default="0", choices=choices,
                        help=f"slicing axis: 0 axial, 1 coronal, 2 sagittal{tri}")
    parser.add_argument("--window", choices=WINDOWS,
                        help="intensity window (default auto: by modality; or the one a loaded model stored)")
    parser.add_argument("--level", type=float, help="custom window level (volume units, e.g. HU)")
    parser.add_argument("--width", type=float, help="custom window width")
    parser.add_argument("--modality", choices=["CT", "MR", "PT", "EM"], help="modality of non-DICOM files")
    parser.add_argument("--series", help="SeriesInstanceUID to read from a DICOM folder with several series")
    parser.add_argument("--layers", type=A.layers,
                        help="blocks to concatenate, e.g. 3,6,9,11 (default final)")
    parser.add_argument("--batch-size", type=A.int_in_or(1, 1024, "batch size", "auto"), default="auto",
                        help="slices per forward pass, or 'auto' (default: from free GPU memory; 2 on a CPU)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--cache-dir", type=Path, help="feature cache folder (default $DINOMED_CACHE)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing outputs (each only once its new version is complete)")


def add_seed_arg(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--seed", dest="seeds", type=A.point, action="append", required=required,
                        metavar="Z,Y,X", help="voxel (z,y,x) in the structure; repeat for several")


def load_image(args, outputs=(), inputs=()):
    """Check the flags and outputs, then load the input Volume (io.load_volume with --modality).

    ``outputs``/``inputs``: (flag, path) pairs for :func:`check_outputs`, checked before the image is read.
    """
    from dinomed_napari.io import load_volume

    A.check_model_and_layers(args.model, args.layers)
    args.prep = preprocess(args)
    check_outputs(args, outputs, inputs)
    vol = load_volume(args.image, modality=args.modality, series=args.series)
    # A NIfTI or TIFF records no modality; the "auto" window then falls back to percentiles: say so.
    modality = vol.modality or "not recorded in the file (--modality CT/MR/PT/EM sets it)"
    print(f"{args.image}: shape (Z, Y, X) {vol.shape}, modality {modality}{series_note(vol)}", flush=True)
    return vol


def hint_ct(vol, prep) -> None:
    """Say so when an image without a modality looks like CT and ``prep`` (the features' final settings:
    a loaded segmenter's window replaces the flags') windows it by percentiles through "auto", where the
    napari widget, which detects Hounsfield units, picks the CT window."""
    if vol.modality is not None or prep.window != "auto":
        return
    from dinomed_napari.live.display import detect_modality, display_sample

    modality, reason = detect_modality(display_sample(vol.data))
    if modality == "CT":
        print(f"note: {reason}; the features use the percentile window, as the bench's configs without a "
              "modality do. --modality CT gives the CT soft-tissue window, which the napari widget picks "
              "for this image", flush=True)


def series_note(vol) -> str:
    """", DICOM series <uid> (<description>, N files)" for DICOM input (the choice is always shown)."""
    if vol.meta.get("format") != "dicom":
        return ""
    desc = vol.meta.get("series_description") or "no description"
    return f", DICOM series {vol.meta.get('series_uid')} ({desc}, {vol.meta.get('n_files')} files)"


def features(args, vol, axes=None, prep=None) -> dict:
    """axis -> FeatureVolume for ``axes`` (default: --axis), built or reused from the cache, with ``prep``
    (default: from the flags)."""
    from dinomed_napari.features.extract import extract_features, require_weights
    from dinomed_napari.features.progress import TqdmProgress, sigint_cancels

    require_weights(args.weights)
    if axes is None:
        axes = [0, 1, 2] if args.axis == "all" else [int(args.axis)]
    prep = prep or getattr(args, "prep", None) or preprocess(args)
    hint_ct(vol, prep)
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
            print(f"features axis {axis}: {out[axis].label()} {tuple(out[axis].data.shape)}, window "
                  f"{prep.resolve(vol).window}, in {time.perf_counter() - t0:.1f} s", flush=True)
            report_repairs(out[axis])
    return out


def report_repairs(fv) -> None:
    """Say which damaged cache slices were recomputed (nothing when the store was intact)."""
    from dinomed_napari.features.extract import describe_slices

    if fv.extra.get("repaired"):
        print(f"repaired feature cache {fv.extra['path']}: slice(s) {describe_slices(fv.extra['repaired'])} "
              "were damaged and have been recomputed", file=sys.stderr, flush=True)


def preprocess(args):
    """The Preprocess of the flags (a bad window/level/width combination is a usage error).

    Weights whose normalisation assumes a CT window (MedDINOv3: HU clipped to [-1000, 1000]) get that
    window when none was chosen; another explicit window gets a warning. A weights file's normalisation
    and where it came from are printed.
    """
    from dinomed_napari.preprocess import Preprocess

    norm = normalisation(args)
    if norm is not None and not norm.source.endswith("(hub tag)"):  # a file: say where they came from
        print(f"input normalisation: {norm.source}", flush=True)
    if norm is not None and norm.window is not None:
        level, width = norm.window
        if args.window is None and args.level is None:
            args.level, args.width = level, width
            print(f"window: level {level:g}, width {width:g} HU (what these weights were trained with)",
                  flush=True)
        elif (args.level, args.width) != (level, width):
            print(f"warning: these weights expect a level {level:g} / width {width:g} HU window; features "
                  "with another window get mismatched statistics", file=sys.stderr, flush=True)
    try:
        window = "custom" if args.level is not None else (args.window or "auto")
        return Preprocess(window=window, level=args.level, width=args.width,
                          resolution=args.resolution or 512, isotropic=getattr(args, "isotropic", False),
                          tiling=getattr(args, "tiling", "auto"))
    except ValueError as exc:
        raise DinomedError(str(exc)) from exc


def normalisation(args):
    """The weights' :class:`~dinomed_napari.models.normalisation.Normalisation` (None without weights)."""
    if not getattr(args, "weights", None):
        return None
    from dinomed_napari.features.cache import weights_label
    from dinomed_napari.models.normalisation import weights_normalisation

    return weights_normalisation(args.weights, weights_label(args.model, args.weights))


def check_outputs(args, outputs, inputs=()) -> None:
    """Refuse, before any slow work, outputs of unsupported type, outputs that are inputs (IMAGE is one)
    and existing outputs without --overwrite."""
    from dinomed_napari.io.atomic import check_outputs as check

    check(list(outputs), [("IMAGE", args.image), *inputs], overwrite=bool(getattr(args, "overwrite", False)))


def load_on_grid(path, vol, flag: str):
    """A label/channel volume that must overlay ``vol`` (same shape and grid), else a VolumeError."""
    from dinomed_napari.io import load_volume
    from dinomed_napari.io.validate import check_same_grid

    other = load_volume(path, check=False)
    check_same_grid(vol, other, f"{flag} {path}")
    return other


def write(path, array: np.ndarray, vol, what: str, fv=None, **facts) -> Path:
    """Write a (Z, Y, X) array on the source grid (io.save_labels; format from the suffix), atomically and
    with its provenance (the features ``fv`` it came from, ``facts``)."""
    from dinomed_napari.io import save_labels
    from dinomed_napari.io.provenance import make_provenance

    written = save_labels(path, array, vol, make_provenance(what, fv, source=vol.source, **facts))
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


def label_output(path, flag: str = "--out") -> Path:
    """``path`` if its suffix is a label format save_labels writes, else a usage error naming the flag."""
    from dinomed_napari.errors import VolumeError
    from dinomed_napari.io.write import LABEL_FORMATS, label_writer

    try:
        label_writer(path)
    except VolumeError:
        raise DinomedError(f"{flag} {path}: unsupported output type; expected one of "
                           f"{LABEL_FORMATS}") from None
    return Path(path)


def write_rgb_tiff(path: Path, rgb: np.ndarray, weights_label: str) -> Path:
    """(Z, Y, X, 3) floats in [0, 1] -> an 8-bit RGB TIFF stack (for viewing; not a label grid)."""
    import tifffile

    from dinomed_napari.io.atomic import atomic_output

    with atomic_output(path) as tmp:
        tifffile.imwrite(tmp, (np.clip(rgb, 0, 1) * 255).astype(np.uint8), photometric="rgb",
                         description=f"dinomed-napari PCA RGB; weights {weights_label}")
    print(f"wrote RGB: {path}", flush=True)
    return path
