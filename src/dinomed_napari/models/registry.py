"""The DINOv3 ViT backbones timm knows, with the numbers a user picks a model by.

Sizes are stored (not computed) so listing them never imports timm; ``tests/test_models_registry.py``
checks every number against the architecture timm builds.
"""

from __future__ import annotations

from dataclasses import dataclass

from dinomed_napari.errors import WeightsError


@dataclass(frozen=True)
class BackboneSpec:
    """One DINOv3 ViT architecture.

    Attributes
    ----------
    short : str
        Short name used on the command line ("S", "S+", "B", "L", "H+", "7B"; "-qkvb" variants keep a
        query/value bias, which Meta's S and S+ checkpoints need to load losslessly).
    timm_name : str
        ``timm.create_model`` name.
    embed_dim : int
        Feature dimension C of one layer's patch tokens.
    depth : int
        Number of transformer blocks (valid ``layers`` indices are 0 .. depth-1).
    params_m : float
        Parameter count in millions.
    hub_tags : tuple of str
        Pretrained tags timm can fetch from the Hugging Face hub (``timm_name.tag``).
    num_heads : int
        Attention heads.
    patch_size : int
        Pixels per patch side.
    huge : bool
        True for models too big for a laptop CPU (7B): listed, never built by default tests.
    """

    short: str
    timm_name: str
    embed_dim: int
    depth: int
    params_m: float
    hub_tags: tuple[str, ...]
    num_heads: int = 6
    patch_size: int = 16
    huge: bool = False

    @property
    def default_tag(self) -> str:
        return self.hub_tags[0]


# Input normalisation each pretraining set expects (satellite weights use their own statistics).
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SAT_MEAN_STD = ((0.430, 0.411, 0.296), (0.213, 0.156, 0.143))

_S = "lvd1689m"
_SAT = "sat493m"
_EUPE = "eupe_lvd1689m"

REGISTRY: dict[str, BackboneSpec] = {
    s.short: s
    for s in (
        BackboneSpec("S", "vit_small_patch16_dinov3", 384, 12, 21.59, (_S,), 6),
        BackboneSpec("S+", "vit_small_plus_patch16_dinov3", 384, 12, 28.68, (_S,), 6),
        BackboneSpec("B", "vit_base_patch16_dinov3", 768, 12, 85.64, (_S,), 12),
        BackboneSpec("L", "vit_large_patch16_dinov3", 1024, 24, 303.08, (_S, _SAT), 16),
        BackboneSpec("H+", "vit_huge_plus_patch16_dinov3", 1280, 32, 840.51, (_S,), 20),
        BackboneSpec("7B", "vit_7b_patch16_dinov3", 4096, 40, 6716.03, (_S, _SAT), 32, huge=True),
        BackboneSpec("T-qkvb", "vit_tiny_patch16_dinov3_qkvb", 192, 12, 5.49, (_EUPE,), 3),
        BackboneSpec("S-qkvb", "vit_small_patch16_dinov3_qkvb", 384, 12, 21.60, (_S, _EUPE), 6),
        BackboneSpec("S+-qkvb", "vit_small_plus_patch16_dinov3_qkvb", 384, 12, 28.69, (_S,), 6),
        BackboneSpec("B-qkvb", "vit_base_patch16_dinov3_qkvb", 768, 12, 85.66, (_S, _EUPE), 12),
        BackboneSpec("L-qkvb", "vit_large_patch16_dinov3_qkvb", 1024, 24, 303.13, (_S, _SAT), 16),
        BackboneSpec("H+-qkvb", "vit_huge_plus_patch16_dinov3_qkvb", 1280, 32, 840.59, (_S,), 20),
    )
}

_BY_TIMM = {s.timm_name: s for s in REGISTRY.values()}


def norm_stats(tag_or_name: str | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the weights of a hub tag or file name expect: satellite (sat493m) or ImageNet."""
    return SAT_MEAN_STD if tag_or_name and "sat493m" in tag_or_name else IMAGENET_MEAN_STD


def split_tag(name: str) -> tuple[str, str | None]:
    """Split ``"vit_small_patch16_dinov3.lvd1689m"`` into the model name and the hub tag (or None)."""
    base, dot, tag = name.strip().partition(".")
    return base, (tag if dot else None)


def resolve_spec(name: str) -> BackboneSpec:
    """Find a backbone by short name, timm name or ``timm_name.tag``.

    Parameters
    ----------
    name : str
        "S", "S+", "B", "L", "H+", "7B" (case-insensitive), a timm name such as
        "vit_small_patch16_dinov3", or a tagged name "vit_small_patch16_dinov3.lvd1689m".

    Returns
    -------
    BackboneSpec

    Raises
    ------
    WeightsError
        Unknown name, or a hub tag timm does not have for that model.
    """
    if isinstance(name, BackboneSpec):
        return name
    base, tag = split_tag(str(name))
    spec = _BY_TIMM.get(base) or next((s for s in REGISTRY.values() if s.short.lower() == base.lower()), None)
    if spec is None:
        known = ", ".join(REGISTRY)
        raise WeightsError(f"unknown backbone {name!r}; expected one of {known} or a timm name such as "
                           f"'vit_small_patch16_dinov3'")
    if tag is not None and tag not in spec.hub_tags:
        raise WeightsError(f"backbone {spec.timm_name} has no hub tag {tag!r}; "
                           f"timm has {', '.join(spec.hub_tags)}")
    return spec
