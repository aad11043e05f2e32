"""The on-disk feature cache: content hashes, keys, weights labels, store persistence, repair and locking."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import zarr

from dinomed_napari.errors import WeightsError
from dinomed_napari.features import cache as C
from dinomed_napari.io.lazy import volume_digest


def test_volume_digest_sees_content_shape_dtype_and_spacing():
    rng = np.random.default_rng(0)
    a = rng.integers(-1000, 1000, size=(4, 5, 6), dtype=np.int16)
    d = volume_digest(a, (1, 1, 1))
    assert d == volume_digest(a.copy(), (1.0, 1.0, 1.0))
    b = a.copy()
    b[3, 4, 5] += 1
    others = [volume_digest(b, (1, 1, 1)), volume_digest(a, (1, 1, 2)),
              volume_digest(a.astype(np.int32), (1, 1, 1)), volume_digest(a.reshape(4, 6, 5), (1, 1, 1))]
    assert len({d, *others}) == 5
    # A non-contiguous view hashes like its contiguous copy (no whole-volume copy needed).
    t = np.transpose(rng.random((6, 5, 4)), (2, 1, 0))
    assert volume_digest(t, (1, 1, 1)) == volume_digest(np.ascontiguousarray(t), (1, 1, 1))


def test_volume_digest_does_not_depend_on_threads_or_slabs(monkeypatch):
    from dinomed_napari.io import lazy

    a = np.random.default_rng(1).integers(-1000, 1000, size=(9, 7, 5), dtype=np.int16)
    d = volume_digest(a, (1, 2, 3), threads=1)
    # The documented tree: sha256 of the header, then of each slice's own sha256.
    h = hashlib.sha256(json.dumps([[9, 7, 5], "<i2", [1.0, 2.0, 3.0]]).encode())
    for plane in a:
        h.update(hashlib.sha256(plane.tobytes()).digest())
    assert d == h.hexdigest()
    assert volume_digest(a, (1, 2, 3), threads=4) == d
    monkeypatch.setattr(lazy, "SLAB_BYTES", 7 * 5 * 2 * 2)  # two slices per slab; the last one alone
    assert lazy.volume_digest(a, (1, 2, 3), threads=3) == d


def test_cache_key_is_canonical():
    assert C.cache_key({"a": 1, "b": [1, 2]}) == C.cache_key({"b": [1, 2], "a": 1})
    assert C.cache_key({"a": 1}) != C.cache_key({"a": 2})
    assert len(C.cache_key({})) == 64


def test_cache_key_does_not_depend_on_the_store_layout():
    # Stores of format 2 and 3 are found under the same key: sha256 of '{"a": 1, "format": 3}'.
    assert C.cache_key({"a": 1}) == hashlib.sha256(b'{"a": 1, "format": 3}').hexdigest()
    assert C.KEY_VERSION == 3 and C.FORMAT_VERSION == 3 and C.READABLE_FORMATS == (2, 3)


def test_slice_digests_of_each_format():
    f = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float16)
    g = f.copy()
    g[1, 2, 3] = -g[1, 2, 3] if g[1, 2, 3] != 0 else 1
    for fmt in C.READABLE_FORMATS:
        d = C.slice_digest(f, fmt)
        assert d == C.slice_digest(f.copy(), fmt) and d % 2 == 1 and d != C.slice_digest(g, fmt)
    assert C.slice_digest(f, 2) != C.slice_digest(f, 3)


def test_new_store_layout_and_an_old_one_completed_in_its_own(tmp_path, monkeypatch):
    feats = np.random.default_rng(1).normal(size=(4, 2, 3, 4)).astype(np.float16)
    new = C.FeatureStore(tmp_path / "new.zarr", feats.shape, {})
    new.write(np.arange(4), feats)
    g = zarr.open_group(tmp_path / "new.zarr", mode="r")
    codecs = [type(c).__name__ for c in g["features"].metadata.codecs]
    assert g.attrs["format"] == 3 and codecs == ["BytesCodec", "Crc32cCodec"]
    assert (tmp_path / "new.zarr" / "features" / "c.3.0.0.0").is_file()  # flat chunk names
    assert new.digests.tolist() == [C.slice_digest(f, 3) for f in feats]

    monkeypatch.setattr(C, "FORMAT_VERSION", 2)
    C.FeatureStore(tmp_path / "old.zarr", feats.shape, {}).write(np.array([0, 1]), feats[:2])
    monkeypatch.undo()
    old = C.FeatureStore(tmp_path / "old.zarr", feats.shape, {})  # format-2 store, reopened by format-3 code
    assert old.format == 2 and old.done.tolist() == [True, True, False, False]
    old.write(np.array([2, 3]), feats[2:])
    g = zarr.open_group(tmp_path / "old.zarr", mode="r")
    assert g.attrs["format"] == 2 and "ZstdCodec" in [type(c).__name__ for c in g["features"].metadata.codecs]
    assert (tmp_path / "old.zarr" / "features" / "c" / "3" / "0" / "0" / "0").is_file()
    again = C.FeatureStore.peek(tmp_path / "old.zarr", feats.shape)
    assert again.verify() == [] and again.digests.tolist() == [C.slice_digest(f, 2) for f in feats]
    np.testing.assert_array_equal(again.features[:], feats)


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DINOMED_CACHE", str(tmp_path / "x"))
    assert C.default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("DINOMED_CACHE")
    assert C.default_cache_dir().parts[-2:] == (".cache", "dinomed-napari")


def test_weights_labels_match_load_backbone_without_loading(tmp_path):
    from dinomed_napari.models import load_backbone

    assert C.weights_label("S", "random") == "random"
    assert C.weights_label("S", "hub") == "hub:lvd1689m"
    assert C.weights_label("L", "hub:sat493m") == "hub:sat493m"
    assert C.weights_label("vit_small_patch16_dinov3.lvd1689m", "hub") == "hub:lvd1689m"
    bb = load_backbone("S", "random", device="cpu")
    path = tmp_path / "w.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in bb.model.state_dict().items()}, str(path))
    label = C.weights_label("S", path)
    assert label.startswith("file:w.safetensors#") and label == load_backbone("S", path).weights_label
    with pytest.raises(WeightsError, match="nope.pth not found"):
        C.weights_label("S", tmp_path / "nope.pth")
    assert C.key_model_name("vit_small_patch16_dinov3_qkvb", label) == "vit_small_patch16_dinov3"
    assert C.key_model_name("vit_small_patch16_dinov3_qkvb", "random") == "vit_small_patch16_dinov3_qkvb"


def test_store_persists_slices_and_done_mask(tmp_path):
    path = tmp_path / "k.zarr"
    store = C.FeatureStore(path, (5, 2, 3, 4), {"model": "m"})
    assert not store.complete and store.done.tolist() == [False] * 5
    feats = np.arange(3 * 24, dtype=np.float32).reshape(3, 2, 3, 4) / 7
    store.write(np.array([0, 1, 3]), feats)
    again = C.FeatureStore(path, (5, 2, 3, 4), {"model": "m"})
    assert again.done.tolist() == [True, True, False, True, False]
    np.testing.assert_array_equal(again.features[3], feats[2].astype(np.float16))
    assert again.attrs["model"] == "m" and again.attrs["format"] == C.FORMAT_VERSION
    ro = again.read_only()
    np.testing.assert_array_equal(ro[3], feats[2].astype(np.float16))
    with pytest.raises(Exception, match="(?i)read.only"):
        ro[4] = 0
    g = zarr.open_group(path)
    assert g["features"].chunks == (1, 2, 3, 4) and g["features"].dtype == np.float16


def test_several_batches_are_stored_with_one_mask_update(tmp_path, monkeypatch):
    store = C.FeatureStore(tmp_path / "k.zarr", (6, 1, 2, 3), {})
    saves = []
    real = store._save_masks
    monkeypatch.setattr(store, "_save_masks", lambda: (saves.append(1), real())[1])
    a, b = np.full((2, 1, 2, 3), 0.25, np.float16), np.full((1, 1, 2, 3), -2, np.float16)
    store.write_batches([(np.array([4, 5]), a), (np.array([1]), b)])
    assert saves == [1]
    again = C.FeatureStore.peek(tmp_path / "k.zarr", (6, 1, 2, 3))
    assert again.done.tolist() == [False, True, False, False, True, True] and again.verify() == []
    np.testing.assert_array_equal(again.features[4:6], a)
    np.testing.assert_array_equal(again.features[1:2], b)


@pytest.mark.parametrize("writer, behind", [("zarr", True), ("tensorstore", False), ("auto", True),
                                            ("auto", False)])
def test_either_chunk_writer_makes_the_same_verified_store(tmp_path, monkeypatch, writer, behind):
    monkeypatch.setattr(C, "CHUNK_WRITER", writer)
    store = C.FeatureStore(tmp_path / "k.zarr", (12, 2, 2, 3), {})
    store.behind_device = behind  # "auto": tensorstore only behind an asynchronous device
    idx = np.array([0, 1, 2, 3, 4, 7, 8, 11])  # runs of 5, 2 and 1 slices
    feats = np.random.default_rng(1).standard_normal((8, 2, 2, 3)).astype(np.float16)
    feats[5] = 0  # an all-fill-value slice is stored like any other
    store.write(idx, feats)
    assert (store._ts is not False) == (writer == "tensorstore" or (writer == "auto" and behind))
    again = C.FeatureStore.peek(tmp_path / "k.zarr", (12, 2, 2, 3))
    assert again.verify() == [] and again.done.sum() == 8
    np.testing.assert_array_equal(np.asarray(again.features[:])[idx], feats)
    assert not np.asarray(again.features[:])[[5, 6, 9, 10]].any()
    chunk = tmp_path / "k.zarr" / "features" / "c.7.0.0.0"  # zarr's own chunk names and bytes
    assert chunk.stat().st_size == 2 * 2 * 3 * 2 + 4
    raw = bytearray(chunk.read_bytes())
    raw[3] ^= 0x10
    chunk.write_bytes(bytes(raw))
    assert C.FeatureStore.peek(tmp_path / "k.zarr", (12, 2, 2, 3)).verify() == [7]


@pytest.mark.parametrize("writer", ["zarr", "tensorstore"])
def test_a_failed_chunk_write_names_the_store_and_keeps_what_was_written(tmp_path, monkeypatch, writer):
    import shutil

    from dinomed_napari.errors import CacheError

    monkeypatch.setattr(C, "CHUNK_WRITER", writer)
    store = C.FeatureStore(tmp_path / "k.zarr", (4, 2, 2, 3), {})
    store.write(np.array([0]), np.ones((1, 2, 2, 3)))
    shutil.rmtree(tmp_path / "k.zarr" / "features")  # the chunk folder is gone (a broken disk)
    (tmp_path / "k.zarr" / "features").write_text("not a folder")
    with pytest.raises(CacheError, match=r"k\.zarr: writing slices 1-2 failed .*1 slices written before are "
                                         r"kept.*--cache-dir"):
        store.write(np.array([1, 2]), np.ones((2, 2, 2, 3)))
    assert store.done.tolist() == [True, False, False, False]


def test_store_of_another_shape_or_a_broken_one_is_rebuilt(tmp_path):
    path = tmp_path / "k.zarr"
    C.FeatureStore(path, (5, 2, 3, 4), {}).write(np.array([0]), np.ones((1, 2, 3, 4)))
    other = C.FeatureStore(path, (6, 2, 3, 4), {})
    assert other.features.shape == (6, 2, 3, 4) and not other.done.any()
    # A half-written store (crash while creating it) is replaced, not trusted.
    (path / "done").mkdir(exist_ok=True)
    (path / "zarr.json").write_text("{ broken")
    fixed = C.FeatureStore(path, (6, 2, 3, 4), {})
    assert fixed.features.shape == (6, 2, 3, 4) and not fixed.done.any()


def test_in_memory_store():
    store = C.FeatureStore(None, (2, 1, 1, 3), {})
    store.write(np.array([1]), np.full((1, 1, 1, 3), 0.5))
    assert isinstance(store.features, np.ndarray) and store.done.tolist() == [False, True]
    assert store.features[1, 0, 0].tolist() == [0.5, 0.5, 0.5]


def test_store_lock_is_exclusive(tmp_path):
    from filelock import Timeout

    path = tmp_path / "k.zarr"
    with C.store_lock(path):
        other = C.store_lock(path)
        with pytest.raises(Timeout):
            other.acquire(timeout=0)
    with C.store_lock(path):  # released after the block
        pass
