"""What the feature cache holds, and removing what is no longer needed (``dinomed-napari cache``).

Stores pile up: every volume, model, resolution and axis gets its own (a 512 x 512 x 1,000 CT at ViT-L
is 2 GB), and a change of :data:`~.cache.KEY_VERSION` leaves every older store unreachable. A store's
folder time is set on each use (:func:`mark_used`), so "least recently used" means used, not written.

Removal is careful because a complete store is read without its lock (a napari session reads its features
lazily for as long as it is open): a store used in the last :data:`RECENT_HOURS` hours is never removed,
one whose lock another process holds is skipped, and a store is renamed out of the way before it is
deleted, so no run ever opens a half-deleted store.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .cache import READABLE_FORMATS, cache_key, default_cache_dir

#: Stores used more recently than this are kept whatever the options (a viewer may be reading them).
RECENT_HOURS = 24.0
#: The key parts recorded in a store's attributes (see ``extract_features``): hashing them again tells
#: whether the current code can still find the store.
KEY_PARTS = ("volume", "model", "weights", "resolution", "axis", "prep", "norm", "layers", "input_size",
             "tiling")


@dataclass(frozen=True)
class StoreInfo:
    """One entry of the cache folder.

    Attributes
    ----------
    path : Path
        The ``<key>.zarr`` folder (or an unfinished ``<key>.zarr.tmp-<pid>`` one).
    nbytes : int
        Bytes on disk.
    last_used : float
        Seconds since the epoch of its last use (the folder's modification time).
    reachable : bool
        Whether a run of this version can find and read it again. False for stores of older key versions
        or unreadable formats, damaged attributes, and unfinished folders.
    done, total : int
        Slices computed and slices in all (0, 0 when unreadable).
    label : str
        Model, weights, resolution and source volume, or why the store cannot be read.
    """

    path: Path
    nbytes: int
    last_used: float
    reachable: bool
    done: int
    total: int
    label: str


def mark_used(path: str | os.PathLike | None) -> None:
    """Set a store's folder time to now (its "last used"); a read-only cache is left as it is."""
    if path is None:
        return
    try:
        os.utime(path)
    except OSError:
        pass


def _nbytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:  # removed while we walk
                pass
    return total


def _describe(path: Path) -> tuple[bool, int, int, str]:
    """(reachable, done, total, label) of one store folder, read without writing anything."""
    import numpy as np
    import zarr

    if ".zarr.tmp-" in path.name:
        return False, 0, 0, "unfinished (a run stopped while creating it)"
    if ".zarr.deleting-" in path.name:
        return False, 0, 0, "half removed (a prune stopped while deleting it)"
    try:
        group = zarr.open_group(path, mode="r")
        attrs = dict(group.attrs)
        done = np.asarray(group["done"][:], dtype=bool)
    except Exception as exc:  # half-written or foreign folder
        return False, 0, 0, f"unreadable ({type(exc).__name__})"
    fmt = attrs.get("format")
    key = cache_key({k: attrs[k] for k in KEY_PARTS if k in attrs})
    reachable = fmt in READABLE_FORMATS and key == attrs.get("key") == path.name.removesuffix(".zarr")
    source = Path(str(attrs.get("source") or "?")).name
    label = (f"{attrs.get('model', '?')} [{attrs.get('weights', '?')}] @{attrs.get('resolution', '?')}, "
             f"axis {attrs.get('axis', '?')}, {source}")
    if fmt not in READABLE_FORMATS:
        label += f" (format {fmt}: not readable by this version)"
    elif not reachable:
        label += " (an older key: never found again)"
    return reachable, int(done.sum()), int(done.size), label


def list_stores(cache_dir: str | os.PathLike | None = None) -> list[StoreInfo]:
    """Every store (and unfinished store) in ``cache_dir`` (default :func:`~.cache.default_cache_dir`),
    least recently used first."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if folder.exists() and not folder.is_dir():
        from dinomed_napari.errors import CacheError

        raise CacheError(f"feature cache {folder} is a file, not a folder")
    if not folder.is_dir():
        return []
    out = []
    for path in folder.iterdir():
        if not path.is_dir() or ".zarr" not in path.name:
            continue
        try:
            used = path.stat().st_mtime
        except OSError:  # removed meanwhile
            continue
        reachable, done, total, label = _describe(path)
        out.append(StoreInfo(path, _nbytes(path), used, reachable, done, total, label))
    return sorted(out, key=lambda s: s.last_used)


def choose_removals(stores: list[StoreInfo], *, older_than_days: float | None = None,
                    max_bytes: int | None = None, unreachable: bool = False,
                    now: float | None = None) -> list[StoreInfo]:
    """Which stores a prune removes (nothing is touched here).

    Parameters
    ----------
    stores : list of StoreInfo
        From :func:`list_stores`.
    older_than_days : float, optional
        Remove stores not used for this many days.
    max_bytes : int, optional
        Then remove the least recently used stores until the rest fit in this many bytes.
    unreachable : bool
        Remove stores this version can never find again (older key versions, unreadable, unfinished).
    now : float, optional
        The current time (seconds since the epoch; tests pass one).

    Returns
    -------
    list of StoreInfo
        Least recently used first. Stores used in the last :data:`RECENT_HOURS` hours are never included,
        so ``max_bytes`` can be left exceeded.
    """
    now = time.time() if now is None else now
    old = [s for s in stores if now - s.last_used >= RECENT_HOURS * 3600]
    chosen = {s.path for s in old if unreachable and not s.reachable}
    if older_than_days is not None:
        chosen |= {s.path for s in old if now - s.last_used >= older_than_days * 86400}
    if max_bytes is not None:
        left = sum(s.nbytes for s in stores if s.path not in chosen)
        for s in sorted(old, key=lambda s: s.last_used):
            if left <= max_bytes:
                break
            if s.path not in chosen:
                chosen.add(s.path)
                left -= s.nbytes
    return [s for s in sorted(stores, key=lambda s: s.last_used) if s.path in chosen]


def remove_store(store: StoreInfo) -> bool:
    """Delete one store unless another process holds its lock (then False, nothing touched).

    The folder is renamed first, so that no run opens it half deleted; its lock file goes last.
    """
    from filelock import FileLock, Timeout

    base = store.path.name.split(".zarr")[0] + ".zarr"
    lock = FileLock(str(store.path.with_name(base)) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    try:
        gone = store.path
        if ".zarr.deleting-" not in gone.name:  # a half-removed one is already out of the way
            gone = store.path.with_name(f"{store.path.name}.deleting-{os.getpid()}")
            os.replace(store.path, gone)
        shutil.rmtree(gone)
    finally:
        lock.release()
    if base == store.path.name:  # the store itself, not an unfinished twin: its lock file goes too
        try:
            os.unlink(lock.lock_file)
        except OSError:
            pass
    return True
