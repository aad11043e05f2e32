"""Which weights the viewer offers first: what is on this machine, never a default that fails offline."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WeightsOffer:
    """``kind`` is "local file", "hub" or "choose"; ``value`` the path or hub tag; ``reason`` one line."""

    kind: str
    value: str
    reason: str


def default_weights(model: str = "S") -> WeightsOffer:
    """Local weights files first, then a filled hub cache, else "choose" with how to get weights."""
    from dinomed_napari.models.availability import hub_cached, local_files, weights_dir
    from dinomed_napari.models.registry import resolve_spec

    spec = resolve_spec(model)
    files = local_files(spec)
    if files:
        return WeightsOffer("local file", str(files[0]), f"found {files[0].name} in {files[0].parent}")
    for tag in spec.hub_tags:
        try:
            if hub_cached(spec, tag) is not None:
                return WeightsOffer("hub", tag, f"hub weights {tag} are in the local Hugging Face cache")
        except Exception:  # a broken cache folder is the same as no cache here
            break
    return WeightsOffer("choose", "", f"no {spec.short} weights on this machine: put a DINOv3 .pth or "
                        f".safetensors file in {weights_dir()} (or pick it as 'local file'), choose 'hub' "
                        "(downloads, needs network) or 'random' (tests the pipeline only)")
