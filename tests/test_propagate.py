"""The 3D step of few-click segmentation: structures followed from their annotated slices."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_helpers import dice, synthetic_features, two_blobs

from dinomed_napari.analysis.propagate import FLARES, NOT_HERE, propagate, refuted
from dinomed_napari.analysis.redraw import redraw_outline
from dinomed_napari.analysis.sampling import NormalisedImage, normalise_image
from dinomed_napari.analysis.segment import ScribbleSegmenter
from dinomed_napari.analysis.strokes import strokes_localized
from dinomed_napari.bench.scribbles import leak_stroke, structure_scribbles
from dinomed_napari.errors import ScribbleError
from dinomed_napari.features.grid import slice_of


def test_only_the_painted_blob_is_followed_through_the_volume():
    image, a, b = two_blobs()
    scr = structure_scribbles(a, n_slices=1, seed=0)
    truth = a.astype(np.uint8)
    fv = synthetic_features((a | b).astype(np.uint8), grid=(8, 8))
    other = np.ones(a.shape[0], bool)
    other[list(scr.slices)] = False
    seg = ScribbleSegmenter().fit(fv, scr.labels, image=image, spacing=(2.0, 1.0, 1.0))
    res = seg.predict()
    assert res.propagation is not None and res.propagation.annotated == scr.slices
    ours = res.labels == 2
    assert dice(ours[other], truth[other]) > 0.85
    assert np.count_nonzero(ours & b) == 0  # the look-alike blob nobody painted stays out
    # The classifier alone labels both look-alike blobs.
    flat = ScribbleSegmenter(spatial="none").fit(fv, scr.labels, image=image).predict().labels == 2
    assert np.count_nonzero(flat & b) > 0.2 * b.sum()  # measured 27 % of it
    # Confidence: 1 on the annotated slice, a number in [0, 1] on slices reached, a suggestion elsewhere.
    conf = res.propagation.confidence
    seen = conf[np.isfinite(conf)]
    assert conf[scr.slices[0]] == 1.0 and np.all((seen >= 0) & (seen <= 1))
    nxt = res.suggested_slice
    assert nxt is not None and nxt not in scr.slices and np.isfinite(conf[nxt])


def test_the_image_is_normalised_where_it_is_read_with_the_same_result():
    image, a, _ = two_blobs()
    img, lo, hi = normalise_image(image)
    eager = (image - np.float32(lo)) / np.float32(hi - lo)
    assert isinstance(img, NormalisedImage) and img.shape == image.shape and img.dtype == np.float32
    np.testing.assert_allclose(np.asarray(img), eager, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(slice_of(img, 1, 30), np.asarray(img)[:, 30])
    np.testing.assert_array_equal(img[3:5, 10:20], np.asarray(img)[3:5, 10:20])
    scr = structure_scribbles(a, n_slices=1, seed=0).labels
    lazy = propagate(img, scr, (2.0, 1.0, 1.0)).labels
    np.testing.assert_array_equal(lazy, propagate(np.asarray(img), scr, (2.0, 1.0, 1.0)).labels)
    assert dice(lazy == 2, a) > 0.85
    # The segmenter keeps the raw image and this view of it, never a float32 copy of the volume.
    fv = synthetic_features(a.astype(np.uint8), grid=(8, 8))
    seg = ScribbleSegmenter().fit(fv, scr, image=image, spacing=(2.0, 1.0, 1.0))
    assert isinstance(seg.image, NormalisedImage) and seg.image.raw is image


def oblique_tube(shape=(14, 64, 64), step=5):
    """A bright disc that moves ``step`` pixels per slice in x (a tube at a steep angle)."""
    z, y, x = np.indices(shape)
    tube = (y - 32) ** 2 + (x - 10 - step * z) ** 2 < 7 ** 2
    rng = np.random.default_rng(1)
    return (100.0 * tube + rng.normal(0, 8, shape)).astype(np.float32), tube


def test_thick_slices_allow_a_larger_shift_between_slices():
    image, tube = oblique_tube()
    scr = structure_scribbles(tube, n_slices=1, slices=[7], seed=0).labels
    other = np.ones(tube.shape[0], bool)
    other[7] = False
    # 1 mm slices: a 5 px (5 mm) shift per slice is a wall at 79 degrees, beyond what is followed.
    thin = propagate(image / 100.0, scr, (1.0, 1.0, 1.0)).labels == 2
    # 10 mm slices: the same shift is a 27 degree wall, a normal structure: followed to both ends.
    thick = propagate(image / 100.0, scr, (10.0, 1.0, 1.0)).labels == 2
    d_thin, d_thick = dice(thin[other], tube[other]), dice(thick[other], tube[other])
    assert d_thick > 0.85 and d_thin < 0.5, (d_thin, d_thick)


def test_propagation_needs_structure_and_background():
    image, a, _ = two_blobs()
    only = np.zeros(a.shape, np.uint8)
    only[8][a[8]] = 2
    with pytest.raises(ScribbleError, match="structure and the background"):
        propagate(image, only, (1.0, 1.0, 1.0))


def test_texture_strokes_are_not_propagated():
    # Strokes of both classes spread over the whole plane (EM membranes): a texture, not a structure.
    scr = np.zeros((4, 40, 40), np.uint8)
    scr[1, 2:38:6, 2:38] = 2
    scr[1, 5:38:6, 2:38] = 1
    scr[1, 4, 4:30] = 1
    assert not strokes_localized(scr)
    image, a, _ = two_blobs()
    assert strokes_localized(structure_scribbles(a, n_slices=2).labels)


def test_background_is_the_widest_spread_class_not_the_most_painted():
    from dinomed_napari.analysis.strokes import background_of

    scr = np.zeros((3, 64, 64), np.uint8)
    scr[1, 28:36, 20:44] = 1  # a thick stroke through a large structure: the most voxels (192)
    scr[1, 2, 2:12] = 2  # short background strokes far apart: few voxels, widest box
    scr[1, 60, 50:60] = 2
    assert background_of(scr) == 2
    image, a, _ = two_blobs()
    assert background_of(structure_scribbles(a, n_slices=1, bg_value=7, fg_value=3).labels) == 7


def test_a_region_that_suddenly_flares_out_is_a_neighbour_not_the_structure(monkeypatch):
    """A small ball touching, a few slices away, a large slab of the same brightness: the walk stops
    where the region would grow far beyond the previous slice's instead of flooding the slab."""
    rng = np.random.default_rng(3)
    z, y, x = np.indices((12, 64, 64))
    ball = ((z - 4) / 3.0) ** 2 + ((y - 32) / 8) ** 2 + ((x - 32) / 8) ** 2 < 1
    slab = (z >= 7) & (np.abs(y - 32) < 20) & (np.abs(x - 32) < 20)
    image = (100.0 * (ball | slab) + rng.normal(0, 8, ball.shape)).astype(np.float32) / 100.0
    scr = structure_scribbles(ball, n_slices=1, slices=[4], seed=0).labels
    res = propagate(image, scr, (2.0, 1.0, 1.0))
    pred = res.labels == 2
    assert np.count_nonzero(pred & slab) < 0.05 * slab.sum()
    assert res.stops[7] == FLARES.format(1.3) and "slice 7: flares out over 1.3x" in res.ended()
    assert dice(pred[:7], ball[:7]) > 0.8
    # The message names the growth the walk stopped at, also when the constant is changed at run time.
    import dinomed_napari.analysis.propagate as walk

    monkeypatch.setattr(walk, "MAX_GROWTH", 1.25)
    assert "flares out over 1.25x" in propagate(image, scr, (2.0, 1.0, 1.0)).stops[7]


def fading_tube():
    """A bright tube along z whose intensity matches its surroundings from z = 8 on (as a tumour's edge
    fades in a series), painted on z = 2, and a classifier that still sees it there (0.4 inside, 0.05
    outside; 1 inside on the slice its strokes trained it on)."""
    rng = np.random.default_rng(0)
    z, y, x = np.indices((16, 48, 48))
    tube = (y - 24) ** 2 + (x - 20) ** 2 < 7 ** 2
    image = (0.6 * tube + 0.2 + rng.normal(0, 0.05, tube.shape)).astype(np.float32)
    image[8:] = 0.5 + rng.normal(0, 0.05, image[8:].shape)
    scr = np.zeros(tube.shape, np.uint8)
    scr[2, 24, 15:26] = 2
    scr[2, 4, 4:44] = scr[2, 44, 4:44] = scr[2, 4:44, 4] = 1

    def proba(s):
        return np.where(tube[s], 1.0 if s == 2 else 0.4, 0.05).astype(np.float32)[..., None]

    return image, scr, tube, proba


def test_the_classifier_carries_the_walk_where_intensity_no_longer_tells(monkeypatch):
    import dinomed_napari.analysis.propagate as walk

    image, scr, tube, proba = fading_tube()
    seen = walk.propagate(image, scr, (2.0, 1.0, 1.0), proba=proba, cell=1.0).labels == 2
    monkeypatch.setattr(walk, "STEP_CLASSIFIER", False)
    blind = walk.propagate(image, scr, (2.0, 1.0, 1.0), proba=proba, cell=1.0).labels == 2
    # Measured: Dice 0.905 past z = 8 with the classifier's channel, 0.205 by intensity alone.
    assert dice(seen[:8], tube[:8]) > 0.95 and dice(seen[8:], tube[8:]) > 0.85
    assert dice(blind[8:], tube[8:]) < 0.5


def test_a_step_from_an_annotated_slice_goes_without_the_classifier(monkeypatch):
    """The classifier was fitted on the annotated slices' strokes: the step from one of them trains
    without its channel; every later step reads it."""
    import dinomed_napari.analysis.propagate as walk

    image, scr, _, proba = fading_tube()
    widths = []
    step = walk._step

    def spy(part, prev, disk, sources, *args):
        widths.append(sources[0].shape[-1])
        return step(part, prev, disk, sources, *args)

    monkeypatch.setattr(walk, "_step", spy)
    walk.propagate(image, scr, (2.0, 1.0, 1.0), proba=proba, cell=1.0)
    plain = 1 + len(walk.SIGMAS)  # the plane and its smoothings
    # The first steps are z = 1 and z = 3 (nearest the annotated z = 2), then outward.
    assert widths[:2] == [plain, plain] and set(widths[2:]) == {plain + 1}
    assert len(widths) == 15


def two_limbs(seed=4):
    """An arch seen in cross-section: two bright tubes (limbs) joined on the top slices. Limb A runs to
    the bottom; limb B ends at z = 8, where a large slab of the same brightness touches it."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices((16, 64, 64))
    limb_a = (y - 16) ** 2 + (x - 20) ** 2 < 6 ** 2
    limb_b = ((y - 16) ** 2 + (x - 44) ** 2 < 6 ** 2) & (z >= 8)
    bridge = (z >= 14) & (np.abs(y - 16) < 6) & (x >= 20) & (x <= 44)
    arch = limb_a | limb_b | bridge
    slab = (z < 8) & (y >= 12) & (y < 60) & (x >= 38) & (x < 62)
    image = (100.0 * (arch | slab) + rng.normal(0, 8, arch.shape)).astype(np.float32) / 100.0
    return image, arch, slab


def test_each_limb_of_a_structure_is_painted_and_followed_on_its_own():
    """Both limbs painted on one slice (what a person does at the aortic arch): the walk follows each; the
    limb that ends at a look-alike slab stops there without ending the other limb's walk."""
    image, arch, slab = two_limbs()
    scr = structure_scribbles(arch, slices=[12], seed=0).labels
    strokes = scr[12] == 2
    assert strokes[:, :32].any() and strokes[:, 32:].any()  # a stroke in each limb
    res = propagate(image, scr, (2.0, 1.0, 1.0), one_object=True)
    assert res is not None  # two limbs are one structure in parts, not instances
    pred = res.labels == 2
    lower = np.zeros(arch.shape, bool)
    lower[:8, :, :32] = True  # limb A below where limb B ends
    assert dice(pred[lower], arch[lower]) > 0.85
    assert np.count_nonzero(pred & slab) < 0.05 * slab.sum()
    assert dice(pred[8:], arch[8:]) > 0.85


def test_the_segmenter_windows_ct_only():
    """Hounsfield-like intensities (air at -1000) switch the window on; an MRI-like range does not."""
    from dinomed_napari.windows import hounsfield_like

    assert hounsfield_like(-1024.0, -1000.0, 1200.0) and not hounsfield_like(0.0, 3.0, 900.0)
    assert not hounsfield_like(-3024.0, -1000.0, 1200.0)  # padding below air: not plain HU
    image, a, _ = two_blobs()
    scr = structure_scribbles(a, n_slices=1, seed=0).labels
    fv = synthetic_features(a.astype(np.uint8), grid=(8, 8))
    seg = ScribbleSegmenter().fit(fv, scr, image=image, spacing=(2.0, 1.0, 1.0))
    assert seg.hounsfield is False
    ct = np.where(image > 50, 300.0, -1000.0).astype(np.float32) + image / 10  # enhancing blobs in air
    assert seg.fit(fv, scr, image=ct, spacing=(2.0, 1.0, 1.0)).hounsfield is True


def test_a_reached_slice_outline_is_redrawn_onto_the_edge():
    """The walk's per-slice outline sits off the edge by a pixel or two (the appearance model's smoothed
    features straddle it); the band walker moves it back, both ways, with bone nearby."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    y, x = np.indices((64, 64))
    disk = (y - 30) ** 2 + (x - 28) ** 2 < 15 ** 2
    bone = (x >= 50) & (x < 56)  # brighter than the structure: windowed away
    plane = ndimage.gaussian_filter(0.4 * disk + 1.0 * bone, 1.0) + rng.normal(0, 0.02, disk.shape)
    inside = ndimage.binary_erosion(disk, iterations=2)
    outside = ndimage.binary_dilation(disk, iterations=2) & ~bone
    for mask in (inside, outside):
        redrawn = redraw_outline(plane, mask)
        # Measured: 0.867 -> 0.927 (inside), 0.886 -> 0.962 (outside).
        assert dice(redrawn, disk) > dice(mask, disk) + 0.04
        assert not (redrawn & bone).any()
    line = np.zeros_like(disk)
    line[30, 10:40] = True  # no core to seed the walker: left as it is
    assert np.array_equal(redraw_outline(plane, line), line)
    assert np.array_equal(redraw_outline(plane, inside, band=0), inside)
    # Nothing to walk on or from: the mask comes back as it was, not emptied or shrunk to its core.
    full = np.ones_like(disk)
    assert np.array_equal(redraw_outline(plane, full), full)
    assert np.array_equal(redraw_outline(np.zeros_like(plane), inside), inside)
    holed = plane.copy()
    holed[30, 28] = np.nan
    assert np.array_equal(redraw_outline(holed, inside), inside)


def test_a_redrawn_outline_keeps_a_wall_the_previous_slice_had():
    """A bright lumen inside a grey wall: redrawn alone, the outline sits on the lumen's edge; redrawn
    with the slice it came from, whose mask took the wall, it keeps the wall too."""
    y, x = np.indices((48, 48))
    r = np.hypot(y - 24, x - 24)
    noise = np.random.default_rng(0).normal(0, 0.01, r.shape)
    plane = np.where(r < 8, 0.8, np.where(r < 10, 0.45, 0.3)) + noise
    lumen, vessel = r < 8, r < 10
    alone = redraw_outline(plane, lumen)
    assert dice(alone, lumen) > 0.95 and dice(alone, vessel) < 0.8  # measured 1.0 and 0.78
    came = redraw_outline(plane, lumen, previous=(plane, vessel))
    assert dice(came, vessel) > 0.9  # measured 0.94
    # The previous slice's lumen alone adds nothing: the coupling follows what that slice had.
    assert np.array_equal(redraw_outline(plane, lumen, previous=(plane, lumen)), alone)
    # A hole (NaN) in the previous plane: redrawn alone, not from a solve that read it (109 pixels).
    holed = plane.copy()
    holed[24, 30] = np.nan
    assert np.array_equal(redraw_outline(plane, lumen, previous=(holed, vessel)), alone)


def test_reached_slices_are_redrawn_with_the_previous_slice_on_ct_only(monkeypatch):
    import dinomed_napari.analysis.propagate as walk

    seen = []
    original = walk.redraw_outline

    def spy(plane, mask, spacing2=(1.0, 1.0), band=None, previous=None):
        seen.append(previous is not None)
        return original(plane, mask, spacing2, band, previous)

    monkeypatch.setattr(walk, "redraw_outline", spy)
    z, y, x = np.indices((7, 48, 48))
    ball = ((z - 3) / 3.0) ** 2 + ((y - 24) / 10) ** 2 + ((x - 24) / 10) ** 2 < 1
    image = np.where(ball, 60.0, -100.0).astype(np.float32)
    scr = structure_scribbles(ball, n_slices=1, slices=[3], seed=0).labels
    for hounsfield in (True, False):
        seen.clear()
        pred = propagate(image / 400 + 0.5, scr, (3.0, 1.0, 1.0), hounsfield=hounsfield).labels == 2
        assert seen and all(s == hounsfield for s in seen)
        assert dice(pred, ball) > 0.8


def test_the_suggested_slice_has_most_structure_in_doubt_far_from_the_painted_ones():
    from dinomed_napari.analysis.propagate import Propagation

    labels = np.zeros((12, 16, 16), np.uint8)
    labels[1:11, 4:12, 4:12] = 2  # 64 pixels a slice
    labels[11, 7:9, 7:9] = 2  # the structure's last 4 pixels
    conf = np.full(12, 0.9)
    conf[5] = 1.0  # annotated
    conf[11] = 0.2  # least confident: its last few pixels
    conf[6] = 0.5  # unsure beside the painted slice
    conf[1] = 0.7  # unsure, large and 4 slices away
    prop = Propagation(labels=labels, confidence=conf, annotated=(5,), axis=0, background=0)
    # (1 - c) x area x distance: slice 1 0.3 x 64 x 4 = 77, slice 6 0.5 x 64 x 1 = 32, slice 11 0.8 x 64 x 6
    # (its neighbour's area: the walk may have stopped short) = 307; with slice 10 sure and slice 11's
    # neighbour gone, the last pixels weigh 0.8 x 4 x 6 = 19.
    assert prop.suggest() == 11
    labels[10] = 0
    assert prop.suggest() == 1
    # Nothing in doubt anywhere (no structure reached): the least confident slice.
    empty = Propagation(labels=np.zeros_like(labels), confidence=conf, annotated=(5,), axis=0, background=0)
    assert empty.suggest() == 11
    none = Propagation(labels=labels, confidence=np.where(np.arange(12) == 5, 1.0, np.nan), annotated=(5,),
                       axis=0, background=0)
    assert none.suggest() is None


def test_background_painted_across_a_leak_on_a_slice_without_structure_ends_the_walk_there():
    """A tube the structure shares with a look-alike beyond slice 9: painted on slice 4, the walk follows
    the tube to the end; one background stroke across it on slice 11 ("not here") ends the walk there,
    and slices before it keep the structure."""
    rng = np.random.default_rng(5)
    z, y, x = np.indices((16, 64, 64))
    tube = (y - 32) ** 2 + (x - 30) ** 2 < 10 ** 2
    image = (100.0 * tube + rng.normal(0, 8, tube.shape)).astype(np.float32) / 100.0
    truth = tube & (z <= 9)
    scr = structure_scribbles(truth, n_slices=1, slices=[4], seed=0).labels
    pred = propagate(image, scr, (2.0, 1.0, 1.0)).labels == 2
    assert pred[10:].sum() > 0.8 * tube[10:].sum()  # nothing tells the walk the structure ended
    scr[11][leak_stroke(pred[11])] = 1  # what the bench's active user paints on a leaked slice
    assert set(np.unique(scr[11])) == {0, 1}
    res = propagate(image, scr, (2.0, 1.0, 1.0))
    pred = res.labels == 2
    assert pred[11:].sum() == 0 and res.annotated == (4,) and res.stops[11] == NOT_HERE
    assert dice(pred[:11], tube[:11]) > 0.9


def test_only_a_stroke_across_a_part_refutes_it():
    yy, xx = np.indices((40, 40))
    disk = (yy - 20) ** 2 + (xx - 20) ** 2 < 10 ** 2
    other = (yy - 5) ** 2 + (xx - 5) ** 2 < 3 ** 2
    across, edge = np.zeros_like(disk), np.zeros_like(disk)
    across[20, 12:29] = True  # 16 pixels of a 20-pixel diameter
    edge[11, 18:22] = True  # a trim at the rim: 3 of 20
    np.testing.assert_array_equal(refuted(disk | other, across), other)
    np.testing.assert_array_equal(refuted(disk | other, edge), disk | other)
    np.testing.assert_array_equal(refuted(disk | other, edge, span=0.1), other)


def tumour_on_a_stalk(seed: int = 4):
    """A tumour (ellipsoid) whose lower tip runs into a stalk of its own brightness that widens on to the
    volume's first slice (a tumour on a vessel fanning out): no intensity parts them."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices((24, 64, 64))
    tumour = ((z - 14) / 6.5) ** 2 + ((y - 32) / 13) ** 2 + ((x - 30) / 13) ** 2 < 1
    stalk = ((y - 32) ** 2 + (x - 30) ** 2 < (4 + 0.35 * (8 - z)) ** 2) & (z <= 8)
    image = (100.0 * (tumour | stalk) + rng.normal(0, 8, tumour.shape)).astype(np.float32) / 100.0
    return image, tumour, stalk


def test_a_walk_that_grows_back_after_the_structure_tapered_has_entered_a_neighbour(monkeypatch):
    """Past the tumour's tapering tip the walk meets the stalk; each step grows under MAX_GROWTH, so
    without the regrowth rule it follows the stalk to the first slice. (A neighbour that keeps its
    size is followed all the same: there the user paints "not here", see ``refuted``.)"""
    import dinomed_napari.analysis.propagate as walk

    image, tumour, stalk = tumour_on_a_stalk()
    scr = structure_scribbles(tumour, n_slices=3, seed=0).labels
    res = propagate(image, scr, (5.0, 0.7, 0.7))
    pred = res.labels == 2
    assert np.count_nonzero(pred[:4]) == 0  # the stalk's wide end stays out
    assert res.stops == {5: walk.REGROWS, 21: walk.ENDS}  # what the CLI and the widget say
    assert dice(pred[8:], tumour[8:]) > 0.9
    assert walk.regrown(140, 100, 200) and not walk.regrown(120, 100, 200) and not walk.regrown(140, 100, 120)
    monkeypatch.setattr(walk, "REGROW", 0.0)
    leaked = propagate(image, scr, (5.0, 0.7, 0.7)).labels == 2
    assert np.count_nonzero(leaked[:4] & stalk[:4]) > 0.5 * np.count_nonzero(stalk[:4])


@pytest.mark.parametrize("painted, features", [(1, 0), (0, 1)])
def test_the_walk_goes_along_the_axis_the_strokes_were_painted_on(painted, features):
    # Strokes painted in one view (coronal, or axial) while the features were computed along another axis.
    image, a, b = two_blobs()
    scr = structure_scribbles(a, n_slices=1, axis=painted, seed=0)
    fv = synthetic_features((a | b).astype(np.uint8), axis=features, grid=(8, 8))
    res = ScribbleSegmenter().fit(fv, scr.labels, image=image, spacing=(2.0, 1.0, 1.0)).predict()
    assert res.propagation is not None and res.propagation.axis == painted
    other = np.ones(a.shape[painted], bool)
    other[list(scr.slices)] = False
    ours, truth = (np.moveaxis(v, painted, 0)[other] for v in (res.labels == 2, a))
    assert dice(ours, truth) > 0.8 and not (res.labels == 2)[b].any()
