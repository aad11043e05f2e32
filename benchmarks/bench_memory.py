"""Peak memory (RSS) of extraction, PCA / affinity maps and few-click segmentation, 512 x 512 x N CT.

Each (stage, N) runs in a fresh process and reports its peak RSS (``ru_maxrss``) minus the RSS after
imports, and minus the volume's own bytes: what the stage adds on top of holding the image. Flat in N
means memory bounded by the batch. The network is the stand-in backbone (fixed features of ViT-S's
shape, ``--features``): a ViT-S forward at 512 takes ~0.5 s per slice on a laptop CPU, too slow for N = 300
here, and the network's own memory does not depend on N. Prints numbers, asserts nothing::

    .venv/bin/python benchmarks/bench_memory.py                         # N = 50, 100, 300
    .venv/bin/python benchmarks/bench_memory.py --sizes 50,300 --stages extract
    PYTHONPATH=/path/to/other/checkout/src .venv/bin/python benchmarks/bench_memory.py   # compare code
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAGES = ("extract", "pca", "affinity", "segment", "isolate")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def _current_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _standin(features: str):
    try:
        from dinomed_napari.models.standin import StandInBackbone
    except ImportError:  # an older checkout on PYTHONPATH: take this checkout's stand-in
        path = HERE.parent / "src" / "dinomed_napari" / "models" / "standin.py"
        spec = importlib.util.spec_from_file_location("standin", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        StandInBackbone = mod.StandInBackbone
    return StandInBackbone("S", features)


def child(stage: str, n: int, features: str, cache: str, real: str | None = None) -> dict:
    """Run one stage in this process; return its memory figures (MB). ``real``: a real model (random
    weights, CPU, batch 2) instead of the stand-in."""
    import numpy as np

    from dinomed_napari.features.extract import extract_features
    from dinomed_napari.io.volume import Volume
    from dinomed_napari.preprocess import Preprocess

    sys.path.insert(0, str(HERE))
    from bench_pipeline import ct_like

    if real:
        from dinomed_napari.models import load_backbone

        backbone = load_backbone(real, "random", device="cpu")
    else:
        backbone = _standin(features)
    prep = Preprocess(window="soft_tissue", resolution=512)
    path = Path(cache) / f"ct{n}.npy"
    if not path.exists():
        np.save(path, ct_like(n))
    import torch  # noqa: F401  (imported before the baseline, like the stage's own imports)
    import zarr  # noqa: F401

    if importlib.util.find_spec("tensorstore"):  # writes the chunks behind a GPU (and the stand-in)
        import tensorstore  # noqa: F401
    base = _current_mb()
    vol = Volume(np.load(path), spacing=(1.0, 0.8, 0.8), modality="CT", units="HU")
    vol_mb = vol.data.nbytes / 2**20
    fv = extract_features(vol, backbone=backbone, prep=prep, cache_dir=Path(cache) / "features",
                          batch_size=2 if real else 16)
    out_mb = 0.0
    if stage == "pca":
        from dinomed_napari.analysis.pca import pca_maps

        rgb8 = pca_maps(fv).rgb8()
        out_mb = rgb8.nbytes / 2**20
    elif stage == "affinity":
        from dinomed_napari.analysis.affinity import affinity_maps

        try:
            from dinomed_napari.analysis.affinity import affinity_rgb8

            out = affinity_rgb8(fv)
        except ImportError:  # older code: float32 maps
            out = affinity_maps(fv)
        out_mb = out.nbytes / 2**20
    elif stage == "segment":
        # The CLI's default few-click job: a structure painted on its 3 largest slices, followed in 3D.
        from dinomed_napari.analysis.segment import ScribbleSegmenter
        from dinomed_napari.bench.scribbles import structure_scribbles

        # The structure's mask is built slice by slice: a broadcast float64 expression over the whole
        # volume (8 bytes per voxel, several times) was the peak of this stage, not the segmenter.
        y, x = np.ogrid[:512, :512]
        disc = ((y - 256) / 60) ** 2 + ((x - 230) / 50) ** 2
        blob = np.zeros((n, 512, 512), bool)
        for z in range(n):
            blob[z] = disc + ((z - n / 2) / max(n / 6, 2)) ** 2 < 1
        scr = structure_scribbles(blob, n_slices=3, seed=0).labels
        del blob
        labels = ScribbleSegmenter(intensity="filters").fit(fv, scr, image=vol.data,
                                                              spacing=vol.spacing).predict().labels
        out_mb = (labels.nbytes + scr.nbytes) / 2**20  # its output and the user's scribble volume
    elif stage == "isolate":
        # The CLI's default one click (--channel auto): PC1 gate and threshold around the seed.
        from dinomed_napari.analysis.isolate_auto import auto_isolate
        from dinomed_napari.analysis.pca import pca_maps

        try:
            pc1 = pca_maps(fv, n_components=1).component(0)
        except AttributeError:  # older code: the whole pixel-grid component
            pc1 = pca_maps(fv, n_components=1).components[..., 0]
        mask = auto_isolate(vol.data, [(n // 2, 256, 230)], vol.spacing, pc1=pc1).mask
        out_mb = mask.nbytes / 2**20
    peak = _rss_mb()
    return {"stage": stage, "n": n, "peak": peak, "base": base, "volume": vol_mb, "output": out_mb,
            "added": peak - base - vol_mb - out_mb, "mallopt": _threshold_set()}


def _threshold_set() -> str:
    """Whether extraction fixed glibc's mmap threshold in this process (``overlap.return_large_buffers``)."""
    try:
        from dinomed_napari.features.overlap import return_large_buffers
    except ImportError:  # older code
        return "-"
    if not return_large_buffers.cache_info().currsize:  # not called (e.g. all features were cached)
        return "no"
    return "yes" if return_large_buffers() else "no"  # cached: the answer of the extraction's own call


def make_zarr(path: Path, gb: float, size: int = 2048) -> tuple[int, int, int]:
    """A CT-like int16 zarr volume of about ``gb`` GB (one chunk per slice), written 16 slices at a time."""
    import numpy as np
    import zarr

    sys.path.insert(0, str(HERE))
    from bench_pipeline import ct_like

    n = max(16, int(gb * 2**30 / (size * size * 2)) // 16 * 16)
    arr = zarr.create_array(str(path), shape=(n, size, size), dtype="int16", chunks=(1, size, size))
    slab = ct_like(16, size)
    for s in range(0, n, 16):
        arr[s : s + 16] = np.roll(slab, s, axis=2)  # every slab differs (and so does its hash)
    return arr.shape


def child_zarr(path: str, features: str) -> dict:
    """Open a zarr volume with load_volume (lazy above 1 GiB) and extract it; memory figures in MB."""
    from dinomed_napari.features.extract import extract_features
    from dinomed_napari.io.load import load_volume
    from dinomed_napari.preprocess import Preprocess

    backbone = _standin(features)
    import torch  # noqa: F401
    import zarr  # noqa: F401

    base = _current_mb()
    vol = load_volume(path, modality="CT")
    opened = _rss_mb()
    fv = extract_features(vol, backbone=backbone, prep=Preprocess(window="soft_tissue", tiling="shrink"),
                          cache_dir=Path(path).parent / "features", batch_size=8)
    return {"shape": list(vol.shape), "lazy": bool(vol.meta.get("lazy")), "base": base,
            "after_open": opened, "peak": _rss_mb(), "features": list(fv.data.shape),
            "volume_gb": vol.data.nbytes / 2**30}


def child_napari(path: str, features: str, resolution: int) -> dict:
    """Open a zarr volume in napari with the plugin's reader and compute its features with the Features
    widget (the stand-in backbone in place of the cached one); memory figures in MB."""
    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    import dinomed_napari.live.backbones as backbones
    from dinomed_napari._napari.session import SESSIONS
    from dinomed_napari._napari.widget_features import FeaturesWidget

    backbone = _standin(features)
    backbones.cached_backbone = lambda *_a, **_k: backbone  # the widget's worker asks for it here
    import zarr  # noqa: F401

    viewer = napari.Viewer(show=False)
    base = _current_mb()
    (layer,) = viewer.open(path, plugin="dinomed-napari")
    opened = _rss_mb()
    w = FeaturesWidget(viewer)
    w.weights.value, w.resolution.value = "random", resolution
    w.run()
    while w.running:
        QApplication.processEvents()
    maps = sum(lyr.data.nbytes for lyr in viewer.layers if lyr is not layer)
    out = {"shape": list(layer.data.shape), "lazy": not isinstance(layer.data, np.ndarray), "base": base,
           "after_open": opened, "peak": _rss_mb(), "features": list(SESSIONS.get(layer).primary.data.shape),
           "maps_mb": maps / 2**20, "status": w.status.value}
    viewer.close()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="50,100,300")
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--features", choices=["noise", "zeros"], default="noise")
    p.add_argument("--real", metavar="MODEL", help="a real backbone (random weights, CPU) instead of the "
                   "stand-in, e.g. L; its weights count in 'base'")
    p.add_argument("--zarr-gb", type=float, help="instead: open and extract a zarr volume of this size")
    p.add_argument("--napari", action="store_true", help="with --zarr-gb: open it in napari (plugin reader) "
                   "and compute features with the Features widget; run under a display (xvfb-run)")
    p.add_argument("--plane", type=int, default=2048, help="with --zarr-gb: in-plane size of the volume")
    p.add_argument("--resolution", type=int, default=512, help="with --napari: the widget's resolution")
    p.add_argument("--child-zarr", help=argparse.SUPPRESS)
    p.add_argument("--child-napari", help=argparse.SUPPRESS)
    p.add_argument("--child", nargs=3, metavar=("STAGE", "N", "CACHE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_napari:
        print(json.dumps(child_napari(args.child_napari, args.features, args.resolution)))
        return
    if args.child_zarr:
        print(json.dumps(child_zarr(args.child_zarr, args.features)))
        return
    if args.zarr_gb:
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as d:
            shape = make_zarr(Path(d) / "big.zarr", args.zarr_gb, args.plane)
            gib = shape[0] * shape[1] * shape[2] * 2 / 2**30
            print(f"zarr volume {shape} int16 ({gib:.1f} GiB) written", flush=True)
            how = ["--child-napari", str(Path(d) / "big.zarr"), "--resolution", str(args.resolution)] \
                if args.napari else ["--child-zarr", str(Path(d) / "big.zarr")]
            r = subprocess.run([sys.executable, __file__, "--features", args.features, *how], check=True,
                               capture_output=True, text=True)
            m = json.loads(r.stdout.strip().splitlines()[-1])
        where = "napari + Features widget" if args.napari else "load_volume + extract_features"
        print(f"{where}, lazy={m['lazy']}: RSS after imports {m['base']:.0f} MB, peak after opening "
              f"{m['after_open']:.0f} MB, peak after extracting {m['peak']:.0f} MB; features {m['features']}"
              + (f"; map layers {m['maps_mb']:.1f} MB; status: {m['status']}" if args.napari else ""))
        return
    if args.child:
        stage, n, cache = args.child
        print(json.dumps(child(stage, int(n), args.features, cache, args.real)))
        return
    import dinomed_napari

    net = (f"real {args.real} (random weights, CPU, batch 2)" if args.real else
           f"stand-in backbone ({args.features} features of ViT-S shape, 32 x 32 x 384 per slice); batch 16")
    env = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    print(f"code: {Path(dinomed_napari.__file__).parent}; {net}; 512 x 512 int16 CT-like slices; "
          f"MALLOC_MMAP_THRESHOLD_={env if env else '(unset)'}")
    print(f"{'stage':<9} {'N':>4} {'peak MB':>8} {'base MB':>8} {'volume MB':>9} {'output MB':>9} "
          f"{'added MB':>9} {'mallopt':>8}")
    with tempfile.TemporaryDirectory() as cache:
        for stage in args.stages.split(","):
            for n in (int(s) for s in args.sizes.split(",")):
                if stage != "extract":  # cache the features first (another process), so only the maps count
                    subprocess.run([sys.executable, __file__, "--features", args.features, "--child",
                                    "extract", str(n), cache], check=True, capture_output=True)
                real = ["--real", args.real] if args.real else []
                r = subprocess.run([sys.executable, __file__, "--features", args.features, *real, "--child",
                                    stage, str(n), cache], check=True, capture_output=True, text=True)
                m = json.loads(r.stdout.strip().splitlines()[-1])
                print(f"{stage:<9} {n:>4} {m['peak']:>8.0f} {m['base']:>8.0f} {m['volume']:>9.0f} "
                      f"{m['output']:>9.0f} {m['added']:>9.0f} {m['mallopt']:>8}", flush=True)
    print("added = peak RSS - RSS after imports - volume bytes - output bytes (the uint8 RGB maps); "
          "mallopt: whether extraction fixed glibc's mmap threshold itself (- for older code)")


if __name__ == "__main__":
    main()
