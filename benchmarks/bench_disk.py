"""How fast can this file system take feature-cache chunks? The ceiling of any end-to-end extraction.

Writes ``--files`` files of one feature slice each (ViT-S at 512: 32 x 32 x 384 float16 = 768 KiB) into a
fresh folder under ``--dir`` with 1, 4 and 16 threads, then the same slices through a
:class:`~dinomed_napari.features.cache.FeatureStore` (chunks + digests + done mask) whose chunks
zarr-python or tensorstore writes; on a CUDA machine also from page-locked memory, where extraction's
features come from on a GPU (the writer stage took 0.6-0.9 ms per ViT-S slice there, this script's store
0.3-0.4). Prints ms per slice, MB/s and slices/s; asserts nothing. An extraction cannot store features
faster than this, however fast the network runs (ViT-S at 2,000 slices/s needs 1.6 GB/s). Example::

    .venv/bin/python benchmarks/bench_disk.py --dir /tmp
    .venv/bin/python benchmarks/bench_disk.py --dir /dev/shm --dim 768     # ViT-B slices, in RAM
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def write_files(folder: str, slices: np.ndarray, threads: int) -> float:
    """Seconds to write each slice to its own file (as zarr names chunks) on ``threads`` threads."""
    def put(i: int) -> None:
        with open(os.path.join(folder, f"c.{i}.0.0.0"), "wb") as fh:
            fh.write(slices[i % len(slices)].data)

    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, range(len(slices))))
    return time.perf_counter() - t


def write_store(folder: str, slices: np.ndarray, batch: int, by: str) -> float:
    """Seconds to write the slices through a feature store whose chunks ``by`` writes, ``batch`` slices
    per write (NaN when ``by`` is not installed)."""
    from bench_pipeline import writer  # this folder

    from dinomed_napari.features.cache import FeatureStore

    if by == "tensorstore" and importlib.util.find_spec("tensorstore") is None:
        return float("nan")
    with writer(by):
        store = FeatureStore(os.path.join(folder, "f.zarr"), slices.shape, {})
        store.write(np.arange(1), slices[:1])  # zarr's imports and first-use set-up are not the disk
        t = time.perf_counter()
        for a in range(0, len(slices), batch):
            store.write(np.arange(a, min(a + batch, len(slices))), slices[a : a + batch])
        return time.perf_counter() - t


def page_locked(slices: np.ndarray) -> np.ndarray | None:
    """A copy of ``slices`` in page-locked (CUDA pinned) host memory, or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    out = torch.empty(slices.shape, dtype=torch.float16, pin_memory=True).numpy()
    out[...] = slices
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default=tempfile.gettempdir(), help="file system to measure (a folder on it)")
    p.add_argument("--files", type=int, default=400)
    p.add_argument("--grid", type=int, default=32, help="patch grid side (512 / 16)")
    p.add_argument("--dim", type=int, default=384, help="feature channels (ViT-S 384, B 768, L 1024)")
    p.add_argument("--batch", type=int, default=64, help="slices per store write")
    args = p.parse_args(argv)

    rng = np.random.default_rng(0)
    slices = rng.standard_normal((args.files, args.grid, args.grid, args.dim)).astype(np.float16)
    mb = slices[0].nbytes / 1e6
    print(f"{args.files} slices of {mb:.2f} MB ({args.grid}x{args.grid}x{args.dim} float16) into {args.dir}; "
          f"{os.cpu_count()} CPUs")
    print(f"{'writer':<42} {'ms/slice':>9} {'MB/s':>8} {'slices/s':>9}")
    writers = [(f"plain files, {k} thread(s)", lambda d, k=k: write_files(d, slices, k)) for k in (1, 4, 16)]
    for by in ("zarr", "tensorstore"):
        writers.append((f"FeatureStore, {by}, batches of {args.batch}",
                        lambda d, by=by: write_store(d, slices, args.batch, by)))
    pinned = page_locked(slices)
    if pinned is not None:  # where extraction's features come from on a GPU (overlap.HostCopy)
        writers.append(("FeatureStore, tensorstore, page-locked source",
                        lambda d: write_store(d, pinned, args.batch, "tensorstore")))
    for name, fn in writers:
        folder = tempfile.mkdtemp(prefix="bench-disk-", dir=args.dir)
        try:
            sec = fn(folder) / args.files
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print(f"{name:<42} {sec * 1e3:>9.3f} {mb / sec:>8.0f} {1 / sec:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
