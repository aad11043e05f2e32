"""Extraction at real sizes: tiled planes, lazy volumes, the overlapped pipeline, fixed batch shapes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from dinomed_napari.features.batches import forward
from dinomed_napari.features.extract import extract_features
from dinomed_napari.features.tiles import TilePlan, owned_ranges, tile_starts
from dinomed_napari.io.lazy import as_dask, read_block, strided_sample, volume_digest
from dinomed_napari.io.load import load_volume
from dinomed_napari.io.volume import Volume
from dinomed_napari.io.zarr_io import zarr_levels
from dinomed_napari.live.display import display_sample
from dinomed_napari.models.standin import StandInBackbone
from dinomed_napari.preprocess import Preprocess, device_batch, host_batch, normalise, to_network_batch
from dinomed_napari.samples import sample_path


def _ct(shape=(3, 192, 320), seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    data = rng.normal(40, 120, shape).astype(np.int16)
    return Volume(data, spacing=(2.0, 0.7, 0.7), modality="CT", units="HU", source="synthetic")


@pytest.mark.parametrize("grid,tile,halo", [(8, 4, 1), (256, 32, 4), (33, 32, 4), (5, 32, 4), (100, 10, 0)])
def test_tiles_cover_the_grid_and_keep_a_halo(grid, tile, halo):
    starts = tile_starts(grid, tile, halo)
    owned = owned_ranges(starts, tile, grid)
    t = min(tile, grid)
    assert starts[0] == 0 and starts[-1] + t == grid
    assert owned[0][0] == 0 and owned[-1][1] == grid
    assert all(a[1] == b[0] for a, b in zip(owned, owned[1:], strict=False))  # a partition, in order
    for s, (lo, hi) in zip(starts, owned, strict=True):
        assert s <= lo < hi <= s + t
        # At least `halo` patches of context inside the tile, except at the plane's own border.
        assert lo == 0 or lo - s >= halo
        assert hi == grid or s + t - hi >= halo


def test_cut_then_stitch_is_the_identity_on_the_patch_grid():
    plan = TilePlan.build((192, 320), tile_px=64, halo_px=16)
    x = torch.arange(2 * 192 * 320, dtype=torch.float32).view(2, 1, 192, 320)
    tiles = plan.cut(x)
    assert tiles.shape == (2 * plan.n_tiles, 1, 64, 64)
    pooled = torch.nn.functional.avg_pool2d(tiles, 16).permute(0, 2, 3, 1)  # (n, 4, 4, 1)
    per_plane = pooled.view(2, plan.n_tiles, 4, 4, 1)
    whole = torch.nn.functional.avg_pool2d(x, 16).permute(0, 2, 3, 1)
    for b in range(2):
        assert torch.equal(plan.stitch(per_plane[b]), whole[b])
        np.testing.assert_array_equal(plan.stitch(per_plane[b].numpy()), whole[b].numpy())


def test_tiled_extraction_of_a_local_feature_equals_the_untiled_one(tmp_path):
    # "pool" features depend on the patch's own pixels only, so tiling must not change a single value.
    vol = _ct()
    pool = StandInBackbone("S", "pool")
    tiled = extract_features(vol, backbone=pool, prep=Preprocess(window="soft_tissue", resolution=64,
                                                                 tiling="tile", halo=16), cache_dir=tmp_path)
    whole = extract_features(vol, backbone=pool, prep=Preprocess(window="soft_tissue", resolution=320,
                                                                 tiling="shrink"), cache_dir=tmp_path)
    assert tiled.data.shape == whole.data.shape == (3, 12, 20, 384)
    assert tiled.extra["tiling"] == {"tile": 64, "halo": 16} and whole.extra["tiling"] is None
    assert tiled.key != whole.key
    np.testing.assert_array_equal(np.asarray(tiled.data), np.asarray(whole.data))
    assert np.asarray(tiled.data).std() > 0.1


def test_a_4096_plane_is_tiled_automatically_to_a_256_grid():
    rng = np.random.default_rng(1)
    vol = Volume(rng.integers(0, 255, (1, 4096, 4096), dtype=np.uint8), modality="EM")
    prep = Preprocess(window="percentile", resolution=512)
    fv = extract_features(vol, backbone=StandInBackbone("S", "pool"), prep=prep, cache_dir=False,
                          batch_size=16)
    assert fv.data.shape == (1, 256, 256, 384) and fv.extra["tiling"] == {"tile": 512, "halo": 64}
    # Patch (i, j) is the mean of its own 16 x 16 pixels, wherever the tile seams fall.
    unit = fv.data[0, :, :, 0].astype(np.float32) * 0.229 + 0.485
    from dinomed_napari.preprocess import intensity_mapper

    ref = intensity_mapper(vol, prep)(vol.data[0]).reshape(256, 16, 256, 16).mean(axis=(1, 3))
    np.testing.assert_allclose(unit, ref, atol=2e-3)


def test_tiled_vit_features_agree_with_untiled_away_from_borders():
    from dinomed_napari.models import load_backbone

    vits = load_backbone("S", "random", device="cpu")
    vol = load_volume(sample_path("lung_ct"), modality="CT")  # real chest CT, 160 x 160 planes
    z = vol.shape[0] // 2
    crop = Volume(np.ascontiguousarray(vol.data[z : z + 1, 16:144, 16:144]), modality="CT")
    tiled = extract_features(crop, backbone=vits, cache_dir=False,
                             prep=Preprocess(window="soft_tissue", resolution=64, tiling="tile", halo=16))
    whole = extract_features(crop, backbone=vits, cache_dir=False,
                             prep=Preprocess(window="soft_tissue", resolution=128, tiling="shrink"))
    a, b = tiled.slice(0), whole.slice(0)
    assert a.shape == b.shape == (8, 8, 384)

    def cos(u, v):
        return (u * v).sum(-1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)

    inner = cos(a, b)[1:-1, 1:-1]
    shifted = cos(a[1:], b[:-1]).mean()  # the same features one patch off: what "not agreeing" looks like
    assert inner.min() > 0.98 and inner.mean() > shifted + 0.1


def test_lazy_zarr_and_tiff_volumes_extract_like_loaded_ones(tmp_path):
    import tifffile
    import zarr

    vol = _ct((5, 48, 64))
    arr = zarr.create_array(str(tmp_path / "v.zarr"), shape=vol.shape, dtype="int16", chunks=(1, 48, 64))
    arr[...] = vol.data
    tifffile.imwrite(tmp_path / "v.tif", vol.data)
    tifffile.imwrite(tmp_path / "c.tif", vol.data, compression="zlib")
    lazy_z = load_volume(tmp_path / "v.zarr", modality="CT", lazy=True)
    lazy_t = load_volume(tmp_path / "v.tif", modality="CT", lazy=True)
    lazy_c = load_volume(tmp_path / "c.tif", modality="CT", lazy=True)
    assert type(lazy_z.data).__module__.startswith("dask") and lazy_z.meta["lazy"]
    assert isinstance(lazy_t.data, np.memmap) and type(lazy_c.data).__module__.startswith("dask")
    assert not load_volume(tmp_path / "v.zarr", modality="CT").meta["lazy"]  # small: loaded (auto)
    prep = Preprocess(window="percentile", resolution=32)
    pool = StandInBackbone("S", "pool")
    ref = extract_features(Volume(vol.data, modality="CT"), backbone=pool, prep=prep,
                           cache_dir=tmp_path / "c")
    for lazy in (lazy_z, lazy_t, lazy_c):
        fv = extract_features(Volume(lazy.data, modality="CT"), backbone=pool, prep=prep, axis=0,
                              cache_dir=tmp_path / "c")
        assert fv.key == ref.key  # same content digest, read slab by slab
        np.testing.assert_array_equal(np.asarray(fv.data), np.asarray(ref.data))


def test_ome_zarr_opens_lazily_at_full_resolution(tmp_path):
    import zarr

    data = _ct((4, 32, 48)).data
    group = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    group.create_array("0", shape=data.shape, dtype=data.dtype, chunks=(1, 32, 48))[...] = data
    group.create_array("1", shape=(4, 16, 24), dtype=data.dtype)[...] = data[:, ::2, ::2]
    group.attrs["multiscales"] = [{"datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [2.0, 0.3, 0.4]}]},
        {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [2.0, 0.6, 0.8]}]}]}]
    vol = load_volume(tmp_path / "ome.zarr", lazy=True)
    assert vol.meta["lazy"] and vol.shape == (4, 32, 48) and vol.spacing == (2.0, 0.3, 0.4)
    assert vol.data.chunksize == (1, 32, 48)  # one dask chunk per stored chunk: reads stay per slice
    np.testing.assert_array_equal(read_block(vol.data, [2, 3], axis=0), data[2:4])
    # The cache key's digest reads the lazy volume slab by slab and agrees with the array in memory.
    assert volume_digest(vol.data, vol.spacing) == volume_digest(data, vol.spacing)
    # Its pyramid, for a viewer: full resolution first; a level larger than the one before is no pyramid.
    levels = zarr_levels(vol)
    assert vol.meta["levels"] == ["0", "1"] and [lv.shape for lv in levels] == [(4, 32, 48), (4, 16, 24)]
    np.testing.assert_array_equal(np.asarray(levels[1]), data[:, ::2, ::2])
    assert "levels" not in load_volume(tmp_path / "ome.zarr", lazy=False).meta  # in memory: one level
    group.create_array("2", shape=(4, 20, 30), dtype=data.dtype)
    group.attrs["multiscales"] = [{"datasets": [*group.attrs["multiscales"][0]["datasets"], {"path": "2"}]}]
    assert zarr_levels(load_volume(tmp_path / "ome.zarr", lazy=True)) is None


def test_lazy_helpers_match_numpy_exactly():
    data = np.random.default_rng(2).normal(size=(7, 33, 21)).astype(np.float32)
    view = data.transpose(2, 1, 0)  # not contiguous, like a NIfTI
    for arr in (data, view):
        for step in (1, 5, 97):
            np.testing.assert_array_equal(strided_sample(arr, step), arr.ravel()[::step])
    np.testing.assert_array_equal(read_block(data, [1, 2, 3], 1), np.moveaxis(data[:, 1:4], 1, 0))
    np.testing.assert_array_equal(read_block(data, [4, 0], 2), np.moveaxis(data[:, :, [4, 0]], 2, 0))
    import dask.array as da

    lazy = da.from_array(data, chunks=(1, 33, 21))
    assert as_dask(lazy) is lazy  # a dask array (it has ``chunks`` and ``store``) is not re-wrapped
    sample = display_sample(lazy)  # what a viewer reads to pick the window: every (7 // 16 = 1) plane
    assert isinstance(sample, np.ndarray)
    np.testing.assert_array_equal(sample, data)
    big = da.zeros((64, 8, 8), chunks=(1, 8, 8), dtype=np.int16)
    assert display_sample(big).shape == (16, 8, 8)  # planes 0, 4, ... 60 only


def test_device_preprocessing_equals_host_preprocessing():
    unit = np.random.default_rng(3).random((3, 40, 56), dtype=np.float32)
    ref = to_network_batch(unit, (64, 96))
    assert torch.equal(device_batch(host_batch(unit, "cpu"), (64, 96), device="cpu"), ref)  # bit-identical
    half = device_batch(host_batch(unit, "cpu", half=True), (64, 96), device="cpu")
    assert (half - ref).abs().max() < 2.5e-4 / 0.224  # the float16 transfer GPUs use: unit error / std
    assert torch.equal(normalise(torch.from_numpy(unit)[:, None]), to_network_batch(unit, (40, 56)))


def test_pipelined_extraction_equals_the_cpu_order_within_float16_transfer(tmp_path, monkeypatch):
    vol = _ct((9, 48, 64))
    prep = Preprocess(window="soft_tissue", resolution=64)
    pool = StandInBackbone("S", "pool")
    cpu = extract_features(vol, backbone=pool, prep=prep, cache_dir=tmp_path / "a", batch_size=2)
    monkeypatch.setattr("dinomed_napari.features.batches.pipelined", lambda device: True)
    seen, batches = [], []
    gpu = extract_features(vol, backbone=pool, prep=prep, cache_dir=tmp_path / "b", batch_size=2, first=7,
                           progress=lambda d, t: seen.append(d),
                           on_batch=lambda i, f: batches.append(list(i)))
    assert gpu.key == cpu.key and seen[0] == 0 and seen[-1] == 9 and seen == sorted(seen)
    assert batches[0] == [6, 7] and sorted(sum(batches, [])) == list(range(9))
    np.testing.assert_allclose(np.asarray(gpu.data), np.asarray(cpu.data), atol=2e-3)


@pytest.mark.parametrize("window", ["soft_tissue", "ct3", "percentile"])
def test_batches_windowed_slice_by_slice_into_a_reused_buffer_equal_whole_batches(window):
    from dinomed_napari.features.batches import batch_steps
    from dinomed_napari.preprocess import intensity_mapper

    vol = _ct((7, 48, 64))
    prep = Preprocess(window=window, resolution=64)
    to_unit = intensity_mapper(vol, prep)
    prepare, _ = batch_steps(vol, prep, StandInBackbone("S", "noise"), 0, (48, 64), 3)  # float16 host path
    first, second, last = prepare(np.arange(3)), prepare(np.arange(3, 6)), prepare(np.array([6]))
    for host, idx in [(first, range(3)), (second, range(3, 6)), (last, [6])]:  # earlier ones intact
        assert torch.equal(host, host_batch(to_unit(vol.data[list(idx)]), "cpu", half=True))


class _Compiled(StandInBackbone):
    compiled = "inductor"

    def __init__(self):
        super().__init__("S", "pool")
        self.shapes = []

    def patch_features(self, x):
        self.shapes.append(int(x.shape[0]))
        return super().patch_features(x)


def test_prefetcher_runs_ahead_on_several_threads_and_yields_in_order():
    import threading
    import time

    from dinomed_napari.features.overlap import Prefetcher

    running, most, lock = [0], [0], threading.Lock()

    def slow(k):  # early items take longest: a pool that yielded as they finish would reorder them
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.03 if k < 3 else 0.001)
        with lock:
            running[0] -= 1
        return k * k

    out = [(k, r) for k, r in Prefetcher(slow, range(8), ahead=3)]
    assert out == [(k, k * k) for k in range(8)] and most[0] == 3
    p = Prefetcher(slow, range(8), ahead=2)
    next(iter(p))
    p.close()  # the batches not started are dropped
    assert p.pool._shutdown


def test_store_writer_writes_waiting_batches_together_without_concatenating():
    import threading
    import time

    from dinomed_napari.features.overlap import StoreWriter

    calls, gate = [], threading.Event()

    class Store:
        def write_batches(self, batches):
            calls.append(batches)
            gate.wait(10)  # hold the first batch until two more are queued

    seen = []
    writer = StoreWriter(Store(), lambda idx, feats: seen.append(int(idx[0])), depth=2)
    feats = [np.full((1, 1, 1, 2), k, np.float16) for k in range(3)]
    writer.submit(np.array([0]), feats[0])
    while not calls:
        time.sleep(0.001)
    writer.submit(np.array([1]), feats[1])
    writer.submit(np.array([2]), feats[2])
    gate.set()
    writer.close()
    assert [len(c) for c in calls] == [1, 2] and seen == [0, 1, 2]
    assert calls[1][0][1] is feats[1] and calls[1][1][1] is feats[2]  # the batches themselves, no copy


_MMAPPED_AFTER_REUSE = """
import ctypes, sys
import numpy as np
from dinomed_napari.features.overlap import return_large_buffers

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks "
                "fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
done = return_large_buffers() if sys.argv[1] == "set" else None
a = np.ones(6 << 20, np.uint8)  # 6 MiB: mmapped, and freeing it raises glibc's dynamic threshold
del a
before = libc.mallinfo2().hblks
b = np.ones(6 << 20, np.uint8)
print(done, libc.mallinfo2().hblks - before)
"""


def _glibc() -> tuple[int, ...]:
    """(major, minor) of the C library when it is glibc, else ()."""
    try:
        name, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").split()
    except (AttributeError, ValueError):  # no confstr, an unknown name, or not "glibc X.Y"
        return ()
    return tuple(int(v) for v in version.split(".")[:2]) if name == "glibc" else ()


@pytest.mark.skipif(_glibc() < (2, 33), reason="glibc >= 2.33 only (mallopt, mallinfo2)")
@pytest.mark.parametrize("how", ["set", "default", "env"])
def test_large_buffers_go_back_to_the_system_when_freed(how):
    # Without glibc's MALLOC_* tunables (dask sets MALLOC_TRIM_THRESHOLD_, which also fixes the threshold).
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    if how == "env":  # the user's own setting is left alone
        env["MALLOC_MMAP_THRESHOLD_"] = str(16 << 20)
    out = subprocess.run([sys.executable, "-c", _MMAPPED_AFTER_REUSE, "set" if how != "default" else "no"],
                         env=env, capture_output=True, text=True, check=True).stdout.split()
    # mmapped again (given back when freed) only with the fixed threshold; glibc's default reuses its heap
    assert out == {"set": ["True", "1"], "default": ["None", "0"], "env": ["False", "0"]}[how]


def test_compiled_backbones_always_see_the_same_batch_shape():
    vol = _ct((7, 32, 32))
    comp = _Compiled()
    fv = extract_features(vol, backbone=comp, prep=Preprocess(window="soft_tissue", resolution=32),
                          cache_dir=False, batch_size=3)
    assert comp.shapes == [3, 3, 3] and fv.data.shape == (7, 2, 2, 384)
    ref = extract_features(vol, backbone=StandInBackbone("S", "pool"),
                           prep=Preprocess(window="soft_tissue", resolution=32), cache_dir=False)
    np.testing.assert_array_equal(fv.data, ref.data)
    x = torch.ones(2, 3, 16, 16)
    assert forward(comp, x, 4).shape == (2, 1, 1, 384) and comp.shapes[-1] == 4


def test_bad_tiling_settings_are_refused():
    with pytest.raises(ValueError, match="unknown tiling 'tiles'"):
        Preprocess(tiling="tiles")
    with pytest.raises(ValueError, match=r"halo must be a multiple of 16.*2 \* halo < resolution \(64\)"):
        Preprocess(resolution=64, halo=32)


def test_the_viewers_first_slice_is_shown_before_the_store_is_opened(tmp_path):
    """One slice per pass (the viewer on a CPU): the current slice reaches ``on_batch`` before any feature
    store or lock exists on disk, is then stored with the others, and is computed once."""
    vol = _ct((6, 48, 64))
    prep = Preprocess(window="soft_tissue", resolution=64)
    pool = StandInBackbone("S", "pool")
    ref = extract_features(vol, backbone=pool, prep=prep, cache_dir=False, batch_size=1)
    forward, passes = pool.patch_features, []
    pool.patch_features = lambda x: (passes.append(x.shape[0]), forward(x))[1]
    calls, disk_at_first, seen = [], [], []

    def on_batch(indices, feats):
        if not calls:
            disk_at_first.append(sorted(p.name for p in tmp_path.iterdir()))
        calls.append((list(indices), np.array(feats)))

    fv = extract_features(vol, backbone=pool, prep=prep, cache_dir=tmp_path, batch_size=1, first=4,
                          on_batch=on_batch, progress=lambda d, t: seen.append(d))
    assert calls[0][0] == [4] and disk_at_first == [[]]
    assert sorted(i for c in calls for i in c[0]) == list(range(6)) and passes == [1] * 6
    np.testing.assert_array_equal(calls[0][1][0], np.asarray(fv.data)[4])
    np.testing.assert_array_equal(np.asarray(fv.data), np.asarray(ref.data))
    assert seen[0] == 0 and seen[-1] == 6 and seen == sorted(seen)
    calls.clear()  # a second run finds every slice stored: nothing computed, nothing shown again
    extract_features(vol, backbone=pool, prep=prep, cache_dir=tmp_path, batch_size=1, first=4,
                     on_batch=on_batch)
    assert calls == [] and passes == [1] * 6
