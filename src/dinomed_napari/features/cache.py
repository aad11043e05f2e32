"""On-disk feature cache: one zarr v3 store per cache key, with a per-slice "done" mask.

Layout of ``<cache_dir>/<key>.zarr``: a group whose attributes record what the features depend on, an
array ``features`` (S, h, w, C) float16 chunked one slice per chunk, and a bool array ``done`` (S,).
A slice is marked done only after its features are written (zarr writes each chunk atomically), so a
cancelled or crashed run keeps every finished slice and a rerun computes only the rest. A lock file
next to the store keeps two processes from computing into the same store at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

#: Bump when the stored layout or the meaning of the features changes: old stores are then never reused.
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """``$DINOMED_CACHE`` if set, else ``~/.cache/dinomed-napari``."""
    env = os.environ.get("DINOMED_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dinomed-napari"


def volume_digest(data: np.ndarray, spacing: tuple[float, ...]) -> str:
    """sha256 of a volume's raw bytes, shape, dtype and spacing.

    Hashed slab by slab along the first axis so a non-contiguous view (e.g. a transposed NIfTI) is never
    copied whole.
    """
    data = np.asarray(data)
    h = hashlib.sha256()
    h.update(json.dumps([list(data.shape), data.dtype.str, [float(s) for s in spacing]]).encode())
    for slab in data:
        h.update(np.ascontiguousarray(slab).data)
    return h.hexdigest()


_LABELS: dict[tuple, str] = {}


def weights_label(model: Any, weights: str | os.PathLike) -> str:
    """The label :func:`~dinomed_napari.models.load_backbone` gives these weights, without loading them.

    "random", "hub:<tag>" or "file:<name>#<sha8>" (file content hash, memoised per path, size and mtime),
    so a cache hit never has to build the network.
    """
    from dinomed_napari.models.hashing import file_sha256
    from dinomed_napari.models.registry import resolve_spec, split_tag

    w = str(weights)
    if w == "random":
        return w
    if w == "hub" or w.startswith("hub:"):
        return f"hub:{w[4:] or split_tag(str(model))[1] or resolve_spec(model).default_tag}"
    path = Path(w).expanduser()
    if not path.is_file():
        from dinomed_napari.errors import WeightsError

        raise WeightsError(f"weights file {path} not found; pass an existing .pth/.safetensors file, "
                           f"'hub' or 'random'")
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _LABELS:
        _LABELS[memo] = f"file:{path.name}#{file_sha256(path)[:8]}"
    return _LABELS[memo]


def key_model_name(timm_name: str, label: str) -> str:
    """Model name for the cache key: for weights files the file decides the "_qkvb" variant that gets
    built, so the key uses the base name (the same before and after loading)."""
    return timm_name.removesuffix("_qkvb") if label.startswith("file:") else timm_name


def cache_key(parts: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of everything the features depend on (plus the format version)."""
    payload = json.dumps({**parts, "format": FORMAT_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def store_lock(path: str | os.PathLike | None):
    """Inter-process lock for the store at ``path`` (a no-op for in-memory stores).

    Hold it while opening and filling a store; ``filelock`` releases it if the process dies.
    """
    if path is None:
        from contextlib import nullcontext

        return nullcontext()
    from filelock import FileLock

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock")


class FeatureStore:
    """A feature array (zarr store on disk, or NumPy in memory) with its per-slice done mask.

    Parameters
    ----------
    path : path or None
        ``<key>.zarr`` folder; None keeps everything in memory (nothing survives the process).
    shape : (S, h, w, C)
        Expected feature shape. An existing store of another shape or format is rebuilt. Open it while
        holding :func:`store_lock`.
    attrs : dict
        JSON-serialisable description stored in the group attributes.
    """

    def __init__(self, path: str | os.PathLike | None, shape: tuple[int, int, int, int], attrs: dict):
        self.path = None if path is None else Path(path)
        self.shape = tuple(int(s) for s in shape)
        if self.path is None:
            self.features: Any = np.zeros(self.shape, dtype=np.float16)
            self.done = np.zeros(self.shape[0], dtype=bool)
            self._done_arr = None
            self._group = None
            self.attrs = {**attrs, "format": FORMAT_VERSION}
            return
        group = self._group = self._open(attrs)
        self.attrs = dict(group.attrs)
        self.features = group["features"]
        self._done_arr = group["done"]
        self.done = np.asarray(self._done_arr[:], dtype=bool)

    def _open(self, attrs: dict):
        import zarr

        try:
            group = zarr.open_group(self.path, mode="r+")
            ok = (
                group.attrs.get("format") == FORMAT_VERSION
                and tuple(group["features"].shape) == self.shape
                and tuple(group["done"].shape) == self.shape[:1]
            )
        except Exception:  # missing, half-created or unreadable store: rebuild it
            ok = False
        if ok:
            return group
        if self.path.exists():
            shutil.rmtree(self.path)
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        group = zarr.open_group(tmp, mode="w", attributes={**attrs, "format": FORMAT_VERSION})
        s, h, w, c = self.shape
        # One slice per chunk: a batch writes whole chunks and the viewer reads one slice at a time.
        group.create_array("features", shape=self.shape, chunks=(1, h, w, c), dtype="float16", fill_value=0)
        group.create_array("done", shape=(s,), chunks=(s,), dtype="bool", fill_value=False)
        os.replace(tmp, self.path)  # appear complete or not at all
        return zarr.open_group(self.path, mode="r+")

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def write(self, indices: np.ndarray, feats: np.ndarray) -> None:
        """Store float16 features of slices ``indices``, then mark them done (in this order)."""
        indices = np.asarray(indices)
        feats = np.asarray(feats, dtype=np.float16)
        if self.path is None:
            self.features[indices] = feats
        else:
            # Runs of consecutive slices go in one call (one chunk per slice either way).
            starts = np.flatnonzero(np.diff(indices, prepend=indices[0] - 2) != 1)
            for a, b in zip(starts, list(starts[1:]) + [len(indices)], strict=True):
                self.features[int(indices[a]) : int(indices[b - 1]) + 1] = feats[a:b]
        self.done[indices] = True
        if self._done_arr is not None:
            self._done_arr[:] = self.done

    def read_only(self) -> Any:
        """The features for consumers: the zarr array reopened read-only (or the NumPy array)."""
        if self.path is None:
            return self.features
        import zarr

        return zarr.open_group(self.path, mode="r")["features"]

    def update_attrs(self, **values: Any) -> None:
        """Record more (JSON-able) facts about the features, e.g. the device that computed them."""
        self.attrs.update(values)
        if self._group is not None:
            self._group.attrs.update(values)
