"""On-disk feature cache: one zarr v3 store per cache key, with a per-slice "done" mask and digest.

Layout of ``<cache_dir>/<key>.zarr``: a group whose attributes record what the features depend on, an
array ``features`` (S, h, w, C) float16 chunked one slice per chunk, a uint64 array ``digest`` (S,) holding
a hash of each slice's float16 bytes, and a bool array ``done`` (S,). Format 3 (written now) stores each
chunk uncompressed with a crc32c checksum and digests with SHA-1; format 2 (still read and completed in its
own layout) compressed each chunk with zstd and its content checksum and digested with BLAKE2b.
A slice is marked done only after its features and digest are written (zarr writes each chunk
atomically), so a cancelled or crashed run keeps every finished slice and a rerun computes only the rest.
Every read of the store by :func:`~dinomed_napari.features.extract.extract_features` first checks each
slice against its digest (:meth:`FeatureStore.verify`): a deleted, truncated or bit-flipped chunk is
found and recomputed, never used. A lock file next to the store keeps two processes from computing into
the same store at once; a complete, intact store is read without it (a read-only shared cache works).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

#: Part of every cache key: bump when the meaning of the features changes, so old stores are never found.
#: 2: stores that can be verified slice by slice (version-1 stores had no digests and are rebuilt).
#: 3: the volume's digest hashes slices in parallel
#: (:func:`dinomed_napari.io.lazy.volume_digest`); stores under version-2 keys
#: are not found again, so their features are computed once more.
KEY_VERSION = 3

#: Layout of new stores (the group's "format" attribute); a store of a layout not in READABLE_FORMATS is
#: rebuilt. 2: zstd + its checksum per chunk, BLAKE2b digests. 3: no compression (zstd saved 8 % of the
#: bytes of random float16 features for 1.2 ms of CPU per ViT-S slice at 512), crc32c per chunk, SHA-1
#: digests, chunk files in one folder. The digest and done arrays are the same in both.
FORMAT_VERSION = 3
READABLE_FORMATS = (2, 3)

#: Threads hashing the slices of the batches written at once.
DIGEST_THREADS = min(8, os.cpu_count() or 1)

#: Who writes the feature chunks of format-3 stores: "tensorstore" (its C++ thread pool encodes and writes
#: the chunks; same zarr v3 chunks, read back by zarr), "zarr" (zarr-python, which encodes every chunk on
#: its one event-loop thread: 1.2 ms per ViT-S slice on an H200 machine whose disk takes a slice in 0.1-0.3
#: ms), or "auto": tensorstore for stores filled behind an asynchronous device (a GPU, where the write was
#: the ceiling; :attr:`FeatureStore.behind_device`), zarr-python otherwise (on a CPU the forward takes
#: 300x longer than the write, and tensorstore added 20-55 MB to the peak RSS: docs/scaling.md).
CHUNK_WRITER = "auto"


def chunk_writer(behind_device: bool) -> str:
    """Who writes the feature chunks of a format-3 store (filled behind an asynchronous device or not):
    "tensorstore" or "zarr", from :data:`CHUNK_WRITER` and whether tensorstore is installed."""
    if CHUNK_WRITER != "auto":
        return CHUNK_WRITER
    if behind_device and importlib.util.find_spec("tensorstore") is not None:
        return "tensorstore"
    return "zarr"


def default_cache_dir() -> Path:
    """``$DINOMED_CACHE`` if set, else ``~/.cache/dinomed-napari``."""
    env = os.environ.get("DINOMED_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dinomed-napari"


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
    """sha256 of the canonical JSON of everything the features depend on (plus :data:`KEY_VERSION`).

    The store's layout is not part of the key: a store of any readable format is found and used.
    """
    payload = json.dumps({**parts, "format": KEY_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def store_lock(path: str | os.PathLike | None, on_wait=_say):
    """Inter-process lock for the store at ``path`` (a no-op for in-memory stores).

    Hold it while opening and filling a store; ``filelock`` releases it if the process dies. Entering it
    while another process holds it calls ``on_wait(message)`` once (the CLI prints it), then waits.
    A folder where the lock file cannot be created raises :class:`~dinomed_napari.errors.CacheError`.
    """
    if path is None:
        from contextlib import nullcontext

        return nullcontext()
    from filelock import FileLock, Timeout

    class StoreLock(FileLock):
        def __enter__(self):
            try:
                try:
                    self.acquire(timeout=0)
                except Timeout:
                    on_wait(f"waiting for another process computing features into {path} "
                            f"(lock file {self.lock_file}) ...")
                    self.acquire()
            except OSError as exc:
                raise _unwritable(Path(path), exc) from exc
            return self

    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(Path(path), exc) from exc
    return StoreLock(str(path) + ".lock")


def _unwritable(path: Path, exc: OSError):
    from dinomed_napari.errors import CacheError

    why = exc.strerror or type(exc).__name__
    return CacheError(f"feature cache folder {path.parent} cannot be written ({why}); the features asked "
                      f"for are not (all) there yet. Pass a writable --cache-dir (or set DINOMED_CACHE).")


def slice_digest(feats16: np.ndarray, fmt: int) -> int:
    """64-bit hash of one slice's float16 bytes as stores of format ``fmt`` record it (never 0: 0 marks
    "no digest"). Format 2: BLAKE2b; format 3: SHA-1 (hardware-accelerated where the CPU has SHA
    instructions: about half the cost of BLAKE2b here), first 8 bytes."""
    data = np.ascontiguousarray(feats16, dtype=np.float16).data
    h = hashlib.blake2b(data, digest_size=8) if fmt == 2 else hashlib.sha1(data)
    return int.from_bytes(h.digest()[:8], "little") | 1


class FeatureStore:
    """A feature array (zarr store on disk, or NumPy in memory) with its per-slice done mask and digests.

    Parameters
    ----------
    path : path or None
        ``<key>.zarr`` folder; None keeps everything in memory (nothing survives the process).
    shape : (S, h, w, C)
        Expected feature shape. An existing store of another shape or of an unreadable format is rebuilt;
        one of a format in :data:`READABLE_FORMATS` is used and completed in its own layout. Open it while
        holding :func:`store_lock` (or use :meth:`peek` to read without writing).
    attrs : dict
        JSON-serialisable description stored in the group attributes.

    Attributes
    ----------
    format : int
        The store's layout (:data:`FORMAT_VERSION` for a new store); it decides how digests are computed.
    """

    def __init__(self, path: str | os.PathLike | None, shape: tuple[int, int, int, int], attrs: dict,
                 _group: Any = None):
        self.path = None if path is None else Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.writable = _group is None
        #: Set while a writer thread fills the store behind an asynchronous device (see CHUNK_WRITER).
        self.behind_device = False
        self._ts: Any = None  # tensorstore handle, opened on the first write (False: zarr writes)
        if self.path is None:
            self.features: Any = np.zeros(self.shape, dtype=np.float16)
            self.done = np.zeros(self.shape[0], dtype=bool)
            self.digests = np.zeros(self.shape[0], dtype=np.uint64)
            self._group = None
            self.attrs = {**attrs, "format": FORMAT_VERSION}
            self.format = FORMAT_VERSION
            return
        group = self._group = _group if _group is not None else self._open(attrs)
        self.attrs = dict(group.attrs)
        self.format = int(self.attrs["format"])
        self.features = group["features"]
        if hasattr(self.features, "with_config"):  # zarr >= 3.1
            # Every chunk is written whole: skip zarr's scan of each one for "all fill value" (a third of
            # the write time); an all-zero slice is then stored like any other.
            self.features = self.features.with_config({"write_empty_chunks": True})
        try:
            self.done = np.asarray(group["done"][:], dtype=bool)
            self.digests = np.asarray(group["digest"][:], dtype=np.uint64)
        except Exception:  # a damaged mask chunk (zstd, zarr or OS errors): no slice of it is trusted
            self.done = np.zeros(self.shape[0], dtype=bool)
            self.digests = np.zeros(self.shape[0], dtype=np.uint64)

    @classmethod
    def peek(cls, path: str | os.PathLike, shape: tuple[int, int, int, int]) -> FeatureStore | None:
        """The store at ``path`` opened read-only (no lock, nothing written), or None when it is missing,
        unreadable or of another shape or format."""
        group = _open_existing(Path(path), tuple(int(s) for s in shape), mode="r")
        return None if group is None else cls(path, shape, {}, _group=group)

    def _open(self, attrs: dict):
        import zarr

        group = _open_existing(self.path, self.shape, mode="r+")
        if group is not None:
            return group
        if self.path.exists():
            shutil.rmtree(self.path)
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        group = zarr.open_group(tmp, mode="w", attributes={**attrs, "format": FORMAT_VERSION})
        s, h, w, c = self.shape
        # One slice per chunk: a batch writes whole chunks and the viewer reads one slice at a time.
        group.create_array("features", shape=self.shape, chunks=(1, h, w, c), dtype="float16", fill_value=0,
                           **_chunk_layout(FORMAT_VERSION))
        group.create_array("digest", shape=(s,), chunks=(s,), dtype="uint64", fill_value=0)
        group.create_array("done", shape=(s,), chunks=(s,), dtype="bool", fill_value=False)
        os.replace(tmp, self.path)  # appear complete or not at all
        return zarr.open_group(self.path, mode="r+")

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def write(self, indices: np.ndarray, feats: np.ndarray) -> None:
        """Store float16 features of slices ``indices``, then their digests, then mark them done."""
        self.write_batches([(indices, feats)])

    def write_batches(self, batches: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """:meth:`write` for several ``(indices, feats)`` batches, with one done-mask update at the end.

        The batches are written one after the other, never concatenated (no copy of their features).
        """
        batches = [(np.asarray(idx), np.asarray(feats, dtype=np.float16)) for idx, feats in batches]

        def digest(f: np.ndarray) -> int:
            return slice_digest(f, self.format)

        # hashlib releases the GIL: the digests are computed on other threads while zarr writes (on a GPU
        # machine one thread hashed slower than the device computed). A pool per call (not one kept for the
        # process) stays correct across fork().
        with ThreadPoolExecutor(DIGEST_THREADS, thread_name_prefix="dinomed-digest") as pool:
            pending = [pool.map(digest, feats) for _, feats in batches]
            for idx, feats in batches:
                if self.path is None:
                    self.features[idx] = feats
                    continue
                try:
                    self._write_chunks(idx, feats)
                except Exception as exc:  # disk full, folder gone, ...: zarr and tensorstore word it apart
                    from dinomed_napari.errors import CacheError

                    raise CacheError(
                        f"feature store {self.path}: writing slices {int(idx.min())}-{int(idx.max())} failed "
                        f"({exc}). {int(self.done.sum())} slices written before are kept; free space or pass "
                        f"another --cache-dir (DINOMED_CACHE), then rerun to resume.") from exc
            hashes = [list(p) for p in pending]
        for (idx, _), h in zip(batches, hashes, strict=True):
            self.digests[idx] = h
            self.done[idx] = True
        self._save_masks()

    def _write_chunks(self, idx: np.ndarray, feats: np.ndarray) -> None:
        """Write slices ``idx``, each run of consecutive slices in one call (one chunk per slice)."""
        target = self._chunk_target()
        starts = np.flatnonzero(np.diff(idx, prepend=idx[0] - 2) != 1)
        for a, b in zip(starts, list(starts[1:]) + [len(idx)], strict=True):
            rows = slice(int(idx[a]), int(idx[b - 1]) + 1)
            if target is None:
                self.features[rows] = feats[a:b]
            else:
                target[rows].write(feats[a:b]).result()

    def _chunk_target(self):
        """The tensorstore handle that writes this store's chunks, or None (zarr writes them)."""
        if self._ts is None:
            self._ts = False
            if self.format == 3 and chunk_writer(self.behind_device) == "tensorstore":
                self._ts = _open_tensorstore(self.path / "features")
        return self._ts or None

    def _save_masks(self) -> None:
        if self._group is not None:
            self._group["digest"][:] = self.digests
            self._group["done"][:] = self.done

    def verify(self) -> list[int]:
        """Slices marked done whose stored features do not match their digest, sorted.

        Catches deleted chunks (they read as zeros), truncated or bit-flipped ones (the chunk checksum
        fails, or the hash differs) and slices without a recorded digest. Reads every done slice once.
        """
        if self.path is None:
            return []
        bad = []
        for i in np.flatnonzero(self.done):
            try:
                ok = self.digests[i] != 0 and (slice_digest(self.features[int(i)], self.format)
                                               == int(self.digests[i]))
            except Exception:  # chunk checksum / truncated frame / unreadable chunk
                ok = False
            if not ok:
                bad.append(int(i))
        return bad

    def forget(self, indices) -> None:
        """Mark ``indices`` as not done (e.g. damaged slices, before recomputing them)."""
        if not self.writable:
            raise RuntimeError("store opened read-only")
        indices = np.asarray(list(indices), dtype=int)
        self.done[indices] = False
        self.digests[indices] = 0
        self._save_masks()

    def read_only(self) -> Any:
        """The features for consumers: the zarr array reopened read-only (or the NumPy array)."""
        if self.path is None:
            return self.features
        if not self.writable:
            return self.features
        import zarr

        return zarr.open_group(self.path, mode="r")["features"]

    def update_attrs(self, **values: Any) -> None:
        """Record more (JSON-able) facts about the features, e.g. the device that computed them."""
        self.attrs.update(values)
        if self._group is not None:
            self._group.attrs.update(values)


def _chunk_layout(fmt: int) -> dict:
    """``create_array`` arguments for the feature chunks of a new store of format ``fmt``.

    Both codecs make a flipped bit or a truncated chunk an error on every read, not silently wrong
    features. Format 3 names chunks ``c.<slice>.0.0.0`` in one folder: the nested ``c/<slice>/0/0/0``
    of format 2 made three folders per slice, a third of the write time.
    """
    from zarr.codecs import Crc32cCodec, ZstdCodec

    if fmt == 2:
        return {"compressors": ZstdCodec(level=0, checksum=True)}
    return {"compressors": Crc32cCodec(), "chunk_key_encoding": {"name": "default", "separator": "."}}


def _open_tensorstore(path: Path):
    """A tensorstore handle on the zarr v3 array at ``path`` (no cache; no fsync per chunk, like zarr: every
    read is verified)."""
    import tensorstore as ts

    context = ts.Context({"cache_pool": {"total_bytes_limit": 0}, "file_io_sync": False})
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)},
            "store_data_equal_to_fill_value": True}  # every chunk written, as zarr's write_empty_chunks
    return ts.open(spec, open=True, context=context).result()


def _open_existing(path: Path, shape: tuple[int, ...], mode: str):
    """The zarr group at ``path`` if it is a store of a readable format and this shape, else None."""
    import zarr

    try:
        group = zarr.open_group(path, mode=mode)
        ok = (
            group.attrs.get("format") in READABLE_FORMATS
            and tuple(group["features"].shape) == shape
            and tuple(group["done"].shape) == shape[:1]
            and tuple(group["digest"].shape) == shape[:1]
        )
    except Exception:  # missing, half-created or unreadable store
        return None
    return group if ok else None
