"""PCA maps: one basis per volume, volume-wide colours, minority-positive PC1, bounded subsample."""

from __future__ import annotations

import numpy as np
import zarr
from analysis_helpers import blob_volume, synthetic_features

from dinomed_napari.analysis.pca import fit_pca, pca_maps, project_slice, sample_tokens
from dinomed_napari.features.volume import FeatureVolume


def _two_population_fv(minority_fraction=0.2, dim=16, seed=0, flip=False):
    """Tokens of two clusters, the 'structure' cluster being the minority; slices differ in content."""
    rng = np.random.default_rng(seed)
    S, h, w = 6, 8, 8
    is_fg = rng.random((S, h, w)) < minority_fraction
    a, b = rng.normal(size=dim), rng.normal(size=dim)
    data = np.where(is_fg[..., None], a, b) + 0.05 * rng.normal(size=(S, h, w, dim))
    if flip:
        data = -data
    fv = FeatureVolume(data=data.astype(np.float16), axis=0, volume_shape=(S, 32, 32), model="m",
                       weights="random", resolution=128)
    return fv, is_fg


def test_pc1_sign_convention_positive_on_minority():
    for flip in (False, True):  # the same data negated must give the same sign on the minority
        fv, is_fg = _two_population_fv(flip=flip)
        basis = fit_pca(fv, seed=0)
        pc1 = np.stack([project_slice(fv, basis, s, upsample=False)[..., 0] for s in range(fv.n_slices)])
        assert (pc1[is_fg] > 0).all() and (pc1[~is_fg] < 0).all()
    fv, is_fg = _two_population_fv(minority_fraction=0.8)  # now the other cluster is the minority
    basis = fit_pca(fv)
    pc1 = np.stack([project_slice(fv, basis, s, upsample=False)[..., 0] for s in range(fv.n_slices)])
    assert (pc1[~is_fg] > 0).all()


def test_same_token_same_colour_on_any_slice():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(8, 6, 6, 12)).astype(np.float16)
    # One 3x3 block of identical tokens on slices 1 and 6, surrounded by unrelated tokens.
    data[6, 1:4, 1:4] = data[1, 1:4, 1:4] = rng.normal(size=12).astype(np.float16)
    fv = FeatureVolume(data=data, axis=0, volume_shape=(8, 48, 48), model="m", weights="random",
                       resolution=96)
    maps = pca_maps(fv, n_components=3)
    # Pixel at the centre of patch (2, 2): its bilinear neighbours are all inside the identical block.
    c = int((2 + 0.5) * 8 - 0.5)
    assert np.allclose(maps.rgb[1, c, c], maps.rgb[6, c, c], atol=1e-6)
    assert not np.allclose(maps.rgb[1, 40, 40], maps.rgb[6, 40, 40])
    # Volume-wide scaling: the same token array gives the same colour through to_rgb directly.
    tok = fv.slice(1)[2, 2]
    # (the volume maps multiply float16 features in half precision: ~1e-3 relative error)
    assert np.allclose(maps.basis.to_rgb(maps.basis.transform(tok)), maps.rgb[1, c, c], atol=1e-2)


def test_pca_maps_shapes_ranges_and_determinism():
    lab = blob_volume()
    fv = synthetic_features(lab, axis=1, grid=(6, 5))
    m1, m2 = pca_maps(fv, seed=3), pca_maps(fv, seed=3)
    assert m1.components.shape == lab.shape + (3,) and m1.rgb.shape == lab.shape + (3,)
    assert m1.rgb.min() >= 0 and m1.rgb.max() <= 1 and m1.rgb.dtype == np.float32
    assert np.array_equal(m1.components, m2.components)
    evr = m1.basis.explained_variance_ratio
    assert np.all(np.diff(evr) <= 1e-6) and evr[0] > 0.3
    # Projection is linear: raw components of a slice equal the volume map's plane (axis 1 = coronal).
    # (float32 for one slice, float16 matmul for the volume: ~1e-3 relative difference)
    assert np.allclose(project_slice(fv, m1.basis, 7), m1.components[:, 7], rtol=1e-2, atol=1e-2)
    # Robust colours: about 1 % of tokens saturate at each end of every channel.
    assert 0.001 < np.mean(m1.rgb[..., 0] == 0) < 0.2


def test_one_component_is_read_box_by_box_with_the_values_of_the_whole_map():
    lab = blob_volume()
    for axis in (0, 1):
        maps = pca_maps(synthetic_features(lab, axis=axis, grid=(6, 5)), seed=3)
        pc2 = maps.component(1)
        assert pc2.shape == lab.shape and pc2.dtype == np.float32
        box = (slice(2, 9), slice(5, 20), slice(3, 11))
        np.testing.assert_allclose(pc2[box], maps.components[box + (1,)], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.asarray(pc2), maps.components[..., 1], rtol=1e-6, atol=1e-6)
    assert pc2[0:0].shape == (0,) + lab.shape[1:]


def test_sample_tokens_bounded_and_reads_zarr_slice_by_slice():
    lab = blob_volume()
    fv = synthetic_features(lab)
    z = zarr.create_array(store={}, shape=fv.data.shape, chunks=(1,) + fv.data.shape[1:], dtype="float16")
    z[:] = fv.data
    fvz = FeatureVolume(data=z, axis=0, volume_shape=fv.volume_shape, model=fv.model, weights=fv.weights,
                        resolution=fv.resolution)
    tokens = sample_tokens(fvz, max_tokens=100, seed=0)
    assert tokens.shape == (12 * 9, fv.dim)  # ceil(100 / 12) = 9 per slice
    assert np.array_equal(tokens, sample_tokens(fv, max_tokens=100, seed=0))
    assert np.allclose(pca_maps(fvz, max_tokens=100).rgb, pca_maps(fv, max_tokens=100).rgb)
