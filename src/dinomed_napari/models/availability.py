"""Which backbone weights are on this machine: the Hugging Face cache and the local weights folder."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from dinomed_napari.models.registry import BackboneSpec

# File-name stems of Meta's DINOv3 release (e.g. dinov3_vits16_pretrain_lvd1689m-08c60483.pth).
META_STEMS = {"S": "dinov3_vits16", "S+": "dinov3_vits16plus", "B": "dinov3_vitb16", "L": "dinov3_vitl16",
              "H+": "dinov3_vith16plus", "7B": "dinov3_vit7b16"}
_WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors")
_HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set now, not only at import time."""
    return _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (``HF_ENDPOINT``) accepts a TCP connection: checked before a download
    so that a machine without network fails at once instead of after a minute of retries."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, following ``HF_HUB_CACHE`` / ``HF_HOME`` as they are now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    home = os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface")
    return Path(home).expanduser() / "hub"


def hub_cached(spec: BackboneSpec, tag: str) -> Path | None:
    """Path of the cached timm hub weights ``timm/<timm_name>.<tag>``, or None when not downloaded."""
    from huggingface_hub import try_to_load_from_cache

    for filename in _HUB_FILES:
        found = try_to_load_from_cache(f"timm/{spec.timm_name}.{tag}", filename, cache_dir=hub_cache_dir())
        if isinstance(found, str):
            return Path(found)
    return None


def weights_dir() -> Path:
    """Folder searched for weights files: ``$DINOMED_WEIGHTS``, else ``~/.cache/dinomed-napari/weights``."""
    env = os.environ.get("DINOMED_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dinomed-napari" / "weights"


def local_files(spec: BackboneSpec, folder: Path | None = None) -> list[Path]:
    """Weights files in ``folder`` whose names match ``spec``: Meta's release names, the timm name, or
    MedDINOv3 (ViT-B) checkpoints."""
    folder = weights_dir() if folder is None else folder
    if not folder.is_dir():
        return []
    base = spec.short.removesuffix("-qkvb")
    stem = META_STEMS.get(base)
    out = []
    for f in sorted(folder.iterdir()):
        name = f.name.lower()
        if not f.is_file() or not name.endswith(_WEIGHT_SUFFIXES):
            continue
        meta = stem is not None and (name.startswith(stem + "_") or name.startswith(stem + "-"))
        timm = name.startswith(spec.timm_name) and name[len(spec.timm_name)] in ".-"
        if meta or timm or (base == "B" and "meddinov3" in name):
            out.append(f)
    return out
