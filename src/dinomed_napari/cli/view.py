"""`dinomed-napari view IMAGE`: open volumes in napari with the dinomed widgets docked."""

from __future__ import annotations

import argparse

PLUGIN = "dinomed-napari"
WIDGETS = ("DINOv3 features", "Feature similarity", "Tumour isolation", "Scribble segmenter")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", help="NIfTI / NRRD / DICOM folder / TIFF / zarr / npy volumes "
                        "(masks named *_mask / *_seg open as labels)")
    parser.add_argument("--sample", choices=["ct_organs", "em", "pet_ct_phantom"],
                        help="open a bundled sample instead of (or besides) files")
    parser.add_argument("--no-widgets", action="store_true", help="do not dock the dinomed widgets")


def build_viewer(images=(), sample: str | None = None, widgets: bool = True, show: bool = True):
    """A napari viewer with ``images`` opened by the dinomed reader and the widgets docked.

    Returns
    -------
    (napari.Viewer, dict of str -> widget)
    """
    from dinomed_napari._napari.compat import block_triton_after_gl

    block_triton_after_gl()  # before napari creates the GL context (see compat)
    import napari

    viewer = napari.Viewer(title="dinomed-napari", show=show)
    if sample:
        viewer.open_sample(PLUGIN, sample)
    for path in images:
        viewer.open(str(path), plugin=PLUGIN)
    docked = {}
    if widgets:
        for name in WIDGETS:
            _, docked[name] = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=True)
    return viewer, docked


def run(args: argparse.Namespace) -> int:
    import napari

    build_viewer(args.images, args.sample, widgets=not args.no_widgets)
    napari.run()
    return 0
