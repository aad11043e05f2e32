"""What made an output: the record every written result carries (model, weights, resolution, window ...)."""

from __future__ import annotations

from typing import Any


def make_provenance(what: str, features: Any = None, **extra: Any) -> dict:
    """JSON-ready provenance of an output.

    Parameters
    ----------
    what : str
        What the file holds, e.g. "labels", "PC1", "probability of class 2".
    features : FeatureVolume, optional
        The features it was computed from: model, weights label, resolution, axis, layers and window.
    **extra
        More facts (command, thresholds ...); None values are dropped.
    """
    from dinomed_napari import __version__

    out: dict[str, Any] = {"software": f"dinomed-napari {__version__}", "what": what}
    if features is not None:
        prep = features.extra.get("prep") or {}
        out.update(model=features.model, weights=features.weights, resolution=int(features.resolution),
                   axis=int(features.axis), layers=list(features.layers) if features.layers else None,
                   window=prep.get("window"))
    out.update(extra)
    return {k: v for k, v in out.items() if v is not None}


def short_provenance(record: dict) -> str:
    """One line for 80-byte fields (NIfTI ``descrip``): weights first, they matter most."""
    model = str(record.get("model", "")).replace("vit_", "").replace("_patch16_dinov3", "")
    parts = [record.get("weights"), model, f"r{record['resolution']}" if "resolution" in record else None,
             record.get("window"), record.get("what")]
    return "dinomed " + " ".join(str(p) for p in parts if p)
