"""The Gaussian pyramid: sizes, known answers and border behaviour."""

import numpy as np
import pytest

from multiscale._tf import tf
from multiscale.measure.pyramid import blur, gaussian_pyramid, octave_sizes, pad2d


def _t(a: np.ndarray) -> tf.Tensor:
    return tf.constant(a[None], dtype=tf.float64)


@pytest.mark.parametrize("mode", ["reflect", "symmetric", "wrap", "same", "valid"])
def test_octave_sizes_match_the_pyramid(mode):
    x = tf.zeros([1, 45, 38, 3])
    levels = gaussian_pyramid(x, octaves=3, padding=mode)
    assert [tuple(t.shape[1:3]) for t in levels] == octave_sizes(45, 38, octaves=3, padding=mode)


@pytest.mark.parametrize("mode", ["reflect", "symmetric", "wrap", "valid"])
def test_pyramid_of_a_constant_image_is_constant(mode):
    levels = gaussian_pyramid(tf.fill([1, 40, 36, 3], 0.7), octaves=4, padding=mode)
    for level in levels:
        np.testing.assert_allclose(level.numpy(), 0.7, atol=1e-6)


def test_same_padding_pulls_borders_toward_zero():
    level = gaussian_pyramid(tf.fill([1, 32, 32, 1], 1.0), octaves=2, padding="same")[1].numpy()
    assert level[0, 0, 0, 0] < 0.6 and abs(level[0, 8, 8, 0] - 1.0) < 1e-6


@pytest.mark.parametrize(
    "mode,np_mode",
    [("reflect", "reflect"), ("symmetric", "symmetric"), ("wrap", "wrap"), ("same", "constant")],
)
def test_pad2d_matches_numpy(mode, np_mode):
    a = np.random.default_rng(0).normal(size=(7, 5, 2))
    ours = pad2d(_t(a), 2, mode).numpy()[0]
    np.testing.assert_array_equal(ours, np.pad(a, ((2, 2), (2, 2), (0, 0)), mode=np_mode))


def test_blur_of_an_impulse_is_the_binomial_kernel():
    a = np.zeros((9, 9, 1))
    a[4, 4, 0] = 1.0
    k = np.array([1, 4, 6, 4, 1]) / 16
    expected = np.zeros((9, 9))
    expected[2:7, 2:7] = np.outer(k, k)
    np.testing.assert_allclose(blur(_t(a), "wrap").numpy()[0, :, :, 0], expected, atol=1e-12)


def test_wrap_pyramid_commutes_with_circular_shifts():
    """Shifting a periodic image by 2**k pixels shifts octave k by one: no seam anywhere."""
    a = np.random.default_rng(1).uniform(size=(32, 32, 3))
    levels = gaussian_pyramid(_t(a), octaves=3, padding="wrap")
    shifted = gaussian_pyramid(_t(np.roll(a, (4, -8), axis=(0, 1))), octaves=3, padding="wrap")
    np.testing.assert_allclose(
        shifted[2].numpy(), np.roll(levels[2].numpy(), (1, -2), axis=(1, 2)), atol=1e-12
    )


def test_blur_preserves_the_mean_with_wrap():
    a = np.random.default_rng(2).uniform(size=(16, 20, 3))
    assert blur(_t(a), "wrap").numpy().mean() == pytest.approx(a.mean(), abs=1e-12)
