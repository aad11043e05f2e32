"""Timing of the analysis core on the 164-slice CTA with ViT-B-sized (768-d) features.

Features: SYNTHETIC, of the exact shape ViT-B/16 gives this volume at resolution 512 (164 x 32 x 30 x 768,
float16): the aorta mask area-pooled on the patch grid times a random class embedding, plus noise. Real
ViT-B extraction of 164 slices at 512 px takes many minutes on this CPU, and timings of the steps below
do not depend on what the numbers are, only on their shape (the classifier's convergence does a little;
structured features make it converge like real ones, pure noise would not).

Measured:
- retrain + current-slice prediction after one more stroke, with ~10k scribbled voxels (goal <= 50 ms);
- whole-volume re-prediction (goal <= 1 s);
- PCA fit + projection of the whole volume (goal <= 2 s);
each from in-memory features and from a zarr store on disk (what the feature cache gives).

Run: ``.venv/bin/python benchmarks/bench_analysis.py [--repeats N] [--threads T]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def synthetic_vit_b(mask: np.ndarray, grid=(32, 30), dim=768, seed=0):
    from analysis_helpers import synthetic_features

    return synthetic_features(mask, axis=0, grid=grid, dim=dim, noise=1.0, seed=seed,
                              model="vit_base_patch16_dinov3", weights="synthetic")


def scribbles_about(mask: np.ndarray, target: int = 10000, seed: int = 0):
    """Simulated scribbles on more and more slices until about ``target`` voxels are scribbled."""
    from dinomed_napari.bench.scribbles import simulate_scribbles

    n = 3
    while True:
        scr = simulate_scribbles(mask, n_slices=n, strokes_per_class=6, seed=seed)
        if np.count_nonzero(scr.labels) >= target or n >= mask.shape[0] // 2:
            return scr
        n += 2


def ms(times, cpu=None):
    text = f"median {1000 * statistics.median(times):7.1f} ms (min {1000 * min(times):.1f}, n={len(times)})"
    if cpu is not None:  # CPU time of this process: less sensitive to other jobs on a shared machine
        text += f", CPU {1000 * statistics.median(cpu):.1f} ms"
    return text


def timed(fn, cpu: list, wall: list):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    wall.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
    return out


def bench(fv, mask, scr, repeats: int, label: str) -> dict:
    from dinomed_napari.analysis.pca import pca_maps
    from dinomed_napari.analysis.segment import ScribbleSegmenter

    seg = ScribbleSegmenter()
    t = time.perf_counter()
    seg.fit(fv, scr.labels)
    first_fit = time.perf_counter() - t
    rng = np.random.default_rng(1)
    labels = scr.labels.copy()
    stroke_times, fit_times, stroke_cpu = [], [], []
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    for _ in range(repeats):
        z = int(rng.choice(zs))  # the slice the user is on
        inside = np.argwhere(mask[z])
        y, x = inside[rng.integers(len(inside))]
        labels[z, max(y - 1, 0):y + 2, max(x - 4, 0):x + 5] = 2  # one short stroke (3 x 9 px)
        t0, c0 = time.perf_counter(), time.process_time()
        seg.fit(fv, labels)
        t1 = time.perf_counter()
        seg.predict(z)
        stroke_times.append(time.perf_counter() - t0)
        stroke_cpu.append(time.process_time() - c0)
        fit_times.append(t1 - t0)
    vol_times, vol_cpu, pca_times, pca_cpu = [], [], [], []
    for _ in range(max(3, repeats // 5)):
        timed(seg.predict, vol_cpu, vol_times)
    for _ in range(3):
        timed(lambda: pca_maps(fv), pca_cpu, pca_times)
    n_scr = int(np.count_nonzero(labels))
    print(f"[{label}] first fit on {np.count_nonzero(scr.labels)} voxels: {1000 * first_fit:.0f} ms")
    print(f"[{label}] one more stroke: retrain + slice {ms(stroke_times, stroke_cpu)} (goal <= 50 ms)")
    print(f"[{label}]   of which retrain                         {ms(fit_times)}")
    print(f"[{label}] whole-volume re-prediction (164 slices)   {ms(vol_times, vol_cpu)}   (goal <= 1000 ms)")
    print(f"[{label}] PCA fit + projection of the volume        {ms(pca_times, pca_cpu)}   (goal <= 2000 ms)")
    print(f"[{label}] scribbled voxels at the end: {n_scr}")
    return {"stroke": statistics.median(stroke_times), "volume": statistics.median(vol_times),
            "pca": statistics.median(pca_times)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, help="torch / BLAS threads (default: library choice)")
    args = parser.parse_args(argv)
    import os

    print(f"machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    import zarr

    from dinomed_napari.features.volume import FeatureVolume
    from dinomed_napari.io import load_volume
    from dinomed_napari.samples import sample_path

    mask = (load_volume(sample_path("cta_aorta_mask"), check=False).data > 0).astype(np.uint8)
    t = time.perf_counter()
    fv = synthetic_vit_b(mask)
    print(f"CTA mask {mask.shape}; synthetic ViT-B features {fv.data.shape} {fv.data.dtype} "
          f"({fv.data.nbytes / 2**20:.0f} MiB) made in {time.perf_counter() - t:.1f} s")
    scr = scribbles_about(mask)
    print(f"scribbles: {np.count_nonzero(scr.labels)} voxels on {len(scr.slices)} slices")
    bench(fv, mask, scr, args.repeats, "in memory")
    with tempfile.TemporaryDirectory() as tmp:
        z = zarr.create_array(store=str(Path(tmp) / "f.zarr"), shape=fv.data.shape,
                              chunks=(1,) + fv.data.shape[1:], dtype="float16")
        z[:] = fv.data
        fvz = FeatureVolume(data=z, axis=0, volume_shape=fv.volume_shape, model=fv.model, weights=fv.weights,
                            resolution=512)
        bench(fvz, mask, scr, args.repeats, "zarr store")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
