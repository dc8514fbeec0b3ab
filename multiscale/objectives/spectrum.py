"""The spectrum constraint: distance to the images that have the example's Fourier spectrum.

Gram and sliced statistics of VGG features are local: nothing in them ties a
brick row to the next one 200 pixels away, so quasi-periodic textures (bricks,
tiles, weaves) drift out of line. Their regularity lives in a few strong
peaks of the Fourier spectrum. Liu, Gousseau & Xia ("Texture synthesis
through convolutional neural networks and spectrum constraints", ICPR 2016)
add the squared distance from the image to the set of images whose Fourier
transform is the example's up to a phase shift per frequency:

    L_spec(x) = mean( (x − P(x))² ),   P(x)^(ξ) = ĥ(ξ) · φ(ξ),   φ = (x̂ · ĥ*) / |x̂ · ĥ*|

with ``x̂ · ĥ* = Σ_c x̂_c(ξ) conj(ĥ_c(ξ))`` summed over the colour channels:
one phase per frequency for all three channels keeps the example's colour
relations, so the projection has the example's colours and power spectrum.

That shared phase is also the constraint's limit. Each frequency of P(x) has
the one colour ratio ĥ(ξ) gives it, so an example with features of several
colours at independent places (dots of three colours) cannot be held:
the projection blends their colours, and the output grows halos of the mixed
colour around them. The ``luminance`` form constrains the luma
``Y = x · w`` alone (BT.601 weights ``w``, summing to 1) and leaves colour to
the network's statistics:

    L_Y(x) = mean( (Y − P(Y))² ),   ∂L_Y/∂x_c = w_c · 2 (Y − P(Y)) / (H·W)

For a grey image and a grey example both forms give the same value and
gradient, so one weight serves both.
The gradient of a squared distance to a set is ``2 (x − P(x)) / N`` wherever
the projection is unique, exactly (no differentiation through P).

The example's spectrum ĥ at the output's size is that of the spot noise of
:mod:`multiscale.jobs.starts`: the example minus its mean, zero-padded (or
cropped, from its centre) to the output's size and scaled by √(output area /
example area), plus the mean at frequency 0 — the power spectrum the
``spectrum`` start has on average. With several sources the power spectra
are averaged (one phase-aligned spectrum per source would not combine).

Where the example is smaller than the output, its edges are tapered before
the padding (:func:`taper_spot`). A box-cut spot's spectrum carries the
box's edges: its autocorrelation has a ridge at a lag of the example's size,
and the constraint then holds straight lines one example-size in from the
output's borders (seen as seams at 256 and 768 px in a 1024² texture from a
256² example). The taper's edges are smooth, so its spectrum holds no lines.

Numpy only; it works on the whole image at any size (an FFT of the output,
not the network), so tiled runs use it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import fft

from ..config import SPECTRUM_CHANNELS as CHANNELS
from ..measure.color import RGB_TO_YIQ

#: BT.601 luma weights (they sum to 1).
LUMA = RGB_TO_YIQ[0]

#: Share of an example's side, at each end, that :func:`taper_spot` rolls off
#: (a Tukey window) along an axis where the example is smaller than the output.
TAPER = 0.25


def taper_spot(centred: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """An example minus its mean, (h, w, 3), tapered for zero-padding to height × width; same dtype.

    Along an axis where the example is shorter than the output, a Tukey
    window whose cosine ends each take :data:`TAPER` of the side; elsewhere
    nothing (nothing is padded there, and the FFT's grid wraps the example),
    so an example as large as the output comes back unchanged. The result is
    scaled to the input's energy (sum of squares), so the spot's power, and
    the start's variance, stay the example's.
    """
    h, w = centred.shape[:2]

    def window(n: int, padded: bool) -> np.ndarray:
        taper = np.ones(n)
        m = int(TAPER * n) if padded else 0
        if m > 0:
            ramp = 0.5 * (1.0 - np.cos(np.pi * (np.arange(m) + 0.5) / m))
            taper[:m], taper[n - m :] = ramp, ramp[::-1]
        return taper

    if h >= height and w >= width:
        return centred
    tapered = centred * (window(h, h < height)[:, None, None] * window(w, w < width)[None, :, None])
    energy = float(np.sum(np.square(centred, dtype=np.float64)))
    kept = float(np.sum(np.square(tapered, dtype=np.float64)))
    return (tapered * np.sqrt(energy / kept) if kept > 0 else tapered).astype(centred.dtype, copy=False)


def example_spectrum(
    exemplars: Sequence[np.ndarray], *, height: int, width: int, channels: str = "rgb"
) -> np.ndarray:
    """ĥ: the exemplars' spectrum at the output's size (see the module docstring).

    Parameters
    ----------
    exemplars : sequence of np.ndarray float32 (h, w, 3) in [0, 1]
    height, width : int
    channels : {"rgb", "luminance"}
        The three colour channels, or the luma alone (see :data:`CHANNELS`).

    Returns
    -------
    np.ndarray complex128 (height, width // 2 + 1, C): a real FFT per channel,
    C = 3 for ``rgb`` and 1 for ``luminance``. With one exemplar it is its
    own (phase included); with several, the first's phases with the mean
    power spectrum of all.
    """
    if not exemplars:
        raise ValueError("the spectrum constraint needs at least one example image")
    if channels not in CHANNELS:
        raise ValueError(f"channels must be one of {CHANNELS}, got {channels!r}")
    spectra = []
    for ex in exemplars:
        ex = np.asarray(ex, np.float64)
        if channels == "luminance":
            ex = (ex @ LUMA)[..., None]
        h, w, c = ex.shape
        r0, c0 = max((h - height) // 2, 0), max((w - width) // 2, 0)
        crop = ex[r0 : r0 + min(h, height), c0 : c0 + min(w, width)]
        mean = crop.reshape(-1, c).mean(axis=0)
        padded = np.zeros((height, width, c))
        padded[: crop.shape[0], : crop.shape[1]] = taper_spot(crop - mean, height=height, width=width)
        spectrum = fft.rfft2(padded, axes=(0, 1)) * np.sqrt(height * width / (crop.shape[0] * crop.shape[1]))
        spectrum[0, 0] = mean * height * width
        spectra.append(spectrum)
    if len(spectra) == 1:
        return spectra[0]
    power = np.mean([np.abs(s) ** 2 for s in spectra], axis=0)
    phase = np.exp(1j * np.angle(spectra[0]))
    return np.sqrt(power) * phase


def project(image: np.ndarray, spectrum: np.ndarray) -> np.ndarray:
    """P(x): the image with ``spectrum``'s moduli and colour relations, nearest to ``image``.

    Parameters
    ----------
    image : np.ndarray (H, W, C), float
    spectrum : np.ndarray complex (H, W // 2 + 1, C), from :func:`example_spectrum`

    Returns
    -------
    np.ndarray float64 (H, W, C)
    """
    h, w = image.shape[:2]
    x_hat = fft.rfft2(np.asarray(image, np.float64), axes=(0, 1))
    cross = np.sum(x_hat * np.conj(spectrum), axis=-1, keepdims=True)
    magnitude = np.abs(cross)
    phase = np.where(magnitude > 0, cross / np.where(magnitude > 0, magnitude, 1.0), 1.0)
    return fft.irfft2(spectrum * phase, s=(h, w), axes=(0, 1))


def spectrum_loss(image: np.ndarray, spectrum: np.ndarray) -> tuple[float, np.ndarray]:
    """The constraint's value and its gradient (float64, the shape of ``image``).

    Parameters
    ----------
    image : np.ndarray (H, W, 3), float
    spectrum : np.ndarray complex (H, W // 2 + 1, C), from :func:`example_spectrum`
        With C = 3, ``mean((x − P(x))²)`` and ``2 (x − P(x)) / N``; with C = 1
        (``luminance``), the same of the luma, its gradient spread over the
        channels by the luma weights.
    """
    x = np.asarray(image, np.float64)
    if spectrum.shape[-1] == 1:
        y = (x @ LUMA)[..., None]
        diff = y - project(y, spectrum)
        return float(np.mean(diff * diff)), (2.0 / diff.size) * diff * LUMA
    diff = x - project(x, spectrum)
    return float(np.mean(diff * diff)), (2.0 / diff.size) * diff
