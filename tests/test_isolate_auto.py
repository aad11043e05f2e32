"""One-click isolation with the default recipe: threshold from the seed's neighbourhood."""

from __future__ import annotations

import numpy as np
from analysis_helpers import dice

from dinomed_napari.analysis.isolate_auto import auto_isolate
from dinomed_napari.cli.main import main
from dinomed_napari.io import load_volume, save_labels
from dinomed_napari.io.volume import Volume


def _deepest(mask, spacing):
    from dinomed_napari.bench.protocols.isolation import seed_inside

    return list(seed_inside(mask, spacing))


def test_lung_nodule_one_click_default_recipe():
    from dinomed_napari.samples import sample_path

    ct, truth = load_volume(sample_path("lung_ct")), load_volume(sample_path("lung_mask")).data > 0
    seed = _deepest(truth, ct.spacing)
    res = auto_isolate(ct.data, [seed], ct.spacing)
    d = dice(res.mask, truth)
    true_ml = truth.sum() * np.prod(ct.spacing) / 1000
    print(f"one click: Dice {d:.3f}, {res.volume_ml:.2f} ml (true {true_ml:.2f} ml); {res.recipe}")
    assert d > 0.8 and res.seeds_inside and res.note == ""  # measured 0.890
    assert abs(res.volume_ml - true_ml) < 0.5 * true_ml
    # A PC1 map that puts the seed in its background is not used as a foreground, and the result says so.
    pc1 = -truth.astype(np.float32)
    with_pc1 = auto_isolate(ct.data, [seed], ct.spacing, pc1=pc1)
    assert np.array_equal(with_pc1.mask, res.mask) and "PC1 puts the seed in the background" in with_pc1.note
    # A PC1 map that holds the seed is used as the foreground step.
    assert "PC1 foreground" in auto_isolate(ct.data, [seed], ct.spacing, pc1=-pc1).recipe


def test_a_large_tumour_gets_a_box_sized_to_it(monkeypatch):
    """The bundled nodule magnified 3x in every direction (slices repeated, planes interpolated): a
    tumour about 45 mm across. Otsu in the fixed 40 mm box is pulled towards the lung and overgrows
    it; the box widened to 3x its half-size is not."""
    from scipy import ndimage

    import dinomed_napari.analysis.isolate_auto as IA
    from dinomed_napari.samples import sample_path

    ct, truth = load_volume(sample_path("lung_ct")), load_volume(sample_path("lung_mask")).data > 0
    sp = np.asarray(ct.spacing, float)
    centre, half = np.argwhere(truth).mean(0).round().astype(int), np.ceil(25 / sp).astype(int)
    crop = tuple(slice(max(c - h, 0), c + h + 1) for c, h in zip(centre, half, strict=True))
    img = np.repeat(ndimage.zoom(np.asarray(ct.data)[crop].astype(np.float32), (1, 3, 3), order=1), 3, axis=0)
    big = np.repeat(ndimage.zoom(truth[crop].astype(np.float32), (1, 3, 3), order=1) > 0.5, 3, axis=0)
    seed = _deepest(big, sp)
    res = auto_isolate(img, [seed], sp)
    assert dice(res.mask, big) > 0.85 and res.seeds_inside  # measured 0.869
    assert "40 mm box" not in res.recipe
    monkeypatch.setattr(IA, "MAX_RADIUS_MM", 0.0)  # the fixed box alone
    fixed = auto_isolate(img, [seed], sp)
    assert "40 mm box" in fixed.recipe and dice(fixed.mask, big) < dice(res.mask, big) - 0.05  # 0.796
    assert fixed.volume_ml > res.volume_ml


def test_preview_plane_equals_the_applied_volume(tmp_path, capsys):
    from dinomed_napari.samples import sample_path

    ct, truth = load_volume(sample_path("lung_ct")), load_volume(sample_path("lung_mask")).data > 0
    seed = _deepest(truth, ct.spacing)
    image = save_labels(tmp_path / "ct.nii.gz", ct.data, Volume(ct.data, spacing=ct.spacing, modality="CT"))
    z = ",".join(str(v) for v in seed)
    common = [str(image), "--seed", z, "--no-foreground"]
    assert main(["isolate", *common, "--out", str(tmp_path / "vol.nii.gz")]) == 0
    out = capsys.readouterr().out
    assert " ml)" in out and "recipe: intensity above" in out
    assert main(["isolate", *common, "--slice", str(seed[0]), "--out", str(tmp_path / "plane.nii.gz")]) == 0
    vol, plane = load_volume(tmp_path / "vol.nii.gz").data, load_volume(tmp_path / "plane.nii.gz").data
    assert plane[seed[0]].any() and np.array_equal(plane[seed[0]], vol[seed[0]])
    assert not np.delete(plane, seed[0], axis=0).any()


def test_explicit_channel_names_the_step_that_dropped_the_seed(tmp_path, capsys):
    # A seed on the dark side of a bright/dark volume: the inner threshold removes it, and the CLI says so.
    data = np.zeros((6, 32, 32), np.int16)
    data[:, :, 16:] = 100
    image = save_labels(tmp_path / "v.nii.gz", data, Volume(data, modality="CT"))
    assert main(["isolate", str(image), "--seed", "3,16,4", "--no-foreground", "--channel", "intensity",
                 "--out", str(tmp_path / "o.nii.gz")]) == 0
    out = capsys.readouterr().out
    assert "warning: a seed is not in the result" in out and "--below" in out


def test_non_finite_or_flat_boxes_say_why():
    import pytest

    from dinomed_napari.errors import VolumeError

    img = np.random.default_rng(0).normal(0, 10, (20, 64, 64)).astype(np.float32)
    img[5:15, 20:40, 20:40] += 100
    img[10, 30, 30] = np.nan  # the clicked voxel itself
    expected = r"1 NaN/inf values in the 40 mm box around the seed\(s\) \[\[10, 30, 30\]\]"
    with pytest.raises(VolumeError, match=expected):
        auto_isolate(img, [(10, 30, 30)], (1.0, 1.0, 1.0))
    img[10, 30, 30] = 100.0
    assert auto_isolate(img, [(10, 30, 30)], (1.0, 1.0, 1.0)).mask.sum() == 4000  # the whole cube
    flat = auto_isolate(np.zeros((20, 64, 64), np.float32), [(10, 30, 30)], (1.0, 1.0, 1.0))
    assert flat.mask.sum() == 0 and "one intensity only" in flat.note and "straddles" not in flat.note


def _tumour_on_a_wall(seed: int = 2):
    """A soft-tissue tumour (35 HU) in aerated lung (-800 HU) pressing on a wall of the same density that
    runs on past any box around it (the mediastinum): 0.7 mm pixels, 5 mm slices."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    sp = (5.0, 0.7, 0.7)
    z, y, x = np.indices((24, 120, 120)) * np.asarray(sp)[:, None, None, None]
    tumour = ((z - 60) / 27) ** 2 + ((y - 42) / 17) ** 2 + ((x - 40) / 17) ** 2 < 1
    wall = x > 55
    # Edges blurred over a pixel or two (partial volume), as a scanner's are.
    tissue = ndimage.gaussian_filter((tumour | wall).astype(np.float32), (0, 1.5, 1.5))
    image = -850.0 + 885.0 * tissue + rng.normal(0, 15, tumour.shape)
    return image.astype(np.float32), tumour, wall, sp


def test_a_tumour_on_tissue_of_its_density_is_parted_from_it_by_shape(monkeypatch):
    """Intensity cannot part the tumour from the wall it presses on; the distance watershed parts them
    where they meet, and the note says so. Without it the result ran into the wall."""
    import dinomed_napari.analysis.isolate_auto as IA

    image, tumour, wall, sp = _tumour_on_a_wall()
    seed = _deepest(tumour, sp)
    res = auto_isolate(image, [seed], sp)
    assert dice(res.mask, tumour) > 0.85 and res.seeds_inside
    assert "distance watershed" in res.recipe and "parted from it by shape" in res.note
    monkeypatch.setattr(IA, "SPLIT_BY_SHAPE", False)
    merged = auto_isolate(image, [seed], sp)
    assert dice(merged.mask, tumour) < 0.6 and np.count_nonzero(merged.mask & wall) > tumour.sum()
    assert "reaches the edges of the box" in merged.note


def test_a_click_off_the_tumours_centre_gives_the_same_tumour(monkeypatch):
    """A person clicks somewhere in the tumour, not at its deepest voxel. From clicks under half its depth
    in from its border, the watershed floods from the tumour's centre (reached by climbing the distance map),
    so the result is the tumour from the deepest click; flooded from the click itself, the wall's flood
    took the tumour's centre first and the result ran into the wall."""
    from scipy import ndimage

    import dinomed_napari.analysis.isolate_auto as IA

    image, tumour, wall, sp = _tumour_on_a_wall()
    depth = ndimage.distance_transform_edt(tumour, sampling=sp)
    deep = auto_isolate(image, [_deepest(tumour, sp)], sp)
    assert dice(deep.mask, tumour) > 0.85
    # 11 mm off the centre, on the side away from the wall (6 mm deep, of 17); one slice and 9 mm off it
    # diagonally; 10 mm above it and below it.
    for off in ([12, 60, 41], [11, 50, 48], [12, 45, 57], [12, 75, 57]):
        assert tumour[tuple(off)] and depth[tuple(off)] < 0.5 * depth.max()
        res = auto_isolate(image, [off], sp)
        assert res.seeds_inside and dice(res.mask, deep.mask) > 0.95, off
    monkeypatch.setattr(IA, "CLIMB", False)
    assert dice(auto_isolate(image, [[12, 60, 41]], sp).mask, tumour) < 0.6


def test_climb_reaches_the_centre_of_the_blob_it_starts_in():
    """Steepest ascent of a distance map ends at the centre of the blob it starts in, not at a deeper
    blob elsewhere."""
    from scipy import ndimage

    from dinomed_napari.analysis.isolate_auto import climb

    z, y, x = np.indices((9, 40, 60))
    small = (z - 4) ** 2 + (y - 20) ** 2 + (x - 12) ** 2 <= 16
    large = (z - 4) ** 2 + (y - 20) ** 2 + (x - 42) ** 2 <= 36
    depth = ndimage.distance_transform_edt(small | large)
    assert climb(depth, (4, 18, 10)) == (4, 20, 12)
    assert climb(depth, (4, 23, 45)) == (4, 20, 42)


def test_a_structure_larger_than_the_box_is_not_cut_to_a_speck():
    """A seed deep in tissue that fills the whole box (an organ larger than it): the watershed's basin
    around the seed would be a few voxels, so the shape step leaves the region as it was, and says the
    region reaches the box's edges."""
    from dinomed_napari.analysis.isolate_auto import shape_split

    image, _, wall, sp = _tumour_on_a_wall()
    seed = [12, 60, 110]  # 38 mm inside the wall, which runs on past the box
    res = auto_isolate(image, [seed], sp)
    assert "distance watershed" not in res.recipe and "reaches the edges of the box" in res.note
    assert np.count_nonzero(res.mask & wall) > 0.3 * np.count_nonzero(wall)
    # Shallower than SPLIT_DEPTH_MM (a speckle of a deep Otsu level): no basin either.
    region = np.zeros((3, 20, 20), bool)
    region[:, 5:8, :] = True
    assert not shape_split(region, np.array([[1, 6, 10]]), (1.0, 1.0, 1.0)).any()
