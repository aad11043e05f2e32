"""Which voxels are scribbled, kept up to date stroke by stroke (Qt-free, napari-free).

A stroke touches a few hundred voxels of a volume of millions: rescanning the whole scribble layer after
each one (``np.argwhere``) costs time proportional to the volume, on the GUI thread. The index keeps the
scribbled voxels as sorted flat indices with their class, and an edit only re-reads the voxels it changed.

The edits come as napari's Labels ``paint`` event value (a list of history atoms: masked bounding-box
atoms with ``slice_key`` / ``mask``, or ``(indices, old_values, new_values)`` tuples); the index reads
the layer's values at the changed voxels rather than trusting the atoms' values, so edits applied in any
order end in the layer's state. Whatever cannot be followed (data replaced, undo / redo, an edit the
parser does not know) makes the next :meth:`ScribbleIndex.sync` a full rescan: the index always equals
:func:`dinomed_napari.live.jobs.scribble_points` of the layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def edit_indices(item: Sequence[Any], shape: tuple[int, ...]) -> np.ndarray | None:
    """Sorted unique flat indices of the voxels a napari history item may have changed.

    Parameters
    ----------
    item : sequence of history atoms
        A Labels ``paint`` event's ``value``: atoms with ``slice_key`` (tuple of slices, one per axis)
        and ``mask`` (bool array over that box, or None for the whole box), or ``(indices, old, new)``
        tuples whose ``indices`` is a tuple of integer arrays, one per axis.
    shape : tuple of int
        The layer's data shape.

    Returns
    -------
    (K,) int64 array, or None
        None when an atom is of an unknown form or out of bounds (the caller rescans).
    """
    shape = tuple(int(n) for n in shape)
    out = []
    try:
        for atom in item:
            coords = _atom_coords(atom, shape)
            if coords is None:
                return None
            out.append(np.ravel_multi_index(coords, shape))
    except (TypeError, ValueError, IndexError):  # not an atom we understand, or outside the volume
        return None
    return np.unique(np.concatenate(out)).astype(np.int64) if out else np.empty(0, np.int64)


def _atom_coords(atom: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, ...] | None:
    ndim = len(shape)
    key = getattr(atom, "slice_key", None)
    if key is not None:  # napari's masked bounding-box atom
        if len(key) != ndim or not all(isinstance(s, slice) for s in key):
            return None
        bounds = [s.indices(n) for s, n in zip(key, shape, strict=True)]
        if any(step != 1 for _, _, step in bounds):
            return None
        starts = [start for start, _, _ in bounds]
        box = tuple(max(0, stop - start) for start, stop, _ in bounds)
        mask = getattr(atom, "mask", None)
        if mask is None:  # every voxel of the box changed
            local = np.indices(box).reshape(ndim, -1)
        else:
            mask = np.asarray(mask, bool)
            if mask.shape != box:
                return None
            local = np.nonzero(mask)
        return tuple(np.asarray(c, np.int64) + s for c, s in zip(local, starts, strict=True))
    if isinstance(atom, tuple) and len(atom) == 3 and isinstance(atom[0], tuple) and len(atom[0]) == ndim:
        coords = tuple(np.asarray(c).reshape(-1) for c in atom[0])  # data_setitem's fancy index
        if not all(c.dtype.kind in "iu" for c in coords):
            return None
        return coords
    return None


class ScribbleIndex:
    """The scribbled voxels (value > 0) of one labels volume, updated from its edits.

    Feed it every edit with :meth:`painted`, call :meth:`invalidate` when the data are replaced, and get
    ``(points, values)`` from :meth:`sync`, which equals a full rescan of the data.

    Attributes
    ----------
    rescans : int
        Full rescans done so far (the first sync is one).
    """

    def __init__(self) -> None:
        self.shape: tuple[int, ...] | None = None
        self._flat = np.empty(0, np.int64)
        self._values = np.empty(0, np.uint8)
        self._pending: list[np.ndarray] = []
        self._stale = True
        self._top: Any = None  # the last history item this index has accounted for
        self.rescans = 0

    def invalidate(self) -> None:
        """Forget the index: the next :meth:`sync` rescans (data replaced, an untracked change)."""
        self._stale = True
        self._pending.clear()

    def painted(self, item: Sequence[Any], history: Sequence[Any] | None = None) -> None:
        """Record an edit (a napari ``paint`` event's ``value``).

        Parameters
        ----------
        item : sequence of history atoms
            The edit's atoms (see :func:`edit_indices`).
        history : sequence, optional
            The layer's undo history after the edit (napari appends ``item`` to it before the event).
            When the entry before ``item`` is not the last one this index accounted for, something
            happened in between that it did not see (an undo, then this stroke): the index rescans.
        """
        if history is not None:
            before = history[-2] if len(history) >= 2 else None
            if not (len(history) and history[-1] is item and before is self._top):
                self.invalidate()
            self._top = item
        if self._stale or self.shape is None:
            return
        flat = edit_indices(item, self.shape)
        if flat is None:
            self.invalidate()
        else:
            self._pending.append(flat)

    def moved(self, history: Sequence[Any] | None) -> bool:
        """Whether ``history`` (the layer's undo history) ends elsewhere than where this index last saw it:
        an undo or redo happened (True when there is no history to tell)."""
        if history is None:
            return True
        return (history[-1] if len(history) else None) is not self._top

    def sync(self, data: np.ndarray, history: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(points (N, ndim), values (N,))`` of the voxels > 0 of ``data``, as ``np.argwhere`` orders them.

        Parameters
        ----------
        data : ndarray
            The layer's data now (numpy: only the changed voxels are read).
        history : sequence, optional
            The layer's undo history: if its last item is not the last edit recorded (undo, redo), the
            index rescans.
        """
        data = np.asarray(data)
        if history is not None and self.moved(history):
            self.invalidate()
            self._top = history[-1] if len(history) else None
        if self._stale or self.shape != data.shape or self._values.dtype != data.dtype:
            self._rescan(data)
        elif self._pending:
            self._apply(data, np.unique(np.concatenate(self._pending)))
        self._pending.clear()
        points = np.stack(np.unravel_index(self._flat, data.shape), axis=1).astype(np.intp, copy=False)
        return points, self._values.copy()

    def _rescan(self, data: np.ndarray) -> None:
        self.shape = data.shape
        self._flat = np.flatnonzero(data > 0).astype(np.int64)
        self._values = data.reshape(-1)[self._flat] if data.flags.c_contiguous else \
            data[np.unravel_index(self._flat, data.shape)]
        self._stale = False
        self.rescans += 1

    def _apply(self, data: np.ndarray, flat: np.ndarray) -> None:
        now = data[np.unravel_index(flat, data.shape)]  # the changed voxels only
        keep = ~np.isin(self._flat, flat, assume_unique=True)
        painted = now > 0
        merged = np.concatenate([self._flat[keep], flat[painted]])
        values = np.concatenate([self._values[keep], now[painted]])
        order = np.argsort(merged, kind="stable")
        self._flat, self._values = merged[order], values[order]
