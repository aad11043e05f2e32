"""Classic baseline on the same scribbles: skimage filter bank + random forest (the ilastik recipe)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from dinomed_napari.analysis.filterbank import MAX_3D_VOXELS, FilterBankRF

__all__ = ["FilterBankRF", "MAX_3D_VOXELS", "baseline_records"]

def case_filter_bank(lc, settings) -> FilterBankRF:
    """The filter bank of a case on the backbone's window (the same intensities the features saw)."""
    from dinomed_napari.preprocess import intensity_to_unit

    from .fewclick import prep_for

    image = intensity_to_unit(lc.volume, prep_for(lc.case, 224))  # the backbone's window (size unused)
    if image.ndim == 4:  # the 3-window "ct3" preset: the filter bank takes one channel per voxel
        image = image.mean(axis=-1)
    return FilterBankRF(image, axis=settings.axis)


def baseline_records(lc, settings) -> Iterator[tuple[dict, np.ndarray]]:
    """Baseline rows on the same seeded scribbles as the few-click protocol, for each number of slices."""
    from .fewclick import score, scribble_sets, to_classes

    bank = case_filter_bank(lc, settings)
    for scr in scribble_sets(lc, settings):
        pred = to_classes(bank.segment(scr.labels, seed=settings.seed))
        for row in score(pred, lc, scr):
            row.update(protocol="baseline", method="filterbank_rf", filters=bank.mode)
            yield row, pred
