"""`dinomed-napari bench` flags and config files, the demo cases, and the settings checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dinomed_napari.bench.cases import demo_cases, load_case, read_config
from dinomed_napari.bench.grid import VARIANTS, BenchConfigError, BenchSettings, plan_units
from dinomed_napari.bench.outputs import read_results
from dinomed_napari.bench.protocols.fewclick import VARIANT_OPTIONS
from dinomed_napari.cli.main import main
from dinomed_napari.samples import sample_path


def test_cli_single_case_with_flags(tmp_path, capsys):
    # A tiny crop of the bundled CT organs volume, saved as .npy: one case given by flags alone.
    from dinomed_napari.io import load_volume

    ct = load_volume(sample_path("ct_organs"))
    seg = load_volume(sample_path("ct_organs_seg"), check=False)
    np.save(tmp_path / "ct.npy", ct.data[10:22, 20:84, 0:96])
    np.save(tmp_path / "seg.npy", seg.data[10:22, 20:84, 0:96])
    out = tmp_path / "out"
    code = main(["bench", "--image", str(tmp_path / "ct.npy"), "--mask", str(tmp_path / "seg.npy"),
                 "--labels", "5", "--modality", "CT", "--protocols", "fewclick,baseline",
                 "--weights", "random", "--resolutions", "48", "--slices", "2", "--strokes", "2",
                 "--out", str(out), "--no-progress", "--cache", str(tmp_path / "cache")])
    assert code == 0
    rows = read_results(out)["rows"]
    assert {(r["protocol"], r["label"], r["status"]) for r in rows} == {("fewclick", 5, "ok"),
                                                                        ("baseline", 5, "ok")}
    assert "report.md" in capsys.readouterr().err


def test_cli_refuses_to_guess_weights(tmp_path, capsys):
    code = main(["bench", "--image", "a.nii.gz", "--mask", "b.nii.gz", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "choose the weights" in capsys.readouterr().err
    (tmp_path / "c.yaml").write_text("resolution: [224]\nweights: random\n")
    assert main(["bench", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "unknown option(s) ['resolution']" in capsys.readouterr().err
    (tmp_path / "b.yaml").write_text("batch_size: 0\nweights: random\ncases:\n  - image: a.nii\n"
                                     "    mask: m.nii\n")
    assert main(["bench", "--config", str(tmp_path / "b.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "batch_size: batch size must be between 1 and 1024, got 0 (or 'auto')" in capsys.readouterr().err


def test_batch_size_defaults_to_auto_and_takes_a_number():
    import argparse

    from dinomed_napari.cli import bench

    p = argparse.ArgumentParser()
    bench.configure(p)
    assert bench.build(p.parse_args(["--demo"]))[1].batch_size == "auto"
    assert bench.build(p.parse_args(["--demo", "--batch-size", "8"]))[1].batch_size == 8


def test_config_yaml_and_toml(tmp_path):
    (tmp_path / "bench.yaml").write_text(
        "cases:\n  - name: aorta\n    image: img.nii.gz\n    mask: sub/mask.nii.gz\n    labels: [1]\n"
        "    crop: [[0, 10], [0, 20], [0, 30]]\nmodels: [S, B]\nresolutions: [224, 448]\nweights: random\n")
    cfg = read_config(tmp_path / "bench.yaml")
    (case,) = cfg["cases"]
    assert case.image == str(tmp_path / "img.nii.gz") and case.mask == str(tmp_path / "sub" / "mask.nii.gz")
    assert case.labels == (1,) and case.crop == ((0, 10), (0, 20), (0, 30))
    assert cfg["models"] == ["S", "B"] and cfg["resolutions"] == [224, 448]
    (tmp_path / "bench.toml").write_text('[[cases]]\nimage = "/data/a.nii"\nmask = "/data/m.nii"\n'
                                         'labels = "1,2"\n')
    (case,) = read_config(tmp_path / "bench.toml")["cases"]
    assert case.name == "a" and case.labels == (1, 2) and case.image == "/data/a.nii"
    (tmp_path / "bad.yaml").write_text("cases:\n  - image: only.nii\n")
    with pytest.raises(ValueError, match="case #1 in the config has no 'mask' entry"):
        read_config(tmp_path / "bad.yaml")
    (tmp_path / "typo.yaml").write_text("cases:\n  - image: a.nii\n    mask: m.nii\n    label: [1]\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['label'\]"):
        read_config(tmp_path / "typo.yaml")


def test_demo_cases_hold_their_labels():
    cases = demo_cases()
    assert [c.name for c in cases] == ["cta_aorta", "ct_spleen_liver", "em_cells"]
    for c in cases:
        lc = load_case(c)
        assert lc.truth.max() == len(c.labels)
        for k in range(1, len(c.labels) + 1):
            assert (lc.truth == k).sum() > 100, (c.name, k)
    aorta = load_case(cases[0])
    per_slice = (aorta.truth == 1).any(axis=(1, 2))
    assert per_slice.sum() >= 2 and (~per_slice).sum() >= 2  # both classes for the slice probe


def test_settings_and_grid():
    with pytest.raises(BenchConfigError, match="unknown protocol"):
        BenchSettings(weights="random", protocols=("fewclick", "magic"))
    with pytest.raises(BenchConfigError, match="no weights chosen"):
        BenchSettings(weights="")
    assert set(VARIANTS) == set(VARIANT_OPTIONS)
    s = BenchSettings(weights="random", models=("S", "B"), resolutions=(448, 224))
    units = plan_units(demo_cases()[:1], s)
    assert [(u.kind, u.model, u.resolution) for u in units] == [
        ("baseline", None, None), ("backbone", "S", 224), ("backbone", "S", 448), ("backbone", "B", 224),
        ("backbone", "B", 448)]


def test_reduced_demo_defaults_to_random_weights_and_says_so(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["bench", "--demo", "--protocols", "probe", "--resolutions", "32", "--out", str(out),
                 "--no-progress", "--cache", str(tmp_path / "cache")])
    assert code == 0
    data = read_results(out)
    assert data["meta"]["demo"] is True and data["meta"]["settings"]["weights"] == "random"
    assert "NOT DINOv3" in data["meta"]["weights_note"] and "NOT DINOv3" in capsys.readouterr().err
    assert {r["case"] for r in data["rows"]} == {"cta_aorta", "ct_spleen_liver", "em_cells"}
    aorta = [r for r in data["rows"] if r["case"] == "cta_aorta"]
    assert aorta[0]["status"] == "ok" and 0 <= aorta[0]["auc"] <= 1
    assert "measure the pipeline" in (out / "report.md").read_text()


def test_more_slices_than_the_structure_spans_are_not_double_counted():
    from types import SimpleNamespace

    from dinomed_napari.bench.cases import LoadedCase
    from dinomed_napari.bench.protocols.fewclick import scribble_sets

    truth = np.zeros((6, 32, 32), np.uint8)
    truth[2:4, 8:24, 8:24] = 1  # the structure is on 2 slices only
    lc = LoadedCase(case=None, volume=None, truth=truth, labels=(1,))
    sets = list(scribble_sets(lc, SimpleNamespace(slices=(1, 2, 3, 5), strokes=2, axis=0, seed=0)))
    assert [len(s.slices) for s in sets] == [1, 2]  # 3 and 5 asked: the same 2 slices, kept once
    assert all(s.labels.max() == 2 for s in sets)


@pytest.mark.parametrize("config", sorted((Path(__file__).parents[1] / "benchmarks").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_benchmark_configs_name_real_files_and_labels(config, shared_data):
    """Each bench config in benchmarks/ reads, its files exist, and every label it scores is in its mask
    (a missing label would only show up as empty rows after a long run)."""
    from dinomed_napari.io import load_volume

    cfg = read_config(config)
    assert cfg["cases"], f"{config.name} lists no cases"
    for case in cfg["cases"]:
        assert Path(case.image).exists(), case.image
        mask = load_volume(case.mask, check=False).data
        present = set(np.unique(np.asarray(mask)).tolist())
        missing = [v for v in (case.labels or []) if v not in present]
        assert not missing, f"{config.name}, case {case.name}: labels {missing} are not in {case.mask}"
