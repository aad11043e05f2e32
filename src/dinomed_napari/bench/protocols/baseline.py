"""Classic baseline on the same scribbles: skimage filter bank + random forest (the ilastik recipe)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def filter_bank_segment(image: np.ndarray, scribbles: np.ndarray, *, seed: int = 0, sigma_max: float = 16.0,
                        n_estimators: int = 50) -> np.ndarray:
    """Segment a volume from scribbles with 3D multiscale filters and a random forest.

    Parameters
    ----------
    image : np.ndarray, (Z, Y, X)
        Intensities already windowed to [0, 1] (the same preprocessing the backbone gets).
    scribbles : np.ndarray of int, (Z, Y, X)
        0 unlabelled, 1..K classes (the scribble convention of :class:`ScribbleSegmenter`).
    seed : int
        Random forest seed (same seed, same prediction).
    sigma_max : float
        Largest Gaussian scale of the filter bank, in voxels.
    n_estimators : int
        Trees of the forest.

    Returns
    -------
    np.ndarray, same shape and values 1..K
        Predicted class of every voxel.

    Notes
    -----
    ``skimage.feature.multiscale_basic_features`` (intensity, edges and texture at scales 0.5..sigma_max)
    on the whole volume, then ``skimage.future.fit_segmenter`` / ``predict_segmenter``: what ilastik's pixel
    classification does by default. Memory is about 4 bytes x 15 filters per voxel.
    """
    from skimage.feature import multiscale_basic_features
    from skimage.future import fit_segmenter, predict_segmenter
    from sklearn.ensemble import RandomForestClassifier

    image = np.asarray(image, dtype=np.float32)
    scribbles = np.asarray(scribbles)
    if image.shape != scribbles.shape:
        from dinomed_napari.errors import ScribbleError

        raise ScribbleError(f"scribbles of shape {scribbles.shape} do not match the image {image.shape}")
    # Scales beyond the volume's smallest side only blur everything into one value: cap them.
    sigma_max = float(min(sigma_max, max(1.0, min(image.shape) / 2)))
    feats = multiscale_basic_features(image, sigma_min=0.5, sigma_max=sigma_max).astype(np.float32)
    clf = RandomForestClassifier(n_estimators=n_estimators, max_depth=10, max_samples=0.5, n_jobs=1,
                                 random_state=seed, class_weight="balanced")
    clf = fit_segmenter(scribbles.astype(np.int64), feats, clf)
    return predict_segmenter(feats, clf).astype(np.uint8)


def baseline_records(lc, settings) -> Iterator[tuple[dict, np.ndarray]]:
    """Baseline rows on the same seeded scribbles as the few-click protocol, for each number of slices."""
    from dinomed_napari.preprocess import intensity_to_unit

    from .fewclick import prep_for, score, scribbles_for, to_classes

    image = intensity_to_unit(lc.volume, prep_for(lc.case, 224))  # the backbone's window (size unused)
    if image.ndim == 4:  # the 3-window "ct3" preset: the filter bank takes one channel per voxel
        image = image.mean(axis=-1)
    for n in sorted(set(settings.slices)):
        scr = scribbles_for(lc, n, settings)
        pred = to_classes(filter_bank_segment(image, scr.labels, seed=settings.seed))
        for row in score(pred, lc, scr):
            row.update(protocol="baseline", method="filterbank_rf")
            yield row, pred
