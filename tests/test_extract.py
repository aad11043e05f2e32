"""Slice-by-slice extraction: shapes on every axis, cache hits, invalidation, cancel/resume, order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinomed_napari.errors import ExtractionCancelled, VolumeError, WeightsError
from dinomed_napari.features.batches import batch_order
from dinomed_napari.features.extract import extract_features
from dinomed_napari.io.load import load_volume
from dinomed_napari.io.volume import Volume
from dinomed_napari.models import Backbone, load_backbone
from dinomed_napari.preprocess import Preprocess, input_size, intensity_to_unit, to_network_batch
from dinomed_napari.samples import sample_path

PREP = Preprocess(window="soft_tissue", resolution=64)


@pytest.fixture(scope="module")
def ct() -> Volume:
    """A (6, 40, 48) crop of the real abdominal CT (TotalSegmentator example), HU, 3 mm voxels."""
    vol = load_volume(sample_path("ct_organs"))
    z, y, x = (s // 2 for s in vol.shape)
    crop = np.ascontiguousarray(vol.data[z - 3 : z + 3, y - 20 : y + 20, x - 24 : x + 24])
    return Volume(crop, spacing=vol.spacing, modality="CT", units="HU", source="ct_organs crop")


@pytest.fixture(scope="module")
def cube() -> Volume:
    """A 16^3 crop of the same CT: every axis gives the same slice count and input size."""
    vol = load_volume(sample_path("ct_organs"))
    z, y, x = (s // 2 for s in vol.shape)
    crop = np.ascontiguousarray(vol.data[z - 8 : z + 8, y - 8 : y + 8, x - 8 : x + 8])
    return Volume(crop, spacing=(3.0, 3.0, 3.0), modality="CT", units="HU", source="ct_organs cube")


@pytest.fixture(scope="module")
def vits() -> Backbone:
    return load_backbone("S", "random", device="cpu")


class Counter:
    """Wraps ``backbone.patch_features`` to count forward passes and the slices they saw."""

    def __init__(self, backbone: Backbone, monkeypatch):
        self.calls, self.slices = 0, 0
        inner = backbone.patch_features

        def counted(x):
            self.calls += 1
            self.slices += int(x.shape[0])
            return inner(x)

        monkeypatch.setattr(backbone, "patch_features", counted)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_shape_and_values_on_every_axis(ct, vits, tmp_path, axis):
    fv = extract_features(ct, backbone=vits, axis=axis, prep=PREP, cache_dir=tmp_path, batch_size=4)
    plane = [s for i, s in enumerate(ct.shape) if i != axis]
    rh, rw = input_size(tuple(plane), resolution=64)
    assert fv.data.shape == (ct.shape[axis], rh // 16, rw // 16, 384)
    assert fv.data.dtype == np.float16
    assert (fv.axis, fv.volume_shape, fv.weights, fv.resolution) == (axis, ct.shape, "random", 64)
    assert fv.model == "vit_small_patch16_dinov3" and len(fv.key) == 64
    assert fv.extra["input_size"] == (rh, rw) and fv.extra["device"] == "cpu"
    # The stored features are the backbone's output on that very slice (float16 rounding only).
    k = ct.shape[axis] // 2
    one = np.take(intensity_to_unit(ct, PREP), [k], axis=axis)
    ref = vits.patch_features(to_network_batch(np.moveaxis(one, axis, 0), (rh, rw)))[0].numpy()
    np.testing.assert_allclose(fv.slice(k), ref, rtol=2e-3, atol=2e-3)
    assert np.std(fv.slice(k)) > 0.1


def test_cache_hit_runs_no_forward_and_loads_no_model(ct, vits, tmp_path, monkeypatch):
    count = Counter(vits, monkeypatch)
    a = extract_features(ct, backbone=vits, prep=PREP, cache_dir=tmp_path, batch_size=4)
    assert (count.calls, count.slices) == (2, 6)
    b = extract_features(ct, backbone=vits, prep=PREP, cache_dir=tmp_path, batch_size=2)
    assert count.calls == 2 and b.key == a.key
    np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))

    # By name + weights, a cache hit must not even build the network.
    def no_build(*args, **kwargs):
        raise AssertionError("load_backbone called on a cache hit")

    monkeypatch.setattr("dinomed_napari.models.load_backbone", no_build)
    seen = []
    c = extract_features(ct, model="S", weights="random", prep=PREP, cache_dir=tmp_path, progress=lambda d, t:
                         seen.append((d, t)))
    assert c.key == a.key and c.weights == "random" and seen == [(6, 6)]


def test_every_parameter_change_recomputes(ct, vits, tmp_path, monkeypatch):
    count = Counter(vits, monkeypatch)
    base = extract_features(ct, backbone=vits, prep=PREP, cache_dir=tmp_path)
    edited = ct.data.copy()
    edited[0, 0, 0] += 1
    layered = Backbone(vits.model, vits.spec, "random", vits.device, vits.dtype, layers=(3, 11))
    count_layered = Counter(layered, monkeypatch)
    variants = {
        "content": dict(volume=Volume(edited, ct.spacing, modality="CT")),
        "spacing": dict(volume=Volume(ct.data, (3.0, 3.0, 1.5), modality="CT")),
        "resolution": dict(prep=Preprocess(window="soft_tissue", resolution=32)),
        "window": dict(prep=Preprocess(window="lung", resolution=64)),
        "custom window": dict(prep=Preprocess(level=50, width=300, resolution=64)),
        "axis": dict(axis=1),
        "layers": dict(backbone=layered),
    }
    keys = {base.key}
    for name, change in variants.items():
        args = dict(volume=ct, backbone=vits, prep=PREP, cache_dir=tmp_path) | change
        before = count.calls
        fv = extract_features(args.pop("volume"), **args)
        assert fv.key not in keys, name
        keys.add(fv.key)
        if name != "layers":
            assert count.calls > before, f"{name}: no forward pass, stale features returned"
    assert count_layered.calls == 2 and fv.dim == 768 and fv.layers == (3, 11)


def test_axis_alone_changes_the_key(cube, vits, tmp_path):
    prep = Preprocess(window="soft_tissue", resolution=32)
    fvs = [extract_features(cube, backbone=vits, axis=a, prep=prep, cache_dir=tmp_path) for a in (0, 1, 2)]
    assert {fv.data.shape for fv in fvs} == {(16, 2, 2, 384)}  # same shape, so only the axis tells them apart
    assert len({fv.key for fv in fvs}) == 3
    assert not np.array_equal(np.asarray(fvs[0].data), np.asarray(fvs[1].data))


def test_model_and_weights_change_the_key(ct, vits, tmp_path):
    base = extract_features(ct, backbone=vits, prep=PREP, cache_dir=tmp_path)
    splus = load_backbone("S+", "random", device="cpu")
    other = extract_features(ct, backbone=splus, prep=PREP, cache_dir=tmp_path)
    assert other.key != base.key and other.model == "vit_small_plus_patch16_dinov3"
    # Same architecture, other weights (a file): another key, other features.
    path = tmp_path / "perturbed.pth"
    state = {k: v + 0.01 * torch.randn_like(v) for k, v in vits.model.state_dict().items()}
    torch.save(state, path)
    filed = extract_features(ct, model="S", weights=str(path), prep=PREP, cache_dir=tmp_path, device="cpu")
    assert filed.weights.startswith("file:perturbed.pth#") and filed.key not in (base.key, other.key)
    assert not np.array_equal(np.asarray(filed.data), np.asarray(base.data))


@pytest.mark.parametrize("pipelined", [False, True], ids=["cpu-order", "gpu-pipeline"])
def test_cancel_then_resume_equals_uninterrupted(ct, vits, tmp_path, monkeypatch, pipelined):
    # The GPU code path (batch k+1 launched before k is stored) runs here on the CPU too.
    monkeypatch.setattr("dinomed_napari.features.batches.pipelined", lambda device: pipelined)
    full = extract_features(ct, backbone=vits, prep=PREP, cache_dir=tmp_path / "a", batch_size=2)
    count = Counter(vits, monkeypatch)
    seen = []
    with pytest.raises(ExtractionCancelled, match=r"after 2 of 6 slices.*rerun to resume"):
        extract_features(ct, backbone=vits, prep=PREP, cache_dir=tmp_path / "b", batch_size=2,
                         cancel=lambda: count.calls >= 1, progress=lambda d, t: seen.append((d, t)))
    assert (count.calls, count.slices) == (1, 2) and seen == [(0, 6), (2, 6)]
    resumed = extract_features(ct, backbone=vits, prep=PREP, cache_dir=tmp_path / "b", batch_size=2)
    assert (count.calls, count.slices) == (3, 6), "the rerun must compute only the 4 missing slices"
    assert resumed.key == full.key
    np.testing.assert_array_equal(np.asarray(resumed.data), np.asarray(full.data))


@pytest.mark.parametrize("pipelined", [False, True], ids=["cpu-order", "gpu-pipeline"])
def test_a_crash_keeps_finished_slices(ct, vits, tmp_path, monkeypatch, pipelined):
    monkeypatch.setattr("dinomed_napari.features.batches.pipelined", lambda device: pipelined)
    count = Counter(vits, monkeypatch)
    inner = vits.patch_features

    def dies_on_third_batch(x):
        if count.calls == 2:
            raise RuntimeError("out of memory (simulated)")
        return inner(x)

    monkeypatch.setattr(vits, "patch_features", dies_on_third_batch)
    with pytest.raises(RuntimeError, match="simulated"):
        extract_features(ct, backbone=vits, prep=PREP, cache_dir=tmp_path, batch_size=2)
    import zarr

    (store,) = tmp_path.glob("*.zarr")
    np.testing.assert_array_equal(zarr.open_group(store)["done"][:], [1, 1, 1, 1, 0, 0])
    monkeypatch.setattr(vits, "patch_features", inner)
    extract_features(ct, backbone=vits, prep=PREP, cache_dir=tmp_path, batch_size=2)
    assert count.slices == 6, "the rerun must compute only the 2 slices the crash lost"


def test_two_concurrent_requests_compute_once(ct, vits, tmp_path, monkeypatch):
    import threading

    count = Counter(vits, monkeypatch)
    results = []

    def job():
        results.append(extract_features(ct, backbone=vits, prep=PREP, cache_dir=tmp_path, batch_size=2))

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The store lock makes the second request wait, then find every slice done: one computation only.
    assert len(results) == 2 and count.slices == 6 and results[0].key == results[1].key
    np.testing.assert_array_equal(np.asarray(results[0].data), np.asarray(results[1].data))


def test_first_slice_is_computed_first(ct, vits, tmp_path, monkeypatch):
    count = Counter(vits, monkeypatch)
    with pytest.raises(ExtractionCancelled):
        extract_features(ct, backbone=vits, prep=PREP, cache_dir=tmp_path, batch_size=2, first=4,
                         cancel=lambda: count.calls >= 1)
    import zarr

    (store,) = tmp_path.glob("*.zarr")
    np.testing.assert_array_equal(zarr.open_group(store)["done"][:], [0, 0, 0, 0, 1, 1])


def test_batch_order_puts_the_batch_of_first_in_front():
    order = [b.tolist() for b in batch_order(np.arange(7), 3, first=5)]
    assert order == [[3, 4, 5], [0, 1, 2], [6]]
    assert [b.tolist() for b in batch_order(np.array([1, 2, 5]), 2, first=0)] == [[1, 2], [5]]
    # Large batches (a GPU's): the current slice comes first in a small batch, then the rest in large ones.
    order = [b.tolist() for b in batch_order(np.arange(20), 8, first=10)]
    assert order[0] == [10, 11, 12, 13] and [len(b) for b in order] == [4, 8, 8]
    assert sorted(sum(order, [])) == list(range(20))
    assert batch_order(np.arange(20), 8, first=18)[0].tolist() == [16, 17, 18, 19]  # clipped at the end


def test_in_memory_mode_matches_cache_and_writes_nothing(ct, vits, tmp_path, monkeypatch):
    monkeypatch.setenv("DINOMED_CACHE", str(tmp_path / "default"))
    mem = extract_features(ct, backbone=vits, axis=2, prep=PREP, cache_dir=False)
    assert isinstance(mem.data, np.ndarray) and not (tmp_path / "default").exists()
    disk = extract_features(ct, backbone=vits, axis=2, prep=PREP)  # default cache dir from the env
    assert len(list((tmp_path / "default").glob("*.zarr"))) == 1 and disk.key == mem.key
    np.testing.assert_array_equal(np.asarray(disk.data), mem.data)


def test_bad_requests_give_clear_errors(ct, vits, tmp_path):
    with pytest.raises(WeightsError, match=r"no weights chosen.*'hub'.*'random'"):
        extract_features(ct, cache_dir=tmp_path)
    with pytest.raises(VolumeError, match="axis must be 0, 1 or 2"):
        extract_features(ct, backbone=vits, axis=3, cache_dir=tmp_path)
    with pytest.raises(VolumeError, match="2D image"):
        extract_features(ct.data[0], backbone=vits, cache_dir=tmp_path)
    one = Volume(np.asarray(ct.data)[:1], spacing=ct.spacing, source="one.nii.gz")  # a single slice
    for axis in (1, 2):  # cut across its slice: planes one pixel thick (the filters failed on them)
        thin = rf"axis {axis}: the planes of the one.nii.gz volume of shape \(1, \d+, \d+\) along it are 1 x "
        with pytest.raises(VolumeError, match=thin + r"\d+ pixels; expected at least 2 x 2"):
            extract_features(one, backbone=vits, axis=axis, cache_dir=tmp_path)
    assert extract_features(one, backbone=vits, axis=0, cache_dir=False).data.shape[0] == 1
    with pytest.raises(WeightsError, match="not found"):
        extract_features(ct, weights=str(tmp_path / "nope.pth"), cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"layers=\(3,\), but the backbone given computes layers=None"):
        extract_features(ct, backbone=vits, layers=[3], cache_dir=tmp_path)


def test_triplanar_builds_the_backbone_once_and_reports_total_progress(ct, tmp_path, monkeypatch):
    import dinomed_napari.models as models
    from dinomed_napari.features.extract import shared_backbone
    from dinomed_napari.features.triplanar import extract_triplanar

    shared_backbone.cache_clear()
    built = []
    real = models.load_backbone
    monkeypatch.setattr(models, "load_backbone", lambda *a, **k: built.append(a) or real(*a, **k))
    seen = []
    out = extract_triplanar(ct, weights="random", prep=PREP, cache_dir=tmp_path, batch_size=16, device="cpu",
                            progress=lambda d, t: seen.append((d, t)), first=(1, 2, 3))
    assert len(built) == 1 and sorted(out) == [0, 1, 2]
    for axis, fv in out.items():
        assert fv.axis == axis and fv.n_slices == ct.shape[axis] and fv.weights == "random"
    total = sum(ct.shape)
    assert seen[-1] == (total, total) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def _cli(argv, capsys):
    from dinomed_napari.cli.main import main

    rc = main(["extract", *map(str, argv)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_writes_a_store_and_names_the_weights(ct, tmp_path, capsys):
    import zarr

    np.save(tmp_path / "ct.npy", ct.data)
    out = tmp_path / "features.zarr"
    args = [tmp_path / "ct.npy", "--model", "S", "--weights", "random", "--axis", "2", "--resolution", "32",
            "--window", "soft_tissue", "--layers", "3,11", "--cache-dir", tmp_path / "c", "--device", "cpu"]
    rc, stdout, _ = _cli([*args, "--out", out], capsys)
    assert rc == 0 and "[weights: random]" in stdout and "cache key" in stdout
    g = zarr.open_group(out, mode="r")
    assert g["features"].shape == (48, 1, 2, 768) and g["done"][:].all()
    assert g.attrs["weights"] == "random" and g.attrs["layers"] == [3, 11]
    rc, _, err = _cli([*args, "--out", out], capsys)
    assert rc == 2 and "--overwrite" in err


def test_cli_without_weights_says_how_to_choose(tmp_path, capsys):
    rc, _, err = _cli([tmp_path / "missing.nii.gz"], capsys)
    assert rc == 2 and "no weights chosen" in err and "--weights hub|hub:TAG|PATH|random" in err


def test_cli_ctrl_c_cancels_cleanly_and_the_rerun_resumes(ct, tmp_path, capsys, ctrl_c_at):
    np.save(tmp_path / "ct.npy", ct.data)
    args = [tmp_path / "ct.npy", "--weights", "random", "--resolution", "32", "--batch-size", "2",
            "--cache-dir", tmp_path / "cache", "--device", "cpu"]
    ctrl_c_at(2)  # mid-volume
    rc, _, err = _cli(args, capsys)
    assert rc == 130 and "after 2 of 6 slices" in err and "rerun to resume" in err
    ctrl_c_at.disarm()
    rc, stdout, _ = _cli(args, capsys)
    assert rc == 0 and "(6, 2, 2, 384)" in stdout
