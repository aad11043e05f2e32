"""Hugging Face ``transformers`` DINOv3 checkpoints (facebook/dinov3-* repos) -> Meta's native key names,
which timm's ``checkpoint_filter_fn`` then maps onto timm's model."""

from __future__ import annotations

import torch

# transformers name -> Meta name, for keys outside the blocks.
_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.register_tokens": "storage_tokens",
    "embeddings.patch_embeddings.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.bias": "patch_embed.proj.bias",
    "norm.weight": "norm.weight",
    "norm.bias": "norm.bias",
}
# Inside block i (prefix "layer.i." -> "blocks.i."). The gated MLP is down(silu(gate(x)) * up(x)), Meta's
# SwiGLU is w3(silu(w1(x)) * w2(x)): gate -> w1, up -> w2, down -> w3.
_BLOCK = {"norm1.": "norm1.", "norm2.": "norm2.", "attention.o_proj.": "attn.proj.",
          "layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma"}
_MLP = {"up_proj.": "fc1.", "down_proj.": "fc2."}
_GATED_MLP = {"gate_proj.": "w1.", "up_proj.": "w2.", "down_proj.": "w3."}


def is_transformers_format(state: dict[str, torch.Tensor]) -> bool:
    """True for a ``DINOv3ViTModel`` state dict (``embeddings.*``, ``layer.N.*``)."""
    return "embeddings.cls_token" in state and "embeddings.register_tokens" in state


def transformers_to_meta(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a transformers DINOv3 state dict to Meta's layout (q/k/v fused into qkv, k bias zero)."""
    out = {meta: state[hf] for hf, meta in _TOP.items() if hf in state}
    gated = any(".mlp.gate_proj." in k for k in state)
    mlp = _GATED_MLP if gated else _MLP
    depth = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("layer.")), default=-1)
    for i in range(depth):
        src, dst = f"layer.{i}.", f"blocks.{i}."
        block = {k[len(src):]: v for k, v in state.items() if k.startswith(src)}
        q, k, v = (block.pop(f"attention.{x}_proj.weight") for x in "qkv")
        out[dst + "attn.qkv.weight"] = torch.cat([q, k, v])
        qb, vb = block.pop("attention.q_proj.bias", None), block.pop("attention.v_proj.bias", None)
        block.pop("attention.k_proj.bias", None)  # fixed at zero in DINOv3
        if qb is not None and vb is not None:
            out[dst + "attn.qkv.bias"] = torch.cat([qb, torch.zeros_like(qb), vb])
        for name, value in block.items():
            for old, new in (*_BLOCK.items(), *(("mlp." + a, "mlp." + b) for a, b in mlp.items())):
                if name.startswith(old):
                    out[dst + new + name[len(old):]] = value
                    break
            else:
                out[dst + name] = value  # unknown: kept, so strict loading reports it
    return out
