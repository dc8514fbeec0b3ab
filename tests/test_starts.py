"""Start images: the spectrum start carries the source's colours and spectrum, never speckle."""

from __future__ import annotations

import numpy as np
import pytest

from multiscale.jobs.starts import GENERATED_STARTS, SMOOTH_SIGMA, generated_start, smooth_noise, spot_noise


def _exemplar(seed: int = 0, size: int = 32) -> np.ndarray:
    """A smooth, coloured, anisotropic test texture in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.5 + 0.2 * np.sin(2 * np.pi * 3 * xx) * np.cos(2 * np.pi * yy)
    tint = np.array([0.9, 0.6, 0.3])
    image = base[..., None] * tint + 0.03 * rng.standard_normal((size, size, 3))
    return np.clip(image, 0, 1).astype(np.float32)


def test_spot_noise_has_the_exemplar_power_spectrum_on_average() -> None:
    ex = _exemplar()
    centred = ex - ex.reshape(-1, 3).mean(axis=0)
    expected = np.abs(np.fft.fft2(centred, axes=(0, 1))) ** 2
    rng = np.random.default_rng(1)
    draws = [spot_noise([ex], height=32, width=32, rng=rng) for _ in range(400)]
    measured = np.mean(
        [np.abs(np.fft.fft2(d - ex.reshape(-1, 3).mean(axis=0), axes=(0, 1))) ** 2 for d in draws], axis=0
    )
    # Energy per channel agrees to sampling error (400 draws: a few per cent).
    np.testing.assert_allclose(measured.sum(axis=(0, 1)), expected.sum(axis=(0, 1)), rtol=0.05)
    # The strongest frequency (the sinusoid) dominates the start as it does the exemplar.
    assert np.argmax(measured[..., 0]) == np.argmax(expected[..., 0])


def test_spot_noise_keeps_the_mean_colour_and_colour_covariance() -> None:
    ex = _exemplar()
    x = spot_noise([ex], height=256, width=256, rng=np.random.default_rng(0))
    assert x.dtype == np.float32 and x.shape == (256, 256, 3)
    np.testing.assert_allclose(x.reshape(-1, 3).mean(axis=0), ex.reshape(-1, 3).mean(axis=0), atol=0.01)
    cov_x = np.cov(x.reshape(-1, 3).T)
    cov_e = np.cov(ex.reshape(-1, 3).T)
    np.testing.assert_allclose(cov_x, cov_e, atol=0.15 * np.abs(cov_e).max())


def test_a_grey_exemplar_gives_a_grey_start_without_any_chroma() -> None:
    grey = _exemplar()[..., :1].repeat(3, axis=2)
    x = spot_noise([grey], height=48, width=40, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(x[..., 0], x[..., 1])
    np.testing.assert_array_equal(x[..., 1], x[..., 2])


def test_spot_noise_of_a_larger_exemplar_and_of_several_exemplars() -> None:
    big = _exemplar(size=64)
    x = spot_noise([big], height=24, width=20, rng=np.random.default_rng(0))
    assert x.shape == (24, 20, 3)
    two = spot_noise([big, _exemplar(5)], height=32, width=32, rng=np.random.default_rng(0))
    assert two.shape == (32, 32, 3) and np.isfinite(two).all()
    assert two.min() >= 0.0 and two.max() <= 1.0


def test_a_spot_noise_start_larger_than_its_exemplar_holds_nothing_wider_than_the_exemplar() -> None:
    """The shading of a 32² exemplar (its right side paler) would otherwise spread into blotches
    up to the whole output's size; cut, the start's power there is nil and the rest is the same draw."""
    from multiscale.objectives.spectrum import longer_than_example

    ramp = np.linspace(-0.1, 0.1, 32)[None, :, None]
    ex = np.clip(0.5 + 0.3 * (_exemplar() - 0.5) + ramp, 0, 1).astype(np.float32)  # nothing clips
    long = np.zeros((128, 65), bool)
    long[longer_than_example(height=128, width=128, example_shape=(32, 32))] = True
    draws = {
        waves: spot_noise([ex], height=128, width=128, rng=np.random.default_rng(4), long_waves=waves)
        for waves in ("cut", "keep")
    }
    spectra = {k: np.fft.rfft2(x - x.mean(axis=(0, 1)), axes=(0, 1)) for k, x in draws.items()}
    power = {k: np.sum(np.abs(s) ** 2, axis=-1) for k, s in spectra.items()}
    assert power["keep"][long].sum() > 0.05 * power["keep"].sum()
    assert power["cut"][long].sum() < 1e-9 * power["cut"].sum()
    np.testing.assert_allclose(
        spectra["cut"][~long], spectra["keep"][~long], atol=1e-3 * np.abs(spectra["keep"]).max()
    )
    assert draws["cut"].min() > 0.0 and draws["cut"].max() < 1.0


def test_smooth_noise_is_luminance_only_and_low_frequency() -> None:
    mean = np.array([0.6, 0.4, 0.2], np.float32)
    x = smooth_noise(mean, height=64, width=64, rng=np.random.default_rng(0))
    offsets = x - mean
    np.testing.assert_allclose(offsets[..., 0], offsets[..., 1], atol=1e-6)
    # Neighbouring pixels nearly equal: white noise of the same σ would step
    # by about 1.13 σ on average, this by a small fraction of it.
    assert offsets[..., 0].std() == pytest.approx(SMOOTH_SIGMA, rel=0.01)
    assert np.abs(np.diff(x[..., 0], axis=1)).mean() < 0.2 * SMOOTH_SIGMA


@pytest.mark.parametrize("init", GENERATED_STARTS)
def test_every_start_is_seeded_and_in_range(init: str) -> None:
    kwargs = dict(height=16, width=24, mean_color=np.array([0.5, 0.5, 0.5]), exemplars=[_exemplar()])
    a = generated_start(init, seed=4, **kwargs)
    b = generated_start(init, seed=4, **kwargs)
    c = generated_start(init, seed=5, **kwargs)
    assert a.shape == (16, 24, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0.0 and a.max() <= 1.0


def test_spectrum_without_exemplars_is_the_smooth_start() -> None:
    mean = np.array([0.3, 0.5, 0.7])
    a = generated_start("spectrum", height=16, width=16, mean_color=mean, seed=2)
    b = generated_start("smooth", height=16, width=16, mean_color=mean, seed=2)
    np.testing.assert_array_equal(a, b)


def test_the_noise_start_is_unchanged() -> None:
    """``noise`` is the historical start: mean colour plus σ = 0.1 per channel, same draws."""
    mean = np.array([0.4, 0.5, 0.6])
    expected = np.clip(mean + np.random.default_rng(7).normal(0.0, 0.1, size=(8, 8, 3)), 0, 1)
    got = generated_start("noise", height=8, width=8, mean_color=mean, seed=7)
    np.testing.assert_allclose(got, expected.astype(np.float32))


# ---------------------------------------------------------------------------
# The start of a later stage
# ---------------------------------------------------------------------------


def _fine_texture(size: int = 64) -> np.ndarray:
    """A tinted texture with most of its energy in the finest octave (noise blurred 0.7 px)."""
    from scipy import ndimage

    field = ndimage.gaussian_filter(np.random.default_rng(4).standard_normal((size, size)), 0.7, mode="wrap")
    return np.clip(0.5 + 0.4 * field[..., None] * np.array([1.0, 0.8, 0.6]), 0, 1).astype(np.float32)


def _finest_octave(image: np.ndarray) -> np.ndarray:
    """What halving loses: the image minus itself halved and upsampled back."""
    from multiscale.io import resize_image
    from multiscale.jobs.starts import upsample

    h, w = image.shape[:2]
    half = resize_image(image.astype(np.float32), width=w // 2, height=h // 2)
    return image - upsample(half, height=h, width=w, wrap=True)


def test_a_later_stage_starts_from_the_upsampled_result_with_the_sources_finest_octave_added() -> None:
    from multiscale.io import resize_image
    from multiscale.jobs.starts import stage_start, upsample

    ex = _fine_texture()
    previous = resize_image(ex, width=32, height=32)  # a stage's result: right layout, no finest octave
    plain = stage_start(previous, height=64, width=64, wrap=True)
    np.testing.assert_array_equal(plain, upsample(previous, height=64, width=64, wrap=True))
    detailed = stage_start(previous, height=64, width=64, wrap=True, exemplars=[ex], seed=5)
    assert detailed.shape == (64, 64, 3) and detailed.min() >= 0 and detailed.max() <= 1

    def rms(a):
        return float(np.sqrt(np.mean(np.square(a))))

    wanted = rms(_finest_octave(ex))
    assert rms(_finest_octave(plain)) < 0.3 * wanted  # upsampling alone leaves little of it (measured 0.21)
    assert 0.7 * wanted < rms(_finest_octave(detailed)) < 1.3 * wanted  # the detail fills it (0.95)
    # and only it: halved again, the start is the previous result
    added = detailed - plain
    halved = resize_image(added.astype(np.float32), width=32, height=32)
    assert rms(halved) < 0.3 * rms(added)  # measured 0.19; white noise halved keeps about 0.5
    # seeded: the same seed gives the same start, another seed other detail
    np.testing.assert_array_equal(
        detailed, stage_start(previous, height=64, width=64, wrap=True, exemplars=[ex], seed=5)
    )
    other = stage_start(previous, height=64, width=64, wrap=True, exemplars=[ex], seed=6)
    assert rms(other - detailed) > 0.5 * rms(added)
    with pytest.raises(ValueError, match="frames"):
        stage_start(np.stack([previous, previous]), height=64, width=64, wrap=True, exemplars=[ex])
