"""DINOv3 backbones: registry, device choice, weights loading and patch-feature extraction."""

from dinomed_napari.models.backbone import Backbone
from dinomed_napari.models.device import compute_dtype, pick_device
from dinomed_napari.models.registry import REGISTRY, BackboneSpec, resolve_spec
from dinomed_napari.models.weights import load_backbone

__all__ = ["REGISTRY", "Backbone", "BackboneSpec", "compute_dtype", "load_backbone", "pick_device",
           "resolve_spec"]
