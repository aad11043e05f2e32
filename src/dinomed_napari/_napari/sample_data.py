"""File > Open Sample: bundled real CT and EM volumes with their masks, and a generated PET/CT phantom."""

from __future__ import annotations

import numpy as np

from .layers import volume_layer_data

ISBI_SPACING_NM = (50.0, 4.0, 4.0)  # (Z, Y, X), from the ISBI 2012 challenge description


def _load(key: str, modality: str | None = None):
    from dinomed_napari.io import load_volume
    from dinomed_napari.samples import sample_path

    return load_volume(sample_path(key), modality=modality)


def ct_organs() -> list[tuple]:
    """Abdominal CT (HU, 3 mm) with TotalSegmentator's organ labels (model output, Apache-2.0)."""
    ct = _load("ct_organs", "CT")
    seg = _load("ct_organs_seg")
    image = volume_layer_data(ct, "CT abdomen (TotalSegmentator example)", "image")
    labels = volume_layer_data(seg, "organs (TotalSegmentator)", "labels")
    return [image, labels]


def em_stack() -> list[tuple]:
    """ISBI 2012 serial-section TEM (20 x 352 x 352) with its membrane mask (research use, cite)."""
    em = _load("em", "EM")
    mask = _load("em_labels")
    for vol in (em, mask):  # the crop's TIFF has no spacing tags; ISBI 2012 is 4 x 4 nm, 50 nm sections
        if vol.meta.get("spacing_from") == "none":
            vol.spacing, vol.meta["spacing_unit"] = ISBI_SPACING_NM, "nm"
            vol.affine = np.diag([*ISBI_SPACING_NM[::-1], 1.0])
    # The file stores 0 = membrane, 255 = cell interior; show membranes as label 1.
    mask.data = (np.asarray(mask.data) == 0).astype(np.uint8)
    return [volume_layer_data(em, "EM (ISBI 2012)", "image"),
            volume_layer_data(mask, "membranes (ISBI 2012)", "labels")]


def pet_ct_phantom() -> list[tuple]:
    """A generated PET/CT phantom: every layer name says SYNTHETIC (no real PET volume is bundled)."""
    from dinomed_napari.phantom import make_pet_ct_phantom

    phantom = make_pet_ct_phantom()  # SYNTHETIC: see dinomed_napari.phantom
    out = [volume_layer_data(phantom.ct, "SYNTHETIC CT (phantom)", "image"),
           volume_layer_data(phantom.pet, "SYNTHETIC PET SUV (phantom)", "image")]
    out[1][1].update(blending="additive", opacity=0.6)
    out.append(volume_layer_data(phantom.lesion_volume, "SYNTHETIC lesions (phantom)", "labels"))
    return out
