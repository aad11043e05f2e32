"""Faults in the feature cache: damaged chunks are found and recomputed (or named), read-only caches work."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from dinomed_napari.errors import CacheError
from dinomed_napari.features import cache as C
from dinomed_napari.features import extract as E
from dinomed_napari.io.volume import Volume
from dinomed_napari.models import load_backbone
from dinomed_napari.preprocess import Preprocess

PREP = Preprocess(window="soft_tissue", resolution=32)
KW = dict(model="S", weights="random", prep=PREP, layers=(1,), batch_size=4)


@pytest.fixture(scope="module")
def vol() -> Volume:
    rng = np.random.default_rng(0)
    data = rng.normal(40, 60, size=(5, 32, 32)).astype(np.float32)
    data[:, 8:20, 10:24] += 150
    return Volume(data, spacing=(3.0, 1.0, 1.0), modality="CT", units="HU", source="synthetic")


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("S", "random", device="cpu", layers=(1,))


def chunk(store: Path, index: int) -> Path:
    """The file of slice ``index``'s chunk, named as the store's own chunk key encoding names it."""
    import zarr

    features = zarr.open_group(store, mode="r")["features"]
    return store / "features" / features.metadata.chunk_key_encoding.encode_chunk_key((index, 0, 0, 0))


def bit_flip(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


DAMAGE = {"deleted": Path.unlink, "bit-flipped": bit_flip, "truncated": truncate}


@pytest.mark.parametrize("fmt", C.READABLE_FORMATS)
@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_slice_is_found_and_recomputed(vol, backbone, tmp_path, how, fmt, monkeypatch):
    with monkeypatch.context() as m:  # a store made by the code of that layout
        m.setattr(C, "FORMAT_VERSION", fmt)
        fv = E.extract_features(vol, backbone=backbone, cache_dir=tmp_path, **KW)
    good = np.asarray(fv.data[:], np.float32)
    store = Path(fv.extra["path"])
    assert C.FeatureStore.peek(store, good.shape).format == fmt
    DAMAGE[how](chunk(store, 2))
    assert C.FeatureStore.peek(store, good.shape).verify() == [2]
    seen = []
    real = backbone.patch_features
    monkeypatch.setattr(backbone, "patch_features", lambda x: (seen.append(int(x.shape[0])), real(x))[1])
    again = E.extract_features(vol, backbone=backbone, cache_dir=tmp_path, **KW)
    assert again.extra["repaired"] == [2] and seen == [1]  # only the damaged slice is recomputed
    np.testing.assert_array_equal(np.asarray(again.data[:], np.float32), good)
    assert np.isfinite(np.asarray(again.data[:], np.float32)).all()
    third = E.extract_features(vol, backbone=backbone, cache_dir=tmp_path, **KW)
    assert third.extra["repaired"] == [] and seen == [1]
    assert C.FeatureStore.peek(store, good.shape).format == fmt  # repaired in its own layout


@pytest.mark.parametrize("mask", ["done", "digest"])
@pytest.mark.parametrize("how", ["bit-flipped", "truncated"])
def test_a_damaged_done_or_digest_mask_recomputes_the_store(vol, backbone, tmp_path, how, mask, monkeypatch):
    fv = E.extract_features(vol, backbone=backbone, cache_dir=tmp_path, **KW)
    good = np.asarray(fv.data[:], np.float32)
    store = Path(fv.extra["path"])
    DAMAGE[how](store / mask / "c" / "0")  # the one chunk of the per-slice mask
    peeked = C.FeatureStore.peek(store, good.shape)  # no decoder error
    # An undecodable mask trusts no slice; a flipped digest that still decodes fails its slice's check.
    assert not peeked.done.any() or len(peeked.verify()) >= 1
    seen = []
    real = backbone.patch_features
    monkeypatch.setattr(backbone, "patch_features", lambda x: (seen.append(int(x.shape[0])), real(x))[1])
    again = E.extract_features(vol, backbone=backbone, cache_dir=tmp_path, **KW)
    assert sum(seen) >= 1
    np.testing.assert_array_equal(np.asarray(again.data[:], np.float32), good)
    computed = sum(seen)
    E.extract_features(vol, backbone=backbone, cache_dir=tmp_path, **KW)
    assert sum(seen) == computed  # the rewritten masks are read back: nothing more computed


def test_damage_without_a_backbone_names_slice_and_store(vol, backbone, tmp_path, monkeypatch):
    fv = E.extract_features(vol, backbone=backbone, cache_dir=tmp_path, **KW)
    store = Path(fv.extra["path"])
    bit_flip(chunk(store, 4))

    def no_backbone(*a, **k):
        raise E.WeightsError("hub weights not in the cache")

    monkeypatch.setattr(E, "shared_backbone", no_backbone)
    with pytest.raises(CacheError, match=r"slice\(s\) \[4\] are damaged.*hub weights not in") as err:
        E.extract_features(vol, cache_dir=tmp_path, **KW)
    assert str(store) in str(err.value)


def test_old_format_store_without_digests_is_rebuilt_not_trusted(tmp_path):
    import zarr

    path = tmp_path / "k.zarr"
    g = zarr.open_group(path, mode="w", attributes={"format": 1})
    g.create_array("features", shape=(2, 1, 1, 3), chunks=(1, 1, 1, 3), dtype="float16", fill_value=0)
    g.create_array("done", shape=(2,), chunks=(2,), dtype="bool", fill_value=True)
    assert C.FeatureStore.peek(path, (2, 1, 1, 3)) is None
    assert not C.FeatureStore(path, (2, 1, 1, 3), {}).done.any()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_cache_holding_the_features_is_readable(vol, backbone, tmp_path):
    fv = E.extract_features(vol, backbone=backbone, cache_dir=tmp_path, **KW)
    good = np.asarray(fv.data[:])
    lock = Path(str(fv.extra["path"]) + ".lock")
    lock.unlink(missing_ok=True)
    for p in [tmp_path, *tmp_path.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        again = E.extract_features(vol, cache_dir=tmp_path, **KW)  # no lock file, no backbone needed
        np.testing.assert_array_equal(np.asarray(again.data[:]), good)
        assert not lock.exists()
        with pytest.raises(CacheError, match="cannot be written.*--cache-dir"):
            E.extract_features(vol, cache_dir=tmp_path, **{**KW, "layers": (2,)})  # not cached: must write
    finally:
        for p in [tmp_path, *tmp_path.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_read_only_file_system_cache_is_readable_and_other_requests_say_why(vol, backbone, tmp_path,
                                                                           monkeypatch):
    import errno

    import filelock

    fv = E.extract_features(vol, backbone=backbone, cache_dir=tmp_path, **KW)

    def erofs(self, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", self.lock_file)

    monkeypatch.setattr(filelock.FileLock, "acquire", erofs)
    again = E.extract_features(vol, cache_dir=tmp_path, **KW)
    np.testing.assert_array_equal(np.asarray(again.data[:]), np.asarray(fv.data[:]))
    with pytest.raises(CacheError, match="Read-only file system.*writable --cache-dir"):
        E.extract_features(vol, cache_dir=tmp_path, **{**KW, "layers": (2,)})
    bit_flip(chunk(Path(fv.extra["path"]), 1))
    with pytest.raises(CacheError, match=r"slice\(s\) \[1\] are damaged and cannot be repaired here"):
        E.extract_features(vol, cache_dir=tmp_path, **KW)


def test_cache_path_that_is_a_file_is_a_clear_error(vol, tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    with pytest.raises(CacheError, match=f"{blocker}.*cannot be written"):
        E.extract_features(vol, cache_dir=blocker, **KW)


def test_waiting_for_a_lock_says_so(tmp_path):
    messages = []
    path = tmp_path / "k.zarr"
    holder = C.store_lock(path)
    holder.acquire()
    waiter = C.store_lock(path, on_wait=lambda m: (messages.append(m), holder.release()))
    with waiter:
        pass
    assert len(messages) == 1 and "waiting for another process" in messages[0] and str(path) in messages[0]


def test_extract_command_reports_and_repairs_a_damaged_store(vol, tmp_path, capsys):
    from dinomed_napari.cli.main import main
    from dinomed_napari.io import save_labels

    image = save_labels(tmp_path / "ct.nii.gz", vol.data, vol)
    args = ["extract", str(image), "--weights", "random", "--resolution", "32", "--layers", "1", "--window",
            "soft_tissue", "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    (store,) = (tmp_path / "cache").glob("*.zarr")
    truncate(chunk(store, 3))
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"repaired feature cache {store}: slice(s) [3] were damaged and have been recomputed" in err
    assert C.FeatureStore.peek(store, (5, 2, 2, 384)).verify() == []
