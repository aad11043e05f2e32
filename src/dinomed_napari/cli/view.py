"""`dinomed-napari view IMAGE`: open volumes in napari with the dinomed tools docked."""

from __future__ import annotations

import argparse
import sys

PLUGIN = "dinomed-napari"
DOCK = "DINOv3 tools"
#: File patterns this plugin becomes napari's preferred reader for (spacing, orientation and modality kept).
READER_PATTERNS = ("*.nii", "*.nii.gz", "*.nrrd", "*.nhdr", "*.dcm", "*.tif", "*.tiff")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", help="NIfTI / NRRD / DICOM folder / TIFF / zarr / npy volumes "
                        "(masks named *_mask / *_seg open as labels)")
    parser.add_argument("--sample", choices=["ct_organs", "em", "pet_ct_phantom"],
                        help="open a bundled sample instead of (or besides) files")
    parser.add_argument("--no-widgets", action="store_true", help="do not dock the dinomed tools")


def prefer_reader(patterns: tuple[str, ...] = READER_PATTERNS) -> list[str]:
    """Make this plugin napari's reader for ``patterns`` unless the user chose another; returns the
    patterns set (so File > Open and drag-and-drop of a .nii.gz use it, not imageio)."""
    from napari.settings import get_settings

    plugins = get_settings().plugins
    current = dict(plugins.extension2reader)
    added = [p for p in patterns if p not in current]
    if added:
        plugins.extension2reader = {**current, **dict.fromkeys(added, PLUGIN)}
    return added


def build_viewer(images=(), sample: str | None = None, widgets: bool = True, show: bool = True):
    """A napari viewer with ``images`` opened by the dinomed reader and the tools docked (one dock).

    Returns
    -------
    (napari.Viewer, DinomedDock or None)
    """
    from dinomed_napari._napari.compat import block_triton_after_gl

    block_triton_after_gl()  # before napari creates the GL context (see compat)
    import napari

    from dinomed_napari._napari.readers import is_picture

    prefer_reader()
    viewer = napari.Viewer(title="dinomed-napari", show=show)
    if sample:
        viewer.open_sample(PLUGIN, sample)
    for path in images:
        if is_picture(path):  # a .npy or TIFF 2D/colour picture: shown, not refused
            print(f"{path}: a 2D or colour picture, opened with napari's own reader; the DINOv3 tools "
                  "work on 3D volumes (Z, Y, X)", file=sys.stderr)
            viewer.open(str(path), plugin="napari")
        else:
            viewer.open(str(path), plugin=PLUGIN)
    dock = None
    if widgets:
        _, dock = viewer.window.add_plugin_dock_widget(PLUGIN, DOCK)
    return viewer, dock


def run(args: argparse.Namespace) -> int:
    import napari

    build_viewer(args.images, args.sample, widgets=not args.no_widgets)
    napari.run()
    return 0
