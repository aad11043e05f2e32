"""The model cast once for bf16, and the batch size picked from free device memory."""

from __future__ import annotations

import copy

import pytest
import torch

from dinomed_napari.models import load_backbone
from dinomed_napari.models.backbone import Backbone
from dinomed_napari.models.device import MAX_AUTO_BATCH, auto_batch_size, bytes_per_slice


@pytest.fixture(scope="module")
def vits():
    return load_backbone("S", "random", device="cpu")


def test_bf16_weights_cast_once_give_the_autocast_result(vits):
    # CPU autocast stands in for the GPU's: the same per-op casting rules.
    x = torch.randn(2, 3, 32, 48)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref = vits._tokens(x).float()
    cast = Backbone(copy.deepcopy(vits.model), vits.spec, "random", torch.device("cpu"), torch.bfloat16)
    linear = cast.model.blocks[0].mlp.fc1
    assert linear.weight.dtype == torch.bfloat16 and cast.model.norm.weight.dtype == torch.float32
    out = cast.patch_features(x)
    assert out.dtype == torch.float32 and out.shape == (2, 2, 3, 384)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert vits.model.blocks[0].mlp.fc1.weight.dtype == torch.float32  # the float32 backbone is untouched


def test_auto_batch_size_follows_free_memory(vits):
    per = bytes_per_slice(384, (512, 512))
    assert 20e6 < per < 200e6  # ViT-S at 512: tens of MB per slice
    assert auto_batch_size(vits, (512, 512), free_bytes=per * 20) == 8  # half of 20 slices -> 10 -> 8
    assert auto_batch_size(vits, (512, 512), free_bytes=per) == 1
    assert auto_batch_size(vits, (512, 512), free_bytes=10**15) == MAX_AUTO_BATCH
    assert auto_batch_size(vits, (512, 512)) == 2  # CPU: small batches measured fastest
    assert bytes_per_slice(1024, (512, 512)) > 2 * bytes_per_slice(384, (512, 512))
