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

from ..errors import FeatureMismatchError, load_failure
from .classifiers import LinearClassifier
from .segment import ScribbleSegmenter

FORMAT, VERSION = "dinomed-segmenter", 1


def save_segmenter(seg: ScribbleSegmenter, path, include_samples: bool = True) -> Path:
    """Write a fitted segmenter to ``path`` (``.npz`` appended if missing); returns the path written."""
    if not seg.models:
        raise FeatureMismatchError("cannot save an untrained segmenter: call fit() first")
    path = segmenter_path(path)
    meta = {
        "format": FORMAT, "version": VERSION, "classifier": seg.kind, "intensity": seg.intensity,
        "cleanup": seg.cleanup, "fill_holes": seg.fill_holes, "min_size": seg.min_size, "seed": seg.seed,
        "options": seg.options, "signature": seg.signature, "settings": seg.settings,
        "classes": [int(c) for c in seg.classes_], "axes": sorted(int(a) for a in seg.models),
        "n_dino": seg.n_dino, "image_range": list(seg.image_range) if seg.image_range else None,
        "spatial": seg.spatial, "forest_prior": seg.forest_prior,
        "spacing": list(seg.spacing) if seg.spacing else None,
    }
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
    for axis, model in seg.models.items():
        if model.linear:
            arrays[f"weights_{axis}"], arrays[f"bias_{axis}"] = model.weights, model.bias
        if include_samples or not model.linear:
            arrays[f"X_{axis}"], arrays[f"y_{axis}"] = seg.samples[axis]
    from ..io.atomic import atomic_output

    # Complete or not at all: a full disk never leaves a truncated model that later loads.
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def segmenter_path(path) -> Path:
    """The file :func:`save_segmenter` writes for ``path`` (``.npz`` appended if missing)."""
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def load_segmenter(path) -> ScribbleSegmenter:
    """Read a segmenter written by :func:`save_segmenter`.

    The result predicts once given features (``predict(features=...)``) that match its signature;
    features of another model, weights, dimension or layers raise :class:`FeatureMismatchError`.
    """
    path = Path(path)
    if not path.is_file():
        raise FeatureMismatchError(f"segmenter file {path} not found; expected a .npz written by "
                                   "--save-model / save_segmenter")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z.files:
                raise FeatureMismatchError(f"{path} is not a dinomed segmenter file (no 'meta' entry)")
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except FeatureMismatchError:
        raise
    except Exception as exc:  # truncated zip (a full disk), not a zip, object arrays, bad JSON
        raise FeatureMismatchError(f"{path}: not a readable segmenter file ({load_failure(exc)}); "
                                   "save it again") from exc
    if meta.get("format") != FORMAT or int(meta.get("version", 0)) > VERSION:
        raise FeatureMismatchError(f"{path}: format {meta.get('format')} v{meta.get('version')}, expected "
                                   f"{FORMAT} v<={VERSION}")
    seg = ScribbleSegmenter(classifier=meta["classifier"], intensity=meta["intensity"],
                            cleanup=meta["cleanup"], fill_holes=meta["fill_holes"],
                            min_size=meta["min_size"], seed=meta["seed"],
                            spatial=meta.get("spatial", "none"),
                            forest_prior=meta.get("forest_prior", True), **meta["options"])
    seg.spacing = tuple(meta["spacing"]) if meta.get("spacing") else None
    seg.signature, seg.settings, seg.n_dino = meta["signature"], meta["settings"], int(meta["n_dino"])
    seg.image_range = tuple(meta["image_range"]) if meta["image_range"] else None
    classes = np.asarray(meta["classes"])
    missing = [k for a in meta["axes"] for k in ((f"weights_{a}", f"bias_{a}") if seg.kind == "linear"
                                                else (f"X_{a}", f"y_{a}")) if k not in arrays]
    if missing:
        raise FeatureMismatchError(f"{path}: incomplete segmenter file, missing {missing}; save it again")
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


def stored_preprocess(seg: ScribbleSegmenter, path, **requested):
    """The :class:`~dinomed_napari.preprocess.Preprocess` the segmenter's features were made with.

    ``requested`` (e.g. ``resolution=256, window=None``): values the user asked for; None means "not
    given" (the stored one is used). A given value that differs raises :class:`FeatureMismatchError`,
    since features at another resolution or window silently give wrong masks. Returns None for files
    that stored no settings.
    """
    import dataclasses

    from ..preprocess import Preprocess

    key = dict((seg.settings or {}).get("prep") or {})
    if not key:
        return None
    fields = {f.name for f in dataclasses.fields(Preprocess)}
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in key.items() if k in fields}
    kw.setdefault("resolution", (seg.settings or {}).get("resolution"))
    for name, value in requested.items():
        if value is not None and name in kw and kw[name] != value:
            raise FeatureMismatchError(f"{path} was trained on features with {name} {kw[name]!r}, not "
                                       f"{value!r}: omit --{name} to use the stored setting, or train anew")
    return Preprocess(**kw)


def check_request(seg: ScribbleSegmenter, path, *, model: str, weights_label: str, layers) -> tuple | None:
    """Refuse, before extraction, a model / weights / layers other than the segmenter's; returns the
    layers to extract (the stored ones when ``layers`` is None)."""
    from ..models.registry import resolve_spec

    sig = seg.signature or {}
    want = resolve_spec(model).timm_name.removesuffix("_qkvb")
    if sig.get("model") and str(sig["model"]).removesuffix("_qkvb") != want:
        raise FeatureMismatchError(f"{path} was trained on {sig['model']} features, not {want}: pass the "
                                   "matching --model")
    if sig.get("weights") and sig["weights"] != weights_label:
        raise FeatureMismatchError(f"{path} was trained with weights {sig['weights']}, not {weights_label}: "
                                   "pass the same --weights")
    stored = tuple(sig["layers"]) if sig.get("layers") else None
    if layers is not None:
        depth = resolve_spec(model).depth
        norm = tuple(sorted({int(i) + depth if int(i) < 0 else int(i) for i in layers}))
        if norm != stored:
            raise FeatureMismatchError(f"{path} was trained on layers {stored or 'final'}, not {norm}: omit "
                                       "--layers to use the stored ones")
    return stored
