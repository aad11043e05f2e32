"""Speed of feature extraction: slices/s, model GFLOP/s against this machine's GEMM rate, and the
end-to-end overhead of ``extract_features`` (windowing, resizing, float16 cast, zarr cache writes) over the
bare backbone forward on the same batches.

Prints numbers; asserts nothing (speed never goes into the test suite). Example::

    .venv/bin/python benchmarks/bench_extract.py                      # ViT-S/16 @512, 8 CTA slices, CPU
    .venv/bin/python benchmarks/bench_extract.py --batch-sizes 1,4,8 --threads 1,2
    .venv/bin/python benchmarks/bench_extract.py --device cuda --slices 64 --batch-sizes 1,2,4,8,16,32
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch


def gemm_gflops(device: torch.device, dtype: torch.dtype, n: int = 2048, seconds: float = 1.5) -> float:
    """Best-of rate of an n x n x n matrix product (2 n^3 FLOP) on ``device`` in ``dtype``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best, start = float("inf"), time.perf_counter()
    torch.mm(a, b)  # warm-up (MKL/cuBLAS set-up)
    while time.perf_counter() - start < seconds:
        _sync(device)
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def model_flops(backbone, size: tuple[int, int]) -> float:
    """FLOPs of one slice's forward (matmuls and attention, as FlopCounterMode counts them)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, *size, device=backbone.device)
    # The counter has no formula for the CPU flash-attention kernel: count attention through the math
    # backend (same FLOPs: Q K^T and A V matmuls), or a third of the model's work would be missed.
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        backbone.patch_features(x)
    return float(counter.get_total_flops())


def load_crop(key: str, n_slices: int):
    """``n_slices`` central axial slices of a bundled real volume."""
    from dinomed_napari.io import Volume, load_volume
    from dinomed_napari.samples import sample_path

    vol = load_volume(sample_path(key), modality="CT")
    z0 = max(0, vol.shape[0] // 2 - n_slices // 2)
    data = np.ascontiguousarray(vol.data[z0 : z0 + n_slices])
    return Volume(data, spacing=vol.spacing, modality=vol.modality, units=vol.units, source=f"{key} crop")


def run_config(vol, backbone, prep, batch_size: int, repeats: int) -> dict:
    """Best-of-``repeats`` wall times of the bare forward and of extract_features on the same batches."""
    from dinomed_napari.features.extract import extract_features
    from dinomed_napari.preprocess import input_size, intensity_to_unit, to_network_batch

    size = input_size(vol.shape[1:], vol.spacing[1:], prep.resolution, isotropic=prep.isotropic)
    unit = intensity_to_unit(vol, prep)
    batches = [to_network_batch(unit[i : i + batch_size], size, backbone.mean, backbone.std)
               for i in range(0, vol.shape[0], batch_size)]
    bare, e2e, inner = float("inf"), float("inf"), float("inf")
    forward = backbone.patch_features
    timed = [0.0]

    def timed_forward(x):  # time spent inside the backbone during extract_features (CPU: synchronous)
        t = time.perf_counter()
        out = forward(x)
        timed[0] += time.perf_counter() - t
        return out

    for _ in range(repeats):  # interleaved, so a load spike from other users hits both alike
        _sync(backbone.device)
        t = time.perf_counter()
        with torch.inference_mode():
            for x in batches:
                backbone.patch_features(x.to(backbone.device)).cpu()
        _sync(backbone.device)
        bare = min(bare, time.perf_counter() - t)
        timed[0] = 0.0
        if backbone.device.type == "cpu":
            backbone.patch_features = timed_forward
        try:
            with tempfile.TemporaryDirectory() as cache:  # fresh cache: every slice computed and written
                t = time.perf_counter()
                extract_features(vol, backbone=backbone, prep=prep, batch_size=batch_size, cache_dir=cache)
                took = time.perf_counter() - t
        finally:
            backbone.patch_features = forward
        if took < e2e:
            e2e, inner = took, took - timed[0]
    return {"bare": bare, "e2e": e2e, "outside": inner, "size": size}


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1%}" if b > 0 else "n/a"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="S")
    p.add_argument("--volume", default="cta_aorta", help="bundled sample key (default cta_aorta)")
    p.add_argument("--slices", type=int, default=8)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--batch-sizes", default="1,4,8")
    p.add_argument("--threads", default="", help="comma list of torch thread counts to try (CPU)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile the forward (inductor; slow start)")
    args = p.parse_args(argv)

    from dinomed_napari.models import load_backbone
    from dinomed_napari.preprocess import Preprocess

    # Speed does not depend on the weights' values: random ones need no download.
    backbone = load_backbone(args.model, "random", device=args.device, compile=args.compile)
    dev = backbone.device
    prep = Preprocess(window="soft_tissue", resolution=args.resolution)
    vol = load_crop(args.volume, args.slices)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{backbone!r}\nvolume {args.volume} crop {vol.shape} -> {args.slices} slices; "
          f"device {dev}; {os.cpu_count()} CPUs; load average {load:.2f} at start")
    threads = [int(t) for t in args.threads.split(",") if t] or [torch.get_num_threads()]
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    print(f"{'thr':>3} {'batch':>5} {'bare s':>7} {'e2e s':>7} {'slices/s':>8} {'model GF/s':>10} "
          f"{'GEMM GF/s':>9} {'model/GEMM':>10} {'overhead':>8} {'non-fwd':>7}")
    for nt in threads:
        if dev.type == "cpu":
            torch.set_num_threads(nt)
        gemm_dtype = torch.float32 if dev.type == "cpu" else backbone.dtype
        gemm, flops = 0.0, None
        for bs in sizes:
            # Re-measured before every row, best kept: on a shared machine a single GEMM sample taken
            # during someone else's burst would flatter the model/GEMM ratio.
            gemm = max(gemm, gemm_gflops(dev, gemm_dtype))
            if flops is None:  # warm-up once per thread count (allocator, MKL/oneDNN kernels)
                run_config(vol, backbone, prep, bs, 1)
            r = run_config(vol, backbone, prep, bs, args.repeats)
            flops = flops or model_flops(backbone, r["size"])
            rate = flops * args.slices / r["bare"] / 1e9
            print(f"{nt:>3} {bs:>5} {r['bare']:>7.2f} {r['e2e']:>7.2f} {args.slices / r['e2e']:>8.2f} "
                  f"{rate:>10.1f} {gemm:>9.1f} {rate / gemm:>10.1%} {r['e2e'] / r['bare'] - 1:>8.1%} "
                  f"{_ratio(r['outside'], r['e2e'] - r['outside']):>7}",
                  flush=True)
    print(f"input {r['size']}, {flops / 1e9:.1f} GFLOP per slice; model GF/s = FLOPs x slices / bare time; "
          f"overhead = extract_features (fresh cache) / bare forward - 1; non-fwd = time in extract_features "
          f"outside the backbone / time inside it (same run, so robust to load from other users; CPU only); "
          f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
