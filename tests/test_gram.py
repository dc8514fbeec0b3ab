"""Gram matrices: known answers, invariants and the size rule."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiscale._tf import tf
from multiscale.config import DescriptorConfig
from multiscale.errors import ImageTooSmallError
from multiscale.measure.backbone import VGG16, load_weights
from multiscale.measure.gram import check_image_size, gram_matrix, image_grams, min_image_side


@settings(deadline=None, max_examples=25)
@given(h=st.integers(1, 6), w=st.integers(1, 6), c=st.integers(1, 5), seed=st.integers(0, 10**6))
def test_gram_is_the_mean_outer_product_and_psd(h, w, c, seed):
    f = np.random.default_rng(seed).normal(size=(1, h, w, c))
    g = gram_matrix(tf.constant(f)).numpy()
    flat = f.reshape(-1, c)
    np.testing.assert_allclose(g, flat.T @ flat / (h * w), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g, g.T, atol=1e-12)
    assert np.linalg.eigvalsh(g).min() > -1e-10


def test_gram_does_not_depend_on_image_size_for_a_repeated_pattern():
    tile = np.random.default_rng(0).normal(size=(1, 4, 4, 3))
    big = np.tile(tile, (1, 3, 5, 1))
    np.testing.assert_allclose(
        gram_matrix(tf.constant(big)).numpy(), gram_matrix(tf.constant(tile)).numpy(), rtol=1e-10
    )


def test_descriptor_of_a_tiled_image_equals_the_tile_with_wrap_padding():
    """With wrap padding a 2×2 tiling of a periodic image has the same Grams at every octave."""
    cfg = DescriptorConfig(octaves=2, layers=("conv1_1", "pool1", "conv2_1"), padding="wrap")
    net = VGG16(load_weights(), padding="wrap")
    tile = np.random.default_rng(3).uniform(size=(32, 32, 3)).astype(np.float32)
    a = image_grams(tile, network=net, config=cfg)
    b = image_grams(np.tile(tile, (2, 2, 1)), network=net, config=cfg)
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=2e-4, atol=1e-3 * np.abs(a[key]).max())


def test_image_grams_are_float64_symmetric_and_keyed_by_octave_and_layer():
    cfg = DescriptorConfig(octaves=2, layers=("conv1_1", "pool1"))
    net = VGG16(load_weights())
    img = np.random.default_rng(0).uniform(size=(40, 40, 3)).astype(np.float32)
    grams = image_grams(img, network=net, config=cfg)
    assert set(grams) == {(0, "conv1_1"), (0, "pool1"), (1, "conv1_1"), (1, "pool1")}
    for g in grams.values():
        assert g.dtype == np.float64 and g.shape == (64, 64)
        np.testing.assert_array_equal(g, g.T)


def test_more_octaves_need_larger_images():
    sides = [min_image_side(DescriptorConfig(octaves=o)) for o in range(1, 6)]
    assert sides == sorted(sides) and sides[-1] > 2 * sides[-2] - 4


def test_too_small_image_says_which_option_to_change():
    cfg = DescriptorConfig(octaves=4)
    with pytest.raises(
        ImageTooSmallError, match=r"bark.jpg: image is 12×9 px; 4 octave\(s\).*--octaves|larger"
    ):
        check_image_size(9, 12, config=cfg, name="bark.jpg")
    need = min_image_side(cfg)
    check_image_size(need, need, config=cfg, name="ok.png")
    small = min_image_side(dataclasses.replace(cfg, octaves=2))
    with pytest.raises(ImageTooSmallError, match="use --octaves 2"):
        check_image_size(small, 2 * need, config=cfg, name="wide.png")
