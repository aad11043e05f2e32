"""SYNTHETIC PET/CT phantom with known hot lesions (not patient data).

There is no small public PET volume with a lesion mask among the bundled data, so PET code paths (SUV
windows, threshold isolation, benchmarks) are exercised on this generated, seeded phantom. Everything it
returns says so: ``meta["synthetic"] is True`` and names/sources start with "synthetic".

Geometry: (Z, Y, X) = (inferior -> superior, anterior -> posterior, patient right -> left), the usual
radiological display; the affine is LPS-like in RAS terms (axis codes L, P, S), centred on the origin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from dinomed_napari.io.volume import Volume

# Organ ellipsoids in normalised coordinates: z in [0, 1] (feet -> head), y and x in [-1, 1]
# (x > 0: patient left, y > 0: posterior). (centre (z, y, x), semi-axes (z, y, x), CT HU, PET SUVbw)
_ORGANS = {
    "lung_right": ((0.80, 0.00, -0.40), (0.22, 0.40, 0.30), -850.0, 0.4),
    "lung_left": ((0.80, 0.00, 0.40), (0.22, 0.40, 0.28), -850.0, 0.4),
    "heart": ((0.62, -0.15, 0.12), (0.12, 0.22, 0.22), 40.0, 4.0),
    "liver": ((0.42, 0.00, -0.40), (0.16, 0.42, 0.38), 60.0, 2.0),
    "bladder": ((0.08, -0.05, 0.00), (0.07, 0.16, 0.18), 10.0, 10.0),
}
# Hot lesions: (name, organ it sits in, centre (z, y, x) normalised, radius mm, CT HU, PET SUVbw)
_LESIONS = (
    ("lung_nodule", "lung_right", (0.80, 0.05, -0.38), 12.0, 30.0, 8.0),
    ("liver_metastasis", "liver", (0.42, -0.10, -0.50), 10.0, 45.0, 6.0),
)


@dataclass
class PhantomCase:
    """A SYNTHETIC PET/CT pair on one grid, with the true lesion mask.

    Attributes
    ----------
    ct : Volume
        CT in HU (int16), modality "CT".
    pet : Volume
        PET in SUVbw (float32), modality "PT", blurred and noisy like a reconstructed scan.
    lesion_mask : np.ndarray
        (Z, Y, X) uint8: 0 background, 1.. one id per lesion (see ``lesions``).
    lesions : list of dict
        Name, organ, centre (voxel z, y, x), radius (mm) and true SUV of each lesion.
    """

    ct: Volume
    pet: Volume
    lesion_mask: np.ndarray
    lesions: list[dict] = field(default_factory=list)
    name: str = "synthetic_pet_ct_phantom"

    @property
    def lesion_volume(self) -> Volume:
        """``lesion_mask`` as a label `Volume` on the PET/CT grid (for writers and napari layers)."""
        meta = {**self.pet.meta, "name": "synthetic_lesion_mask"}
        return Volume(self.lesion_mask, self.pet.spacing, self.pet.affine.copy(), None, "label",
                      self.pet.source, meta)


def _norm_grid(shape):
    """Open (z, y, x) grids of normalised voxel-centre coordinates."""
    z = (np.arange(shape[0]) + 0.5) / shape[0]
    y = np.linspace(-1.0, 1.0, shape[1])
    x = np.linspace(-1.0, 1.0, shape[2])
    return z[:, None, None], y[None, :, None], x[None, None, :]


def _ellipsoid(grid, centre, semi) -> np.ndarray:
    return sum(((g - c) / s) ** 2 for g, c, s in zip(grid, centre, semi, strict=True)) <= 1.0


def _affine(shape, spacing) -> np.ndarray:
    sz, sy, sx = spacing
    affine = np.diag([-sx, -sy, sz, 1.0])  # i -> patient left, j -> posterior, k -> superior
    affine[:3, 3] = [(shape[2] - 1) / 2 * sx, (shape[1] - 1) / 2 * sy, -(shape[0] - 1) / 2 * sz]
    return affine


def make_pet_ct_phantom(shape=(40, 96, 96), seed: int = 0, spacing=(4.0, 4.0, 4.0)) -> PhantomCase:
    """Generate the SYNTHETIC PET/CT phantom.

    Parameters
    ----------
    shape : tuple of int
        (Z, Y, X) voxels; at least (8, 32, 32).
    seed : int
        Seed of the noise; the same seed gives the same case.
    spacing : tuple of float
        Voxel size (z, y, x) in mm; lesion radii are physical (10-12 mm).

    Returns
    -------
    PhantomCase
        CT (HU: air, fat, soft tissue, lungs, liver, heart, bladder, spine) and PET (SUVbw: liver ~2,
        heart ~4, bladder ~10, lungs ~0.4, lesions 6-8 before blur) with the lesion mask.
    """
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    if len(shape) != 3 or shape[0] < 8 or min(shape[1:]) < 32:
        raise ValueError(f"phantom shape {shape} too small; expected (Z, Y, X) >= (8, 32, 32)")
    rng = np.random.default_rng(seed)
    grid = _norm_grid(shape)
    body = (grid[1] / 0.62) ** 2 + (grid[2] / 0.85) ** 2 + 0 * grid[0]
    hu = np.where(body <= 1.0, 40.0, -1000.0)
    suv = np.where(body <= 1.0, 0.8, 0.0)
    fat = (body > 0.8) & (body <= 1.0)  # subcutaneous fat ring
    hu[fat], suv[fat] = -100.0, 0.3
    spine = ((grid[1] - 0.45) / 0.14) ** 2 + (grid[2] / 0.1) ** 2 + 0 * grid[0] <= 1.0
    hu[spine], suv[spine] = 300.0, 1.2
    cortex = spine & ~ndimage.binary_erosion(spine, iterations=1)
    hu[cortex] = 700.0
    for centre, semi, organ_hu, organ_suv in _ORGANS.values():
        m = _ellipsoid(grid, centre, semi)
        hu[m], suv[m] = organ_hu, organ_suv
    heart = _ellipsoid(grid, *_ORGANS["heart"][:2])
    blood = ndimage.binary_erosion(heart, iterations=max(1, round(8.0 / spacing[2])))
    suv[blood] = 1.5  # hot myocardium around a cooler blood pool

    mask = np.zeros(shape, np.uint8)
    lesions = []
    zz, yy, xx = (np.arange(n, dtype=float) for n in shape)
    for lesion_id, (name, organ, centre, radius, l_hu, l_suv) in enumerate(_LESIONS, start=1):
        c_vox = [centre[0] * shape[0] - 0.5, (centre[1] + 1) / 2 * (shape[1] - 1),
                 (centre[2] + 1) / 2 * (shape[2] - 1)]
        d2 = (((zz - c_vox[0]) * spacing[0]) ** 2)[:, None, None] \
            + (((yy - c_vox[1]) * spacing[1]) ** 2)[None, :, None] \
            + (((xx - c_vox[2]) * spacing[2]) ** 2)[None, None, :]
        m = d2 <= radius**2
        mask[m], hu[m], suv[m] = lesion_id, l_hu, l_suv
        lesions.append({"id": lesion_id, "name": name, "organ": organ,
                        "centre_zyx": [round(c, 2) for c in c_vox], "radius_mm": radius, "true_suv": l_suv,
                        "voxels": int(m.sum())})

    # CT: slight blur + 12 HU noise. PET: 7 mm FWHM resolution + count-like (sqrt) noise.
    ct = ndimage.gaussian_filter(hu, 0.5) + rng.normal(0.0, 12.0, shape)
    ct = np.clip(np.round(ct), -1024, 3071).astype(np.int16)
    sigma = [7.0 / 2.355 / s for s in spacing]
    pet = ndimage.gaussian_filter(suv, sigma)
    pet = np.clip(pet + rng.normal(0.0, 1.0, shape) * 0.08 * np.sqrt(np.maximum(pet, 0.0)), 0.0, None)

    affine = _affine(shape, spacing)
    meta = {"synthetic": True, "seed": int(seed), "lesions": lesions,
            "note": "SYNTHETIC phantom generated by dinomed_napari.phantom, not patient data"}
    src = f"synthetic:pet_ct_phantom(seed={seed})"
    return PhantomCase(
        ct=Volume(ct, spacing, affine.copy(), "CT", "HU", src, {**meta, "name": "synthetic_ct"}),
        pet=Volume(pet.astype(np.float32), spacing, affine.copy(), "PT", "SUVbw", src,
                   {**meta, "name": "synthetic_pet"}),
        lesion_mask=mask,
        lesions=lesions,
        name=f"synthetic_pet_ct_phantom_seed{seed}",
    )
