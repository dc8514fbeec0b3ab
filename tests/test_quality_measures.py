"""Known answers for the texture-quality measures of benchmarks/quality_measures.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, ndimage, special, stats

pytest.importorskip("pywt", reason="the quality benchmark needs PyWavelets (pip install -e .[bench])")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import quality  # noqa: E402
import quality_measures as qm  # noqa: E402


def _texture(size: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth random colour texture in 0–255 (float, unclipped), periodic."""
    noise = np.random.default_rng(seed).standard_normal((size, size, 3))
    smooth = ndimage.gaussian_filter(noise, sigma=(1.5, 1.5, 0), mode="wrap")
    return 128 + 40 * smooth / smooth.std()


def test_identical_images_score_zero():
    image = _texture()
    scores = qm.score_all(image, image.copy())
    assert set(scores) == set(qm.MEASURES)
    for name, value in scores.items():
        assert abs(value) < 1e-12, name


def test_different_images_score_positive():
    a, b = _texture(seed=0), _texture(seed=1)
    b = 0.5 * b + 40 + np.random.default_rng(2).normal(0, 10, b.shape)
    for name, value in qm.score_all(a, b).items():
        assert value > 1e-3, name


def _ggd_logpdf(x, alpha, beta):
    return np.log(beta / (2 * alpha)) - special.gammaln(1 / beta) - (np.abs(x) / alpha) ** beta


@pytest.mark.parametrize(
    ("p1", "p2"),
    [((1.0, 2.0), (1.0, 2.0)), ((1.0, 2.0), (2.0, 1.0)), ((0.5, 0.7), (1.5, 3.0)), ((3.0, 1.2), (1.0, 0.8))],
)
def test_ggd_kl_matches_numeric_integration(p1, p2):
    def integrand(x):
        log_f1 = _ggd_logpdf(x, *p1)
        return np.exp(log_f1) * (log_f1 - _ggd_logpdf(x, *p2))

    numeric = 2 * integrate.quad(integrand, 0, np.inf, limit=200)[0]
    closed = qm.ggd_kl(*p1, *p2)
    assert closed == pytest.approx(numeric, rel=1e-6, abs=1e-9)
    if p1 == p2:
        assert abs(closed) < 1e-12
    else:
        assert closed > 0


def test_ggd_kl_of_gaussians_is_the_gaussian_formula():
    # GGD with β = 2 is N(0, α²/2); KL(N(0,s1²)‖N(0,s2²)) = log(s2/s1) + s1²/(2 s2²) − 1/2.
    s1, s2 = 1.3, 0.6
    expected = np.log(s2 / s1) + s1**2 / (2 * s2**2) - 0.5
    assert qm.ggd_kl(s1 * np.sqrt(2), 2.0, s2 * np.sqrt(2), 2.0) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("alpha", "beta"), [(2.0, 0.8), (5.0, 2.0), (1.0, 1.4)])
def test_fit_ggd_recovers_parameters(alpha, beta):
    x = stats.gennorm.rvs(beta, scale=alpha, size=200_000, random_state=np.random.default_rng(0))
    a, b = qm.fit_ggd(x)
    assert a == pytest.approx(alpha, rel=0.03)
    assert b == pytest.approx(beta, rel=0.03)


def test_wavelet_kl_ignores_a_constant_offset_and_sees_noise():
    image = _texture()
    assert qm.wavelet_kl(image, image + 17.0) < 1e-10
    noisy = image + np.random.default_rng(1).normal(0, 8, image.shape)
    assert qm.wavelet_kl(image, noisy) > 0.05


def _from_ycbcr(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    matrix = np.stack([qm._LUMA, qm._CB, qm._CR])
    return np.stack([y, cb, cr], axis=-1) @ np.linalg.inv(matrix).T


def test_chroma_fine_band_of_grey_image_is_zero():
    grey = _texture()[..., :1].repeat(3, axis=-1)
    assert qm.chroma_fine_rms(grey) < 1e-9


def test_chroma_fine_band_of_white_chroma_noise():
    size, sigma = 128, 6.0
    rng = np.random.default_rng(0)
    y = qm.luminance(_texture(size))
    image = _from_ycbcr(y, rng.normal(0, sigma, (size, size)), rng.normal(0, sigma, (size, size)))
    # The fine band of white noise keeps ‖δ − G*δ‖₂ of its σ: the norm of the residual kernel (≈ 0.87).
    delta = np.zeros((33, 33))
    delta[16, 16] = 1
    factor = np.linalg.norm(delta - ndimage.gaussian_filter(delta, 1.0))
    assert 0.85 < factor < 0.89
    assert qm.chroma_fine_rms(image) == pytest.approx(sigma * factor, rel=0.03)
    # Luminance detail alone carries no chroma.
    assert qm.chroma_fine_rms(_from_ycbcr(y, 0 * y, 0 * y)) < 1e-9


def test_radial_spectrum_unchanged_by_circular_shift_and_peaks_at_the_frequency():
    image = _texture()
    shifted = np.roll(image, (13, -21), axis=(0, 1))
    assert qm.spectrum_distance(image, shifted) < 1e-12
    yy, xx = np.mgrid[:64, :64]
    wave = np.cos(2 * np.pi * (6 * xx + 8 * yy) / 64)  # radius 10 cycles per 64 px
    spectrum = qm.radial_power_spectrum(wave)
    assert np.argmax(spectrum) + 1 == 10


def test_colour_shift_gives_w1_equal_to_the_shift():
    image = _texture()
    shift = np.array([5.0, -3.0, 12.0])
    np.testing.assert_allclose(qm.color_w1_per_channel(image, image + shift), np.abs(shift), rtol=1e-12)
    expected = np.mean(np.abs(qm.sliced_directions() @ shift))
    assert qm.color_sw1(image, image + shift) == pytest.approx(expected, rel=1e-12)


def test_w1_between_different_sample_sizes():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 40_000), rng.normal(3, 1, 10_000)
    assert qm.w1_1d(a, b) == pytest.approx(3.0, abs=0.05)


def test_gradient_w1_of_contrast_doubling_is_the_mean_gradient():
    image = _texture()
    grey = qm.luminance(image)
    mean_gradient = qm.gradient_magnitude(grey).mean()
    assert qm.gradient_w1(image, image + 30) < 1e-12
    assert qm.gradient_w1(image, 2 * image) == pytest.approx(mean_gradient, rel=1e-12)


def test_crops_of_a_tiled_example_keep_its_distribution_and_spectrum():
    example = _texture()
    tiled = np.tile(example, (3, 3, 1))  # every 64² crop is a circular shift of the example
    scores = qm.score_all(example, tiled, crops=3)
    assert scores["color_sw1"] < 1e-9
    assert scores["spectrum"] < 1e-9


def test_jpeg_round_trip_halves_chroma_resolution_and_geomean_ratio():
    rng = np.random.default_rng(0)
    y = qm.luminance(_texture())
    image = np.clip(_from_ycbcr(y, rng.normal(0, 10, y.shape), rng.normal(0, 10, y.shape)), 0, 255)
    back = quality.jpeg_round_trip(image)
    assert back.shape == image.shape
    assert qm.chroma_fine_rms(back) < 0.5 * qm.chroma_fine_rms(image)
    assert quality.geomean_ratio([2.0, 8.0], [1.0, 2.0], floor=1e-6) == pytest.approx(np.sqrt(8))
    assert quality.geomean_ratio([0.0], [0.05], floor=0.1) == pytest.approx(1.0)


def test_copy_correlation_finds_a_shifted_or_embedded_copy_and_not_an_independent_sample():
    example = _texture(seed=0)
    shifted = np.roll(example, (9, 17), axis=(0, 1))  # its largest unwrapped piece covers 61 % of it
    assert qm.copy_correlation(example, shifted) == pytest.approx(1.0, abs=1e-9)
    larger = _texture(size=160, seed=3)
    larger[50:114, 70:134] = 0.5 * example + 20  # the example inside, contrast halved: still a copy
    assert qm.copy_correlation(example, larger) == pytest.approx(1.0, abs=1e-9)
    assert qm.copy_correlation(example, _texture(seed=1)) < 0.5


def test_copy_correlation_is_brute_force_ncc_over_half_overlapping_shifts():
    rng = np.random.default_rng(4)
    a, b = rng.random((9, 8, 3)) * 255, rng.random((7, 8, 3)) * 255
    la, lb = qm.luminance(a), qm.luminance(b)
    best = -1.0
    for dy in range(-8, 9):
        for dx in range(-7, 8):
            ya, yb = max(dy, 0), max(-dy, 0)
            xa, xb = max(dx, 0), max(-dx, 0)
            h, w = min(9 - ya, 7 - yb), min(8 - xa, 8 - xb)
            if h <= 0 or w <= 0 or h * w < 0.5 * 7 * 8:
                continue
            pa, pb = la[ya : ya + h, xa : xa + w], lb[yb : yb + h, xb : xb + w]
            best = max(best, np.corrcoef(pa.ravel(), pb.ravel())[0, 1])
    assert qm.copy_correlation(a, b) == pytest.approx(best, abs=1e-9)


def test_copy_correlation_of_details_ignores_a_shared_layout():
    # Two independent fine textures over the same left-dark, right-bright layout: the whole
    # luminances correlate through the layout, their details do not.
    ramp = np.linspace(-80, 80, 64)[None, :, None]
    a, b = _texture(seed=0) * 0.2 + ramp, _texture(seed=1) * 0.2 + ramp
    assert qm.copy_correlation(a, b) > 0.8
    assert qm.copy_correlation(a, b, detail_sigma=4.0) < 0.5
    assert qm.copy_correlation(a, a, detail_sigma=4.0) == pytest.approx(1.0, abs=1e-9)


def test_seeds_drawing_one_image_have_no_diversity_and_independent_ones_about_one():
    example = _texture(seed=0)
    same = [_texture(seed=1)] * 3
    assert qm.diversity(same, example) == 0.0
    assert qm.seed_correlation(same) == pytest.approx(1.0, abs=1e-9)
    independent = [_texture(seed=s) for s in (1, 2, 3)]
    assert qm.diversity(independent, example) == pytest.approx(1.0, abs=0.15)
    assert abs(qm.seed_correlation(independent)) < 0.15


def test_seed_correlation_sees_a_lattice_at_the_same_phase_and_not_at_another():
    # A lattice every seed puts in the same place reads as one picture; shifted by half a
    # period along one axis it anticorrelates, although a search over shifts finds the two alike.
    same_place = [_lattice(80, phase=0), _lattice(80, phase=0) + 0.5 * (_grainy(80, seed=7) - 128)]
    assert qm.seed_correlation(same_place) > 0.9
    moved = [_lattice(80, phase=0), np.roll(_lattice(80, phase=0), 20, axis=1)]
    assert qm.seed_correlation(moved) < -0.9
    assert qm.copy_correlation(*moved) > 0.9
    # the details alone: the lattice's edges stay put, the grain does not
    assert qm.seed_correlation(same_place, detail_sigma=4.0) > 0.5


def _grainy(size: int, seed: int) -> np.ndarray:
    """Colour noise with energy in every wavelet band (a blur of 0.7 px), 0–255 float, periodic."""
    noise = np.random.default_rng(seed).standard_normal((size, size, 3))
    smooth = ndimage.gaussian_filter(noise, sigma=(0.7, 0.7, 0), mode="wrap")
    return 128 + 30 * smooth / smooth.std()


def _lattice(size: int, phase: int) -> np.ndarray:
    """A checkerboard of 20 px squares, shifted by ``phase`` px, under faint grain; 0–255 float."""
    i = np.arange(size) + phase
    board = ((i[:, None] // 20 + i[None, :] // 20) % 2).astype(float)
    return 90 + 80 * board[..., None] + 0.5 * (_grainy(size, seed=phase) - 128)


def test_windows_are_the_disjoint_grid_and_a_seeded_choice_of_it():
    image = np.arange(4 * 6 * 3, dtype=float).reshape(4, 6, 3)
    windows = qm.grid_windows(image, 2, 3)
    assert [w.shape for w in windows] == [(2, 3, 3)] * 4
    np.testing.assert_array_equal(windows[1], image[:2, 3:])
    np.testing.assert_array_equal(windows[2], image[2:, :3])
    chosen = qm.grid_windows(image, 2, 3, count=2, seed=1)
    assert len(chosen) == 2
    assert all(any(np.array_equal(c, w) for w in windows) for c in chosen)
    again = qm.grid_windows(image, 2, 3, count=2, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(chosen, again, strict=True))


def test_offset_grids_add_the_windows_of_the_grid_shifted_along_the_diagonal():
    image = np.arange(8 * 12 * 3, dtype=float).reshape(8, 12, 3)
    pooled = qm.grid_windows(image, 4, 6, offsets=2)
    # the shifted grid (half a window and 1 px: 3 rows, 4 columns in) has room for one window
    assert len(pooled) == 4 + 1
    np.testing.assert_array_equal(pooled[-1], image[3:7, 4:10])
    assert all(np.array_equal(a, b) for a, b in zip(pooled[:4], qm.grid_windows(image, 4, 6), strict=True))


def test_pooled_grids_steady_the_window_scores_of_a_lattice():
    # A lattice's window wavelet KL hangs on where it falls on the wavelets' dyadic grid: one grid's
    # score moves with a shift of a few pixels, the pooled grids' score much less.
    example, larger = _lattice(256, phase=0), _lattice(384, phase=5)

    def spread(**kw):
        scores = [
            qm.window_scores(example, larger[d : d + 256, d : d + 256], **kw)["wavelet_kl"]
            for d in range(0, 8, 3)
        ]
        return max(scores) / min(scores)

    single, pooled = spread(offsets=1), spread()
    assert single > 2 and pooled < 0.5 * single, (single, pooled)


def test_an_image_scored_by_windows_against_itself_is_three_quarters_of_its_floor():
    # Each of its 4 windows is one quadrant: its mean over the 4 quadrants holds a 0 and the three
    # distances its floor averages; every measure is symmetric.
    example = _grainy(256, seed=0)
    floor, scores = qm.window_floor(example), qm.window_scores(example, example, offsets=1)
    for m in qm.MEASURES:
        assert scores[m] == pytest.approx(0.75 * floor[m], rel=1e-9), m


def test_a_larger_independent_sample_scores_by_windows_like_the_examples_own_quadrants():
    example, larger = _grainy(256, seed=0), _grainy(512, seed=10)
    floor = qm.window_floor(example)
    same = qm.window_scores(example, larger, count=4)
    stronger = qm.window_scores(example, 128 + 1.5 * (larger - 128), count=4)  # contrast 1.5×
    for m in qm.MEASURES:
        assert same[m] < 2 * floor[m], m
        assert stronger[m] > 4 * floor[m], m


def _random_lattice(size: int, seed: int) -> np.ndarray:
    """Square cells of 12 px, each of a random colour, under grain of σ 6; 0–255 float."""
    rng = np.random.default_rng(seed)
    cells = rng.uniform(40, 220, (size // 12 + 1, size // 12 + 1, 3))
    return np.repeat(np.repeat(cells, 12, 0), 12, 1)[:size, :size] + rng.normal(0, 6, (size, size, 3))


# Each measure's own function: the straightforward way to score one (example, output) pair.
_PAIRWISE = {
    "wavelet_kl": qm.wavelet_kl,
    "color_sw1": qm.color_sw1,
    "speckle": qm.speckle,
    "spectrum": qm.spectrum_distance,
    "gradient": qm.gradient_w1,
}


def test_the_measures_split_in_describe_and_compare_are_the_measures_in_their_order():
    assert tuple(qm.MEASURE_STEPS) == qm.MEASURES == tuple(_PAIRWISE)


def test_window_scores_are_what_scoring_every_window_against_every_quadrant_pair_by_pair_gives():
    example, output = _random_lattice(128, seed=0), _random_lattice(200, seed=1)
    quadrants = qm.grid_windows(example, 64, 64)
    windows = qm.grid_windows(output, 64, 64, count=6, offsets=3)
    scores = qm.window_scores(example, output, count=6, offsets=3)
    for m, pairwise in _PAIRWISE.items():
        expected = np.median([np.mean([pairwise(q, o) for q in quadrants]) for o in windows])
        assert scores[m] == pytest.approx(expected, rel=1e-12, abs=0), m


def test_window_floor_is_what_scoring_each_quadrant_against_the_other_three_pair_by_pair_gives():
    example = _random_lattice(128, seed=2)
    quadrants = qm.grid_windows(example, 64, 64)
    floor = qm.window_floor(example)
    for m, pairwise in _PAIRWISE.items():
        means = [np.mean([pairwise(q, o) for q in quadrants if q is not o]) for o in quadrants]
        assert floor[m] == pytest.approx(np.median(means), rel=1e-12, abs=0), m


@pytest.mark.parametrize(
    ("example_shape", "output_shape"),
    [((64, 64), (64, 64)), ((64, 64), (100, 90)), ((100, 90), (64, 64)), ((64, 100), (90, 70))],
    ids=["same size", "larger output", "larger example", "both cropped"],
)
def test_score_all_is_the_mean_of_the_measures_over_its_crop_pairs(example_shape, output_shape):
    example = _random_lattice(100, seed=4)[: example_shape[0], : example_shape[1]]
    output = _random_lattice(100, seed=5)[: output_shape[0], : output_shape[1]]
    h, w = min(example_shape[0], output_shape[0]), min(example_shape[1], output_shape[1])
    ex, out = qm.random_crops(example, h, w, 3), qm.random_crops(output, h, w, 3)
    pairs = list(zip(ex, out, strict=True)) if len(ex) == len(out) else [(e, o) for e in ex for o in out]
    scores = qm.score_all(example, output, crops=3)
    for m, pairwise in _PAIRWISE.items():
        expected = np.mean([pairwise(e, o) for e, o in pairs])
        assert scores[m] == pytest.approx(expected, rel=1e-12, abs=0), m


def test_window_scores_describe_each_quadrant_and_each_window_once(monkeypatch):
    # Describing (fitting GGDs, sorting projections) is the costly step; comparing two descriptions
    # is cheap. Counted for one measure: they all go through the same loop.
    described = []
    wavelet = qm.MEASURE_STEPS["wavelet_kl"]

    def counting(image):
        described.append(image.shape)
        return wavelet.describe(image)

    monkeypatch.setitem(qm.MEASURE_STEPS, "wavelet_kl", wavelet._replace(describe=counting))
    example, output = _random_lattice(128, seed=0), _random_lattice(200, seed=1)
    qm.window_scores(example, output, count=6, offsets=3)
    assert described == [(64, 64, 3)] * (4 + 6)
    described.clear()
    qm.window_floor(example)
    assert len(described) == 4


def test_wavelet_kl_is_the_mean_of_its_subband_terms_and_jpeg_acts_most_on_the_finest_diagonal():
    image = _grainy(128, seed=3)
    back = quality.jpeg_round_trip(np.clip(image, 0, 255))
    terms = qm.wavelet_kl_subbands(image, back)
    assert terms.shape == (4, 3, 3)
    assert terms.mean() == pytest.approx(qm.wavelet_kl(image, back), rel=1e-12)
    per_band = terms.mean(axis=0)  # (level, orientation), coarsest level first
    assert np.unravel_index(per_band.argmax(), per_band.shape) == (2, 2)


def test_one_wild_window_does_not_move_the_window_scores():
    # A nearly sinusoidal window sends a coarse subband's GGD fit to the bound on β and its KL to
    # hundreds of nats; the median over windows keeps the score of the other fifteen.
    example, larger = _grainy(256, seed=0), _grainy(512, seed=10)
    stripes = 128 + 60 * np.sin(np.arange(128) * 2 * np.pi / 16)[:, None, None] * np.ones((1, 128, 3))
    wild = larger.copy()
    wild[:128, :128] = stripes
    assert qm.wavelet_kl(example[:128, :128], stripes) > 100 * qm.window_floor(example)["wavelet_kl"]
    plain, spoilt = qm.window_scores(example, larger), qm.window_scores(example, wild)
    for m in qm.MEASURES:
        assert spoilt[m] < 1.5 * plain[m], m


def test_score_only_reports_windows_and_the_wavelet_without_its_finest_diagonal(tmp_path, capsys):
    # A measuring set of one texture whose "output" is a larger independent sample of it, saved
    # through the same JPEG as the example (saved uncompressed, it scored 15× the example's own
    # quadrants by the wavelet measure).
    from PIL import Image

    data, out = tmp_path / "set", tmp_path / "out"
    (data / "1").mkdir(parents=True)
    out.mkdir()
    for name, seed in (("example.jpg", 0), ("heitz_sw.jpg", 1), ("gonthier_mr.jpg", 2)):
        Image.fromarray(np.clip(_grainy(256, seed), 0, 255).astype(np.uint8)).save(
            data / "1" / name, quality=90
        )
    Image.fromarray(np.clip(_grainy(512, 10), 0, 255).astype(np.uint8)).save(
        tmp_path / "larger.jpg", quality=90
    )
    Image.open(tmp_path / "larger.jpg").save(out / "1.png")  # as compressed as the example: see below
    quality.main(["--score-only", "--data", str(data), "--out", str(out), "--ids", "1", "--label", "A"])
    report = capsys.readouterr().out
    assert "Windows, which score outputs of every size alike" in report
    assert "without the finest diagonal subbands" in report
    texture = json.loads((out / "scores.json").read_text())["textures"]["1"]
    windows = texture["windows"]
    assert set(windows) == {"example", "ours", "ours_jpeg", "heitz", "gonthier"}
    for m in qm.MEASURES:  # a larger sample of the same noise scores like the example's own quadrants
        assert windows["ours"][m] < 2 * windows["example"][m], m
    for variant, value in texture["wavelet_without_finest_diagonal"].items():
        assert 0 < value < 10 * texture[variant]["wavelet_kl"], variant
    quality.main(["--compare", str(out / "scores.json"), str(out / "scores.json")])
    compared = capsys.readouterr().out
    assert "windows (outputs of any size scored alike" in compared
    rows = compared.splitlines()
    windowed = rows[rows.index("windows (outputs of any size scored alike; see the report):") + 1].split()
    assert windowed == ["wavelet_kl", "1", "(0/1)", "1", "(0/1)"]  # a run against itself


def test_the_periodic_component_is_periodic_with_the_image_s_inner_laplacian():
    """Moisan's definition: p's periodic Laplacian is u's Laplacian taken inside the image only."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:24, 0:30]
    u = 2.0 * xx + 0.5 * yy + rng.standard_normal((24, 30))  # ramps: large jumps between opposite borders
    p = qm.periodic_component(u)
    periodic = sum(np.roll(p, s, axis=a) for s in (1, -1) for a in (0, 1)) - 4 * p
    padded = np.pad(u, 1, mode="edge")  # a missing neighbour counts as the pixel itself: no term
    inner = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:] - 4 * u
    np.testing.assert_allclose(periodic, inner, atol=1e-9)
    assert p.mean() == pytest.approx(u.mean())
    # where opposite borders are equal there is no jump, and nothing to take away
    even = rng.standard_normal((24, 30))
    even[-1], even[:, -1] = even[0], even[:, 0]
    np.testing.assert_allclose(qm.periodic_component(even), even, atol=1e-12)


def test_stripes_on_the_axes_see_fine_stripes_and_not_the_borders_jumps():
    rng = np.random.default_rng(6)
    noise = ndimage.gaussian_filter(rng.standard_normal((128, 128, 3)), sigma=(1, 1, 0))
    noise = 128 + 10 * noise / noise.std()
    _, xx = np.mgrid[0:128, 0:128]
    ramp = noise + 0.8 * xx[..., None]  # dark left edge against a bright right one
    plain_power = np.abs(np.fft.fft2(qm.luminance(ramp))) ** 2
    axis, beside = plain_power[0, 8:121], np.median(plain_power[1:4, 8:121], axis=0)
    assert np.max(axis / beside) > 100  # the plain FFT's cross
    assert qm.axis_stripes(noise) < 0.05
    assert qm.axis_stripes(ramp) < 0.05  # the periodic component has no cross
    # known answers, in grey levels over the whole image (up to the noise's own share of the
    # stripes' frequency): 2-level stripes across it, exact without the noise, and 4-px ripples
    # of 4 grey levels (the noise's spread is 10) in a band 40 of 128 px wide
    stripes = 2.0 * np.cos(2 * np.pi * xx[..., None] / 8)
    assert qm.axis_stripes(np.broadcast_to(128 + 0.8 * xx[..., None] + stripes, ramp.shape)) == pytest.approx(
        2.0, rel=0.01
    )
    assert qm.axis_stripes(ramp + stripes) == pytest.approx(2.0, rel=0.2)
    rippled = ramp.copy()
    rippled[:, 40:80] += 4.0 * np.cos(2 * np.pi * xx[:, 40:80, None] / 4)
    assert qm.axis_stripes(rippled) == pytest.approx(4.0 * 40 / 128, rel=0.2)
    assert qm.axis_stripes(np.swapaxes(rippled, 0, 1)) == pytest.approx(qm.axis_stripes(rippled))


def test_stripes_beyond_the_example_count_only_what_an_image_adds():
    textures = [
        {"stripes": {"example": 0.5, "ours": 2.0}},  # 4× the example's
        {"stripes": {"example": 9.0, "ours": 3.0}},  # a lattice kept weaker: adds nothing
        {"stripes": {"example": 0.0, "ours": 0.05}},  # both below the floor: nothing
        {"stripes": {"example": 0.0, "ours": 0.4}},  # 4× the floor
    ]
    assert quality.stripes_beyond(textures, "ours") == pytest.approx(16.0**0.25)
    assert quality.stripes_beyond(textures[1:3], "ours") == 1.0


def test_edge_correlation_keeps_a_repainted_layout_and_not_an_unrelated_one():
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:96, 0:128]
    shapes = 60.0 * ((xx - 40) ** 2 + (yy - 50) ** 2 < 20**2) + 50.0 * ((xx > 80) & (yy < 40))
    content = np.repeat((40 + shapes)[..., None], 3, axis=2) + rng.standard_normal((96, 128, 3))
    assert qm.edge_correlation(content, content) == pytest.approx(1.0)
    # a dark, tinted palette keeps every edge where it was: any a·Y + b, a ≠ 0, scores 1
    repainted = 10 + 0.25 * content * np.array([1.0, 0.6, 1.4])
    assert qm.edge_correlation(content, repainted) == pytest.approx(1.0, abs=0.02)
    assert qm.edge_correlation(content, 255 - content) == pytest.approx(1.0)
    # strokes where the content has none lower it, the more the stronger; an unrelated image
    # scores about 0
    ripples = (np.sin(2 * np.pi * xx / 5) * (yy > 48))[..., None]
    scores = [qm.edge_correlation(content, repainted + a * ripples) for a in (2, 4, 8)]
    assert 0.9 > scores[0] > scores[1] > scores[2] > 0.0
    assert abs(qm.edge_correlation(content, _texture(128)[:96])) < 0.15
    with pytest.raises(ValueError, match="shapes differ"):
        qm.edge_correlation(content, content[:64])


def test_the_outermost_pixels_roughness_is_one_inside_a_texture_and_sees_a_dotted_frame():
    rng = np.random.default_rng(7)
    noise = ndimage.gaussian_filter(rng.standard_normal((160, 160, 3)), sigma=(1, 1, 0))
    noise = 128 + 10 * noise / noise.std()
    inner = noise[16:-16, 16:-16]  # a crop: its edge pixels are interior pixels of the noise
    plain = qm.border_roughness(inner)
    assert plain["across"] == pytest.approx(1.0, abs=0.2)
    assert plain["along"] == pytest.approx(1.0, abs=0.2)
    dotted = inner.copy()
    dots = 8.0 * (-1.0) ** np.arange(dotted.shape[1])  # light and dark in turn along the edge
    dotted[0] += dots[:, None]
    dotted[-1] += dots[:, None]
    dotted[:, 0] += dots[:, None]
    dotted[:, -1] += dots[:, None]
    rough = qm.border_roughness(dotted)
    assert rough["along"] > 2.0 and rough["across"] > 1.5
    smooth = inner.copy()
    for side in (smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1]):
        side[:] = ndimage.uniform_filter1d(side, 9, axis=0)
    assert qm.border_roughness(smooth)["along"] < 0.5
