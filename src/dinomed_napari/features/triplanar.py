"""Features along all three axes (axial, coronal, sagittal) for tri-planar analysis."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dinomed_napari.io.volume import Volume

from .extract import as_volume, extract_features
from .volume import FeatureVolume


def extract_triplanar(
    volume: Volume | np.ndarray,
    *,
    axes: Sequence[int] = (0, 1, 2),
    progress: Callable[[int, int], Any] | None = None,
    first: int | Sequence[int] | None = None,
    **kwargs: Any,
) -> dict[int, FeatureVolume]:
    """:func:`~dinomed_napari.features.extract.extract_features` along each of ``axes``.

    Parameters
    ----------
    volume : Volume or np.ndarray
        (Z, Y, X) image.
    axes : sequence of int
        Slicing axes, default all three.
    progress : callable(done, total), optional
        Progress over all axes together: ``total`` is the sum of the slice counts.
    first : int or (z, y, x), optional
        A point (the viewer's cursor): along axis ``a`` the slice ``first[a]`` is computed first.
        An int applies to every axis.
    **kwargs
        Everything else ``extract_features`` takes (model, weights, backbone, prep, layers, batch_size,
        cache_dir, cancel, device). Each axis has its own cache entry; the backbone is built once.

    Returns
    -------
    dict of int -> FeatureVolume
    """
    vol = as_volume(volume)
    axes = [int(a) for a in axes]
    total = sum(vol.shape[a] for a in axes if a in (0, 1, 2))
    out: dict[int, FeatureVolume] = {}
    offset = 0
    for a in axes:
        report = None
        if progress is not None:
            def report(done, _n, _offset=offset):
                progress(_offset + done, total)

        point = first if first is None or np.isscalar(first) else first[a]
        out[a] = extract_features(vol, axis=a, progress=report, first=point, **kwargs)
        offset += out[a].n_slices
    return out
