"""Throughput of the extraction pipeline around the network: can the host feed a GPU?

Builds a CT-like int16 volume (default 512 x 512 x 200), prints a per-stage table (each stage timed alone,
ms per slice and slices/s) and then runs ``extract_features`` end to end into a fresh cache. By default
the network is a stand-in that returns fixed features of ViT-S's shape (``--features noise``: random values
that compress like real ones; ``zeros``: what the issue's first measurement used, which makes the cache
writes look cheap). ``--backbone real`` runs the real ViT (random weights) instead, e.g. on a GPU.
``--compare-format 2`` also writes stores of the layout before format 3 (zstd, BLAKE2b digests, nested
chunk folders), interleaved with the current one in the same run, so load from other processes hits both.
The last line reads ``pipeline N slices/s``. Prints numbers, asserts nothing. Examples::

    .venv/bin/python benchmarks/bench_pipeline.py                       # stand-in, ViT-S dims, CPU
    .venv/bin/python benchmarks/bench_pipeline.py --compare-format 2      # store layouts, same run
    .venv/bin/python benchmarks/bench_pipeline.py --features zeros --slices 100
    .venv/bin/python benchmarks/bench_pipeline.py --backbone real --model B --device cuda --batch-size 32
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time

import numpy as np
import torch


def ct_like(n: int, size: int = 512, seed: int = 0) -> np.ndarray:
    """(n, size, size) int16 HU: air, a body ellipse with organs, lungs and bone, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    base = np.full((size, size), -1000.0, np.float32)
    base[(yy / 0.42) ** 2 + (xx / 0.47) ** 2 < 1] = 40.0                       # soft tissue
    for cx in (-0.2, 0.2):
        base[((yy + 0.05) / 0.22) ** 2 + ((xx - cx) / 0.14) ** 2 < 1] = -820.0  # lungs
    base[(yy - 0.25) ** 2 + xx**2 < 0.05**2] = 700.0                            # spine
    vol = np.empty((n, size, size), np.int16)
    for z in range(n):
        organ = ((yy - 0.1 - 0.1 * np.sin(z / 17)) / 0.12) ** 2 + ((xx + 0.05) / 0.1) ** 2 < 1
        vol[z] = np.clip(base + 60.0 * organ + rng.normal(0, 25, base.shape), -1024, 3000).astype(np.int16)
    return vol


@contextlib.contextmanager
def writer(name: str | None):
    """Feature chunks written by ``name`` ("zarr", "tensorstore"; None: as configured) inside the block."""
    from dinomed_napari.features import cache

    current = cache.CHUNK_WRITER
    cache.CHUNK_WRITER = name or current
    try:
        yield
    finally:
        cache.CHUNK_WRITER = current


@contextlib.contextmanager
def store_format(fmt: int | None):
    """New feature stores get layout ``fmt`` inside the block (None: the current one)."""
    from dinomed_napari.features import cache

    current = cache.FORMAT_VERSION
    cache.FORMAT_VERSION = current if fmt is None else fmt
    try:
        yield
    finally:
        cache.FORMAT_VERSION = current


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def stage_table(vol, backbone, prep, batch_size: int, repeats: int,
                compare_format: int | None = None) -> tuple[list[tuple[str, float]], np.ndarray]:
    """Seconds per slice of each stage, timed alone on ``batch_size``-slice batches; the cache write also
    in layout ``compare_format`` when given. Also returns the first batch's features, for comparison."""
    from dinomed_napari.features.batches import forward, pipelined
    from dinomed_napari.features.cache import FORMAT_VERSION, FeatureStore, chunk_writer
    from dinomed_napari.features.overlap import start_host_copy, to_host
    from dinomed_napari.io.lazy import read_block, volume_digest
    from dinomed_napari.preprocess import host_batch, input_size, intensity_mapper

    dev = backbone.device
    half = pipelined(dev) or getattr(backbone, "asynchronous", False)  # what fill_store sends
    n = min(vol.shape[0], 8 * batch_size)
    groups = [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    size = input_size(vol.shape[1:], vol.spacing[1:], prep.resolution)
    to_unit = intensity_mapper(vol, prep)
    hosts = [host_batch(to_unit(read_block(vol.data, g)), dev, half) for g in groups]
    xs = [backbone.prepare(h, size) for h in hosts]
    with torch.inference_mode():
        feats = [forward(backbone, x, batch_size) for x in xs]
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def timed_device(fn):
        def run():
            with torch.inference_mode():
                fn()
            sync()
        return run

    def read():
        return [to_unit(read_block(vol.data, g)) for g in groups]

    def read_host():
        return [host_batch(to_unit(read_block(vol.data, g)), dev, half) for g in groups]

    rows = [("hash (cache key)",
             best_of(lambda: volume_digest(vol.data, vol.spacing), repeats) / vol.shape[0]),
            ("read + window", best_of(read, repeats) / n),
            ("read + window + host tensor", best_of(read_host, repeats) / n),
            ("to device + resize + normalise",
             best_of(timed_device(lambda: [backbone.prepare(h, size) for h in hosts]), repeats) / n),
            ("forward + float16",
             best_of(timed_device(lambda: [forward(backbone, x, batch_size) for x in xs]), repeats) / n),
            ("copy to host", best_of(lambda: [to_host(start_host_copy(f)) for f in feats], repeats) / n)]
    host = [to_host(start_host_copy(f)) for f in feats]
    with tempfile.TemporaryDirectory() as d:
        def write():
            path = os.path.join(d, f"{time.perf_counter_ns()}.zarr")
            store = FeatureStore(path, (n, *host[0].shape[1:]), {})
            store.behind_device = half  # as fill_store sets it
            for g, f in zip(groups, host, strict=True):
                store.write(g, f)
        for fmt in [None] if compare_format is None else [None, compare_format]:
            with store_format(fmt):
                by = chunk_writer(half) if (fmt or FORMAT_VERSION) == 3 else "zarr"  # format 2: zarr
                rows.append((f"cache write, format {fmt or FORMAT_VERSION}, chunks by {by}",
                             best_of(write, repeats) / n))
        if chunk_writer(half) != "zarr":  # the same write by zarr-python, for the ratio
            with writer("zarr"):
                rows.append(("cache write, chunks by zarr", best_of(write, repeats) / n))
    return rows, host[0]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slices", type=int, default=200)
    p.add_argument("--size", type=int, default=512, help="in-plane size of the synthetic CT")
    p.add_argument("--model", default="S", help="dims of the stand-in, or the real model")
    p.add_argument("--backbone", choices=["standin", "real"], default="standin")
    p.add_argument("--features", choices=["noise", "zeros"], default="noise", help="stand-in output")
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--batch-size", type=lambda s: s if s == "auto" else int(s), default=16,
                   help="slices per forward, or 'auto' (from free device memory)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="torch.compile the real backbone")
    p.add_argument("--goal", type=float, help="print whether the pipeline reaches this many slices/s")
    p.add_argument("--also-cache-in", metavar="DIR",
                   help="also run end to end with the cache in DIR (e.g. /dev/shm: without the disk)")
    p.add_argument("--writer", choices=["auto", "zarr", "tensorstore"],
                   help="who writes the feature chunks (default: the cache's CHUNK_WRITER)")
    p.add_argument("--prefetch", type=int, metavar="N",
                   help="batches read ahead on an asynchronous device (default: PREFETCH_AHEAD)")
    p.add_argument("--compare-format", type=int, metavar="F",
                   help="also time stores of layout F (2: before format 3), interleaved in the same run")
    args = p.parse_args(argv)

    from dinomed_napari.features import batches, cache
    from dinomed_napari.features.cache import chunk_writer
    from dinomed_napari.features.extract import extract_features
    from dinomed_napari.io.volume import Volume
    from dinomed_napari.preprocess import Preprocess

    if args.backbone == "real":
        from dinomed_napari.models import load_backbone

        backbone = load_backbone(args.model, "random", device=args.device, compile=args.compile)
    else:
        from dinomed_napari.models.standin import StandInBackbone

        backbone = StandInBackbone(args.model, args.features, device=args.device)
    prep = Preprocess(window="soft_tissue", resolution=args.resolution)
    if args.batch_size == "auto":
        from dinomed_napari.models.device import auto_batch_size

        args.batch_size = auto_batch_size(backbone, (args.resolution, args.resolution))
    if args.writer:
        cache.CHUNK_WRITER = args.writer
    if args.prefetch:
        batches.PREFETCH_AHEAD = args.prefetch
    vol = Volume(ct_like(args.slices, args.size), spacing=(1.0, 0.8, 0.8), modality="CT", units="HU")
    load = os.getloadavg()[0]
    behind = batches.overlapped(backbone)  # a writer thread behind an asynchronous device (stand-in: always)
    print(f"{backbone!r}\nvolume {vol.shape} int16 CT-like; batch {args.batch_size}; "
          f"device {backbone.device}; chunks by {chunk_writer(behind)}; "
          f"{batches.PREFETCH_AHEAD} batches read ahead (on a GPU); "
          f"cache in {tempfile.gettempdir()}; "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; load average {load:.2f} at start")
    if getattr(backbone, "asynchronous", False) and backbone.device.type == "cpu":
        print("the stand-in emulates a GPU: device-side stages (resize, normalise, forward, float16 cast) "
              "cost the host nothing and read 0; everything else is real host work")
    print(f"{'stage (timed alone)':<46} {'ms/slice':>9} {'slices/s':>9}")
    rows, first = stage_table(vol, backbone, prep, args.batch_size, args.repeats, args.compare_format)
    for name, sec in rows:
        print(f"{name:<46} {sec * 1e3:>9.2f} {1 / max(sec, 1e-9):>9.0f}", flush=True)
    diffs = []

    def run(fmt: int | None = None, where: str | None = None, by: str | None = None) -> float:
        # fresh cache (every slice written), in the default temporary folder or under ``where``
        with tempfile.TemporaryDirectory(dir=where) as cache, store_format(fmt), writer(by):
            t = time.perf_counter()
            fv = extract_features(vol, backbone=backbone, prep=prep, batch_size=args.batch_size,
                                  cache_dir=cache)
            took = time.perf_counter() - t  # without deleting the cache afterwards
            stored = np.asarray(fv.data[: len(first)], dtype=np.float32)
            diffs.append(float(np.abs(stored - first.astype(np.float32)).max()))
            return took

    if args.repeats > 1:
        run()  # warm-up (imports, allocator, zarr)
    # Variants run interleaved, so load from other processes hits all of them alike.
    variants: dict[str, tuple] = {"": (None, None, None)}
    if args.compare_format is not None:
        variants[f"store format {args.compare_format}"] = (args.compare_format, None, None)
    if args.also_cache_in:
        variants[f"cache in {args.also_cache_in}"] = (None, args.also_cache_in, None)
    if chunk_writer(behind) != "zarr":
        variants["chunks written by zarr"] = (None, None, "zarr")
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, ts in times.items():
            ts.append(run(*variants[name]))
    for name, ts in times.items():
        if len(times) > 1:
            name = name or f"as configured (chunks by {chunk_writer(behind)}, " \
                            f"cache in {tempfile.gettempdir()})"
            print(f"end to end, {name}: best {args.slices / min(ts):.0f} slices/s, "
                  f"median {args.slices / float(np.median(ts)):.0f}")
    best = min(times[""])
    # The stored first batch against the stage table's own forward of it: the threads, the copies and the
    # store must not change a value (a float16 step of bf16 nondeterminism at most).
    print(f"stored features vs a direct forward of the first batch: max abs difference {max(diffs):.3g}")
    print(f"end to end: extract_features into a fresh cache, best of {args.repeats}: {best:.2f} s; "
          f"load average {os.getloadavg()[0]:.2f} at end")
    if args.goal:
        rate = args.slices / best
        print(f"goal >= {args.goal:.0f} slices/s: {'met' if rate >= args.goal else 'NOT met'} ({rate:.0f})")
    print(f"pipeline {args.slices / best:.0f} slices/s")


if __name__ == "__main__":
    main()
