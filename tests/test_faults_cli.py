"""Bad flags and bad inputs on the command line: one line, exit 2, no traceback, nothing computed first."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from fault_helpers import FEATS, run_cli, tiny_ct

from dinomed_napari.cli.main import main
from dinomed_napari.io import load_volume, save_labels
from dinomed_napari.io.volume import Volume


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return tiny_ct(tmp_path_factory.mktemp("faults"))


@pytest.fixture
def no_features(monkeypatch):
    """Fail the test if feature extraction (the slow work) starts."""
    from dinomed_napari.features import extract

    def boom(*a, **k):
        raise AssertionError("features were computed before the bad input was refused")

    monkeypatch.setattr(extract, "extract_features", boom)


def cli(args, capsys) -> tuple[int, str]:
    code, _, err = run_cli(args, capsys)
    return code, err


USAGE = {
    "batch-size 0": (["extract", "{img}", *FEATS, "--batch-size", "0"], "batch size must be between 1"),
    "threads -2": (["extract", "{img}", *FEATS, "--threads", "-2"], "thread count must be between 1"),
    "layers 3,99": (["extract", "{img}", "--weights", "random", "--layers", "3,99"],
                    r"block\(s\) \[99\] do not exist; vit_small_patch16_dinov3 has blocks 0..11"),
    "resolution 16": (["extract", "{img}", *FEATS[:2], "--resolution", "16"],
                      "resolution must be between 32"),
    "resolution 100": (["pca", "{img}", *FEATS[:2], "--resolution", "100", "--out", "{d}/p.nii.gz"],
                       "multiple of 16"),
    "unknown model": (["extract", "{img}", "--weights", "random", "--model", "Q"], "Q"),
    "components 0": (["pca", "{img}", *FEATS, "--components", "0", "--out", "{d}/p.nii.gz"],
                     "number of components must be between 1 and 32"),
    "components 500": (["pca", "{img}", *FEATS, "--components", "500", "--out", "{d}/p.nii.gz"],
                       "number of components must be between 1 and 32"),
    "channel pc9": (["isolate", "{img}", *FEATS, "--seed", "1,10,12", "--channel", "pc9", "--out",
                     "{d}/i.nii.gz"], "pc1, pc2 and pc3"),
    "slice 999": (["isolate", "{img}", "--seed", "1,10,12", "--no-foreground", "--slice", "999", "--out",
                   "{d}/i.nii.gz"], r"--slice 999 is outside the volume: axis 0 has slices 0..3"),
    "seed outside": (["isolate", "{img}", "--seed", "9,10,12", "--no-foreground", "--out", "{d}/i.nii.gz"],
                     r"--seed 9,10,12 is outside the volume of shape \(Z, Y, X\) \(4, 32, 32\)"),
    "bad --out suffix": (["pca", "{img}", *FEATS, "--out", "{d}/p.txt"], "unsupported output type"),
    "bad segment --out suffix": (["segment", "{img}", *FEATS, "--scribbles", "{img}", "--out", "{d}/s.csv"],
                                 "unsupported output type"),
    "missing scribbles": (["segment", "{img}", *FEATS, "--scribbles", "{d}/nope.nii.gz", "--out",
                           "{d}/s.nii.gz"], "nope.nii.gz: no such file"),
    "missing channel file": (["isolate", "{img}", "--seed", "1,10,12", "--no-foreground", "--channel",
                              "{d}/nope.nii.gz", "--out", "{d}/i.nii.gz"], "nope.nii.gz: no such file"),
    "no weights": (["segment", "{img}", "--scribbles", "{img}", "--out", "{d}/s.nii.gz"],
                   "no weights chosen"),
    "missing image": (["pca", "{d}/none.nii.gz", *FEATS, "--out", "{d}/p.nii.gz"], "none.nii.gz: no such"),
    "bench negative folds": (["bench", "--demo", "--folds", "-1", "--out", "{d}/b"], "fold count must be"),
}


@pytest.mark.parametrize("name", list(USAGE))
def test_usage_errors_exit_2_with_one_line_before_any_work(name, image, capsys, no_features):
    args, pattern = USAGE[name]
    d = image.parent
    code, err = cli([a.format(img=image, d=d) for a in args], capsys)
    assert code == 2, (name, err)
    assert "Traceback" not in err and err.strip(), name
    import re

    assert re.search(pattern, err), (name, err)
    assert len([line for line in err.splitlines() if line.startswith(("error", "dinomed-napari"))]) == 1


def test_broken_bench_yaml_through_the_real_entry_point(tmp_path):
    cfg = tmp_path / "bench.yaml"
    cfg.write_text("cases:\n  - name: a\n    image: [unclosed\n")
    run = subprocess.run([sys.executable, "-m", "dinomed_napari.cli.main", "bench", "--config", str(cfg),
                          "--weights", "random", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "bench.yaml: not valid YAML" in run.stderr and "line" in run.stderr


def test_debug_shows_the_traceback(image, capsys):
    with pytest.raises(Exception, match="no such file"):
        main(["isolate", str(image.parent / "none.nii.gz"), "--seed", "1,1,1", "--no-foreground", "--out",
              str(image.parent / "x.nii.gz"), "--debug"])


def test_out_equal_to_an_input_is_refused_and_the_input_survives(image, tmp_path, capsys, no_features):
    vol = load_volume(image)
    scr = save_labels(tmp_path / "scr.nii.gz", (vol.data > 150).astype(np.uint8), vol)
    before = scr.read_bytes(), image.read_bytes()
    code, err = cli(["segment", image, *FEATS, "--scribbles", scr, "--out", scr], capsys)
    assert code == 2 and "--out" in err and "is the input --scribbles" in err
    code, err = cli(["isolate", image, "--seed", "1,10,12", "--no-foreground", "--out", image], capsys)
    assert code == 2 and "is the input IMAGE" in err
    assert (scr.read_bytes(), image.read_bytes()) == before


def test_existing_output_needs_overwrite_and_is_then_replaced(image, tmp_path, capsys):
    out = tmp_path / "iso.nii.gz"
    out.write_bytes(b"precious")
    args = ["isolate", image, "--seed", "1,12,15", "--no-foreground", "--out", out]
    code, err = cli(args, capsys)
    assert code == 2 and "exists; pass --overwrite" in err and out.read_bytes() == b"precious"
    assert cli([*args, "--overwrite"], capsys)[0] == 0
    assert load_volume(out, check=False).data[1, 12, 15] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iso.nii.gz"]  # no temporary left behind


def test_scribbles_with_another_affine_are_refused(image, tmp_path, capsys, no_features):
    vol = load_volume(image)
    moved = vol.affine.copy()
    moved[0, 3] += 12.0
    other = Volume(vol.data, spacing=vol.spacing, affine=moved)
    scr = save_labels(tmp_path / "scr.nii.gz", (vol.data > 150).astype(np.uint8), other)
    code, err = cli(["segment", image, *FEATS, "--scribbles", scr, "--out", tmp_path / "s.nii.gz"], capsys)
    assert code == 2 and "scr.nii.gz has another affine than image" in err and "resample" in err
    spaced = Volume(vol.data, spacing=(2.0, 1.0, 1.0))  # TIFF-like: spacing only, and another one
    tif = save_labels(tmp_path / "scr.tif", (vol.data > 150).astype(np.uint8), spaced)
    code, err = cli(["segment", image, *FEATS, "--scribbles", tif, "--out", tmp_path / "s.nii.gz"], capsys)
    assert code == 2 and "spacing (2.0, 1.0, 1.0) vs (3.0, 1.0, 1.0)" in err


def test_disk_full_mid_write_keeps_the_old_file_and_leaves_no_partial_one(image, tmp_path, capsys,
                                                                           monkeypatch):
    import errno

    import nibabel as nib

    out = tmp_path / "iso.nii.gz"
    assert cli(["isolate", image, "--seed", "1,12,15", "--no-foreground", "--out", out], capsys)[0] == 0
    old = out.read_bytes()
    real = nib.save

    def full_disk(img, name):
        real(img, name)  # the bytes land ...
        with open(name, "r+b") as fh:  # ... half of them, then the disk is full
            fh.truncate(len(open(name, "rb").read()) // 2)
        raise OSError(errno.ENOSPC, "No space left on device", name)

    monkeypatch.setattr(nib, "save", full_disk)
    code, err = cli(["isolate", image, "--seed", "1,12,15", "--no-foreground", "--min-size", "5",
                     "--overwrite", "--out", out], capsys)
    assert code == 2 and "No space left on device" in err and "disk is full" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iso.nii.gz"]


def test_read_only_output_folder_is_one_line(image, tmp_path, capsys, monkeypatch):
    import errno

    from dinomed_napari.io import atomic

    def erofs(src, dst):
        raise OSError(errno.EROFS, "Read-only file system", str(dst))

    monkeypatch.setattr(atomic.os, "replace", erofs)
    code, err = cli(["isolate", image, "--seed", "1,12,15", "--no-foreground", "--out",
                     tmp_path / "iso.nii.gz"], capsys)
    assert code == 2 and err.startswith("error: ") and "iso.nii.gz: Read-only file system" in err
    assert "write to another folder" in err and list(tmp_path.iterdir()) == []


def test_absurd_nifti_header_is_refused_without_allocating(tmp_path, capsys):
    import gzip

    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape((4000, 4000, 4000))
    hdr.set_data_dtype(np.int16)
    raw = hdr.binaryblock + b"\0" * 4 + b"\1" * 1000
    plain, packed = tmp_path / "big.nii", tmp_path / "big.nii.gz"
    plain.write_bytes(raw)
    packed.write_bytes(gzip.compress(raw))
    code, err = cli(["isolate", plain, "--seed", "1,1,1", "--no-foreground", "--out", tmp_path / "x.nii.gz"],
                    capsys)
    assert code == 2 and "4000x4000x4000 voxels of int16" in err and "holds 1352 bytes" in err
    code, err = cli(["isolate", packed, "--seed", "1,1,1", "--no-foreground", "--out", tmp_path / "x.nii.gz"],
                    capsys)
    assert code == 2 and "more than this machine's memory" in err


def test_outputs_name_what_made_them(image, tmp_path, capsys):
    import json

    import nibabel as nib
    import tifffile

    assert cli(["pca", image, *FEATS, "--components", "1", "--out", tmp_path / "p.nii.gz"], capsys)[0] == 0
    img = nib.load(tmp_path / "p_pc1.nii.gz")
    descrip = img.header["descrip"].item().decode()
    assert descrip.startswith("dinomed random small") and "r32" in descrip and "PC1" in descrip
    record = json.loads(img.header.extensions[0].get_content())
    assert record["weights"] == "random" and record["resolution"] == 32 and record["layers"] == [1]
    assert record["window"] == "soft_tissue" and record["software"].startswith("dinomed-napari")
    for name in ("p.tif", "p.npy"):
        assert cli(["pca", image, *FEATS, "--components", "1", "--out", tmp_path / name], capsys)[0] == 0
    info = json.loads(tifffile.TiffFile(tmp_path / "p_pc1.tif").imagej_metadata["Info"])
    side = json.loads((tmp_path / "p_pc1.npy.json").read_text())["provenance"]
    assert info["weights"] == side["weights"] == "random" and info["what"] == "PC1"


def test_dicom_series_choice_is_explicit_and_printed(tmp_path, capsys):
    from dicom_series import write_series

    raw = (np.arange(3 * 32 * 32).reshape(3, 32, 32) % 500).astype(np.int16)
    write_series(tmp_path / "study" / "a", raw)
    write_series(tmp_path / "study" / "b", raw[:, ::-1].copy())
    study = tmp_path / "study"
    code, err = cli(["isolate", study, "--modality", "CT", "--seed", "1,1,1", "--no-foreground", "--out",
                     tmp_path / "x.nii.gz"], capsys)
    assert code == 2 and "several CT series" in err and "--series UID" in err
    uid = load_volume(tmp_path / "study" / "a").meta["series_uid"]
    assert main(["isolate", str(study), "--series", uid, "--seed", "1,1,1", "--no-foreground", "--out",
                 str(tmp_path / "x.nii.gz")]) == 0
    assert f"DICOM series {uid}" in capsys.readouterr().out


def test_unwritable_output_folder_is_found_before_any_work(image, tmp_path, capsys, no_features,
                                                           monkeypatch):
    import errno
    import tempfile

    def erofs(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", erofs)
    code, err = cli(["pca", image, *FEATS, "--out", tmp_path / "p.nii.gz"], capsys)
    assert code == 2 and f"cannot write in {tmp_path} (Read-only file system)" in err


def test_messages_carry_no_numpy_reprs_and_os_errors_say_what_to_do():
    import errno

    from dinomed_napari.cli.failures import one_line

    msg, code = one_line(ValueError(f"labels {[np.int64(1), np.float32(2.5)]} at {(np.int64(3),)}\nsecond"))
    assert (msg, code) == ("error: labels [1, 2.5] at (3,) second", 2)
    msg, code = one_line(OSError(errno.ENOSPC, "No space left on device", "/x/out.nii.gz"))
    assert code == 2 and msg == ("error: /x/out.nii.gz: No space left on device (the disk is full: free some "
                                 "space or write to another disk)")
    msg, code = one_line(MemoryError())
    assert code == 2 and "not enough memory" in msg
    msg, code = one_line(TypeError("boom"))
    assert code == 1 and "--debug" in msg


def test_grid_check_tolerates_formats_without_orientation_only(tmp_path):
    from dinomed_napari.errors import VolumeError
    from dinomed_napari.io.validate import check_same_grid

    data = np.zeros((4, 32, 32), np.uint8)
    oriented = np.array([[-1.0, 0, 0, 10], [0, -1.0, 0, 20], [0, 0, 3.0, -5], [0, 0, 0, 1]])
    image = Volume(data + 1, spacing=(3.0, 1.0, 1.0), affine=oriented, meta={"format": "nifti"})
    tif = save_labels(tmp_path / "s.tif", data, image)
    check_same_grid(image, load_volume(tif, check=False), "tif")  # same spacing: the grid TIFF can hold
    np.save(tmp_path / "bare.npy", data)  # no side-car: no grid information at all
    check_same_grid(image, load_volume(tmp_path / "bare.npy", check=False), "bare npy")
    nearly = oriented.copy()
    nearly[0, 3] += 5e-4  # within 1e-3 mm
    check_same_grid(image, Volume(data, affine=nearly, meta={"format": "nifti"}), "nearly")
    nearly[0, 3] += 0.5
    with pytest.raises(VolumeError, match="moved has another affine than image"):
        check_same_grid(image, Volume(data, affine=nearly, meta={"format": "nifti"}), "moved")
