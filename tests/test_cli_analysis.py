"""The analysis commands end to end on a small crop of the real lung CT (random ViT-S, tiny resolution)."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_helpers import dice

from dinomed_napari.cli.main import main
from dinomed_napari.io import load_volume, save_labels
from dinomed_napari.io.volume import Volume

FEATS = ["--weights", "random", "--resolution", "64", "--layers", "1", "--modality", "CT"]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    from dinomed_napari.samples import sample_path

    d = tmp_path_factory.mktemp("cli")
    ct, mask = load_volume(sample_path("lung_ct")), load_volume(sample_path("lung_mask"))
    crop = (slice(28, 38), slice(48, 112), slice(48, 112))
    vol = Volume(ct.data[crop], spacing=ct.spacing, modality="CT")
    truth = (mask.data[crop] > 0).astype(np.uint8)
    image = save_labels(d / "ct.nii.gz", vol.data, vol)
    return d, image, truth


def test_pca_and_affinity_write_maps_on_the_source_grid(case, capsys):
    d, image, truth = case
    assert main(["pca", str(image), *FEATS, "--out", str(d / "pca.nii.gz"), "--rgb", str(d / "rgb.tif")]) == 0
    out = capsys.readouterr().out
    assert "[random]" in out and "explained variance ratio" in out
    assert "modality CT" in out and "window soft_tissue" in out and "note:" not in out
    for k in (1, 2, 3):
        pc = load_volume(d / f"pca_pc{k}.nii.gz")
        assert pc.shape == truth.shape and pc.data.dtype == np.float32 and np.ptp(pc.data) > 0
    import tifffile

    rgb = tifffile.imread(d / "rgb.tif")
    assert rgb.shape == truth.shape + (3,) and rgb.dtype == np.uint8
    # NIfTI records no modality: the user is told, and which window "auto" fell back to.
    no_modality = [a for a in FEATS if a not in ("--modality", "CT")]
    assert main(["affinity", str(image), *no_modality, "--out", str(d / "aff.nii.gz")]) == 0
    out = capsys.readouterr().out
    assert "modality not recorded in the file (--modality CT/MR/PT/EM sets it)" in out
    assert "window percentile" in out
    # The widget would detect Hounsfield units and pick the CT window: the user is told.
    assert "look like Hounsfield units" in out and "--modality CT gives the CT soft-tissue window" in out
    for name in "xyz":
        aff = load_volume(d / f"aff_{name}.nii.gz").data
        assert aff.shape == truth.shape and -1.001 <= aff.min() and aff.max() <= 1.001


def test_isolate_nodule_from_a_seed(case, capsys):
    d, image, truth = case
    zz, yy, xx = np.nonzero(truth)
    seed = f"{int(np.median(zz))},{int(np.median(yy))},{int(np.median(xx))}"
    out = d / "nodule.nii.gz"
    assert main(["isolate", str(image), "--seed", seed, "--no-foreground", "--out", str(out)]) == 0
    assert "intensity only" in capsys.readouterr().out
    got = load_volume(out).data
    assert got.shape == truth.shape and dice(got, truth) > 0.8
    # With features: PC1 foreground + PC2 channel runs and reports the weights.
    assert main(["isolate", str(image), "--seed", seed, "--channel", "pc2", *FEATS, "--out",
                 str(d / "pc.nii.gz")]) == 0
    assert "[random]" in capsys.readouterr().out
    # Both steps run (a PC1 foreground of every voxel) and the inner threshold (over the nodule's HU)
    # drops the seed: the warning names that step.
    assert main(["isolate", str(image), "--seed", seed, "--channel", "intensity", "--inner-threshold", "5000",
                 "--fg-threshold=-1e9", *FEATS, "--out", str(d / "none.nii.gz")]) == 0
    out = capsys.readouterr().out
    want = "warning: a seed is not in the result: its value is on the other side of the inner threshold 5000"
    assert want in out and "PC1 foreground step" not in out


def test_segment_train_save_and_reapply(case, capsys):
    from dinomed_napari.bench.scribbles import simulate_scribbles

    d, image, truth = case
    scr = simulate_scribbles(truth, n_slices=2, seed=0).labels
    vol = load_volume(image)
    scr_path = save_labels(d / "scr.nii.gz", scr, vol)
    out, model = d / "seg.nii.gz", d / "seg_model.npz"
    args = ["segment", str(image), *FEATS, "--scribbles", str(scr_path), "--out", str(out),
            "--intensity", "raw", "--spatial", "none", "--cleanup", "--save-model", str(model),
            "--proba-out", str(d / "p.nii.gz")]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "trained linear" in text and "[random]" in text
    labels = load_volume(out).data
    assert labels.shape == truth.shape and set(np.unique(labels)) <= {1, 2}
    assert dice(labels == 2, truth) > 0.45  # measured 0.545 (random ViT block 1, 4x4 patch grid, clean-up)
    p2 = load_volume(d / "p_p2.nii.gz").data
    assert np.all(p2[labels == 2] > 0.5)  # clean-up only removes voxels from the classifier's answer
    again = d / "again.nii.gz"
    assert main(["segment", str(image), *FEATS, "--load-model", str(model), "--out", str(again)]) == 0
    # Same segmenter, same (cached) features; a saved segmenter carries no scribbles, so no clean-up.
    raw = load_volume(again).data
    assert np.array_equal(raw == 2, p2 > 0.5)
    capsys.readouterr()
    # Without --modality the saved segmenter's CT window is used: no note about a percentile window.
    no_modality = [a for a in FEATS if a not in ("--modality", "CT")]
    assert main(["segment", str(image), *no_modality, "--load-model", str(model), "--out",
                 str(d / "again2.nii.gz")]) == 0
    text = capsys.readouterr().out
    assert "window soft_tissue" in text and "note:" not in text
    # Training flags beside --load-model would be ignored: refused. Post-processing flags apply.
    base = ["segment", str(image), *FEATS, "--load-model", str(model)]
    refused = d / "no.nii.gz"
    assert main([*base, "--scribbles", str(scr_path), "--classifier", "rf", "--out", str(refused)]) == 2
    err = capsys.readouterr().err
    assert "keeps its own classifier" in err and "--scribbles, --classifier would be ignored" in err
    assert not refused.exists()
    pieces = d / "pieces.nii.gz"
    assert main([*base, "--min-size", str(int((raw == 2).sum()) + 1), "--out", str(pieces)]) == 0
    assert not (load_volume(pieces, check=False).data == 2).any()  # every class-2 piece is under that size


def test_segment_says_where_and_why_the_walk_ended(case, capsys):
    """Scribbles on the nodule's largest slice, default 3D step: the command names the slices where the
    walk ended past both of the nodule's ends, with why, and the segmentation holds the nodule."""
    from dinomed_napari.analysis.propagate import ENDS
    from dinomed_napari.bench.scribbles import structure_scribbles

    d, image, truth = case
    scr = structure_scribbles(truth, n_slices=1, seed=0)
    scr_path = save_labels(d / "scr1.nii.gz", scr.labels, load_volume(image))
    out = d / "walk.nii.gz"
    assert main(["segment", str(image), *FEATS, "--scribbles", str(scr_path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"3D step: propagated from annotated slices {list(scr.slices)}" in text
    line = next(x for x in text.splitlines() if x.startswith("the walk ended on slice "))
    ended = [int(part.split(":")[0].split()[-1]) for part in line.split("; ")]
    rows = np.flatnonzero(truth.any(axis=(1, 2)))
    assert min(ended) < scr.slices[0] < max(ended) and ENDS in line
    assert min(ended) <= rows.min() and max(ended) >= rows.max()  # past the nodule's last slices
    assert dice(load_volume(out).data == 2, truth) > 0.7


def test_cli_bad_inputs(case, capsys):
    d, image, truth = case
    wrong = save_labels(d / "wrong.npy", np.ones((10, 64, 60), np.uint8), Volume(np.zeros((10, 64, 60))))
    assert main(["segment", str(image), *FEATS, "--scribbles", str(wrong), "--out", str(d / "x.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "--scribbles" in err and "wrong.npy has shape (10, 64, 60) but image" in err
    empty = save_labels(d / "empty.nii.gz", np.zeros(truth.shape, np.uint8), load_volume(image))
    assert main(["segment", str(image), *FEATS, "--scribbles", str(empty), "--out", str(d / "x.nii.gz")]) == 2
    assert "no scribbles" in capsys.readouterr().err
    neg = np.where(truth > 0, 2, 0).astype(np.int16)
    neg[0, 0, :5] = -1  # e.g. a tool's "ignore" value: named with the file, before any feature is computed
    neg_path = save_labels(d / "neg.nii.gz", neg, load_volume(image))
    assert main(["segment", str(image), *FEATS, "--scribbles", str(neg_path), "--out",
                 str(d / "x.nii.gz")]) == 2
    captured = capsys.readouterr()
    assert f"--scribbles {neg_path}: 5 voxel(s) hold negative values (e.g. -1)" in captured.err
    assert "features axis" not in captured.out
    # A float label image is read when its values are whole numbers; 1.5 or NaN is no class (rounding or
    # casting it would label voxels with another class, silently).
    for name, odd in (("half", 1.5), ("nan", np.nan)):
        frac = np.where(truth > 0, 2.0, 0.0).astype(np.float32)
        frac[0, 0, :5] = 1.0
        frac[truth.shape[0] // 2, 30, 30] = odd
        path = save_labels(d / f"{name}.npy", frac, load_volume(image))
        args = ["segment", str(image), *FEATS, "--scribbles", str(path), "--out", str(d / "x.nii.gz")]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"--scribbles {path}: 1 voxel(s) are not whole class numbers (e.g. {odd:g})" in err
    assert main(["pca", str(image), "--out", str(d / "y.nii.gz")]) == 2
    assert "no weights chosen" in capsys.readouterr().err
    assert main(["isolate", str(image), "--seed", "50,1,1", "--no-foreground", "--out",
                 str(d / "z.nii.gz")]) == 2
    assert "outside the volume" in capsys.readouterr().err
    # --channel auto (the default) picks its own threshold: an explicit rule is refused, not ignored.
    assert main(["isolate", str(image), "--seed", "5,30,30", "--no-foreground", "--inner-threshold", "41%",
                 "--below", "--out", str(d / "z.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "--inner-threshold 41% --below applies to an explicit --channel" in err
    assert "Add --channel intensity" in err and not (d / "z.nii.gz").exists()
    for voxel in ("5,30", "a,b,c", "inf,30,30"):
        with pytest.raises(SystemExit):
            main(["isolate", str(image), "--seed", voxel, "--out", str(d / "z.nii.gz")])
        assert f"expected a voxel as z,y,x (e.g. 33,79,81), got '{voxel}'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["isolate", str(image), "--seed", "5,30,30", "--channel", "intensity",
              "--inner-threshold", "nan", "--out", str(d / "z.nii.gz")])
    assert "expected 'otsu', a finite number or NN%, got 'nan'" in capsys.readouterr().err
    for share in ("150%", "0%", "x%"):
        with pytest.raises(SystemExit) as stop:
            main(["isolate", str(image), "--seed", "5,30,30", "--channel", "intensity", "--inner-threshold",
                  share, "--out", str(d / "z.nii.gz")])
        assert stop.value.code == 2
        assert f"above 0% and at most 100% (e.g. 41%), got '{share}'" in capsys.readouterr().err


def test_ctrl_c_during_features_cancels_cleanly_and_rerun_resumes(case, capsys, ctrl_c_at, tmp_path):
    d, image, truth = case
    args = ["pca", str(image), *FEATS, "--batch-size", "2", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "pca.nii.gz")]
    ctrl_c_at(2)  # mid-volume
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "cancelled:" in err and "after 2 of 10 slices" in err
    assert not (tmp_path / "pca_pc1.nii.gz").exists()
    ctrl_c_at.disarm()
    assert main(args) == 0
    assert load_volume(tmp_path / "pca_pc1.nii.gz").shape == truth.shape


def test_segment_says_when_a_texture_is_labelled_with_the_forest(tmp_path, capsys):
    """EM cell interiors painted against membranes: no structure to follow, and the CLI says the
    classifier's volume was blended with the scribbles' forest (and not, with --spatial none)."""
    from dinomed_napari.bench.scribbles import simulate_scribbles
    from dinomed_napari.samples import sample_path

    em = load_volume(sample_path("em"))
    crop = (slice(0, 12), slice(0, 128), slice(0, 128))  # the demo's crop
    vol = Volume(np.asarray(em.data)[crop], spacing=em.spacing, modality="EM")
    cells = load_volume(sample_path("em_labels")).data[crop] == 255
    image = save_labels(tmp_path / "em.nii.gz", vol.data.astype(np.float32), vol)
    scr = save_labels(tmp_path / "scr.nii.gz", simulate_scribbles(cells.astype(np.uint8), n_slices=1,
                                                                  seed=0).labels, vol)
    feats = ["--weights", "random", "--resolution", "128", "--layers", "1", "--modality", "EM"]
    outs = {}
    for spatial in ("auto", "none"):
        out = tmp_path / f"{spatial}.nii.gz"
        assert main(["segment", str(image), *feats, "--scribbles", str(scr), "--out", str(out),
                     "--spatial", spatial]) == 0
        outs[spatial] = (capsys.readouterr().out, load_volume(out).data == 2)
    assert "3D step: none (a class's strokes" in outs["auto"][0]
    assert "blended with the scribbles' filter-bank forest (share 0.75)" in outs["auto"][0]
    assert "3D step: none (--spatial none); every voxel labelled by the classifier\n" in outs["none"][0]
    print(f"EM cells, 12 x 128 x 128: auto {dice(outs['auto'][1], cells):.3f}, "
          f"none {dice(outs['none'][1], cells):.3f}")
    assert dice(outs["auto"][1], cells) > dice(outs["none"][1], cells)


def test_segment_a_single_slice_volume(case, tmp_path, capsys):
    """One slice of (1, Y, X), as the reader's error for a 2D image suggests: segmented, not an error from
    the pixel filters."""
    from dinomed_napari.bench.scribbles import structure_scribbles

    _, image, truth = case
    vol = load_volume(image)
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    one = Volume(np.asarray(vol.data)[z:z + 1], spacing=vol.spacing, modality="CT")
    img1 = save_labels(tmp_path / "one.nii.gz", one.data, one)
    scr = structure_scribbles(truth[z:z + 1], n_slices=1, seed=0).labels
    scr1 = save_labels(tmp_path / "one_scr.nii.gz", scr, one)
    out = tmp_path / "one_out.nii.gz"
    assert main(["segment", str(img1), *FEATS, "--scribbles", str(scr1), "--out", str(out)]) == 0
    assert "wrote labels" in capsys.readouterr().out
    pred = load_volume(out).data == 2
    assert pred.shape == (1, 64, 64)
    assert dice(pred, truth[z:z + 1]) > 0.8
