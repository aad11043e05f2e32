"""Classifiers of the scribble segmenter: class-balanced logistic regression (default) or random forest."""

from __future__ import annotations

import numpy as np

from ..blas import limited


class LinearClassifier:
    """Class-balanced multinomial logistic regression on standardised features.

    The standardisation is folded into ``weights``/``bias`` after fitting, so the logits of any feature
    array (patch grid or pixel grid) are one matrix product: ``logits = X @ weights + bias``. Being linear,
    logits of bilinearly upsampled features equal bilinearly upsampled patch logits, which is what lets the
    segmenter predict on the patch grid only.

    Parameters
    ----------
    C : float
        Inverse L2 regularisation strength (sklearn's ``C``).
    max_iter : int
        L-BFGS iterations at most. A cold fit of three classes on the bundled CT crop (1141 samples x 384
        features) needed 300; the default leaves room.
    tol : float
        L-BFGS stopping tolerance of warm-started refits (one more stroke): 1e-3 stops them after a few
        iterations. A cold fit (first fit, classes changed) uses sklearn's 1e-4.
    seed : int
    """

    linear = True

    def __init__(self, C: float = 1.0, max_iter: int = 1000, tol: float = 1e-3, seed: int = 0):
        self.C, self.max_iter, self.tol, self.seed = C, max_iter, tol, seed
        self._lr = None
        self._stats = None
        self.classes_ = np.zeros(0, int)
        self.weights = np.zeros((0, 0), np.float32)
        self.bias = np.zeros(0, np.float32)

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearClassifier:
        from sklearn import config_context
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, dtype=np.float32)
        classes = np.unique(y)
        # Warm start from the previous solution when only samples changed (one more stroke): few iterations.
        warm = self._lr is not None and np.array_equal(classes, self.classes_)
        n_prev = self._stats[2] if self._stats else 0
        if not warm or self._stats[0].shape[0] != X.shape[1] or abs(len(X) - n_prev) > 0.25 * n_prev:
            # Standardisation statistics are refreshed only when the sample set changed a lot: a stroke
            # more does not move them, and keeping them keeps the warm start's solution valid.
            self._stats = (X.mean(axis=0), np.maximum(X.std(axis=0), 1e-6), len(X))
        mean, std = self._stats[0], self._stats[1]
        if not warm:
            self._lr = LogisticRegression(C=self.C, solver="lbfgs", tol=self.tol,
                                          max_iter=self.max_iter, random_state=self.seed, warm_start=True)
        xs = np.subtract(X, mean, dtype=np.float32)  # one temporary, scaled in place
        xs /= std
        self._lr.tol = self.tol if warm else 1e-4  # a cold fit converges fully; refits stop earlier
        # Class balance as sample weights (sklearn's "balanced" rule, n / (K * count)) computed with one
        # bincount: sklearn's own class_weight path costs more than the refit's solver iterations.
        codes = np.searchsorted(classes, y)
        counts = np.bincount(codes, minlength=len(classes))
        weight = (len(y) / (len(classes) * counts))[codes]
        # One BLAS thread: a small solve runs far faster on one (see dinomed_napari.blas).
        with config_context(assume_finite=True), limited(1):  # NaN/inf images are refused earlier
            self._lr.fit(xs, y, sample_weight=weight)
        coef, icpt = self._lr.coef_, self._lr.intercept_
        if len(classes) == 2:  # sklearn keeps one row for two classes: split it into symmetric logits
            coef = np.vstack([-coef / 2, coef / 2])
            icpt = np.array([-icpt[0] / 2, icpt[0] / 2])
        w = (coef / std).T  # (D, K) in raw feature units
        self.weights = w.astype(np.float32)
        self.bias = (icpt - mean @ w).astype(np.float32)
        self.classes_ = classes
        return self

    def set_params_from(self, weights: np.ndarray, bias: np.ndarray, classes: np.ndarray) -> None:
        """Restore a fitted model (from a saved segmenter) without refitting."""
        self.weights = np.asarray(weights, np.float32)
        self.bias = np.asarray(bias, np.float32)
        self.classes_ = np.asarray(classes)

    def logits(self, X: np.ndarray) -> np.ndarray:
        """(..., D) features -> (..., K) logits."""
        return np.asarray(X, dtype=np.float32) @ self.weights + self.bias

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return softmax(self.logits(X))


class ForestClassifier:
    """Class-balanced random forest (sklearn). Non-linear: it must see pixel-level (upsampled) features,
    which makes prediction much slower than the linear model."""

    linear = False

    def __init__(self, n_estimators: int = 100, max_depth: int | None = 12, seed: int = 0):
        self.n_estimators, self.max_depth, self.seed = n_estimators, max_depth, seed
        self._rf = None
        self.classes_ = np.zeros(0, int)

    def fit(self, X: np.ndarray, y: np.ndarray) -> ForestClassifier:
        from sklearn.ensemble import RandomForestClassifier

        self._rf = RandomForestClassifier(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                          class_weight="balanced", n_jobs=-1, random_state=self.seed)
        self._rf.fit(np.asarray(X, np.float32), y)
        self.classes_ = self._rf.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        shape = X.shape[:-1]
        p = self._rf.predict_proba(np.asarray(X, np.float32).reshape(-1, X.shape[-1]))
        return p.reshape(shape + (p.shape[-1],)).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, float32."""
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    if logits.size > 1 << 20:  # volumes: torch's fused multi-threaded softmax is ~2x numpy's
        import torch

        return torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
    e = logits - logits.max(axis=-1, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=-1, keepdims=True)
    return e


def make_classifier(kind: str = "linear", seed: int = 0, **options):
    """``"linear"`` -> :class:`LinearClassifier`, ``"rf"`` -> :class:`ForestClassifier`."""
    if kind == "linear":
        return LinearClassifier(seed=seed, **options)
    if kind in ("rf", "random_forest", "forest"):
        return ForestClassifier(seed=seed, **options)
    raise ValueError(f"classifier must be 'linear' or 'rf', got {kind!r}")
