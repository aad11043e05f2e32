"""Patch features of volumes: slice-by-slice extraction along any axis, cached on disk.

``extract_features``/``extract_triplanar`` are imported lazily (they pull in torch and the model code);
``FeatureVolume`` and the grid helpers are light.
"""

from dinomed_napari.features.volume import PLANE_AXES, FeatureVolume

__all__ = ["PLANE_AXES", "FeatureVolume", "extract_features", "extract_triplanar"]


def __getattr__(name: str):
    if name == "extract_features":
        from dinomed_napari.features.extract import extract_features

        return extract_features
    if name == "extract_triplanar":
        from dinomed_napari.features.triplanar import extract_triplanar

        return extract_triplanar
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
