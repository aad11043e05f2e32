"""One loaded backbone kept per process, so the viewer's second extraction (and a warm-up started when
the tool opens) does not pay the model build again: the first slice then costs about one forward pass."""

from __future__ import annotations

import threading
from typing import Any

_LOCK = threading.Lock()
_CACHE: dict[tuple, Any] = {}


def cached_backbone(model: str, weights: str, device: str | None = None) -> Any:
    """:func:`dinomed_napari.models.load_backbone` with the last result kept (one model in memory).

    Thread-safe: a request made while another thread loads the same model waits for it instead of
    loading it twice.
    """
    from dinomed_napari.models.weights import load_backbone

    key = (model, weights, device)
    with _LOCK:
        if key not in _CACHE:
            _CACHE.clear()  # free the previous model before loading another
            _CACHE[key] = load_backbone(model, weights, device=device)
        return _CACHE[key]


def forget() -> None:
    """Drop the kept backbone (tests, memory)."""
    with _LOCK:
        _CACHE.clear()


def warm_up(model: str, weights: str, device: str | None = None) -> Any:
    """Load the backbone and pay the first-call costs of an extraction (zarr's import for the cache,
    scikit-learn's import and first PCA fit: 2-3 s on a slow CPU), so that its first slice shows quickly."""
    import numpy as np
    import zarr  # noqa: F401  (imported by the feature cache on first use)

    from dinomed_napari.analysis.pca import fit_pca
    from dinomed_napari.features.volume import FeatureVolume

    backbone = cached_backbone(model, weights, device)
    tokens = np.random.default_rng(0).standard_normal((1, 4, 4, 8)).astype(np.float16)
    fit_pca(FeatureVolume(tokens, 0, (1, 64, 64), "warm-up", "warm-up", 64))
    return backbone
