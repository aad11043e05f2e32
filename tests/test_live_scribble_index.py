"""The incremental scribble index equals a full rescan after every kind of edit (live.scribble_index)."""

from __future__ import annotations

import numpy as np
import pytest

from dinomed_napari.live.jobs import scribble_points
from dinomed_napari.live.scribble_index import ScribbleIndex, edit_indices

SHAPE = (5, 20, 24)


def assert_same(index, data, history=None):
    points, values = index.sync(data, history)
    ref_points, ref_values = scribble_points(data)
    np.testing.assert_array_equal(points, ref_points)
    np.testing.assert_array_equal(values, ref_values)
    assert values.dtype == ref_values.dtype and points.shape == ref_points.shape


def setitem(data, history, mask, value):
    """What napari's ``data_setitem`` records: an ``(indices, old, new)`` atom, appended as one item."""
    idx = np.nonzero(mask)
    item = [(idx, data[idx].copy(), value)]
    data[idx] = value
    history.append(item)
    return item


def test_edit_indices_of_both_atom_forms():
    class Masked:  # napari's _MaskedPaintAtom
        def __init__(self, slice_key, mask):
            self.slice_key, self.mask, self.old_values, self.new_value = slice_key, mask, None, 1

    mask = np.zeros((1, 2, 3), bool)
    mask[0, 1, 2] = mask[0, 0, 0] = True
    box = Masked((slice(2, 3), slice(4, 6), slice(7, 10)), mask)
    whole = Masked((slice(0, 1), slice(0, 1), slice(0, 2)), None)
    tup = ((np.array([4]), np.array([19]), np.array([23])), np.array([0]), 2)
    flat = edit_indices([box, whole, tup], SHAPE)
    expect = np.ravel_multi_index(([2, 2, 0, 0, 4], [4, 5, 0, 0, 19], [7, 9, 0, 1, 23]), SHAPE)
    np.testing.assert_array_equal(flat, np.unique(expect))
    assert edit_indices([object()], SHAPE) is None  # unknown form: the caller rescans
    assert edit_indices([((np.array([9]), np.array([0]), np.array([0])), None, 1)], SHAPE) is None
    assert edit_indices([Masked((slice(0, 1),), None)], SHAPE) is None  # wrong number of axes


def test_random_strokes_erase_and_overwrite_follow_the_rescan():
    rng = np.random.default_rng(0)
    data = np.zeros(SHAPE, np.uint8)
    history: list = []
    index = ScribbleIndex()
    assert_same(index, data, history)
    for _ in range(40):
        z, y, x = rng.integers(0, 5), rng.integers(0, 16), rng.integers(0, 20)
        mask = np.zeros(SHAPE, bool)
        mask[z, y:y + rng.integers(1, 5), x:x + rng.integers(1, 5)] = True
        value = int(rng.integers(0, 4))  # 0 = erase
        index.painted(setitem(data, history, mask, value), history)
        if rng.random() < 0.5:  # sometimes several edits before the next sync
            assert_same(index, data, history)
    assert_same(index, data, history)
    assert index.rescans == 1  # only the first sync scanned the volume
    assert (data > 0).sum() > 0


def test_undo_redo_and_replaced_data_rescan():
    data = np.zeros(SHAPE, np.uint8)
    history: list = []
    index = ScribbleIndex()
    index.sync(data, history)
    a = np.zeros(SHAPE, bool)
    a[1, 2:5, 3:9] = True
    item = setitem(data, history, a, 1)
    index.painted(item, history)
    assert_same(index, data, history)
    # undo (napari pops the item and writes the old values back; no paint event)
    history.pop()
    (idx, old, _new), = item
    data[idx] = old
    assert_same(index, data, history)
    assert index.rescans == 2 and not data.any()
    # redo (a new list object goes back on the history; no paint event)
    data[idx] = 1
    history.append(list(item))
    assert_same(index, data, history)
    assert index.rescans == 3
    # undo, then a new stroke before any sync: the stroke's event shows the history moved under it
    history.pop()
    data[idx] = 0
    b = np.zeros(SHAPE, bool)
    b[3, 0:2, 0:2] = True
    index.painted(setitem(data, history, b, 2), history)
    assert_same(index, data, history)
    assert index.rescans == 4
    # the data replaced (napari's "data" event): the widget invalidates
    data = np.zeros(SHAPE, np.int32)
    data[0, 0, 0] = 5
    index.invalidate()
    assert_same(index, data, [])
    # without a history the index trusts its edits (the widget invalidates on untracked events)
    index = ScribbleIndex()
    index.sync(data)
    data[4, 4, 4] = 2
    index.painted([((np.array([4]), np.array([4]), np.array([4])), np.array([0]), 2)])
    assert_same(index, data)
    assert index.rescans == 1


def test_real_napari_labels_paint_erase_fill_undo_redo():
    pytest.importorskip("napari")
    from napari.layers import Labels

    layer = Labels(np.zeros((4, 30, 40), np.uint8))
    index = ScribbleIndex()
    layer.events.paint.connect(lambda e: index.painted(e.value, layer._undo_history))

    def check():
        assert_same(index, np.asarray(layer.data), layer._undo_history)

    check()
    layer.brush_size = 5
    layer.paint((1, 10, 10), 1)  # brush: a masked bounding-box atom
    layer.paint((1, 12, 14), 2)  # overwrites part of the first
    check()
    layer.data_setitem((np.array([2, 2]), np.array([0, 1]), np.array([0, 1])), 3)  # fancy-index atom
    layer.paint((1, 10, 10), 0)  # erase
    check()
    layer.fill((3, 0, 0), 2)  # the whole empty slice 3: a box atom without a mask
    check()
    assert index.rescans == 1
    layer.undo()
    check()
    layer.undo()
    layer.redo()
    check()
    layer.paint((0, 5, 5), 1)
    check()
    layer.data = np.zeros((4, 30, 40), np.uint8)
    index.invalidate()  # what the widget does on the layer's "data" event
    check()
    assert index.rescans == 4
