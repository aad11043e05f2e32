"""Cost of verifying a feature store (digest of every slice) against a plain read of the same store.

    .venv/bin/python benchmarks/bench_cache_verify.py [--slices 100] [--grid 32] [--dim 384]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from dinomed_napari.features.cache import FeatureStore


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--slices", type=int, default=100)
    p.add_argument("--grid", type=int, default=32, help="patch grid side (32 = 512 px input)")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    shape = (a.slices, a.grid, a.grid, a.dim)
    with tempfile.TemporaryDirectory() as d:
        store = FeatureStore(f"{d}/k.zarr", shape, {})
        feats = np.random.default_rng(0).normal(size=(8, *shape[1:])).astype(np.float16)
        for i in range(0, a.slices, 8):
            idx = np.arange(i, min(i + 8, a.slices))
            store.write(idx, feats[: len(idx)])
        ro = FeatureStore.peek(f"{d}/k.zarr", shape)
        best_read = best_verify = float("inf")
        for _ in range(a.repeats):
            t = time.perf_counter()
            for i in range(a.slices):
                np.asarray(ro.features[i])
            best_read = min(best_read, time.perf_counter() - t)
            t = time.perf_counter()
            assert ro.verify() == []
            best_verify = min(best_verify, time.perf_counter() - t)
    mb = np.prod(shape) * 2 / 2**20
    print(f"store {shape} float16 ({mb:.0f} MiB): read slice by slice {best_read:.3f} s, "
          f"verify {best_verify:.3f} s ({1e3 * best_verify / a.slices:.2f} ms/slice, "
          f"{best_verify / best_read:.2f}x a plain read)")


if __name__ == "__main__":
    main()
