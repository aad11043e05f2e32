"""Backbone registry, device choice, Backbone features, local weights and `dinomed-napari models`."""

from __future__ import annotations

import json

import pytest
import torch

from dinomed_napari.cli.main import main
from dinomed_napari.errors import WeightsError
from dinomed_napari.models import REGISTRY, compute_dtype, load_backbone, pick_device, resolve_spec
from dinomed_napari.models.availability import hub_cached, local_files

BUILDABLE = [s.short for s in REGISTRY.values() if not s.huge]


def test_registry_covers_every_timm_dinov3_vit_with_its_hub_tags():
    import timm

    names = set(timm.list_models("*dinov3*"))
    assert {s.timm_name for s in REGISTRY.values()} == names
    for spec in REGISTRY.values():
        tags = {p.split(".", 1)[1] for p in timm.list_pretrained(f"{spec.timm_name}.*")}
        assert set(spec.hub_tags) == tags, spec.short
    assert REGISTRY["L"].hub_tags == ("lvd1689m", "sat493m") and REGISTRY["7B"].huge


@pytest.mark.parametrize("short", list(REGISTRY))
def test_stored_sizes_match_the_architecture(short):
    import timm

    spec = REGISTRY[short]
    with torch.device("meta"):  # shapes only: even 7B costs no memory
        net = timm.create_model(spec.timm_name, num_classes=0)
    n = sum(p.numel() for p in net.parameters())
    assert round(n / 1e6, 2) == spec.params_m
    assert (net.embed_dim, len(net.blocks), net.blocks[0].attn.num_heads) == (
        spec.embed_dim, spec.depth, spec.num_heads)
    assert net.patch_embed.patch_size == (spec.patch_size, spec.patch_size) and net.num_prefix_tokens == 5


@pytest.mark.parametrize("short", BUILDABLE)
def test_every_entry_builds_with_random_weights(short):
    bb = load_backbone(short, "random", device="cpu")
    assert bb.weights_label == "random" and bb.dtype == torch.float32
    assert sum(p.numel() for p in bb.model.parameters()) / 1e6 == pytest.approx(bb.spec.params_m, abs=0.006)
    f = bb.patch_features(torch.zeros(1, 3, 32, 48))
    assert f.shape == (1, 2, 3, bb.spec.embed_dim) == (1, 2, 3, bb.dim) and f.dtype == torch.float32
    assert torch.isfinite(f).all()


@pytest.mark.parametrize("name", ["S", "s", "vit_small_patch16_dinov3", "vit_small_patch16_dinov3.lvd1689m"])
def test_resolve_spec_spellings(name):
    assert resolve_spec(name) is REGISTRY["S"]


def test_resolve_spec_errors():
    assert resolve_spec("vit_large_patch16_dinov3.sat493m").short == "L"
    assert resolve_spec("h+").timm_name == "vit_huge_plus_patch16_dinov3"
    with pytest.raises(WeightsError, match=r"unknown backbone 'dinov2_s'; expected one of S, S\+"):
        resolve_spec("dinov2_s")
    with pytest.raises(WeightsError, match="has no hub tag 'sat493m'; timm has lvd1689m"):
        resolve_spec("vit_base_patch16_dinov3.sat493m")


@pytest.fixture(scope="module")
def small():
    bb = load_backbone("S", "random", device="cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # make every block matter (timm's layer-scale init is 1e-5)
        for name, p in bb.model.named_parameters():
            centre = 1.0 if "norm" in name and name.endswith("weight") else 0.3 if "gamma" in name else 0.0
            p.copy_(centre + torch.randn(p.shape, generator=g) * 0.05)
    return bb


def test_layers_option_concatenates_normed_blocks(small):
    x = torch.randn(2, 3, 48, 32, generator=torch.Generator().manual_seed(1))
    final = small.patch_features(x)
    multi = load_backbone("S", "random", device="cpu", layers=(3, -1))
    multi.model.load_state_dict(small.model.state_dict())
    assert multi.layers == (3, 11) and multi.dim == 768
    f = multi.patch_features(x)
    assert f.shape == (2, 3, 2, 768)
    # The last block's normed tokens are exactly the final output; block 3 is something else.
    torch.testing.assert_close(f[..., 384:], final, rtol=1e-5, atol=1e-5)
    assert (f[..., :384] - final).abs().mean() > 0.2 * final.abs().mean()
    with pytest.raises(ValueError, match=r"layers \(12,\) out of range: this model has blocks 0..11"):
        load_backbone("S", "random", device="cpu", layers=(12,))


def test_patch_features_rejects_bad_input(small):
    with pytest.raises(ValueError, match="input size 40x32 is not a positive multiple of the patch size 16"):
        small.patch_features(torch.zeros(1, 3, 40, 32))
    with pytest.raises(ValueError, match=r"expects a \(B, 3, H, W\) tensor, got shape \(1, 1, 32, 32\)"):
        small.patch_features(torch.zeros(1, 1, 32, 32))


def test_features_change_with_content_and_position(small):
    # Patch tokens depend on the image (not a constant) and RoPE makes equal patches differ by position.
    f = small.patch_features(torch.zeros(1, 3, 32, 32))
    g = small.patch_features(torch.ones(1, 3, 32, 32))
    assert (f - g).abs().max() > 1e-3 and (f[0, 0, 0] - f[0, 1, 1]).abs().max() > 1e-4


def test_device_choice():
    assert pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert pick_device().type == expected == pick_device("auto").type
    assert compute_dtype(torch.device("cpu")) == torch.float32
    assert compute_dtype(torch.device("cuda")) == compute_dtype(torch.device("mps")) == torch.bfloat16
    with pytest.raises(WeightsError, match=r"device 'cuda:7' requested but CUDA has \d device"):
        pick_device("cuda:7")
    with pytest.raises(WeightsError, match="unknown device 'gpu0'"):
        pick_device("gpu0")


def _fake_hub_cache(root, repo: str, filename: str = "model.safetensors"):
    # Layout of huggingface_hub's cache: models--org--name/{refs/main, snapshots/<commit>/<file>}.
    base = root / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    (base / "snapshots" / commit).mkdir(parents=True)
    (base / "snapshots" / commit / filename).write_bytes(b"x")


def test_local_weights_discovery(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("DINOMED_WEIGHTS", str(tmp_path / "w"))
    _fake_hub_cache(tmp_path / "hf", "timm/vit_large_patch16_dinov3.sat493m")
    (tmp_path / "w").mkdir()
    s_meta = "dinov3_vits16_pretrain_lvd1689m-08c60483.pth"
    splus_meta = "dinov3_vits16plus_pretrain_lvd1689m.pth"
    qkvb = "vit_small_patch16_dinov3_qkvb.safetensors"
    for name in (s_meta, splus_meta, "meddinov3_vitb16.pth", "notes.txt", qkvb):
        (tmp_path / "w" / name).write_bytes(b"x")
    assert hub_cached(REGISTRY["L"], "sat493m") is not None and hub_cached(REGISTRY["L"], "lvd1689m") is None
    assert [f.name for f in local_files(REGISTRY["S"])] == [s_meta]
    assert [f.name for f in local_files(REGISTRY["S+"])] == [splus_meta]
    assert [f.name for f in local_files(REGISTRY["B"])] == ["meddinov3_vitb16.pth"]
    assert [f.name for f in local_files(REGISTRY["S-qkvb"])] == [s_meta, qkvb]


def test_models_command_table_and_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("DINOMED_WEIGHTS", str(tmp_path / "w"))
    _fake_hub_cache(tmp_path / "hf", "timm/vit_large_patch16_dinov3.sat493m")
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth").write_bytes(b"x")

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:7]}
    assert list(lines) == ["S", "S+", "B", "L", "H+", "7B"]
    assert lines["S"] == ["S", "vit_small_patch16_dinov3", "384", "12", "21.6", "lvd1689m",
                          "dinov3_vits16_pretrain_lvd1689m-08c60483.pth"]
    assert lines["L"][1:] == ["vit_large_patch16_dinov3", "1024", "24", "303.1", "lvd1689m,sat493m",
                              "hub:sat493m"]
    assert lines["B"][-1] == "-" and "vit_small_patch16_dinov3_qkvb" not in out
    assert f"device: {pick_device()} ({str(compute_dtype(pick_device())).removeprefix('torch.')})" in out

    assert main(["models", "--json", "--all"]) == 0
    rows = {r["short"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(rows) == set(REGISTRY)
    assert rows["H+"]["dim"] == 1280 and rows["H+"]["params_m"] == 840.51
    assert rows["L"]["hub_cached"] == ["sat493m"] and rows["S"]["hub_cached"] == []


def test_compiled_forward_matches_eager(small):
    # The "eager" backend runs the torch.compile (Dynamo) capture without code generation: it checks the
    # compiled path's plumbing cheaply; the inductor speed-up is measured in benchmarks/.
    x = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    for layers in (None, (5, 11)):
        ref = load_backbone("S", "random", device="cpu", layers=layers)
        ref.model.load_state_dict(small.model.state_dict())
        comp = load_backbone("S", "random", device="cpu", layers=layers, compile="eager")
        comp.model.load_state_dict(small.model.state_dict())
        assert comp.compiled == "eager" and "compiled=eager" in repr(comp)
        torch.testing.assert_close(comp.patch_features(x), ref.patch_features(x), rtol=1e-5, atol=1e-5)
