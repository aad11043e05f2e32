"""Regenerate docs/images/*.png from the running plugin on the bundled real data.

Run under a virtual display (no GPU needed)::

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python docs/make_screenshots.py [--resolution 256]

The window is 1920 x 1040 (a full-HD screen minus a task bar) with the one "DINOv3 tools" dock, as
``dinomed-napari view`` opens it. Weights are "random" unless ``--weights`` is given (pretrained DINOv3
weights cannot be downloaded here); the status lines in the pictures say which weights made the layers.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "images"
PLUGIN = "dinomed-napari"


def wait(cond, timeout=600.0):
    from qtpy.QtWidgets import QApplication

    app, t0 = QApplication.instance(), time.time()
    while not cond():
        app.processEvents()
        time.sleep(0.02)
        if time.time() - t0 > timeout:
            raise TimeoutError("gave up waiting")
    for _ in range(20):  # let the canvas redraw
        app.processEvents()
        time.sleep(0.01)


def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float(2 * np.count_nonzero(a & b) / max(1, a.sum() + b.sum()))


def viewer_with(sample_or_path, tab: str):
    """``dinomed-napari view``'s viewer and dock, full-HD sized, on the tab named ``tab``."""
    from dinomed_napari.cli.view import build_viewer

    if str(sample_or_path) in ("ct_organs", "em", "pet_ct_phantom"):
        viewer, dock = build_viewer(sample=str(sample_or_path))
    else:
        viewer, dock = build_viewer([sample_or_path])
    viewer.window.resize(1920, 1040)
    titles = [dock.tabs.tabText(i) for i in range(dock.tabs.count())]
    dock.tabs.setCurrentIndex(titles.index(tab))
    return viewer, dock


def features(dock, args):
    fw = dock.features
    fw.weights.value = args.weights
    fw.resolution.value = args.resolution
    fw.run()
    wait(lambda: not fw.running)
    return fw


def shot(viewer, name: str) -> Path:
    """Window screenshot, palette-quantised so each PNG stays well under 300 KB."""
    from PIL import Image

    viewer.reset_view()
    wait(lambda: True)
    img = viewer.screenshot(canvas_only=False, flash=False)
    pil = Image.fromarray(np.asarray(img)[..., :3]).quantize(colors=128, dither=Image.Dither.NONE)
    path = OUT / name
    pil.save(path, optimize=True)
    print(f"{path}: {path.stat().st_size // 1024} KB")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--weights", default="random", choices=["random", "hub"])
    args = parser.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    from dinomed_napari._napari.compat import block_triton_after_gl

    block_triton_after_gl()
    from dinomed_napari.io import load_volume
    from dinomed_napari.samples import sample_path

    seg = np.asarray(load_volume(sample_path("ct_organs_seg")).data)
    liver = seg == 5
    z = 15

    # 1. features: PCA of the abdominal CT (radiological view: the liver on the screen's left)
    viewer, dock = viewer_with("ct_organs", "Features")
    viewer.dims.set_point(0, z * 3.0)
    viewer.layers["organs (TotalSegmentator)"].visible = False
    features(dock, args)
    liver = np.asarray(viewer.layers["organs (TotalSegmentator)"].data) == 5  # as displayed
    shot(viewer, "features.png")

    # 2. similarity: click in the liver
    dock.tabs.setCurrentIndex(1)
    sw = dock.similarity
    viewer.layers["PCA"].visible = False
    pts = sw.add_points_layer()
    pts.add([z, *np.argwhere(liver[z])[len(np.argwhere(liver[z])) // 2]])
    wait(lambda: sw.result_layer is not None)
    shot(viewer, "similarity.png")

    # 3. scribble segmenter: a few strokes on one slice (liver, then background), live prediction
    from scipy import ndimage

    dock.tabs.setCurrentIndex(3)
    for layer in list(viewer.layers):
        layer.visible = layer.name.startswith("CT")
    gw = dock.segment
    gw.classes.value = "liver, background"
    scr = gw.add_scribble_layer()
    rows = np.zeros(liver[z].shape, bool)
    rows[::10] = True
    fg = ndimage.binary_erosion(liver[z], iterations=5) & rows
    bg = ~ndimage.binary_dilation(liver[z], iterations=8) & rows & ndimage.binary_fill_holes(
        np.asarray(viewer.layers[0].data)[z] > -300)
    bg[:, 1::3] = False
    for mask, value in ((fg, 1), (bg, 2)):
        full = np.zeros(scr.data.shape, bool)
        full[z] = mask
        scr.data_setitem(tuple(np.nonzero(full)), value)
    wait(lambda: gw.trainings >= 1)
    pred = np.asarray(gw.prediction_layer.data)
    print(f"scribble segmenter, liver Dice (slice {z}): {dice(pred[z] == 1, liver[z]):.3f}")
    shot(viewer, "segment.png")
    viewer.close()

    # 4. isolation: the lung nodule, intensity threshold inside the lung, seeded
    mask = np.asarray(load_volume(sample_path("lung_mask")).data)
    c = np.round(ndimage.center_of_mass(mask)).astype(int)
    viewer, dock = viewer_with(sample_path("lung_ct"), "Features")
    viewer.dims.set_point(0, c[0] * viewer.layers[0].scale[0])
    features(dock, args)
    dock.tabs.setCurrentIndex(2)
    iw = dock.isolate
    for layer in viewer.layers:
        layer.visible = layer.name.startswith("pyradiomics")
    seeds = iw.add_seed_layer()
    iw.foreground.value = False
    iw.channel.value = "image"
    iw.inner_rule.value = "value"
    iw.inner_threshold.value = -400.0
    seeds.add(list(c))
    wait(lambda: iw.preview_layer is not None)
    iw.apply()
    wait(lambda: iw.result_layer is not None)
    print(f"isolation, nodule Dice vs the manual mask: {dice(iw.result_layer.data, mask):.3f}")
    viewer.layers["isolation preview"].visible = False
    shot(viewer, "isolate.png")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
