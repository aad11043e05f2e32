"""Build a DINOv3 backbone with the weights the user asked for: hub, a local file, or random."""

from __future__ import annotations

import contextlib
import io
import pickle
from collections.abc import Sequence
from pathlib import Path

import torch

from dinomed_napari.errors import WeightsError
from dinomed_napari.models.availability import (
    hub_cache_dir,
    hub_cached,
    hub_offline,
    hub_reachable,
    local_files,
    weights_dir,
)
from dinomed_napari.models.backbone import Backbone
from dinomed_napari.models.device import compute_dtype, pick_device
from dinomed_napari.models.hashing import file_sha256
from dinomed_napari.models.hf_format import is_transformers_format, transformers_to_meta
from dinomed_napari.models.normalisation import weights_normalisation
from dinomed_napari.models.registry import REGISTRY, BackboneSpec, resolve_spec, split_tag

# Wrappers found around the backbone state dict in Meta / MedDINOv3 training checkpoints, best first.
_WRAPPERS = ("teacher", "model_ema", "model", "state_dict", "student", "module")
_PREFIXES = ("backbone.", "module.", "_orig_mod.")


def how_to_get_weights(spec: BackboneSpec) -> str:
    """The advice every "no weights" error ends with (naming matching files already on this machine)."""
    found = local_files(spec)
    here = (f"Found {', '.join(str(f) for f in found)} in {weights_dir()}: pass it as --weights PATH. "
            if found else "")
    return here + (f"To get weights for {spec.timm_name}: on a machine with internet run "
            f"`python -c \"import timm; timm.create_model('{spec.timm_name}.{spec.default_tag}', "
            f"pretrained=True)\"` and copy the Hugging Face cache (~/.cache/huggingface) here, or download "
            f"Meta's DINOv3 checkpoint (.pth, https://github.com/facebookresearch/dinov3) or a timm "
            f".safetensors file and pass its path (--weights PATH). To test the pipeline without weights, "
            f"use --weights random (features are then meaningless).")


def _create(timm_name: str, pretrained: bool = False, file: Path | None = None) -> torch.nn.Module:
    import timm  # slow import (~8 s): only when a model is really built

    extra: dict = {}
    if file is not None:  # a cached hub file: load it directly, no network round trip
        extra["pretrained_cfg_overlay"] = {"file": str(file)}
    elif pretrained:  # same cache folder `dinomed-napari models` reports (HF_HUB_CACHE / HF_HOME now)
        extra["cache_dir"] = hub_cache_dir()
    return timm.create_model(timm_name, pretrained=pretrained, num_classes=0, dynamic_img_size=True, **extra)


def load_backbone(model: str | BackboneSpec = "S", weights: str | Path = "hub", *,
                  device: str | torch.device | None = None,
                  layers: Sequence[int] | None = None, compile: bool | str = False) -> Backbone:
    """Build a DINOv3 ViT backbone with explicit weights.

    Parameters
    ----------
    model : str or BackboneSpec
        "S", "S+", "B", "L", "H+", "7B", a timm name, or "timm_name.tag" (tag used with ``weights="hub"``).
    weights : str or Path
        "hub" / "hub:<tag>" (timm pretrained from the Hugging Face hub or its local cache; respects
        ``HF_HUB_OFFLINE``), "random" (untrained, only for testing the pipeline), or a path to a Meta
        DINOv3 / MedDINOv3 ``.pth``, a timm-format ``.pth`` / ``.safetensors``, or a Hugging Face
        ``transformers`` DINOv3 ``model.safetensors`` (facebook/dinov3-* repositories).
    device : str or torch.device, optional
        Defaults to CUDA, then MPS, then CPU.
    layers : sequence of int, optional
        Blocks whose normed patch tokens are concatenated; None for the final output.
    compile : bool or str
        Opt-in ``torch.compile`` of the forward pass (see :class:`Backbone`).

    Returns
    -------
    Backbone

    Raises
    ------
    WeightsError
        Unknown model or tag, missing / corrupt / mismatched file, or hub weights unavailable offline
        (the message says how to get weights).
    """
    spec = resolve_spec(model)
    dev = pick_device(device)
    w = str(weights)
    if w == "random":
        # One fixed random net (seed 0), so cached "random" features stay consistent across runs/resumes.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net, label = _create(spec.timm_name), "random"
    elif w == "hub" or w.startswith("hub:"):
        net, label = _from_hub(spec, w[4:] or split_tag(str(model))[1] or spec.default_tag)
    else:
        net, spec, label = _from_file(spec, Path(w).expanduser())
    norm = weights_normalisation(w, label)  # from the file's metadata / config, not its name alone
    return Backbone(net, spec, label, dev, compute_dtype(dev), layers, mean_std=norm.mean_std,
                    compile=compile)


def _from_hub(spec: BackboneSpec, tag: str) -> tuple[torch.nn.Module, str]:
    if tag not in spec.hub_tags:
        raise WeightsError(f"{spec.timm_name} has no hub tag {tag!r}; timm has {', '.join(spec.hub_tags)}")
    cached = hub_cached(spec, tag)
    if cached is None:
        # Fail fast (no timm import, no minute of download retries) when there is no way to get them.
        why = "HF_HUB_OFFLINE is set" if hub_offline() else None
        why = why or (None if hub_reachable() else "the hub cannot be reached (no network)")
        if why:
            raise WeightsError(f"hub weights {spec.timm_name}.{tag} are not in the Hugging Face cache "
                               f"({hub_cache_dir()}) and {why}. {how_to_get_weights(spec)}")
    try:
        net = _create(f"{spec.timm_name}.{tag}", pretrained=True, file=cached)
    except Exception as exc:  # network, offline cache miss, auth: all mean "no weights here"
        raise WeightsError(f"could not get hub weights {spec.timm_name}.{tag} "
                           f"({_first_line(exc)}). "
                           f"{how_to_get_weights(spec)}") from exc
    return net, f"hub:{tag}"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint's tensors safely (``weights_only=True`` / safetensors) and unwrap training wrappers.

    Raises
    ------
    WeightsError
        Missing, unreadable or tensor-free file.
    """
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's text advises weights_only=False: we never do that
        raise WeightsError(f"weights file {path} could not be read as a tensors-only PyTorch checkpoint: "
                           "it is not a checkpoint, or it holds Python objects, which are never unpickled "
                           "here (they can run code). Save the state dict (torch.save(model.state_dict(), "
                           "...)) or use a .safetensors file") from exc
    except Exception as exc:
        raise WeightsError(f"weights file {path} could not be read as a "
                           f"{'safetensors' if path.suffix == '.safetensors' else 'PyTorch'} checkpoint "
                           f"({_first_line(exc)})") from exc
    while isinstance(sd, dict):
        inner = next((sd[k] for k in _WRAPPERS if isinstance(sd.get(k), dict)), None)
        if inner is None:
            break
        sd = inner
    if not isinstance(sd, dict) or not any(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"weights file {path} holds no state dict of tensors (found {type(sd).__name__})")
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    # Training checkpoints hold heads next to the backbone: keep only "backbone." keys when present.
    if any(k.startswith("backbone.") for k in sd):
        sd = {k: v for k, v in sd.items() if k.startswith("backbone.")}
    for p in _PREFIXES:
        if all(k.startswith(p) for k in sd):
            sd = {k[len(p):]: v for k, v in sd.items()}
    return sd


def _bias_variant(spec: BackboneSpec, state: dict[str, torch.Tensor], meta: bool) -> BackboneSpec:
    """Pick the "-qkvb" twin when the checkpoint has non-zero query/value biases (Meta S, S+, MedDINOv3),
    the plain model when it has none, so that strict loading is lossless."""
    if meta:
        b = state.get("blocks.0.attn.qkv.bias")
        has_bias = b is not None and bool(torch.any(b != 0))
    else:
        has_bias = "blocks.0.attn.q_bias" in state
    base = spec.short.removesuffix("-qkvb")
    want = f"{base}-qkvb" if has_bias else base
    return REGISTRY.get(want, spec)


def _describe(state: dict[str, torch.Tensor], meta: bool) -> str:
    """Architecture a state dict was made for: embed dim and depth (for mismatch messages)."""
    dim = next((v.shape[-1] for k, v in state.items() if k in ("cls_token", "patch_embed.proj.bias")), None)
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("blocks.") and k.split(".")[1].isdigit()}
    guess = [s.short for s in REGISTRY.values() if s.embed_dim == dim and s.depth == len(blocks)]
    if dim is None:
        return f"no DINOv3 ViT keys (first keys: {', '.join(list(state)[:4])})"
    what = f"embed dim {dim}, depth {len(blocks)}"
    if guess:
        what += f" (looks like {'/'.join(guess)})"
    return what + (", Meta DINOv3 format" if meta else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}"


def _from_file(spec: BackboneSpec, path: Path) -> tuple[torch.nn.Module, BackboneSpec, str]:
    state = read_state_dict(path)
    if is_transformers_format(state):  # facebook/dinov3-* on the Hugging Face hub
        state = transformers_to_meta(state)
    meta = "storage_tokens" in state  # Meta's native naming (timm calls them reg_token)
    spec = _bias_variant(spec, state, meta)
    net = _create(spec.timm_name)
    try:
        if meta:
            from timm.models.eva import checkpoint_filter_fn

            with contextlib.redirect_stdout(io.StringIO()):  # the filter prints when it drops a zero bias
                state = checkpoint_filter_fn(state, net)
        net.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, KeyError, IndexError) as exc:
        expected = f"embed dim {spec.embed_dim}, depth {spec.depth}"
        raise WeightsError(f"weights file {path} does not fit {spec.timm_name} ({spec.short}): expected "
                           f"{expected}, found {_describe(state, meta)}. Pick the matching --model or "
                           f"another file.") from exc
    return net, spec, f"file:{path.name}#{file_sha256(path)[:8]}"
