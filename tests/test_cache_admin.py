"""`dinomed-napari cache`: listing the feature cache, and pruning it without touching what is in use."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from dinomed_napari.cli.main import main
from dinomed_napari.features import cache_admin as A
from dinomed_napari.features.extract import extract_features
from dinomed_napari.io.volume import Volume
from dinomed_napari.models import load_backbone
from dinomed_napari.preprocess import Preprocess

DAY = 86400.0


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("S", "random", device="cpu", layers=(1,))


def make_store(backbone, cache, seed: int):
    """A real store of a tiny synthetic CT (one per seed) -> its path."""
    data = np.random.default_rng(seed).normal(40, 60, size=(3, 32, 32)).astype(np.float32)
    vol = Volume(data, spacing=(3.0, 1.0, 1.0), modality="CT", units="HU", source=f"synthetic-{seed}")
    fv = extract_features(vol, backbone=backbone, prep=Preprocess(window="soft_tissue", resolution=32),
                          layers=(1,), cache_dir=cache)
    return fv.extra["path"]


def age(path, days: float) -> None:
    """Make a store look last used ``days`` ago."""
    t = time.time() - days * DAY
    os.utime(path, (t, t))


def make_old_key_store(store: str) -> str:
    """A copy of ``store`` under another key, as a store of an older KEY_VERSION sits in the cache."""
    import shutil

    import zarr

    old = store.replace(".zarr", "").rstrip("0123456789abcdef") + "0" * 64 + ".zarr"
    shutil.copytree(store, old)
    group = zarr.open_group(old, mode="r+")
    group.attrs.update({"key": "0" * 64})
    return old


def test_list_tells_reachable_old_key_and_unfinished_stores_apart(backbone, tmp_path):
    cache = tmp_path / "cache"
    store = make_store(backbone, cache, 0)
    old = make_old_key_store(store)
    unfinished = cache / ("1" * 64 + ".zarr.tmp-99999")
    unfinished.mkdir()
    (unfinished / "zarr.json").write_text("{")  # what a killed run leaves
    half = cache / ("2" * 64 + ".zarr.deleting-99999")  # what a killed prune leaves
    (half / "features").mkdir(parents=True)
    by_name = {s.path.name: s for s in A.list_stores(cache)}
    assert set(by_name) == {os.path.basename(store), os.path.basename(old), unfinished.name, half.name}
    fresh = by_name[os.path.basename(store)]
    assert fresh.reachable and (fresh.done, fresh.total) == (3, 3)
    assert "vit_small_patch16_dinov3 [random] @32" in fresh.label and "synthetic-0" in fresh.label
    assert fresh.nbytes > 3 * 2 * 2 * 384  # three slices of a 2 x 2 grid of float16 features at least
    assert not by_name[os.path.basename(old)].reachable
    assert "never found again" in by_name[os.path.basename(old)].label
    assert not by_name[unfinished.name].reachable and "unfinished" in by_name[unfinished.name].label
    assert not by_name[half.name].reachable and "half removed" in by_name[half.name].label
    assert A.remove_store(by_name[half.name]) and not half.exists()


def test_a_cache_path_that_is_a_file_is_named(tmp_path):
    from dinomed_napari.errors import CacheError

    (tmp_path / "cache").write_text("not a folder")
    with pytest.raises(CacheError, match="is a file, not a folder"):
        A.list_stores(tmp_path / "cache")
    assert A.list_stores(tmp_path / "missing") == []


def test_using_a_store_marks_it_used(backbone, tmp_path):
    cache = tmp_path / "cache"
    store = make_store(backbone, cache, 0)
    age(store, 10)
    make_store(backbone, cache, 0)  # read back from the cache
    assert time.time() - os.stat(store).st_mtime < 60


def test_choose_removals_by_age_size_and_reachability_keeps_recent_ones(tmp_path):
    now = 1_000 * DAY
    mk = lambda name, days, nbytes, reachable=True: A.StoreInfo(  # noqa: E731
        tmp_path / name, nbytes, now - days * DAY, reachable, 1, 1, name)
    stores = [mk("a", 40, 100), mk("b", 10, 100), mk("c", 3, 100), mk("old", 2, 50, False),
              mk("recent", 0.5, 1000), mk("recent-old", 0.1, 10, False)]
    names = lambda chosen: [s.label for s in chosen]  # noqa: E731
    assert names(A.choose_removals(stores, older_than_days=7, now=now)) == ["a", "b"]
    assert names(A.choose_removals(stores, unreachable=True, now=now)) == ["old"]
    # Least recently used first until the rest fit; the store used 12 h ago stays even though the
    # cache is still over the limit afterwards.
    assert names(A.choose_removals(stores, max_bytes=1100, now=now)) == ["a", "b", "c"]
    assert names(A.choose_removals(stores, max_bytes=0, now=now)) == ["a", "b", "c", "old"]
    assert names(A.choose_removals(stores, now=now)) == []


def test_remove_store_skips_a_store_being_computed_into(backbone, tmp_path):
    from filelock import FileLock

    cache = tmp_path / "cache"
    store = make_store(backbone, cache, 0)
    (info,) = A.list_stores(cache)
    with FileLock(store + ".lock"):  # another process filling it (same-process locks are reentrant)
        import threading

        result = []
        worker = threading.Thread(target=lambda: result.append(A.remove_store(info)))
        worker.start()
        worker.join()
    assert result == [False] and os.path.isdir(store)
    assert A.remove_store(info) is True
    assert not os.path.exists(store) and not os.path.exists(store + ".lock")
    assert list(cache.iterdir()) == []  # no renamed leftovers


def test_cache_command_lists_and_prunes(backbone, tmp_path, capsys):
    cache = tmp_path / "cache"
    keep = make_store(backbone, cache, 0)
    stale = make_store(backbone, cache, 1)
    old = make_old_key_store(keep)
    age(stale, 30)
    age(old, 2)
    assert main(["cache", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "3 stores" in out and "3/3 slices" in out and "never finds again" in out

    assert main(["cache", "--cache-dir", str(cache), "--prune", "--older-than", "7", "--unreachable",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("would remove") == 2 and os.path.isdir(stale) and os.path.isdir(old)

    assert main(["cache", "--cache-dir", str(cache), "--prune", "--older-than", "7", "--unreachable"]) == 0
    out = capsys.readouterr().out
    assert "freed" in out and "in 2 stores" in out
    assert os.path.isdir(keep) and not os.path.exists(stale) and not os.path.exists(old)
    (left,) = A.list_stores(cache)
    assert left.reachable and (left.done, left.total) == (3, 3)


def run_cli(argv) -> int:
    """``main(argv)``'s exit code, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


@pytest.mark.parametrize("argv, message", [
    (["--prune"], "say what to remove"),
    (["--older-than", "3"], "go with --prune"),
    (["--prune", "--max-size", "12Q"], "expected a size such as 500M"),
    (["--prune", "--older-than", "-1"], "days must be at least 0"),
])
def test_cache_command_bad_flags_are_usage_errors(argv, message, tmp_path, capsys):
    assert run_cli(["cache", "--cache-dir", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_size_flag_units():
    from dinomed_napari.cli.args import size_bytes

    assert size_bytes("500M") == 500 * 1024**2
    assert size_bytes("1.5G") == int(1.5 * 1024**3)
    assert size_bytes("2048") == 2048
