"""The palette term: the output's chroma matched to the styles' as a whole distribution."""

import numpy as np
import pytest

from multiscale.objectives.palette import (
    PALETTE_DIRECTIONS,
    block_means,
    chroma_directions,
    palette_loss,
    palette_target,
)

GREY = np.ones(3) / np.sqrt(3.0)


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(7)


def test_the_directions_are_unit_vectors_in_the_plane_orthogonal_to_grey():
    d = chroma_directions()
    assert d.shape == (PALETTE_DIRECTIONS, 3)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0)
    np.testing.assert_allclose(d @ GREY, 0.0, atol=1e-12)
    # evenly spread over a half-turn: Σ d dᵀ is K/2 times the projector onto the plane
    projector = np.eye(3) - np.outer(GREY, GREY)
    np.testing.assert_allclose(d.T @ d, PALETTE_DIRECTIONS / 2 * projector, atol=1e-12)


@pytest.mark.parametrize("max_pixels", [10**6, 12])  # the whole image; its means over 3 × 3 blocks
def test_the_gradient_matches_finite_differences(rng, max_pixels):
    target = palette_target([rng.uniform(size=(40, 30, 3))])
    image = rng.uniform(size=(9, 7, 3))
    _, grad = palette_loss(image, target, max_pixels=max_pixels)
    for _ in range(5):
        step = rng.standard_normal(image.shape) * 1e-6
        plus, _ = palette_loss(image + step, target, max_pixels=max_pixels)
        minus, _ = palette_loss(image - step, target, max_pixels=max_pixels)
        assert (plus - minus) / 2 == pytest.approx(float(np.sum(grad * step)), rel=1e-4, abs=1e-15)


def test_a_large_image_is_scored_by_its_block_means(rng):
    image = rng.uniform(size=(7, 8, 3))
    means, counts = block_means(image, 3)
    assert means.shape == (3, 3, 3) and counts.tolist() == [[9, 9, 6], [9, 9, 6], [3, 3, 2]]
    np.testing.assert_allclose(means[2, 2], image[6:, 6:].reshape(-1, 3).mean(axis=0))
    target = palette_target([rng.uniform(size=(20, 20, 3))])
    value, _ = palette_loss(image, target, max_pixels=9)
    assert value == pytest.approx(palette_loss(means, target)[0], rel=1e-12)


def test_an_image_with_the_styles_pixels_in_any_order_has_no_loss(rng):
    style = rng.uniform(size=(32, 32, 3)).astype(np.float32)  # as images are loaded
    target = palette_target([style], levels=32 * 32)
    shuffled = rng.permutation(style.reshape(-1, 3)).reshape(16, 64, 3)
    value, grad = palette_loss(shuffled, target)
    assert value == pytest.approx(0.0, abs=1e-20)
    np.testing.assert_allclose(grad, 0.0, atol=1e-12)


def test_lightness_is_left_to_the_other_terms(rng):
    target = palette_target([rng.uniform(size=(20, 20, 3))])
    image = rng.uniform(0.2, 0.6, size=(10, 12, 3))
    value, grad = palette_loss(image, target)
    lighter, _ = palette_loss(image + 0.3, target)  # grey added to every pixel
    assert lighter == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(grad @ GREY, 0.0, atol=1e-12)  # no push along grey


def test_a_grey_style_asks_for_no_chroma_at_all(rng):
    # known answer: every quantile is 0, so L = Σ |P x|² / (2 n s²), P the projector off grey
    lightness = rng.uniform(size=(30, 30, 1))
    style = np.repeat(lightness, 3, axis=2)
    target = palette_target([style])
    np.testing.assert_allclose(target.quantiles, 0.0, atol=1e-12)
    assert target.variance == pytest.approx(float(np.var(lightness)))
    image = rng.uniform(size=(8, 8, 3))
    chroma = image.reshape(-1, 3) - np.outer(image.reshape(-1, 3) @ GREY, GREY)
    expected = np.sum(chroma**2) / (2 * 64 * target.variance)
    value, grad = palette_loss(image, target)
    assert value == pytest.approx(expected, rel=1e-9)
    np.testing.assert_allclose(grad.reshape(-1, 3), chroma / (64 * target.variance), atol=1e-12)


def test_styles_are_blended_by_weight_whatever_their_size(rng):
    # the target is the quantile function of the mixture: a style's share of the levels below
    # any value is its weight's share, not its pixel count's
    a = rng.uniform(size=(80, 50, 3))  # 4000 pixels
    b = rng.uniform(0.3, 0.7, size=(25, 40, 3)) * [1.0, 0.5, 0.2]  # 1000 pixels, other colours
    target = palette_target([a, b], [1.0, 3.0])
    d = chroma_directions()
    for k in (0, 3, 6):
        pa, pb = a.reshape(-1, 3) @ d[k], b.reshape(-1, 3) @ d[k]
        for t in np.quantile(np.concatenate([pa, pb]), [0.1, 0.3, 0.5, 0.7, 0.9]):
            mixture = 0.25 * np.mean(pa < t) + 0.75 * np.mean(pb < t)
            assert np.mean(target.quantiles[:, k] < t) == pytest.approx(mixture, abs=0.01)
    assert np.array_equal(palette_target([a, b], [1.0, 0.0]).quantiles, palette_target([a]).quantiles)


def test_a_flat_style_is_floored_not_divided_by_zero():
    target = palette_target([np.full((4, 4, 3), 0.5)])
    value, grad = palette_loss(np.full((2, 2, 3), [0.6, 0.5, 0.4]), target)
    assert np.isfinite(value) and value > 0 and np.all(np.isfinite(grad))


def test_a_style_larger_than_the_cap_is_represented_by_a_fixed_sample(rng, monkeypatch):
    import multiscale.measure.sliced as sliced

    style = rng.uniform(size=(120, 100, 3)) * [1.0, 0.6, 0.3]
    whole = palette_target([style])
    monkeypatch.setattr(sliced, "MAX_SOURCE_POSITIONS", 3000)  # a quarter of the pixels
    sampled = palette_target([style])
    assert np.array_equal(sampled.quantiles, palette_target([style]).quantiles)  # the same draw
    assert not np.array_equal(sampled.quantiles, whole.quantiles)
    np.testing.assert_allclose(sampled.quantiles[16:-16], whole.quantiles[16:-16], atol=0.03)
    assert sampled.variance == pytest.approx(whole.variance, rel=0.05)
