"""Test helper for the fault tests: a tiny CT-like NIfTI and a CLI call that also catches usage errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dinomed_napari.cli.main import main
from dinomed_napari.io import save_labels
from dinomed_napari.io.volume import Volume

#: Feature flags that make every command fast: random ViT-S, 2x2 patch grid, block 1 only.
FEATS = ["--weights", "random", "--resolution", "32", "--layers", "1", "--modality", "CT"]


def tiny_ct(folder: Path, seed: int = 0, noise: float = 30.0) -> Path:
    """(4, 32, 32) float32 'HU' with a bright box at [:, 8:20, 10:24], 3 x 1 x 1 mm, saved as ct.nii.gz."""
    rng = np.random.default_rng(seed)
    data = rng.normal(40, noise, size=(4, 32, 32)).astype(np.float32)
    data[:, 8:20, 10:24] += 200
    vol = Volume(data, spacing=(3.0, 1.0, 1.0), affine=np.diag([1.0, 1.0, 3.0, 1.0]), modality="CT")
    return save_labels(Path(folder) / "ct.nii.gz", data, vol)


def run_cli(args, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``dinomed-napari ARGS`` run in-process."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
