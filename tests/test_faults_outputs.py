"""Outputs that cannot lose data: segmenter files, feature copies and bench runs under faults."""

from __future__ import annotations

import errno
import json
import re

import numpy as np
import pytest
from fault_helpers import FEATS, run_cli, tiny_ct

from dinomed_napari.cli.main import main
from dinomed_napari.errors import FeatureMismatchError
from dinomed_napari.io import load_volume, save_labels


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("outputs")
    image = tiny_ct(d, seed=1, noise=20.0)
    data = load_volume(image).data
    scr = np.zeros(data.shape, np.uint8)
    scr[1, 12:16, 14:20] = 1
    scr[1, 26:30, 2:30] = 2
    scribbles = save_labels(d / "scr.nii.gz", scr, load_volume(image))
    model = d / "seg.npz"
    # --spatial none: a saved segmenter re-applies the classifier (it keeps no scribbles to propagate)
    assert main(["segment", str(image), *FEATS, "--scribbles", str(scribbles), "--out", str(d / "s.nii.gz"),
                 "--spatial", "none", "--save-model", str(model)]) == 0
    return d, image, model


cli = run_cli


def test_disk_full_while_saving_a_segmenter_keeps_the_old_one(case, tmp_path, monkeypatch):
    from dinomed_napari.analysis import persist

    d, image, model = case
    seg = persist.load_segmenter(model)
    target = tmp_path / "m.npz"
    persist.save_segmenter(seg, target)
    old = target.read_bytes()
    real = np.savez_compressed

    def full(fh, **arrays):
        real(fh, **arrays)
        fh.truncate(fh.tell() // 3)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full)
    with pytest.raises(OSError, match="No space"):
        persist.save_segmenter(seg, target)
    assert target.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == ["m.npz"]
    assert persist.load_segmenter(target).classes_.tolist() == [1, 2]


def test_a_truncated_segmenter_file_never_loads(case, tmp_path):
    from dinomed_napari.analysis.persist import load_segmenter

    d, image, model = case
    cut = tmp_path / "cut.npz"
    cut.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    with pytest.raises(FeatureMismatchError, match="cut.npz: not a readable segmenter file"):
        load_segmenter(cut)
    other = tmp_path / "other.npz"  # not an .npz at all: numpy reads it as a pickle, which is refused
    other.write_bytes(b"\x00not a model" * 10)
    with pytest.raises(FeatureMismatchError, match="which are never loaded here: they can run code") as err:
        load_segmenter(other)
    assert "allow_pickle" not in str(err.value)


def test_loaded_segmenter_uses_its_stored_settings_and_refuses_others(case, tmp_path, capsys):
    d, image, model = case
    base = ["segment", image, "--load-model", model, "--modality", "CT", "--out", tmp_path / "a.nii.gz"]
    code, out, err = cli([*base, "--weights", "random"], capsys)  # no --resolution / --layers given
    assert code == 0 and "@32" in out, err
    np.testing.assert_array_equal(load_volume(tmp_path / "a.nii.gz").data, load_volume(d / "s.nii.gz").data)
    for flags, pattern in ((["--resolution", "64"], "features with resolution 32, not 64"),
                           (["--window", "bone"], "window 'soft_tissue', not 'bone'"),
                           (["--layers", "2"], r"trained on layers \(1,\), not \(2,\)"),
                           (["--model", "B"], "vit_small_patch16_dinov3 features, not vit_base"),):
        code, out, err = cli([*base, "--weights", "random", *flags, "--overwrite"], capsys)
        assert code == 2 and re.search(pattern, err), (flags, err)


def test_extract_out_is_never_an_input_and_replaced_only_when_complete(case, tmp_path, capsys, monkeypatch):
    import shutil

    d, image, model = case
    code, out, err = cli(["extract", image, *FEATS, "--out", image], capsys)
    assert code == 2 and "is the input IMAGE" in err
    dest = tmp_path / "f.zarr"
    assert cli(["extract", image, *FEATS, "--out", dest], capsys)[0] == 0
    marker = dest / "zarr.json"
    before = marker.read_bytes()
    code, out, err = cli(["extract", image, *FEATS, "--out", dest], capsys)
    assert code == 2 and "exists; pass --overwrite" in err

    def full(src, dst, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    precious = tmp_path / "my_data"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    code, out, err = cli(["extract", image, *FEATS, "--out", precious, "--overwrite"], capsys)
    assert code == 2 and "is not a feature store" in err and (precious / "notes.txt").read_text() == "keep me"
    precious.joinpath("notes.txt").unlink()
    precious.rmdir()
    monkeypatch.setattr(shutil, "copytree", full)
    code, out, err = cli(["extract", image, *FEATS, "--out", dest, "--overwrite"], capsys)
    assert code == 2 and "disk is full" in err
    assert marker.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["f.zarr"]


def test_bench_rerun_refused_overwrite_replaces_and_errors_exit_nonzero(case, tmp_path, capsys):
    from dinomed_napari.samples import sample_path

    out = tmp_path / "bench"
    args = ["bench", "--image", sample_path("ct_organs"), "--mask", sample_path("ct_organs_seg"),
            "--labels", "7777", "--weights", "random", "--protocols", "baseline", "--no-progress",
            "--out", out]
    code, _, err = cli(args, capsys)
    assert code == 1 and "1 result(s) failed, in case(s)" in err
    first = json.loads((out / "results.json").read_text())["meta"]["started"]
    code, _, err = cli(args, capsys)
    assert code == 2 and "already holds a bench run" in err
    assert json.loads((out / "results.json").read_text())["meta"]["started"] == first
    code, _, err = cli([*args, "--overwrite"], capsys)
    assert code == 1
    (csv,) = (out / "cases").iterdir()
    rows = csv.read_text().strip().splitlines()
    assert len(rows) == 2  # header + this run's one error row, nothing from the first run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench"]


def test_per_case_csv_never_mixes_runs(tmp_path):
    from dinomed_napari.bench.outputs import ResultsWriter

    for run in range(2):
        w = ResultsWriter(tmp_path, {"settings": {}})
        w.add({"case": "a", "protocol": "p", "dice": 0.1 * (run + 1)})
    lines = (tmp_path / "cases" / "a.csv").read_text().strip().splitlines()
    assert len(lines) == 2 and ",0.2," in lines[1]
