"""The spectrum constraint: a projection onto the example's Fourier spectrum, and its exact gradient."""

from __future__ import annotations

import numpy as np
import pytest

from multiscale.errors import ConfigError
from multiscale.objectives.spectrum import (
    border_taper,
    example_spectrum,
    gather_peaks,
    longer_than_example,
    project,
    spectrum_loss,
)


def _texture(seed: int = 0, size: tuple[int, int] = (32, 24)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    stripes = 0.5 + 0.3 * np.sign(np.sin(2 * np.pi * xx / 6.0)) * np.cos(2 * np.pi * yy / 8.0)
    image = stripes[..., None] * np.array([0.9, 0.6, 0.4]) + 0.05 * rng.standard_normal((*size, 3))
    return np.clip(image, 0, 1).astype(np.float32)


def test_the_example_and_its_circular_shifts_are_in_the_set() -> None:
    """A translation is a phase ramp: the shifted example has the example's spectrum up to phase."""
    ex = _texture()
    spectrum = example_spectrum([ex], height=32, width=24)
    for shift in [(0, 0), (5, 0), (3, 7)]:
        shifted = np.roll(ex, shift, axis=(0, 1))
        loss, _ = spectrum_loss(shifted, spectrum)
        assert loss < 1e-12
        np.testing.assert_allclose(project(shifted, spectrum), shifted, atol=1e-6)


def test_the_projection_has_the_example_power_spectrum_and_is_idempotent() -> None:
    ex = _texture()
    spectrum = example_spectrum([ex], height=32, width=24)
    x = np.random.default_rng(1).uniform(size=(32, 24, 3))
    p = project(x, spectrum)
    np.testing.assert_allclose(np.abs(np.fft.rfft2(p, axes=(0, 1))), np.abs(spectrum), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(project(p, spectrum), p, atol=1e-9)
    # P(x) is the nearest such image: no other phase choice is closer (a random one here).
    rng = np.random.default_rng(2)
    other = np.fft.irfft2(
        spectrum * np.exp(1j * rng.uniform(0, 2 * np.pi, (32, 13, 1))), s=(32, 24), axes=(0, 1)
    )
    assert np.sum((x - p) ** 2) <= np.sum((x - other) ** 2)


def test_the_gradient_is_that_of_the_squared_distance() -> None:
    ex = _texture()
    spectrum = example_spectrum([ex], height=32, width=24)
    x = np.random.default_rng(3).uniform(size=(32, 24, 3))
    _, grad = spectrum_loss(x, spectrum)
    rng = np.random.default_rng(4)
    eps = 1e-6
    for _ in range(5):
        i = tuple(rng.integers(0, n) for n in x.shape)
        e = np.zeros_like(x)
        e[i] = eps
        fd = (spectrum_loss(x + e, spectrum)[0] - spectrum_loss(x - e, spectrum)[0]) / (2 * eps)
        assert grad[i] == pytest.approx(fd, rel=1e-4)


def test_an_output_larger_than_the_example_keeps_its_energy_per_pixel_and_mean() -> None:
    ex = _texture()
    spectrum = example_spectrum([ex], height=64, width=48)
    assert spectrum.shape == (64, 25, 3)
    p = project(np.full((64, 48, 3), 0.5), spectrum)
    np.testing.assert_allclose(p.reshape(-1, 3).mean(axis=0), ex.reshape(-1, 3).mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(p.reshape(-1, 3).std(axis=0), ex.reshape(-1, 3).std(axis=0), rtol=0.05)


@pytest.mark.slow
def test_a_synthesis_with_the_spectrum_constraint_resumes_exactly_and_keeps_stripes_in_line(
    tmp_path, stopped_run
) -> None:
    from multiscale.jobs.synthesize import make_config, resume_synthesis, run_synthesis

    source = _texture(size=(48, 48))
    tiny = dict(octaves=2, layers=("conv1_1", "pool1"), width=32, height=32, max_iter=12, seed=3)
    config = make_config(spectrum_weight=1.0, **tiny)
    whole = run_synthesis(source, config=config)
    stopped_run(source, config=config, stop_at=5)
    resumed, _ = resume_synthesis(tmp_path / "ck")
    np.testing.assert_array_equal(resumed.image, whole.image)
    # the constraint lowers the distance to the example's spectrum against the same run without it
    plain = run_synthesis(source, config=make_config(spectrum_weight=0.0, **tiny))
    spectrum = example_spectrum([source], height=32, width=32)
    assert spectrum_loss(whole.image, spectrum)[0] < spectrum_loss(plain.image, spectrum)[0]


def test_the_constraint_needs_images() -> None:
    from multiscale.jobs.synthesize import make_config

    with pytest.raises(ConfigError, match="spectrum_weight"):
        make_config(spectrum_weight=-1.0)


def test_an_example_as_large_as_the_output_is_not_tapered() -> None:
    from multiscale.objectives.spectrum import taper_spot

    centred = _texture(size=(64, 80)) - 0.5
    assert taper_spot(centred, height=64, width=48) is centred


def test_an_example_smaller_than_the_output_is_tapered_where_padded_keeping_its_energy() -> None:
    from multiscale.objectives.spectrum import TAPER, taper_spot

    ones = np.ones((64, 100, 3))
    tapered = taper_spot(ones, height=256, width=100)
    rows = tapered[:, 50, 0]
    np.testing.assert_allclose(tapered, tapered[:, :1, :1] * ones)  # not padded across: no taper
    m = int(TAPER * 64)
    assert np.ptp(rows[m:-m]) < 1e-12 and np.all(np.diff(rows[:m]) > 0) and rows[0] < 0.01 * rows[m]
    np.testing.assert_allclose(rows, rows[::-1])
    assert np.sum(tapered**2) == pytest.approx(np.sum(ones**2))


def test_a_small_example_s_spectrum_keeps_its_power_and_loses_the_box_s_cross(samples_dir) -> None:
    """Cut square and padded, an example's spectrum carries the box's edges along the frequency axes
    (straight lines an example-size in from the output's borders); tapered, less of it."""
    import multiscale.objectives.spectrum as spectrum_module
    from multiscale.io import load_image

    example = load_image(samples_dir / "gravel.png")[:128, :128]
    tapered = example_spectrum([example], height=512, width=512)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(spectrum_module, "TAPER", 0.0)
        box = example_spectrum([example], height=512, width=512)
    power = lambda s: np.sum(np.abs(s[1:, :]) ** 2)  # noqa: E731  (all but the mean's row)
    assert power(tapered) == pytest.approx(power(box), rel=0.1)
    axes = lambda s: np.abs(s[1:64, 0]).mean() / np.abs(s[1:64, 2:8]).mean()  # noqa: E731
    assert axes(tapered) < axes(box)


def _lattice(size: int = 64, cycles: float = 5.5, seed: int = 0) -> np.ndarray:
    """A diagonal grating of ``cycles`` periods across the side (not a whole number), plus faint noise."""
    yy, xx = np.mgrid[0:size, 0:size]
    grating = 0.5 + 0.3 * np.cos(2 * np.pi * cycles * (xx + 0.5 * yy) / size)
    noise = 0.02 * np.random.default_rng(seed).standard_normal((size, size, 3))
    return np.clip(grating[..., None] * np.array([0.9, 0.7, 0.5]) + noise, 0, 1).astype(np.float32)


def _autocorrelation(spectrum: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The target's autocorrelation (the inverse FFT of its power, mean removed), over all channels."""
    power = np.abs(spectrum) ** 2
    power[0, 0] = 0.0
    return np.sum(np.fft.irfft2(power, s=shape, axes=(0, 1)), axis=-1)


def test_a_padded_example_s_lattice_ends_at_its_size_and_gathered_holds_across_the_output() -> None:
    """Zero-padding a 64² grating (5.5 periods across: it does not tile) to 256² leaves no
    correlation beyond a lag of 64 px: the constraint would hold the lattice over one example-size
    only. Gathered, the grating's peak is one frequency, and its correlation eleven periods away,
    two example-sizes off, is nearly as strong as at lag 0."""
    example = _lattice()
    spread = example_spectrum([example], height=256, width=256, peaks="spread")
    gathered = example_spectrum([example], height=256, width=256)
    lag = 128  # 11 periods along x: two example-sizes
    for spectrum, low, high in [(spread, -1e-4, 1e-4), (gathered, 0.85, 1.0)]:
        corr = _autocorrelation(spectrum, (256, 256))
        assert low <= corr[0, lag] / corr[0, 0] <= high

    # the grating's power is in one frequency (and its mirror, not stored in the real FFT's half):
    # 5.5 × 4 cycles along x, half as many along y; spread, no frequency holds a fifth of it
    def power(spectrum):
        p = np.sum(np.abs(spectrum) ** 2, axis=-1)
        p[0, 0] = 0.0
        return p

    assert np.unravel_index(np.argmax(power(gathered)), (256, 129)) == (11, 22)
    assert power(gathered).max() > 0.8 * power(gathered).sum()
    assert power(spread).max() < 0.2 * power(spread).sum()


def test_gathering_keeps_the_power_and_a_real_image_s_symmetry() -> None:
    example = _lattice(size=48, cycles=4.6)
    for height, width in [(192, 192), (200, 151)]:
        padded = np.zeros((height, width, 3))
        padded[:48, :48] = example - example.mean(axis=(0, 1))
        full = np.fft.fft2(padded, axes=(0, 1))
        out = gather_peaks(full, example_shape=(48, 48))
        assert np.sum(np.abs(out) ** 2) == pytest.approx(np.sum(np.abs(full) ** 2), rel=1e-12)
        assert not np.allclose(np.abs(out), np.abs(full))  # the grating was gathered
        mirror = np.conj(out[(-np.arange(height)) % height][:, (-np.arange(width)) % width])
        np.testing.assert_allclose(out, mirror, atol=1e-9 * np.abs(out).max())


def test_textures_without_peaks_and_outputs_no_larger_than_the_example_keep_the_padded_spectrum(
    samples_dir,
) -> None:
    from multiscale.io import load_image

    gravel = load_image(samples_dir / "gravel.png")[:128, :128]
    noise = np.random.default_rng(5).uniform(size=(64, 64, 3)).astype(np.float32)
    for example, size in [(gravel, 512), (noise, 256)]:
        np.testing.assert_array_equal(
            example_spectrum([example], height=size, width=size),
            example_spectrum([example], height=size, width=size, peaks="spread"),
        )
    lattice = _lattice()
    np.testing.assert_array_equal(
        example_spectrum([lattice], height=64, width=64),
        example_spectrum([lattice], height=64, width=64, peaks="spread"),
    )


@pytest.mark.parametrize(
    ("field", "default", "wrong"),
    [("spectrum_peaks", "gather", "sharp"), ("spectrum_long_waves", "cut", "trim")],
)
def test_the_spectrum_settings_default_and_refuse_other_values(field, default, wrong) -> None:
    from multiscale.config import SynthesisConfig

    assert getattr(SynthesisConfig(), field) == default
    with pytest.raises(ConfigError, match=field):
        SynthesisConfig(**{field: wrong})


def test_several_small_examples_are_gathered_each_and_their_powers_averaged() -> None:
    one, other = _lattice(seed=1), _lattice(size=48, cycles=4.125, seed=2)  # 22 and 22 cycles at 256²
    both = example_spectrum([one, other], height=256, width=256)
    alone = [example_spectrum([e], height=256, width=256) for e in (one, other)]
    np.testing.assert_allclose(np.abs(both) ** 2, np.mean([np.abs(s) ** 2 for s in alone], axis=0), rtol=1e-9)
    power = np.sum(np.abs(both) ** 2, axis=-1)
    power[0, 0] = 0.0
    assert np.unravel_index(np.argmax(power), power.shape) == (11, 22) and power.max() > 0.7 * power.sum()


def _longer(height: int, width: int, example_shape: tuple[int, int]) -> np.ndarray:
    """:func:`longer_than_example` as a boolean mask over the real FFT's half, (H, W // 2 + 1)."""
    mask = np.zeros((height, width // 2 + 1), bool)
    mask[longer_than_example(height=height, width=width, example_shape=example_shape)] = True
    return mask


def test_longer_than_example_marks_the_frequencies_whose_wavelength_is_longer_than_the_example() -> None:
    # a 64² example in a 256² output: one of the example's frequency bins is 4 of the output's
    longer = _longer(256, 256, (64, 64))
    for row, col in [(0, 1), (0, 3), (3, 0), (2, 2), (-3, 1), (1, 3)]:
        assert longer[row, col]  # wavelength over 64 px
    for row, col in [(0, 0), (0, 4), (4, 0), (-4, 0), (3, 3), (10, 50)]:
        assert not longer[row, col]  # the mean, and wavelengths up to 64 px
    # each axis by its own side: a 32-row, 128-column example in a 256² output
    wide = _longer(256, 256, (32, 128))
    assert wide[7, 0] and not wide[8, 0] and wide[0, 1] and not wide[0, 2]
    # an output no larger than its example holds no such frequency
    assert not _longer(64, 48, (64, 64)).any()


@pytest.mark.parametrize(
    ("height", "width", "example_shape"), [(256, 256, (64, 64)), (200, 151, (48, 30)), (97, 128, (13, 128))]
)
def test_longer_than_example_searches_only_the_corner_and_finds_the_whole_ellipse(
    height, width, example_shape
):
    fy = np.fft.fftfreq(height)[:, None] * example_shape[0]
    fx = np.fft.rfftfreq(width)[None, :] * example_shape[1]
    whole_plane = fy * fy + fx * fx < 1.0 - 1e-9
    whole_plane[0, 0] = False
    np.testing.assert_array_equal(_longer(height, width, example_shape), whole_plane)


def _shaded(size: int = 64) -> np.ndarray:
    """A lattice whose right side is paler: shading over the whole example, as a photo's light."""
    ramp = np.linspace(-0.15, 0.15, size)[None, :, None]
    return np.clip(_lattice(size) + ramp, 0, 1).astype(np.float32)


def test_an_example_s_shading_does_not_spread_to_wavelengths_longer_than_the_example() -> None:
    """Zero-padded, a shaded example gives the output's longest wavelengths the power of its shading
    (patches larger than the example); cut, they have none, and every other frequency, the mean
    included, is the padded spectrum's."""
    example = _shaded()
    kept = example_spectrum([example], height=256, width=256, long_waves="keep")
    cut = example_spectrum([example], height=256, width=256)
    long = _longer(256, 256, (64, 64))
    power = lambda s: np.sum(np.abs(s) ** 2, axis=-1)  # noqa: E731
    share = lambda s: power(s)[long].sum() / (power(s).sum() - power(s)[0, 0])  # noqa: E731
    assert share(kept) > 0.05
    assert share(cut) == 0.0
    np.testing.assert_array_equal(cut[~long], kept[~long])
    # no larger than the example: alike
    np.testing.assert_array_equal(
        example_spectrum([example], height=64, width=64),
        example_spectrum([example], height=64, width=64, long_waves="keep"),
    )


# ---------------------------------------------------------------- the border taper


def test_the_border_taper_rolls_off_a_32nd_of_each_side_and_leaves_the_inside_whole() -> None:
    taper = border_taper(256, 192)
    assert taper.shape == (256, 192, 1) and taper.dtype == np.float64
    rows, cols = taper[:, 96, 0], taper[128, :, 0]
    assert np.all(rows[8:-8] == 1.0) and np.all(rows[:8] < 1.0) and 0 < rows[0] < 0.05
    assert np.all(cols[6:-6] == 1.0) and np.all(cols[:6] < 1.0)
    np.testing.assert_array_equal(rows, rows[::-1])
    assert np.all(np.diff(rows[:9]) > 0)
    small = border_taper(16, 16)  # at least one pixel rolls off
    assert small[0, 8, 0] < 1.0 and small[1, 8, 0] == 1.0


def test_through_the_taper_the_example_is_in_its_set_and_the_gradient_is_the_distances() -> None:
    ex = _texture()
    taper = border_taper(32, 24)
    plain = example_spectrum([ex], height=32, width=24)
    centre = plain[0, 0].real / (32 * 24)
    target = example_spectrum([ex], height=32, width=24, taper=taper)
    loss, grad = spectrum_loss(ex, target, taper=taper, centre=centre)
    assert loss < 1e-12 and np.max(np.abs(grad)) < 1e-9
    x = np.random.default_rng(5).uniform(size=(32, 24, 3))
    value, grad = spectrum_loss(x, target, taper=taper, centre=centre)
    # the value is the plain distance of the image seen through the taper
    seen = taper * (x - centre) + centre
    assert value == pytest.approx(spectrum_loss(seen, target)[0], rel=1e-12)
    rng = np.random.default_rng(6)
    eps = 1e-6
    for _ in range(6):
        i = tuple(rng.integers(0, n) for n in x.shape)
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        numeric = (
            spectrum_loss(up, target, taper=taper, centre=centre)[0]
            - spectrum_loss(down, target, taper=taper, centre=centre)[0]
        ) / (2 * eps)
        assert grad[i] == pytest.approx(numeric, rel=1e-4, abs=1e-10)
    # the outermost pixels barely move the value: the constraint sees them faintly
    corner, middle = np.abs(grad[0, 0]).max(), np.abs(grad[16, 12]).max()
    assert corner < 0.1 * middle or corner < 1e-6
    with pytest.raises(ValueError, match="centre"):
        spectrum_loss(x, target, taper=taper)


def test_a_smaller_examples_target_through_the_taper_keeps_its_spectrum_scaled_by_the_tapers_rms() -> None:
    ex = _texture(size=(16, 12))
    taper = border_taper(32, 24)
    plain = example_spectrum([ex], height=32, width=24)
    seen = example_spectrum([ex], height=32, width=24, taper=taper)
    rms = np.sqrt(np.mean(taper**2))
    np.testing.assert_allclose(seen[1:], plain[1:] * rms, rtol=1e-12)
    np.testing.assert_allclose(seen[0, 0], plain[0, 0])  # the mean colour stays
