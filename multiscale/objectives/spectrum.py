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


def example_spectrum(exemplars: Sequence[np.ndarray], *, height: int, width: int) -> np.ndarray:
    """ĥ: the exemplars' spectrum at the output's size (see the module docstring).

    Parameters
    ----------
    exemplars : sequence of np.ndarray float32 (h, w, 3) in [0, 1]
    height, width : int

    Returns
    -------
    np.ndarray complex128 (height, width // 2 + 1, 3): a real FFT per channel.
    With one exemplar it is its own (phase included); with several, the
    first's phases with the mean power spectrum of all.
    """
    if not exemplars:
        raise ValueError("the spectrum constraint needs at least one example image")
    spectra = []
    for ex in exemplars:
        ex = np.asarray(ex, np.float64)
        h, w = ex.shape[:2]
        r0, c0 = max((h - height) // 2, 0), max((w - width) // 2, 0)
        crop = ex[r0 : r0 + min(h, height), c0 : c0 + min(w, width)]
        mean = crop.reshape(-1, 3).mean(axis=0)
        padded = np.zeros((height, width, 3))
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
    image : np.ndarray (H, W, 3), float
    spectrum : np.ndarray complex (H, W // 2 + 1, 3), from :func:`example_spectrum`

    Returns
    -------
    np.ndarray float64 (H, W, 3)
    """
    h, w = image.shape[:2]
    x_hat = fft.rfft2(np.asarray(image, np.float64), axes=(0, 1))
    cross = np.sum(x_hat * np.conj(spectrum), axis=-1, keepdims=True)
    magnitude = np.abs(cross)
    phase = np.where(magnitude > 0, cross / np.where(magnitude > 0, magnitude, 1.0), 1.0)
    return fft.irfft2(spectrum * phase, s=(h, w), axes=(0, 1))


def spectrum_loss(image: np.ndarray, spectrum: np.ndarray) -> tuple[float, np.ndarray]:
    """``mean((x − P(x))²)`` and its gradient ``2 (x − P(x)) / N`` (same shape as ``image``)."""
    diff = np.asarray(image, np.float64) - project(image, spectrum)
    return float(np.mean(diff * diff)), (2.0 / diff.size) * diff
