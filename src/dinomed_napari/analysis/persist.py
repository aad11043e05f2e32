"""Save / load a trained ScribbleSegmenter as one ``.npz`` file: arrays plus a JSON ``meta`` string.

No pickle anywhere (loaded with ``allow_pickle=False``). Layout (format ``dinomed-segmenter`` version 1):

- ``meta``: JSON with the classifier kind and options, the feature signature it needs (timm model name,
  weights label, feature dimension, layers), the feature settings it was trained with (resolution,
  preprocessing key, cache key), the classes, the tri-planar axes and the intensity normalisation.
- ``weights_<axis>`` (D, K) float32 and ``bias_<axis>`` (K,): the linear model of each pass, in raw
  feature units (standardisation folded in): ``logits = features @ weights + bias``.
- ``X_<axis>`` (N, D) float32 and ``y_<axis>`` (N,): the training samples (scribbled voxels). They make a
  random forest loadable (it is refitted, seeded, on load) and let a loaded segmenter keep learning.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import FeatureMismatchError
from .classifiers import LinearClassifier
from .segment import ScribbleSegmenter

FORMAT, VERSION = "dinomed-segmenter", 1


def save_segmenter(seg: ScribbleSegmenter, path, include_samples: bool = True) -> Path:
    """Write a fitted segmenter to ``path`` (``.npz`` appended if missing); returns the path written."""
    if not seg.models:
        raise FeatureMismatchError("cannot save an untrained segmenter: call fit() first")
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    meta = {
        "format": FORMAT, "version": VERSION, "classifier": seg.kind, "intensity": seg.intensity,
        "cleanup": seg.cleanup, "fill_holes": seg.fill_holes, "min_size": seg.min_size, "seed": seg.seed,
        "options": seg.options, "signature": seg.signature, "settings": seg.settings,
        "classes": [int(c) for c in seg.classes_], "axes": sorted(int(a) for a in seg.models),
        "n_dino": seg.n_dino, "image_range": list(seg.image_range) if seg.image_range else None,
        "spatial": seg.spatial, "spacing": list(seg.spacing) if seg.spacing else None,
    }
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
    for axis, model in seg.models.items():
        if model.linear:
            arrays[f"weights_{axis}"], arrays[f"bias_{axis}"] = model.weights, model.bias
        if include_samples or not model.linear:
            arrays[f"X_{axis}"], arrays[f"y_{axis}"] = seg.samples[axis]
    np.savez_compressed(path, **arrays)
    return path


def load_segmenter(path) -> ScribbleSegmenter:
    """Read a segmenter written by :func:`save_segmenter`.

    The result predicts once given features (``predict(features=...)``) that match its signature;
    features of another model, weights, dimension or layers raise :class:`FeatureMismatchError`.
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        if "meta" not in z.files:
            raise FeatureMismatchError(f"{path} is not a dinomed segmenter file (no 'meta' entry)")
        meta = json.loads(str(z["meta"]))
        arrays = {k: z[k] for k in z.files if k != "meta"}
    if meta.get("format") != FORMAT or int(meta.get("version", 0)) > VERSION:
        raise FeatureMismatchError(f"{path}: format {meta.get('format')} v{meta.get('version')}, expected "
                                   f"{FORMAT} v<={VERSION}")
    seg = ScribbleSegmenter(classifier=meta["classifier"], intensity=meta["intensity"],
                            cleanup=meta["cleanup"], fill_holes=meta["fill_holes"],
                            min_size=meta["min_size"], seed=meta["seed"],
                            spatial=meta.get("spatial", "none"), **meta["options"])
    seg.spacing = tuple(meta["spacing"]) if meta.get("spacing") else None
    seg.signature, seg.settings, seg.n_dino = meta["signature"], meta["settings"], int(meta["n_dino"])
    seg.image_range = tuple(meta["image_range"]) if meta["image_range"] else None
    classes = np.asarray(meta["classes"])
    for axis in meta["axes"]:
        if f"X_{axis}" in arrays:
            seg.samples[axis] = (arrays[f"X_{axis}"], arrays[f"y_{axis}"])
        if seg.kind == "linear":
            model = LinearClassifier(seed=seg.seed, **seg.options)
            model.set_params_from(arrays[f"weights_{axis}"], arrays[f"bias_{axis}"], classes)
        else:  # forests are refitted from the stored samples (seeded: the same forest)
            from .classifiers import make_classifier

            model = make_classifier(seg.kind, seed=seg.seed, **seg.options).fit(*seg.samples[axis])
        seg.models[axis] = model
    return seg
