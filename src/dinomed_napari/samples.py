"""Bundled real sample volumes (see ``data/ATTRIBUTION.md``), reached by short keys.

>>> from dinomed_napari.samples import sample_path
>>> from dinomed_napari.io import load_volume
>>> ct = load_volume(sample_path("ct_organs"), modality="CT")  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_TS = "TotalSegmentator (Apache-2.0), Wasserthal et al., Radiology: AI 2023"
_PYR = "pyradiomics test case lung1 (BSD-3-Clause), van Griethuysen et al., Cancer Research 2017"
_ISBI = ("ISBI 2012 EM challenge training data, research use with citation: Cardona et al. 2010 PLoS Biol; "
         "Arganda-Carreras et al. 2015 Front. Neuroanat.")

# key -> (file name under dinomed_napari/data, description, attribution)
SAMPLES: dict[str, tuple[str, str, str]] = {
    "ct_organs": ("totalseg_example_ct_sm.nii.gz", "CT abdomen, int16 HU, 3 mm", _TS),
    "ct_organs_seg": ("totalseg_example_ct_sm_seg.nii.gz", "41 organ labels of ct_organs (model output)",
                      _TS),
    "ct_organs_labels": ("totalseg_example_ct_sm_seg_labels.json", "label id -> organ name of ct_organs_seg",
                         _TS),
    "cta_aorta": ("totalseg_aorta_cta_crop.nii.gz", "contrast CT (CTA) crop, int16 HU, 1.5 mm", _TS),
    "cta_aorta_mask": ("totalseg_aorta_cta_crop_aorta_mask.nii.gz", "aorta mask {0,1} of cta_aorta", _TS),
    "lung_ct": ("pyradiomics_lung1_ct.nii.gz", "CT chest crop, int16 HU, 0.57x0.57x5 mm", _PYR),
    "lung_mask": ("pyradiomics_lung1_tumor_mask.nii.gz", "manual lung nodule mask {0,1} of lung_ct", _PYR),
    "mri_organs": ("totalseg_example_mr_sm.nii.gz", "MRI abdomen, int16, 3 mm", _TS),
    "mri_organs_seg": ("totalseg_example_mr_sm_seg.nii.gz", "23 organ labels of mri_organs (model output)",
                       _TS),
    "mri_organs_labels": ("totalseg_example_mr_sm_seg_labels.json",
                          "label id -> organ name of mri_organs_seg", _TS),
    "em": ("isbi2012_train_z00-19_volume_crop352.tif", "serial-section TEM, uint8, 20x352x352", _ISBI),
    "em_labels": ("isbi2012_train_z00-19_labels_crop352.tif", "EM membranes: 0 membrane, 255 cell interior",
                  _ISBI),
    "em_cells": ("isbi2012_train_z00-19_cells_cc2d_crop352.tif", "EM per-slice cell instances, uint16",
                 _ISBI),
}


def sample_path(key: str) -> Path:
    """Path of a bundled sample file.

    Parameters
    ----------
    key : str
        One of ``SAMPLES`` (e.g. "ct_organs", "lung_mask", "em").

    Returns
    -------
    Path
        Existing file inside the installed package.

    Raises
    ------
    KeyError
        For an unknown key (the message lists the known ones).
    FileNotFoundError
        If the package was installed without its data files.
    """
    if key not in SAMPLES:
        raise KeyError(f"unknown sample {key!r}; available: {', '.join(SAMPLES)}")
    path = Path(str(resources.files("dinomed_napari") / "data" / SAMPLES[key][0]))
    if not path.is_file():
        raise FileNotFoundError(f"sample {key!r} should be at {path} but is missing "
                                "(package data not installed)")
    return path
