"""Texture-quality measures that no objective in the project optimises (used by ``quality.py``).

Every image is a float array of shape (H, W, 3), RGB in 0–255 (not clipped or rounded here). Each
distance is 0 for identical images and grows as the output departs from the example. Sizes may differ
through :func:`score_all`, which scores example-sized crops of the larger image, and
:func:`window_scores`, which scores windows of the output against the example's quadrants.

Each measure of ``MEASURES`` is a description of one image and a distance between two descriptions
(:class:`Measure`, ``MEASURE_STEPS``); its own function is the two in a row, and :func:`score_all`,
:func:`window_scores` and :func:`window_floor` describe each image or window once, however many
images it is compared with.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pywt
from scipy import ndimage, special
from scipy.optimize import brentq

MEASURES = ("wavelet_kl", "color_sw1", "speckle", "spectrum", "gradient")
#: Blur (pixels) whose residual is the "details" that :func:`copy_correlation` compares.
COPY_DETAIL_SIGMA = 4.0
# Below these a difference is not a meaningful ratio (speckle: a tenth of a grey level is invisible).
FLOORS = {"wavelet_kl": 1e-6, "color_sw1": 1e-3, "speckle": 0.1, "spectrum": 1e-4, "gradient": 1e-3}

_LUMA = np.array([0.299, 0.587, 0.114])
# JPEG (BT.601 full-range) chroma, without the +128 offset, which a fine band removes anyway.
_CB = np.array([-0.168736, -0.331264, 0.5])
_CR = np.array([0.5, -0.418688, -0.081312])


def luminance(image: np.ndarray) -> np.ndarray:
    """BT.601 luma Y of an (H, W, 3) RGB image, same units, shape (H, W)."""
    return image @ _LUMA


def chroma(image: np.ndarray) -> np.ndarray:
    """JPEG Cb and Cr of an (H, W, 3) RGB image without the 128 offset, shape (H, W, 2)."""
    return np.stack([image @ _CB, image @ _CR], axis=-1)


# ------------------------------------------------------------------------------- generalised Gaussian


def ggd_moment_ratio(beta: float | np.ndarray) -> float | np.ndarray:
    """(E|x|)² / E[x²] of a zero-mean generalised Gaussian of shape ``beta`` (2/π at β = 2)."""
    return np.exp(2 * special.gammaln(2 / beta) - special.gammaln(1 / beta) - special.gammaln(3 / beta))


_BETA_MIN, _BETA_MAX = 0.05, 20.0


def fit_ggd(x: np.ndarray) -> tuple[float, float]:
    """Scale α and shape β of the zero-mean GGD p(x) = β/(2αΓ(1/β)) exp(−(|x|/α)^β) fitted to ``x``.

    Moment matching: β solves (E|x|)²/E[x²] = Γ(2/β)²/(Γ(1/β)Γ(3/β)) (clamped to [0.05, 20]), then
    α = E|x| Γ(1/β)/Γ(2/β). An all-zero ``x`` gets α = 1e-12.
    """
    x = np.abs(np.ravel(x).astype(np.float64))
    m1, m2 = x.mean(), np.mean(x * x)
    if m2 <= 0:
        return 1e-12, 2.0
    ratio = np.clip(
        m1 * m1 / m2, ggd_moment_ratio(_BETA_MIN) * (1 + 1e-9), ggd_moment_ratio(_BETA_MAX) * (1 - 1e-9)
    )
    beta = brentq(lambda b: ggd_moment_ratio(b) - ratio, _BETA_MIN, _BETA_MAX, xtol=1e-10)
    alpha = m1 * np.exp(special.gammaln(1 / beta) - special.gammaln(2 / beta))
    return float(max(alpha, 1e-12)), float(beta)


def ggd_kl(alpha1: float, beta1: float, alpha2: float, beta2: float) -> float:
    """KL(p1 ‖ p2) between two zero-mean GGDs, closed form (Do & Vetterli 2002, eq. 11), in nats."""
    return float(
        np.log((beta1 * alpha2) / (beta2 * alpha1))
        + special.gammaln(1 / beta2)
        - special.gammaln(1 / beta1)
        + np.exp(
            beta2 * np.log(alpha1 / alpha2)
            + special.gammaln((beta2 + 1) / beta1)
            - special.gammaln(1 / beta1)
        )
        - 1 / beta1
    )


def wavelet_subbands(channel: np.ndarray, levels: int = 3, wavelet: str = "db4") -> list[np.ndarray]:
    """The 3·levels detail subbands (horizontal, vertical, diagonal per level) of an (H, W) array.

    Periodised transform: no border extension, so the subbands hold only the image's own coefficients.
    """
    coeffs = pywt.wavedec2(channel, wavelet, mode="periodization", level=levels)
    return [band for detail in coeffs[1:] for band in detail]


def wavelet_ggd_fits(image: np.ndarray, levels: int = 3, wavelet: str = "db4") -> np.ndarray:
    """:func:`wavelet_kl`'s description of one (H, W, 3) image: the GGD fit (:func:`fit_ggd`) of every
    wavelet detail subband of its luminance and of its R, G and B.

    Shape (4, levels, 3, 2): channel (luminance, R, G, B), level (coarsest first), orientation
    (horizontal, vertical, diagonal), then (α, β); α in the image's units, β dimensionless.
    """
    fits = [
        fit_ggd(band)
        for channel in _wavelet_channels(image)
        for band in wavelet_subbands(channel, levels, wavelet)
    ]
    return np.array(fits).reshape(4, levels, 3, 2)


def ggd_symmetric_kl(fits_a: np.ndarray, fits_b: np.ndarray) -> np.ndarray:
    """½(KL(a‖b) + KL(b‖a)) between matching GGD fits, nats.

    ``fits_a`` and ``fits_b``: the same shape (..., 2), (α, β) last (as :func:`wavelet_ggd_fits`
    gives); the result has their shape without the last axis.
    """
    pairs = zip(fits_a.reshape(-1, 2).tolist(), fits_b.reshape(-1, 2).tolist(), strict=True)
    kls = [0.5 * (ggd_kl(*pa, *pb) + ggd_kl(*pb, *pa)) for pa, pb in pairs]
    return np.array(kls).reshape(fits_a.shape[:-1])


def wavelet_kl_of_fits(example_fits: np.ndarray, output_fits: np.ndarray) -> float:
    """:func:`wavelet_kl` between two images described by :func:`wavelet_ggd_fits`, nats."""
    return float(np.mean(ggd_symmetric_kl(example_fits, output_fits)))


def wavelet_kl(example: np.ndarray, output: np.ndarray, levels: int = 3, wavelet: str = "db4") -> float:
    """Gonthier et al.'s wavelet measure: symmetric KL between GGD fits of matching wavelet subbands.

    Subbands of the luminance and of R, G and B (3·levels each); each pair's KL is symmetrised
    (½(KL(e‖o) + KL(o‖e))) and the mean over all subbands is returned, in nats.
    """
    return wavelet_kl_of_fits(
        wavelet_ggd_fits(example, levels, wavelet), wavelet_ggd_fits(output, levels, wavelet)
    )


def wavelet_kl_subbands(
    example: np.ndarray, output: np.ndarray, levels: int = 3, wavelet: str = "db4"
) -> np.ndarray:
    """The terms of :func:`wavelet_kl`, shape (4, levels, 3): channel (luminance, R, G, B), level
    (coarsest first) and orientation (horizontal, vertical, diagonal); nats.

    JPEG's quantisation acts mostly on the finest diagonal subband (``[:, -1, 2]``): it leaves few,
    large coefficients there, so a JPEG example's finest diagonal band is sparser (GGD β lower) than an
    uncompressed image's.
    """
    return ggd_symmetric_kl(
        wavelet_ggd_fits(example, levels, wavelet), wavelet_ggd_fits(output, levels, wavelet)
    )


def wavelet_kl_without_finest_diagonal(example: np.ndarray, output: np.ndarray) -> float:
    """:func:`wavelet_kl` without its finest diagonal subbands, where JPEG's quantisation acts (see
    :func:`wavelet_kl_subbands`): the mean of the other terms, nats."""
    terms = wavelet_kl_subbands(example, output)
    keep = np.ones(terms.shape, bool)
    keep[:, -1, 2] = False
    return float(terms[keep].mean())


def _wavelet_channels(image: np.ndarray) -> list[np.ndarray]:
    return [luminance(image), image[..., 0], image[..., 1], image[..., 2]]


# ------------------------------------------------------------------------------- distributions


def w1_sorted(a: np.ndarray, b: np.ndarray, quantiles: int = 4096) -> float:
    """Wasserstein-1 distance between empirical distributions given as samples already sorted along
    the last axis, averaged over the leading axes (same units as the samples).

    ``a``: shape (..., n); ``b``: shape (..., m), the same leading shape (one distribution per
    leading index). n = m: mean |a − b| along the last axis (exact). Otherwise the quantile functions
    are compared at ``quantiles`` midpoints.
    """
    if a.shape[-1] != b.shape[-1]:
        q = (np.arange(quantiles) + 0.5) / quantiles
        # contiguous rows, which each row's mean sums pairwise, as it does a single sample
        a, b = (np.ascontiguousarray(np.moveaxis(np.quantile(x, q, axis=-1), 0, -1)) for x in (a, b))
    return float(np.mean(np.mean(np.abs(a - b), axis=-1)))


def w1_1d(a: np.ndarray, b: np.ndarray, quantiles: int = 4096) -> float:
    """Wasserstein-1 distance between the empirical distributions of two 1-D samples (same units).

    Equal sizes: mean |sorted(a) − sorted(b)| (exact). Otherwise the quantile functions are compared at
    ``quantiles`` midpoints (:func:`w1_sorted`).
    """
    return w1_sorted(np.sort(np.ravel(a)), np.sort(np.ravel(b)), quantiles)


def color_w1_per_channel(example: np.ndarray, output: np.ndarray) -> np.ndarray:
    """W1 between the R, G and B value distributions, shape (3,), 0–255 units."""
    return np.array([w1_1d(example[..., c], output[..., c]) for c in range(3)])


def sliced_directions(count: int = 128, seed: int = 0) -> np.ndarray:
    """``count`` fixed random unit vectors of R³ (rows), the same for every call with the same seed."""
    d = np.random.default_rng(seed).standard_normal((count, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def sorted_projections(image: np.ndarray, directions: int = 128) -> np.ndarray:
    """:func:`color_sw1`'s description of one (H, W, 3) image: its RGB pixels projected on each of
    :func:`sliced_directions`, sorted; shape (directions, H·W), float64, 0–255 units."""
    projections = image.reshape(-1, 3) @ sliced_directions(directions).T
    # C order, so that each direction's W1 sums one contiguous row; the copy is sorted in place
    rows = np.ascontiguousarray(projections.T)
    rows.sort(axis=-1)
    return rows


def color_sw1(example: np.ndarray, output: np.ndarray, directions: int = 128) -> float:
    """Sliced Wasserstein-1 of the RGB pixel distributions: mean W1 of the projections on fixed random
    unit directions, 0–255 units."""
    return w1_sorted(sorted_projections(example, directions), sorted_projections(output, directions))


def gradient_magnitude(channel: np.ndarray) -> np.ndarray:
    """|∇| by forward differences of an (H, W) array, shape (H−1, W−1); no border extension."""
    gx = channel[:-1, 1:] - channel[:-1, :-1]
    gy = channel[1:, :-1] - channel[:-1, :-1]
    return np.hypot(gx, gy)


def sorted_gradient_magnitudes(image: np.ndarray) -> np.ndarray:
    """:func:`gradient_w1`'s description of one (H, W, 3) image: the :func:`gradient_magnitude` of its
    luminance, sorted; shape ((H−1)·(W−1),), 0–255 units."""
    return np.sort(np.ravel(gradient_magnitude(luminance(image))))


def gradient_w1(example: np.ndarray, output: np.ndarray) -> float:
    """W1 between the luminance gradient-magnitude distributions, 0–255 units."""
    return w1_sorted(sorted_gradient_magnitudes(example), sorted_gradient_magnitudes(output))


# ------------------------------------------------------------------------------- speckle and spectrum


def chroma_fine_rms(image: np.ndarray, sigma: float = 1.0) -> float:
    """RMS of the finest band (channel minus its Gaussian blur of ``sigma`` px, reflected borders) of the
    Cb and Cr channels together, grey levels. 0 for a grey image; ≈ 0.87·σ for white chroma noise of σ."""
    c = chroma(image)
    fine = c - ndimage.gaussian_filter(c, sigma=(sigma, sigma, 0), mode="reflect")
    return float(np.sqrt(np.mean(fine * fine)))


def speckle_of_rms(example_rms: float, output_rms: float) -> float:
    """:func:`speckle` between two images described by :func:`chroma_fine_rms`, grey levels."""
    return abs(output_rms - example_rms)


def speckle(example: np.ndarray, output: np.ndarray) -> float:
    """|chroma fine-band RMS of the output − the example's|, grey levels."""
    return speckle_of_rms(chroma_fine_rms(example), chroma_fine_rms(output))


def radial_power_spectrum(channel: np.ndarray) -> np.ndarray:
    """Radially averaged power spectrum of an (H, W) array (mean removed, treated as periodic).

    Bin k holds the mean |FFT|²/(H·W) over frequencies of radius in [k, k+1) cycles per min(H, W)
    pixels, for k = 1 … min(H, W)/2 − 1 (DC and the corners beyond Nyquist left out).
    """
    h, w = channel.shape
    power = np.abs(np.fft.fft2(channel - channel.mean())) ** 2 / (h * w)
    n = min(h, w)
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    radius = np.floor(np.hypot(fy, fx) * n).astype(int)
    nbins = n // 2
    sums = np.bincount(radius.ravel(), weights=power.ravel(), minlength=nbins + 1)[:nbins]
    counts = np.bincount(radius.ravel(), minlength=nbins + 1)[:nbins]
    return sums[1:] / counts[1:]


def log_radial_spectrum(image: np.ndarray) -> np.ndarray:
    """:func:`spectrum_distance`'s description of one (H, W, 3) image: log10(P + 1e-12) of the
    :func:`radial_power_spectrum` P of its luminance, shape (min(H, W)/2 − 1,)."""
    return np.log10(radial_power_spectrum(luminance(image)) + 1e-12)


def spectrum_distance_of_logs(example_log: np.ndarray, output_log: np.ndarray) -> float:
    """:func:`spectrum_distance` between two images described by :func:`log_radial_spectrum`."""
    return float(np.mean(np.abs(example_log - output_log)))


def spectrum_distance(example: np.ndarray, output: np.ndarray) -> float:
    """Mean |log10 P_example(f) − log10 P_output(f)| over radial frequency bins of the luminance."""
    return spectrum_distance_of_logs(log_radial_spectrum(example), log_radial_spectrum(output))


# ------------------------------------------------------------------------------- copying


def luminance_details(image: np.ndarray, sigma: float | None) -> np.ndarray:
    """The luminance (H, W), or with ``sigma`` its details: the luminance minus its Gaussian blur
    of ``sigma`` pixels (what :func:`copy_correlation` and :func:`seed_correlation` compare)."""
    y = luminance(image)
    return y if sigma is None else y - ndimage.gaussian_filter(y, sigma, mode="reflect")


def copy_correlation(
    example: np.ndarray, output: np.ndarray, *, detail_sigma: float | None = None, min_overlap: float = 0.5
) -> float:
    """How nearly the output holds a shifted copy of the example: the largest normalised
    cross-correlation of their luminances over every shift at which they overlap by at least
    ``min_overlap`` of the smaller image's area (each overlap normalised by its own means and
    spreads). 1: a shifted copy; independent samples of a random texture give about 0.1–0.3, and
    periodic textures (tiles, grids) give high values to any faithful output.

    ``detail_sigma``: correlate the details only, each luminance minus its Gaussian blur of that
    many pixels. The whole luminance is dominated by the large layout (a red half and a turquoise
    half correlate with any other such image); the details are what a verbatim copy repeats.

    Not a distance: it is reported beside the measures, because each of them scores a copy as
    perfect. Sizes may differ (a larger output is searched for the example). Masked FFT
    correlation: O(N log N).
    """
    a, b = luminance_details(example, detail_sigma), luminance_details(output, detail_sigma)
    shape = (a.shape[0] + b.shape[0], a.shape[1] + b.shape[1])
    # each image's, its square's and its support's transform once (zero outside each image)
    fa, fa2, fma = (np.fft.rfft2(x, shape) for x in (a, a * a, np.ones_like(a)))
    fb, fb2, fmb = (np.conj(np.fft.rfft2(y, shape)) for y in (b, b * b, np.ones_like(b)))

    def corr(fx: np.ndarray, fy_conj: np.ndarray) -> np.ndarray:
        # sum over p of x(p + s) · y(p), for every shift s
        return np.fft.irfft2(fx * fy_conj, shape)

    n = np.rint(corr(fma, fmb))
    sa, sb = corr(fa, fmb), corr(fma, fb)
    cov = corr(fa, fb) - sa * sb / np.maximum(n, 1)
    va = corr(fa2, fmb) - sa * sa / np.maximum(n, 1)
    vb = corr(fma, fb2) - sb * sb / np.maximum(n, 1)
    ok = (n >= min_overlap * min(a.size, b.size)) & (va > 1e-9 * n) & (vb > 1e-9 * n)
    return float(np.max(cov[ok] / np.sqrt(va[ok] * vb[ok]))) if ok.any() else float("nan")


#: Blur (pixels) of the gradient magnitudes that :func:`edge_correlation` compares: a stroke's
#: own detail averages out, where the edges run stays.
EDGE_SIGMA = 2.0


def edge_correlation(content: np.ndarray, output: np.ndarray, *, sigma: float = EDGE_SIGMA) -> float:
    """How much of the content's layout a stylised output keeps: the Pearson correlation, over
    the pixels, of the two luminances' :func:`gradient_magnitude`, each blurred by ``sigma`` px.

    Both (H, W, 3), the same shape. 1 where the edges lie in the same places with proportional
    strengths, whatever the palette (any a·Y + b with a ≠ 0 gives 1); about 0 for unrelated
    images. Style transfer trades it against the style's texture: strokes that the content does
    not have lower it, as does an edge lost. Not a distance; reported beside them.
    """
    if content.shape != output.shape:
        raise ValueError(f"shapes differ: {content.shape} and {output.shape}")
    a, b = (
        ndimage.gaussian_filter(gradient_magnitude(luminance(x)), sigma, mode="reflect")
        for x in (content, output)
    )
    a, b = a - a.mean(), b - b.mean()
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


# ------------------------------------------------------------------------------- stripes on the axes

#: Frequency bins next to 0 that :func:`axis_stripes` leaves out on each axis: the layout's
#: own low frequencies (a texture's large shapes), not stripes.
AXIS_SKIP = 8


#: A frequency on an axis is a stripe where its power is more than this many times that beside
#: it: the ratio of two periodogram values of a texture without lines rarely passes 10.
STRIPE_RATIO = 10.0


def periodic_component(channel: np.ndarray) -> np.ndarray:
    """Moisan's periodic component of one channel (H, W), float64: the channel minus its smooth
    component ("Periodic plus smooth image decomposition", 2011).

    The plain FFT treats an image as periodic, and the jumps between its opposite borders then
    fill the two frequency axes of its spectrum (a bright cross). The smooth component ``s`` is
    the periodic solution of ``Δ s = v`` (``Δ`` the periodic 5-point Laplacian), where ``v`` holds
    those jumps on the border pixels; ``p = u − s`` is the periodic image whose periodic
    Laplacian is ``u``'s Laplacian taken inside the image only, and its spectrum has no cross.
    """
    u = np.asarray(channel, np.float64)
    h, w = u.shape
    v = np.zeros_like(u)
    v[0] += u[-1] - u[0]
    v[-1] += u[0] - u[-1]
    v[:, 0] += u[:, -1] - u[:, 0]
    v[:, -1] += u[:, 0] - u[:, -1]
    laplacian = (
        2 * np.cos(2 * np.pi * np.arange(h) / h)[:, None]
        + 2 * np.cos(2 * np.pi * np.arange(w) / w)[None, :]
        - 4
    )
    laplacian[0, 0] = 1.0
    s_hat = np.fft.fft2(v) / laplacian
    s_hat[0, 0] = 0.0
    return u - np.real(np.fft.ifft2(s_hat))


def axis_stripes(image: np.ndarray, *, skip: int = AXIS_SKIP) -> float:
    """The strongest straight stripes, horizontal or vertical, of an image's luminance: their
    amplitude in grey levels, averaged over the whole image.

    Row 0 of the luminance's 2-D spectrum is the 1-D spectrum of its column means, column 0
    that of its row means. On each, past ``skip`` bins from 0, a stripe is a frequency whose
    power is more than :data:`STRIPE_RATIO` times the median of the three rows (or columns)
    beside it at that frequency (smoothed over 5 bins), and its excess over that median is what
    a pattern of straight lines adds to the texture there. The result is the largest excess, as
    the amplitude of a sinusoid over the whole image that has that power; 0 without any
    stripe. The luminance's periodic component is taken first (:func:`periodic_component`), so
    that the jumps between its opposite borders put nothing on the axes.

    A texture without straight lines scores 0 or a few hundredths; fine ripples 5 grey levels
    deep over a fifth of the image's height, about 1. Textures made of such lines (planks,
    grids, weaves) score several grey levels: compare with the example's own value. Not a
    distance: reported beside the measures for each image, as copying is.
    """
    y = periodic_component(luminance(image))
    power = np.abs(np.fft.fft2(y - y.mean())) ** 2
    best = 0.0
    for along_rows in (True, False):
        p = power if along_rows else power.T
        axis, beside = p[0], np.convolve(np.median(p[1:4], axis=0), np.ones(5) / 5, "same")
        n = axis.size
        if n > 2 * skip:
            k = np.arange(skip, n - skip + 1)
            stands_out = axis[k] > STRIPE_RATIO * beside[k]
            excess = np.where(stands_out, axis[k] - beside[k], 0.0)
            # a cosine of amplitude a over N pixels has |F| = a N / 2, or a N at the Nyquist frequency
            amplitude = np.where(2 * k == n, 1.0, 2.0) * np.sqrt(excess) / y.size
            best = max(best, float(np.max(amplitude)))
    return best


# ------------------------------------------------------------------------------- the outermost pixel


def border_roughness(image: np.ndarray) -> dict[str, float]:
    """How rough an image's outermost pixel ring is against its interior, in the luminance.

    ``across``: the mean |step| from the outermost row (or column) to the next, over the median of
    the same between interior rows. ``along``: the mean |step| between neighbours along the
    outermost row, over the median of the same along interior rows. Each is the mean of the four
    sides; both are about 1 where the edge is like the inside. A frame of dotted pixels, light
    and dark in turn along the edge, scores ``along`` well above 1 (and ``across`` with it);
    an edge smoothed by the objective (nothing there but the network's terms) scores below 1.
    Not a distance: reported beside the measures for each image, as stripes are.
    """
    y = luminance(image)
    across, along = [], []
    for side in (y, y[::-1], y.T, y.T[::-1]):
        steps = np.abs(np.diff(side, axis=0)).mean(axis=1)
        across.append(steps[0] / max(float(np.median(steps[2:-2])), 1e-9))
        steps = np.abs(np.diff(side, axis=1)).mean(axis=1)
        along.append(steps[0] / max(float(np.median(steps[2:-2])), 1e-9))
    return {"across": float(np.mean(across)), "along": float(np.mean(along))}


# ------------------------------------------------------------------------------- all together


def random_crops(image: np.ndarray, height: int, width: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` fixed (seeded) crops of height×width; the image itself when it has that size."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return [image]
    if h < height or w < width:
        raise ValueError(f"image {w}×{h} is smaller than the {width}×{height} crop")
    rng = np.random.default_rng(seed)
    return [
        image[y0 : y0 + height, x0 : x0 + width]
        for y0, x0 in zip(
            rng.integers(0, h - height + 1, count), rng.integers(0, w - width + 1, count), strict=True
        )
    ]


class Measure(NamedTuple):
    """One measure of ``MEASURES`` in two steps.

    ``describe`` takes one (H, W, 3) image to its statistics (GGD fits, sorted samples, …);
    ``compare`` takes the example's and the output's descriptions to the distance. The distance
    between two images is ``compare(describe(example), describe(output))``, which is how each
    measure's own function (:func:`wavelet_kl`, …) computes it; scoring many pairs, each image is
    described once.
    """

    describe: Callable[[np.ndarray], Any]
    compare: Callable[[Any, Any], float]


#: The measures of ``MEASURES``, in that order, split in two (:class:`Measure`).
MEASURE_STEPS = {
    "wavelet_kl": Measure(wavelet_ggd_fits, wavelet_kl_of_fits),
    "color_sw1": Measure(sorted_projections, w1_sorted),
    "speckle": Measure(chroma_fine_rms, speckle_of_rms),
    "spectrum": Measure(log_radial_spectrum, spectrum_distance_of_logs),
    "gradient": Measure(sorted_gradient_magnitudes, w1_sorted),
}


def describe_all(image: np.ndarray) -> dict:
    """Every measure's description of one (H, W, 3) image (:class:`Measure`), by measure name."""
    return {m: measure.describe(image) for m, measure in MEASURE_STEPS.items()}


def compare_all(example_description: dict, output_description: dict) -> dict:
    """Every measure of ``MEASURES`` between two images described by :func:`describe_all`."""
    return {
        m: measure.compare(example_description[m], output_description[m])
        for m, measure in MEASURE_STEPS.items()
    }


def score_all(example: np.ndarray, output: np.ndarray, crops: int = 4) -> dict:
    """Every measure of ``MEASURES`` for one output. When the sizes differ, the larger image is scored
    as ``crops`` fixed crops of the smaller one's size and the scores are averaged."""
    h = min(example.shape[0], output.shape[0])
    w = min(example.shape[1], output.shape[1])
    ex, out = random_crops(example, h, w, crops), random_crops(output, h, w, crops)
    described = [describe_all(e) for e in ex]
    if len(ex) == len(out):  # both cropped (they differ in aspect) or neither: crop i pairs with crop i
        scores = [compare_all(d, describe_all(o)) for d, o in zip(described, out, strict=True)]
    else:  # one side is the image itself, paired with every crop of the other
        scores = [compare_all(d, do) for do in map(describe_all, out) for d in described]
    return mean_scores(scores)


def grid_windows(
    image: np.ndarray, height: int, width: int, count: int | None = None, seed: int = 0, offsets: int = 1
) -> list:
    """The image's disjoint height×width windows on a grid from its top-left corner (row-major).

    With ``offsets`` > 1 the grid is laid that many times, shifted down and right by k/offsets of a
    window plus k pixels (k = 0 … offsets − 1), and the windows of all the grids are pooled. The
    decimated wavelet transform is not shift-invariant: a lattice's coarse subbands in a window depend
    on where the lattice falls on the wavelets' dyadic grid, and a checkerboard's window wavelet KL
    moved 7× between crops 11 px apart. The extra k pixels put the grids at k different phases of
    that dyadic grid (all 8 of a 3-level transform with 8 grids), and the pooled median hardly moves.
    At most ``count`` windows, a fixed (seeded) choice, when there are more.
    """
    windows = []
    for k in range(offsets):
        r0, c0 = k * height // offsets + k, k * width // offsets + k
        rows, cols = (image.shape[0] - r0) // height, (image.shape[1] - c0) // width
        windows += [
            image[r0 + i * height : r0 + (i + 1) * height, c0 + j * width : c0 + (j + 1) * width]
            for i in range(rows)
            for j in range(cols)
        ]
    if count is not None and len(windows) > count:
        keep = np.sort(np.random.default_rng(seed).choice(len(windows), count, replace=False))
        windows = [windows[k] for k in keep]
    return windows


#: Grids pooled by :func:`window_scores`, and the most windows it scores.
WINDOW_OFFSETS, WINDOW_COUNT = 8, 64


def window_scores(
    example: np.ndarray, output: np.ndarray, count: int = WINDOW_COUNT, offsets: int = WINDOW_OFFSETS
) -> dict:
    """Every measure of ``MEASURES`` between windows of the output and the example's quadrants.

    The windows are half the example's height and width, from ``offsets`` grids shifted along the
    diagonal (:func:`grid_windows`; at most ``count`` of them). Each window is scored against each of
    the example's four quadrants and takes the mean; the median over the windows is returned. Unlike
    :func:`score_all`, this scores an output of any size the same way: a 256² output is not favoured
    for having been fitted to the whole example, which no crop of a larger texture can be. Compare
    with :func:`window_floor`, the same score between the example's own quadrants.

    The median, not the mean, because a window's coarsest wavelet subbands hold few coefficients
    (16² in a 128² window): where a periodic texture makes one nearly sinusoidal, its GGD fit runs to
    the bound on β, and that one window's KL reaches hundreds of nats.
    """
    h, w = example.shape[0] // 2, example.shape[1] // 2
    quadrants = [describe_all(q) for q in grid_windows(example, h, w)]
    windows = grid_windows(output, h, w, count, offsets=offsets)
    # each window described once, and dropped once scored against the quadrants
    return _median_of_means([[compare_all(q, d) for q in quadrants] for d in map(describe_all, windows)])


def window_floor(example: np.ndarray) -> dict:
    """:func:`window_scores` of the example's quadrants: each against the other three.

    What pieces of the texture itself score against each other at that size; an output that matched
    the example everywhere would score about this much (an exact copy of the example scores ¾ of it,
    since each of its windows is also one of the four quadrants).
    """
    h, w = example.shape[0] // 2, example.shape[1] // 2
    quadrants = [describe_all(q) for q in grid_windows(example, h, w)]
    return _median_of_means([[compare_all(q, o) for q in quadrants if q is not o] for o in quadrants])


def mean_scores(scores: list[dict]) -> dict:
    """For every measure: the mean of its values in ``scores`` (dicts by measure name), e.g. over
    crops, windows or seeds."""
    return {m: float(np.mean([s[m] for s in scores])) for m in MEASURES}


def _median_of_means(groups: list[list[dict]]) -> dict:
    """For every measure: the median over ``groups`` of the mean of each group's scores (dicts by
    measure name)."""
    means = [mean_scores(scores) for scores in groups]
    return {m: float(np.median([g[m] for g in means])) for m in MEASURES}


def diversity(outputs: list[np.ndarray], example: np.ndarray) -> float:
    """Mean RMS luminance difference between pairs of outputs over √2·σ(example luminance).

    Two independent samples of a stationary texture give ≈ 1; identical outputs give 0.
    """
    ref = np.sqrt(2) * luminance(example).std()
    diffs = [
        np.sqrt(np.mean((luminance(a) - luminance(b)) ** 2)) for a, b in itertools.combinations(outputs, 2)
    ]
    return float(np.mean(diffs) / ref)


def seed_correlation(outputs: list[np.ndarray], *, detail_sigma: float | None = None) -> float:
    """Whether seeds give the same picture in the same place: the mean, over pairs of outputs, of
    the Pearson correlation of their luminances at zero shift.

    1: every seed draws the same image; independent samples of a texture give about 0 (a lattice
    at a seed's own phase, too). Unlike :func:`copy_correlation` it searches no shift: a layout
    that every seed puts at the same place is what a user asking for variations sees.
    ``detail_sigma``: correlate the details only, as :func:`copy_correlation` does.
    """
    flat = [luminance_details(image, detail_sigma).ravel() for image in outputs]
    return float(np.mean([np.corrcoef(a, b)[0, 1] for a, b in itertools.combinations(flat, 2)]))
