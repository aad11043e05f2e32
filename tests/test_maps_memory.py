"""Analysis maps with bounded memory: patch-grid maps, uint8/float16 volumes, per-slice views."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_helpers import blob_volume, synthetic_features

from dinomed_napari.analysis.affinity import affinity_maps, affinity_patch, affinity_rgb8
from dinomed_napari.analysis.assemble import assemble, project_half, read_slices
from dinomed_napari.analysis.pca import pca_maps, to_uint8
from dinomed_napari.analysis.similarity import similarity_map, similarity_patch
from dinomed_napari.features.grid import patch_coords, patch_transform, slice_of, upsample_patches


@pytest.fixture(params=[0, 2], ids=["axial", "sagittal"])
def fv(request):
    lab = blob_volume()
    return synthetic_features(lab, axis=request.param, grid=(8, 8), noise=0.2)


def test_pca_maps_on_the_patch_grid_give_the_previous_pixel_maps_exactly(fv):
    maps = pca_maps(fv, seed=2)
    b = maps.basis
    offset = b.mean @ b.components.T
    old = assemble(fv, lambda s0, s1: project_half(read_slices(fv, s0, s1), b.components.T) - offset, 3)
    assert maps.patch.shape == (fv.n_slices, 8, 8, 3) and maps.patch.dtype == np.float32
    np.testing.assert_array_equal(maps.components, old)
    np.testing.assert_array_equal(maps.rgb, b.to_rgb(old))
    rgb8 = maps.rgb8()
    assert rgb8.dtype == np.uint8 and rgb8.shape == fv.volume_shape + (3,)
    np.testing.assert_array_equal(rgb8, to_uint8(b.to_rgb(old)))
    k = fv.n_slices // 2
    np.testing.assert_array_equal(maps.slice_rgb8(k), slice_of(rgb8, fv.axis, k))
    np.testing.assert_array_equal(maps.slice_components(k), slice_of(old, fv.axis, k))
    small = maps.patch_rgb8()
    assert small.dtype == np.uint8 and small.shape[fv.axis] == fv.n_slices and small.size == maps.patch.size
    np.testing.assert_array_equal(slice_of(small, fv.axis, k), to_uint8(b.to_rgb(maps.patch[k])))


def test_affinity_and_similarity_in_small_forms_match_the_float_maps(fv):
    full = affinity_maps(fv)
    np.testing.assert_array_equal(affinity_rgb8(fv), to_uint8(np.clip(full, 0, 1)))
    patch = affinity_patch(fv)
    assert patch.shape == (fv.n_slices, 8, 8, 3)
    np.testing.assert_allclose(upsample_patches(patch[3], fv.plane_shape), affinity_maps(fv, index=3),
                               atol=1e-6)
    pts = [[3, 10, 28]]
    sim = similarity_map(fv, pts)
    half = similarity_map(fv, pts, dtype=np.float16)
    assert half.dtype == np.float16 and np.abs(half.astype(np.float32) - sim).max() < 1e-3
    sp = similarity_patch(fv, pts)
    np.testing.assert_allclose(upsample_patches(sp[4][..., None], fv.plane_shape)[..., 0],
                               slice_of(sim, fv.axis, 4), atol=1e-5)


def test_patch_transform_places_patch_centres_on_their_pixels():
    scale, translate = patch_transform((10, 64, 48), (8, 6), axis=0, spacing=(3.0, 0.5, 0.5))
    assert scale == (3.0, 4.0, 4.0) and translate == (0.0, 1.75, 1.75)
    # Patch (i, j) lands where patch_coords says its centre is: world = index * scale + translate.
    pix = np.array([[1.75 / 0.5, 1.75 / 0.5]])  # world (1.75, 1.75) mm -> pixel (3.5, 3.5)
    np.testing.assert_allclose(patch_coords(pix, (64, 48), (8, 6)), [[0.0, 0.0]])
    s2, t2 = patch_transform((10, 64, 48), (5, 6), axis=2)
    assert s2 == (2.0, 64 / 6, 1.0) and t2 == (0.5, 0.5 * 64 / 6 - 0.5, 0.0)
