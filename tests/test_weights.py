"""Weights loading: Meta DINOv3 / MedDINOv3 checkpoints, timm .pth and .safetensors, and the errors."""

from __future__ import annotations

import hashlib

import pytest
import torch

from dinomed_napari.errors import WeightsError
from dinomed_napari.models import load_backbone

X = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))


def _scramble(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter distinct random values (timm's init leaves layer-scale at 1e-5 and biases at
    0, which would hide a wrongly mapped key)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def _to_meta(timm_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Invert timm's ``checkpoint_filter_fn``: the key names and layout of Meta's DINOv3 release."""
    out: dict[str, torch.Tensor] = {}
    dim = timm_state["cls_token"].shape[-1]
    swiglu = any(".mlp.fc1_g." in k for k in timm_state)
    for k, v in timm_state.items():
        if k.endswith("attn.q_bias"):
            v_bias = timm_state[k.replace("q_bias", "v_bias")]
            out[k.replace("q_bias", "qkv.bias")] = torch.cat([v, torch.zeros_like(v), v_bias])
            continue
        if k.endswith("attn.v_bias"):
            continue
        renames = {"reg_token": "storage_tokens", "gamma_1": "ls1.gamma", "gamma_2": "ls2.gamma"}
        if swiglu:
            renames.update({"mlp.fc1_g.": "mlp.w1.", "mlp.fc1_x.": "mlp.w2.", "mlp.fc2.": "mlp.w3."})
        for old, new in renames.items():
            k = k.replace(old, new)
        out[k] = v
    for i in {int(k.split(".")[1]) for k in out if k.startswith("blocks.")}:
        out.setdefault(f"blocks.{i}.attn.qkv.bias", torch.zeros(3 * dim))  # distilled: bias kept at 0
        out[f"blocks.{i}.attn.qkv.bias_mask"] = torch.ones(3 * dim)
    out["mask_token"] = torch.zeros(1, dim)
    out["rope_embed.periods"] = torch.rand(dim // 12 // 4 or 1)
    return out


@pytest.fixture(scope="module")
def small():
    """A scrambled random ViT-S and its output on X."""
    bb = load_backbone("S", "random", device="cpu")
    _scramble(bb.model)
    return bb, bb.patch_features(X)


def test_meta_pth_loads_through_filter_with_identical_outputs(small, tmp_path):
    bb, ref = small
    meta = _to_meta(bb.model.state_dict())
    assert "storage_tokens" in meta and "blocks.0.ls1.gamma" in meta and "reg_token" not in meta
    path = tmp_path / "dinov3_vits16_pretrain_lvd1689m-test.pth"
    torch.save(meta, path)
    loaded = load_backbone("S", path, device="cpu")
    assert loaded.spec.short == "S"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    assert loaded.weights_label == f"file:{path.name}#{sha}"
    assert torch.equal(loaded.patch_features(X), ref)


def test_meta_checkpoint_wrapped_in_teacher_with_heads(small, tmp_path):
    # MedDINOv3 / DINOv3 training checkpoints: {"teacher": {"backbone.*", "dino_head.*", ...}, ...}
    bb, ref = small
    teacher = {f"backbone.{k}": v for k, v in _to_meta(bb.model.state_dict()).items()}
    teacher["dino_head.mlp.0.weight"] = torch.zeros(8, 384)
    teacher["ibot_head.last_layer.weight"] = torch.zeros(8, 8)
    path = tmp_path / "meddinov3_like.pth"
    torch.save({"teacher": teacher, "student": {"backbone.cls_token": torch.zeros(1)}, "iteration": 7}, path)
    assert torch.equal(load_backbone("S", path, device="cpu").patch_features(X), ref)


def _meta_to_transformers(meta: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Meta's names -> Hugging Face ``DINOv3ViTModel`` names (separate q/k/v, no key bias)."""
    top = {"cls_token": "embeddings.cls_token", "storage_tokens": "embeddings.register_tokens",
           "patch_embed.proj.weight": "embeddings.patch_embeddings.weight",
           "patch_embed.proj.bias": "embeddings.patch_embeddings.bias", "norm.weight": "norm.weight",
           "norm.bias": "norm.bias"}
    out = {hf: meta[k] for k, hf in top.items()}
    out["embeddings.mask_token"] = meta["mask_token"][None]
    renames = {"attn.proj.": "attention.o_proj.", "ls1.gamma": "layer_scale1.lambda1",
               "ls2.gamma": "layer_scale2.lambda1", "mlp.fc1.": "mlp.up_proj.", "mlp.fc2.": "mlp.down_proj.",
               "mlp.w1.": "mlp.gate_proj.", "mlp.w2.": "mlp.up_proj.", "mlp.w3.": "mlp.down_proj."}
    for k, v in meta.items():
        if not k.startswith("blocks.") or k.endswith(("bias_mask",)):
            continue
        _, i, rest = k.split(".", 2)
        pre = f"layer.{i}."
        if rest == "attn.qkv.weight":
            for name, part in zip("qkv", v.chunk(3), strict=True):
                out[f"{pre}attention.{name}_proj.weight"] = part
        elif rest == "attn.qkv.bias":
            out[f"{pre}attention.q_proj.bias"], _, out[f"{pre}attention.v_proj.bias"] = v.chunk(3)
        else:
            for old, new in renames.items():
                rest = rest.replace(old, new) if rest.startswith(old) else rest
            out[pre + rest] = v
    return out


@pytest.fixture(scope="module")
def small_bias():
    """A scrambled random ViT-S with non-zero query/value biases (like Meta's S checkpoint)."""
    bb = load_backbone("S-qkvb", "random", device="cpu")
    _scramble(bb.model, seed=1)
    return bb, bb.patch_features(X)


@pytest.fixture(scope="module")
def small_plus():
    """A scrambled random ViT-S+ (SwiGLU MLP)."""
    bb = load_backbone("S+", "random", device="cpu")
    _scramble(bb.model, seed=3)
    return bb, bb.patch_features(X)


@pytest.mark.parametrize("short", ["S", "S-qkvb", "S+"])
def test_hugging_face_transformers_checkpoint(short, request, tmp_path):
    from safetensors.torch import save_file

    src, ref = request.getfixturevalue({"S": "small", "S-qkvb": "small_bias", "S+": "small_plus"}[short])
    hf = _meta_to_transformers(_to_meta(src.model.state_dict()))
    assert "layer.0.attention.k_proj.weight" in hf and "layer.0.layer_scale1.lambda1" in hf
    save_file({k: v.contiguous() for k, v in hf.items()}, tmp_path / "model.safetensors")
    loaded = load_backbone(short.removesuffix("-qkvb"), tmp_path / "model.safetensors", device="cpu")
    assert loaded.spec.short == short  # non-zero q/v biases pick the "-qkvb" twin
    assert torch.equal(loaded.patch_features(X), ref)


def test_meta_nonzero_qkv_bias_loads_the_bias_variant_losslessly(small_bias, tmp_path):
    bb, ref_out = small_bias
    src = bb.model
    meta = _to_meta(src.state_dict())
    assert meta["blocks.0.attn.qkv.bias"].abs().sum() > 0
    torch.save(meta, tmp_path / "meta_s_bias.pth")
    loaded = load_backbone("S", tmp_path / "meta_s_bias.pth", device="cpu")
    assert loaded.spec.timm_name == "vit_small_patch16_dinov3_qkvb"
    assert torch.equal(loaded.patch_features(X), ref_out)


def test_meta_swiglu_small_plus(small_plus, tmp_path):
    bb, ref = small_plus
    meta = _to_meta(bb.model.state_dict())
    assert "blocks.0.mlp.w3.weight" in meta
    torch.save(meta, tmp_path / "dinov3_vits16plus_pretrain.pth")
    loaded = load_backbone("S+", tmp_path / "dinov3_vits16plus_pretrain.pth", device="cpu")
    assert torch.equal(loaded.patch_features(X), ref)


def test_safetensors_and_timm_pth_round_trip(small, tmp_path):
    from safetensors.torch import save_file

    bb, ref = small
    state = {k: v.contiguous() for k, v in bb.model.state_dict().items()}
    save_file(state, tmp_path / "s.safetensors")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "s_timm.pth")
    for name in ("s.safetensors", "s_timm.pth"):
        loaded = load_backbone("vit_small_patch16_dinov3", tmp_path / name, device="cpu")
        assert loaded.weights_label.startswith(f"file:{name}#")
        assert torch.equal(loaded.patch_features(X), ref)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match=r"weights file .*nope\.pth not found"):
        load_backbone("S", tmp_path / "nope.pth", device="cpu")


@pytest.mark.parametrize("name", ["broken.pth", "broken.safetensors"])
def test_corrupt_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(WeightsError, match=rf"weights file .*{name} could not be read"):
        load_backbone("S", tmp_path / name, device="cpu")


def test_checkpoint_with_python_objects_is_refused_without_advising_unsafe_loading(tmp_path):
    import argparse

    torch.save({"w": torch.zeros(2), "args": argparse.Namespace(lr=0.1)}, tmp_path / "train.pth")
    with pytest.raises(WeightsError, match="never unpickled here") as err:
        load_backbone("S", tmp_path / "train.pth", device="cpu")
    assert "weights_only" not in str(err.value) and "state_dict()" in str(err.value)


def test_file_without_tensors(tmp_path):
    torch.save({"epoch": 3, "note": "no weights"}, tmp_path / "empty.pth")
    with pytest.raises(WeightsError, match="holds no state dict of tensors"):
        load_backbone("S", tmp_path / "empty.pth", device="cpu")


def test_base_weights_into_small_names_file_and_dims(tmp_path):
    base = load_backbone("B", "random", device="cpu")
    torch.save(_to_meta(base.model.state_dict()), tmp_path / "dinov3_vitb16.pth")
    with pytest.raises(WeightsError, match=r"dinov3_vitb16\.pth does not fit vit_small_patch16_dinov3 \(S\): "
                       r"expected embed dim 384, depth 12, found embed dim 768, depth 12 \(looks like B"):
        load_backbone("S", tmp_path / "dinov3_vitb16.pth", device="cpu")


def test_hub_offline_says_how_to_get_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("DINOMED_WEIGHTS", str(tmp_path / "none"))
    with pytest.raises(WeightsError, match=r"not in the Hugging Face cache.*HF_HUB_OFFLINE.*"
                       r"pass its path \(--weights PATH\).*--weights random"):
        load_backbone("S", "hub", device="cpu")
    with pytest.raises(WeightsError, match="has no hub tag 'sat493m'"):
        load_backbone("S", "hub:sat493m", device="cpu")


def test_hub_without_network_fails_fast(tmp_path, monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(WeightsError, match=r"not in the Hugging Face cache .*empty-hf\) and the hub "
                       r"cannot be reached \(no network\).*--weights random"):
        load_backbone("S", "hub", device="cpu")


def test_hub_error_points_at_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("DINOMED_WEIGHTS", str(tmp_path))
    (tmp_path / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth").write_bytes(b"x")
    with pytest.raises(WeightsError, match=r"Found .*dinov3_vits16_pretrain_lvd1689m-08c60483\.pth"):
        load_backbone("S", "hub", device="cpu")


def test_unknown_weights_spelling_is_a_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="weights file rand not found"):
        load_backbone("S", "rand", device="cpu")


def test_hub_weights_from_the_local_hugging_face_cache(small, tmp_path, monkeypatch):
    # The "hub" path end to end without network: timm reads model.safetensors from the HF cache layout.
    import timm.models._hub
    from safetensors.torch import save_file

    def no_download(*args, **kwargs):
        raise AssertionError("a cached hub file must load without contacting the hub")

    bb, ref = small
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", no_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    snap = tmp_path / "models--timm--vit_small_patch16_dinov3.lvd1689m"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (snap / "refs").mkdir(parents=True)
    (snap / "refs" / "main").write_text(commit)
    (snap / "snapshots" / commit).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in bb.model.state_dict().items()},
              snap / "snapshots" / commit / "model.safetensors")
    for model, weights in (("S", "hub"), ("vit_small_patch16_dinov3.lvd1689m", "hub"), ("S", "hub:lvd1689m")):
        loaded = load_backbone(model, weights, device="cpu")
        assert loaded.weights_label == "hub:lvd1689m" and loaded.mean == (0.485, 0.456, 0.406)
        assert torch.equal(loaded.patch_features(X), ref)


def test_not_a_dinov3_checkpoint(tmp_path):
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3), "fc.bias": torch.zeros(10)}, tmp_path / "resnet.pth")
    msg = (r"resnet\.pth does not fit vit_small_patch16_dinov3 \(S\): expected embed dim 384, depth 12, "
           r"found no DINOv3 ViT keys \(first keys: conv1.weight, fc.bias\)")
    with pytest.raises(WeightsError, match=msg):
        load_backbone("S", tmp_path / "resnet.pth", device="cpu")
