"""Linear-probe classification on frozen embeddings: logistic regression, stratified k-fold CV, AUC,
accuracy.

Slice level: each slice's patch features mean-pooled to one vector, target "the slice contains label k"
(from the mask). Volume level: each case's features mean-pooled over the whole volume, target given per case.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dinomed_napari.features.volume import FeatureVolume


class ProbeNotApplicable(ValueError):
    """Too few samples of one class for cross-validation (e.g. every slice contains the organ)."""


def slice_embeddings(fv: FeatureVolume) -> np.ndarray:
    """Mean-pooled patch features of every slice, shape (S, C) float32 (read one slice at a time)."""
    return np.stack([fv.slice(s).mean(axis=(0, 1)) for s in range(fv.n_slices)]).astype(np.float32)


def volume_embedding(fv: FeatureVolume) -> np.ndarray:
    """Mean-pooled patch features of the whole volume, shape (C,) float32."""
    return slice_embeddings(fv).mean(axis=0)


def slice_targets(truth: np.ndarray, axis: int, class_index: int) -> np.ndarray:
    """Per slice along ``axis``: does the class map contain ``class_index``? Shape (S,) bool."""
    other = tuple(a for a in range(truth.ndim) if a != axis)
    return np.any(np.asarray(truth) == class_index, axis=other)


def linear_probe(x: np.ndarray, y: np.ndarray, *, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Cross-validated logistic regression of binary targets on embeddings.

    Parameters
    ----------
    x : array (N, C)
    y : array (N,) of bool / {0, 1}
    folds : int
        Stratified folds; reduced to the size of the smaller class when that is smaller (at least 2).
    seed : int
        Fold shuffling seed.

    Returns
    -------
    dict
        ``auc`` (ROC AUC of the out-of-fold probabilities), ``accuracy`` (threshold 0.5), ``folds``,
        ``n_pos``, ``n_neg``.

    Raises
    ------
    ProbeNotApplicable
        Fewer than 2 samples in either class.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(y).astype(int)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if min(n_pos, n_neg) < 2:
        raise ProbeNotApplicable(f"probe needs >= 2 samples with and without the target; found {n_pos} "
                                 f"positive and {n_neg} negative of {len(y)}")
    k = max(2, min(int(folds), n_pos, n_neg))
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    prob = cross_val_predict(clf, np.asarray(x, dtype=np.float64), y, cv=cv, method="predict_proba")[:, 1]
    return {"auc": float(roc_auc_score(y, prob)), "accuracy": float(accuracy_score(y, prob >= 0.5)),
            "folds": k, "n_pos": n_pos, "n_neg": n_neg}


def probe_rows(fv: FeatureVolume, truth: np.ndarray, labels: tuple[int, ...], *, folds: int,
               seed: int) -> list[dict[str, Any]]:
    """Slice-level probe rows, one per label: "does this slice contain label k?" (``status`` skipped
    with the reason when every slice, or none, contains it)."""
    x = slice_embeddings(fv)
    rows = []
    for k, lab in enumerate(labels, start=1):
        row: dict[str, Any] = {"protocol": "probe", "method": "slice", "label": lab, "class_index": k}
        try:
            row.update(linear_probe(x, slice_targets(truth, fv.axis, k), folds=folds, seed=seed), status="ok")
        except ProbeNotApplicable as exc:
            row.update(status="skipped", error=f"label {lab}: {exc}")
        rows.append(row)
    return rows


def embedding_row(fv: FeatureVolume, target: int) -> dict[str, Any]:
    """A case's mean-pooled volume embedding and its target, kept for the volume-level probe."""
    return {"protocol": "embedding", "method": "mean-pooled", "target": int(target),
            "embedding": [float(v) for v in volume_embedding(fv)], "status": "ok"}


def volume_probe_rows(rows: list[dict[str, Any]], *, folds: int, seed: int) -> list[dict[str, Any]]:
    """Volume-level probe per (model, resolution) over the cases' embedding rows (targets from the config).

    Returns one row per setting (``status`` skipped with the reason when a target class has < 2 cases).
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("protocol") == "embedding" and r.get("status") == "ok":
            groups.setdefault((r["model"], r["resolution"], r["weights"]), []).append(r)
    out = []
    for (model, res, weights), group in sorted(groups.items(), key=lambda kv: str(kv[0])):
        group = sorted(group, key=lambda r: r["case"])  # order-independent (dask returns in any order)
        row: dict[str, Any] = {"case": f"{len(group)} cases", "protocol": "probe", "method": "volume",
                               "model": model, "resolution": res, "weights": weights, "label": "target"}
        try:
            x = np.array([r["embedding"] for r in group], dtype=np.float32)
            y = np.array([r["target"] for r in group])
            row.update(linear_probe(x, y, folds=folds, seed=seed), status="ok")
        except ProbeNotApplicable as exc:
            row.update(status="skipped", error=f"volume-level probe: {exc}")
        out.append(row)
    return out
