"""Extraction on a dask.distributed cluster of worker processes equals the local run, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from dinomed_napari.errors import ExtractionCancelled
from dinomed_napari.features.extract import extract_features
from dinomed_napari.io.load import load_volume
from dinomed_napari.io.volume import Volume
from dinomed_napari.preprocess import Preprocess
from dinomed_napari.samples import sample_path

PREP = Preprocess(window="percentile", resolution=32)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def ct() -> Volume:
    """7 axial slices of the real EM stack read as intensities (any real texture will do)."""
    vol = load_volume(sample_path("em"), modality="EM")
    return Volume(np.ascontiguousarray(vol.data[:7, 100:140, 100:148]), modality="EM", source="em crop")


def test_worker_processes_compute_the_local_features(ct, client, tmp_path):
    local = extract_features(ct, model="S", weights="random", prep=PREP, batch_size=2, device="cpu",
                             cache_dir=tmp_path / "local")
    pids = client.run(lambda: __import__("os").getpid())
    assert len(set(pids.values())) == 2 and __import__("os").getpid() not in pids.values()
    seen = []
    remote = extract_features(ct, model="S", weights="random", prep=PREP, batch_size=2, device="cpu",
                              cache_dir=tmp_path / "dask", scheduler=client,
                              progress=lambda d, t: seen.append(d))
    assert remote.key == local.key and seen[0] == 0 and seen[-1] == 7
    np.testing.assert_array_equal(np.asarray(remote.data), np.asarray(local.data))
    # Cancel keeps the batch that arrived; the rerun (here: locally) completes the same store.
    with pytest.raises(ExtractionCancelled, match=r"after [12] of 7 slices"):
        extract_features(ct, model="S", weights="random", prep=PREP, batch_size=2, device="cpu",
                         cache_dir=tmp_path / "c", scheduler=client, cancel=lambda: True)
    resumed = extract_features(ct, model="S", weights="random", prep=PREP, batch_size=2, device="cpu",
                               cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(np.asarray(resumed.data), np.asarray(local.data))


def test_a_cohort_runs_on_one_client(ct, client, tmp_path):
    from dinomed_napari.features.distributed import extract_cohort

    np.save(tmp_path / "b.npy", ct.data[::-1].copy())
    out = extract_cohort([ct, tmp_path / "b.npy"], client, model="S", weights="random", prep=PREP,
                         batch_size=4, device="cpu", cache_dir=tmp_path / "cache")
    assert [fv.n_slices for fv in out] == [7, 7] and out[0].key != out[1].key
    # Slice k of the reversed volume is slice 6 - k of the first one: same features.
    np.testing.assert_array_equal(np.asarray(out[1].data)[::-1], np.asarray(out[0].data))
