"""Input normalisation comes from the weights (metadata, config beside them), not from their file name."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dinomed_napari.features.cache import weights_label
from dinomed_napari.models import load_backbone
from dinomed_napari.models.normalisation import MEDDINOV3_MEAN_STD, weights_normalisation
from dinomed_napari.models.registry import IMAGENET_MEAN_STD, SAT_MEAN_STD


@pytest.fixture(scope="module")
def state():
    net = load_backbone("S", "random", device="cpu").model
    return {k: v.contiguous() for k, v in net.state_dict().items()}


def save(state, path, metadata=None):
    from safetensors.torch import save_file

    save_file(state, str(path), metadata=metadata)
    return path


def norm(path):
    return weights_normalisation(path, weights_label("S", path))


def test_a_renamed_satellite_file_keeps_its_statistics(state, tmp_path):
    meta = {"mean": json.dumps(SAT_MEAN_STD[0]), "std": json.dumps(SAT_MEAN_STD[1])}
    renamed = save(state, tmp_path / "my_backbone.safetensors", meta)
    got = norm(renamed)
    assert (got.mean, got.std) == SAT_MEAN_STD and "metadata" in got.source
    bb = load_backbone("S", renamed, device="cpu")
    assert (bb.mean, bb.std) == SAT_MEAN_STD  # the network and the cache key agree


def test_config_next_to_the_file_decides(state, tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    path = save(state, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"pretrained_cfg": {"mean": [0.1, 0.2, 0.3],
                                                                       "std": [0.4, 0.5, 0.6]}}))
    assert norm(path).mean == (0.1, 0.2, 0.3) and norm(path).std == (0.4, 0.5, 0.6)


def test_plain_file_gets_imagenet_and_says_it_is_a_default(state, tmp_path):
    got = norm(save(state, tmp_path / "w.safetensors"))
    assert (got.mean, got.std) == IMAGENET_MEAN_STD and "default" in got.source


def test_meddinov3_gets_its_ct_recipe_and_window(state, tmp_path):
    path = tmp_path / "meddinov3_vitb16.pth"
    torch.save({"teacher": state}, path)
    got = norm(path)
    assert got.window == (0.0, 2000.0) and (got.mean, got.std) == MEDDINOV3_MEAN_STD
    # On the [0, 1] scale of the [-1000, 1000] HU window, (u - mean) / std is (HU - 65.11) / 178.02.
    hu = np.array([-1000.0, 0.0, 65.11, 243.13, 1000.0])
    u = (hu + 1000) / 2000
    np.testing.assert_allclose((u - got.mean[0]) / got.std[0], (hu - 65.11) / 178.02, atol=1e-9)


def test_cli_applies_the_meddinov3_window_and_prints_the_normalisation(state, tmp_path, capsys):
    from dinomed_napari.cli import common

    path = tmp_path / "MedDINOv3-CT.safetensors"
    save(state, path)
    args = type("A", (), dict(weights=str(path), model="S", window=None, level=None, width=None,
                              resolution=None))()
    prep = common.preprocess(args)
    out = capsys.readouterr().out
    assert (prep.window, prep.level, prep.width) == ("custom", 0.0, 2000.0)
    assert "input normalisation: MedDINOv3 CT recipe" in out
