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

Zero-padding spreads each peak of the example's spectrum over a lobe as wide
as one of the example's own frequency bins: the target's autocorrelation
ends at a lag of the example's size, and so does the lattice that the
constraint holds. A 1024² checkerboard from a 256² example came out as
patches of lattice that did not line up. With ``peaks="gather"`` (the
default) :func:`gather_peaks` puts back what padding spread: the power of
each isolated peak above the local median level goes to the one frequency
at the peak's centre, and the lattice then holds across the whole output.
A texture without peaks (rust, gravel, grass) keeps its padded spectrum
exactly, and so does any output no larger than its example.

Wavelengths longer than the example are another thing padding makes up.
The padded spectrum's lobe around frequency 0 gives them the power of the
example's own lowest frequencies, its shading: a 1024² honeycomb from a 256²
example, whose right side is paler, took pale veils and pink patches larger
than the example, and a rust's red region grew into long bands. The example
says nothing about variation wider than itself, and with ``long_waves="cut"``
(the default) :func:`longer_than_example` takes those frequencies out of the target
(frequency 0, the mean colour, stays); ``"keep"`` leaves them. An output no
larger than its example has no such frequency, and is alike either way.

The border. A stage after the first starts from the previous stage's result
upsampled, whose finest octave is empty inside the image. The FFT then finds
most of what that octave holds at the image's border (the jump between
opposite edges, and the kink there), and the projection, which gives every
frequency the example's modulus with the image's own phase, grows the
example's whole finest band where the image's is: along the outermost pixels,
as a dotted line. With ``spectrum_taper`` the first part of a run's last stage
sees the image through :func:`border_taper` (its deviation from the target's
mean colour times a Tukey window, :data:`BORDER_TAPER` of each side), and the
target is the example seen alike: the constraint grows that octave inside the
image, along the edges there, and the rest of the stage, under the plain
constraint, finds it grown (benchmarks/RESULTS.md, "The outermost pixel's
dotted line comes from the last stage's start").

Numpy only; it works on the whole image at any size (an FFT of the output,
not the network), so tiled runs use it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import fft, ndimage

#: Share of an example's side, at each end, that :func:`taper_spot` rolls off
#: (a Tukey window) along an axis where the example is smaller than the output.
TAPER = 0.25

#: Share of each side that :func:`border_taper` rolls off: the window through which the
#: constraint sees the first part of a run's last stage (``spectrum_taper``; see the module
#: docstring, "The border").
BORDER_TAPER = 1 / 32

#: A frequency belongs to a peak where the power there is more than this many
#: times the local median power. The padded periodogram of a texture without
#: peaks is about exponentially distributed around its local mean (the median
#: is ln 2 of it): it exceeds 30 medians with a probability of e^-21 ≈ 1e-9
#: per frequency, so noise is left alone at every output size up to 8192².
PEAK_RATIO = 30.0


def longer_than_example(
    *, height: int, width: int, example_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The frequencies of an H×W real FFT (H, W // 2 + 1) whose wavelengths are longer than an (h, w) example's.

    Those where ``(fy·h)² + (fx·w)² < 1`` (``fy``, ``fx`` in cycles per
    pixel), so that along an axis the wavelength is over the example's side
    along it; frequency 0 (the mean) is not one. They lie within ``H / h``
    rows and ``W / w`` columns of frequency 0, so only that corner is
    searched: an 8192² output's costs what a 256²'s does. None for an output
    no larger than the example. Setting a spectrum to 0 there removes the
    variation wider than the example (see the module docstring).

    Returns
    -------
    (rows, cols) : tuple of np.ndarray int, for indexing the real FFT's half.
    """
    h, w = example_shape
    reach_y, reach_x = -(-height // h), -(-width // w)  # ceil: |ky| < H / h, kx < W / w
    ky = np.arange(1 - reach_y, reach_y)[:, None]
    kx = np.arange(0, min(reach_x, width // 2 + 1))[None, :]
    longer = (ky * h / height) ** 2 + (kx * w / width) ** 2 < 1.0 - 1e-9
    longer &= (ky != 0) | (kx != 0)
    rows, cols = np.nonzero(longer)
    return ky[rows, 0] % height, kx[0, cols]


def tukey(n: int, share: float) -> np.ndarray:
    """A Tukey window of ``n`` points, float64 (n,): 1, with cosine ends of ``int(share · n)``
    points each rising from near 0 (half a point in) to near 1; all ones for ``share`` 0."""
    window = np.ones(n)
    m = int(share * n)
    if m > 0:
        ramp = 0.5 * (1.0 - np.cos(np.pi * (np.arange(m) + 0.5) / m))
        window[:m], window[n - m :] = ramp, ramp[::-1]
    return window


def border_taper(height: int, width: int, *, share: float = BORDER_TAPER) -> np.ndarray:
    """The window the constraint sees a stage's start through (:func:`spectrum_loss`'s ``taper``).

    A Tukey window along each axis whose cosine ends take ``share`` of the side
    (:data:`BORDER_TAPER`: 8 px at 256), at least one pixel; float64 (height, width, 1) in (0, 1].
    """
    rows = tukey(height, max(share, 1.0 / height))
    cols = tukey(width, max(share, 1.0 / width))
    return (rows[:, None] * cols[None, :])[..., None]


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
    if h >= height and w >= width:
        return centred
    rows, cols = tukey(h, TAPER if h < height else 0.0), tukey(w, TAPER if w < width else 0.0)
    tapered = centred * (rows[:, None, None] * cols[None, :, None])
    energy = float(np.sum(np.square(centred, dtype=np.float64)))
    kept = float(np.sum(np.square(tapered, dtype=np.float64)))
    return (tapered * np.sqrt(energy / kept) if kept > 0 else tapered).astype(centred.dtype, copy=False)


def example_spectrum(
    exemplars: Sequence[np.ndarray],
    *,
    height: int,
    width: int,
    peaks: str = "gather",
    long_waves: str = "cut",
    taper: np.ndarray | None = None,
) -> np.ndarray:
    """ĥ: the exemplars' spectrum at the output's size (see the module docstring).

    Parameters
    ----------
    exemplars : sequence of np.ndarray float32 (h, w, 3) in [0, 1]
    height, width : int
    peaks : {"gather", "spread"}
        For an exemplar smaller than the output: :func:`gather_peaks`, or
        the zero-padded spectrum as it is
        (:data:`~multiscale.config.SPECTRUM_PEAKS`).
    long_waves : {"cut", "keep"}
        For an exemplar smaller than the output: no power at wavelengths
        longer than the exemplar (:func:`longer_than_example`), or the padded
        spectrum's there (:data:`~multiscale.config.SPECTRUM_LONG_WAVES`).
    taper : np.ndarray (height, width, 1) or None
        The target for an output seen through this window (:func:`border_taper`,
        :func:`spectrum_loss`): an exemplar as large as the output is seen through
        it too (its deviation from its mean colour, tapered, plus the mean); the
        spot of a smaller one keeps its spectrum, scaled by the window's RMS.

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
        whole = crop.shape[:2] == (height, width)
        padded = np.zeros((height, width, 3))
        if taper is not None and whole:
            padded[:] = (crop - mean) * taper
        else:
            padded[: crop.shape[0], : crop.shape[1]] = taper_spot(crop - mean, height=height, width=width)
        spectrum = fft.rfft2(padded, axes=(0, 1)) * np.sqrt(height * width / (crop.shape[0] * crop.shape[1]))
        if taper is not None and whole:
            spectrum[0, 0] += mean * height * width  # the tapered deviation need not sum to 0
        else:
            if taper is not None:
                spectrum *= np.sqrt(np.mean(np.square(taper)))
            spectrum[0, 0] = mean * height * width
        if peaks == "gather" and (crop.shape[0] < height or crop.shape[1] < width):
            # on the whole plane: a peak may straddle the real FFT's half
            whole = gather_peaks(_whole_plane(spectrum, width=width), example_shape=crop.shape[:2])
            spectrum = whole[:, : width // 2 + 1].copy()
        if long_waves == "cut":
            spectrum[longer_than_example(height=height, width=width, example_shape=crop.shape[:2])] = 0.0
        spectra.append(spectrum)
    if len(spectra) == 1:
        return spectra[0]
    power = np.mean([np.abs(s) ** 2 for s in spectra], axis=0)
    phase = np.exp(1j * np.angle(spectra[0]))
    return np.sqrt(power) * phase


def gather_peaks(spectrum: np.ndarray, *, example_shape: tuple[int, int]) -> np.ndarray:
    """A zero-padded example's spectrum with each isolated peak gathered into one frequency.

    Parameters
    ----------
    spectrum : np.ndarray complex (H, W, 3)
        The full 2-D FFT (per channel) of an example of ``example_shape``
        (h, w), zero-padded to H × W, as :func:`example_spectrum` makes it:
        a real image's, so ``spectrum[-ξ] == conj(spectrum[ξ])``.
    example_shape : (int, int)
        (h, w), each at most (H, W).

    Returns
    -------
    np.ndarray complex128 (H, W, 3), again a real image's spectrum, with the
    same total power ``Σ |ĥ|²``.

    Notes
    -----
    With ``P = Σ_c |ĥ_c|²`` and ``m`` its local median (over about 5 × 5 of
    the example's own frequency bins, each ``H / h`` × ``W / w`` of the
    output's), a peak is a connected set of frequencies where ``P >``
    :data:`PEAK_RATIO` ``· m``, widened by one example bin so that the
    side lobes of the padding window join their peak; frequencies below two
    example bins from 0 (the example's shading) are never part of one. In a
    peak, every frequency's power is brought down to ``m`` (its phase and
    colour kept), and the excess ``Σ (P − m)⁺`` goes to the frequency
    nearest the peak's excess-weighted centre, with the colour and phase
    of the peak's strongest frequency. Peaks at ``ξ`` and ``−ξ`` are
    mirror images, so the result stays Hermitian.
    """
    height, width = spectrum.shape[:2]
    steps = (max(1, height // example_shape[0]), max(1, width // example_shape[1]))
    power = np.fft.fftshift(np.sum(np.abs(spectrum) ** 2, axis=-1))
    level = _local_median(power, steps)
    fy = (np.arange(height) - height // 2) / height * example_shape[0]
    fx = (np.arange(width) - width // 2) / width * example_shape[1]
    shading = np.hypot(fy[:, None], fx[None, :]) < 2.0  # in example bins
    above = (power > PEAK_RATIO * level) & ~shading
    if not above.any():
        return spectrum
    grown = ndimage.binary_dilation(above, structure=np.ones((2 * steps[0] + 1, 2 * steps[1] + 1), bool))
    labels, _ = ndimage.label(grown & ~shading)
    # Peaks are found with frequency 0 at the centre, where none is cut in two; the spectrum is
    # changed where it lies, through these maps from centred to stored rows and columns.
    stored = (np.fft.fftshift(np.arange(height)), np.fft.fftshift(np.arange(width)))
    out = spectrum.copy()
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        inside = labels[box] == index
        if not np.any(above[box] & inside):
            continue  # a piece that the shading's disc cut from a peak
        p, m = power[box], level[box]
        excess = np.where(inside, np.maximum(p - m, 0.0), 0.0)
        total = float(excess.sum())
        rows, cols = np.nonzero(excess)
        weights = excess[rows, cols]
        # the centre, rounded relative to frequency 0 so that ξ and −ξ round alike
        at = np.rint(
            np.array([rows @ weights, cols @ weights]) / total
            + [box[0].start - height // 2, box[1].start - width // 2]
        )
        target = (int(at[0]) % height, int(at[1]) % width)  # stored: frequency 0 first
        region = np.ix_(stored[0][box[0]], stored[1][box[1]])
        strongest = np.unravel_index(np.argmax(np.where(inside, p, -1.0)), p.shape)
        colour = out[region][strongest].copy()
        shrink = np.sqrt(np.where(excess > 0, m / np.where(excess > 0, p, 1.0), 1.0))
        out[region] *= shrink[..., None]
        kept = float(np.sum(np.abs(out[target]) ** 2))
        out[target] = colour * np.sqrt((kept + total) / np.sum(np.abs(colour) ** 2))
    return out


def _whole_plane(half: np.ndarray, *, width: int) -> np.ndarray:
    """A real image's full 2-D FFT (H, width, ...) from its real FFT's half (H, width // 2 + 1, ...),
    by ``ĥ(−ξ) = conj(ĥ(ξ))``; the stored half is kept value for value."""
    rows = (-np.arange(half.shape[0])) % half.shape[0]
    cols = width - np.arange(width // 2 + 1, width)
    return np.concatenate([half, np.conj(half[rows][:, cols])], axis=1)


def _local_median(power: np.ndarray, steps: tuple[int, int]) -> np.ndarray:
    """The median of ``power`` (H, W, frequency 0 at the centre) over 5 × 5 blocks of ``steps``
    frequencies, symmetric under ξ → −ξ as ``power`` is.

    It is taken on the grid thinned by ``steps`` through frequency 0 and spread back to the
    nearest thinned frequency: a peak's lobe, about one block wide, cannot move it, and an
    8192² output's costs what a 256²'s would.
    """
    height, width = power.shape
    centre = (height // 2, width // 2)
    offsets = (centre[0] % steps[0], centre[1] % steps[1])
    coarse = ndimage.median_filter(power[offsets[0] :: steps[0], offsets[1] :: steps[1]], size=5, mode="wrap")
    nearest = [
        np.clip((c - o) // s + np.rint((np.arange(n) - c) / s).astype(int), 0, k - 1)
        for n, c, o, s, k in zip(power.shape, centre, offsets, steps, coarse.shape, strict=True)
    ]
    level = coarse[nearest[0][:, None], nearest[1][None, :]]
    mirror = [(2 * c - np.arange(n)) % n for n, c in zip(power.shape, centre, strict=True)]
    return 0.5 * (level + level[mirror[0][:, None], mirror[1][None, :]])


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


def spectrum_loss(
    image: np.ndarray,
    spectrum: np.ndarray,
    *,
    taper: np.ndarray | None = None,
    centre: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """``mean((x − P(x))²)`` and its gradient ``2 (x − P(x)) / N`` (same shape as ``image``).

    With ``taper`` (:func:`border_taper`, (H, W, 1)) and ``centre`` (the target's
    mean colour, (3,)), the constraint sees ``x̃ = taper · (x − centre) + centre``:
    the value is ``mean((x̃ − P(x̃))²)`` and the gradient ``taper · 2 (x̃ − P(x̃)) / N``,
    exact (the distance of an affine image of ``x``); ``spectrum`` is then the
    target made with the same ``taper`` (:func:`example_spectrum`).
    """
    seen, weight = np.asarray(image, np.float64), 1.0
    if taper is not None:
        if centre is None:
            raise ValueError("a tapered spectrum loss needs the target's mean colour (centre)")
        seen, weight = taper * (seen - centre) + centre, taper
    diff = seen - project(seen, spectrum)
    return float(np.mean(diff * diff)), (2.0 / diff.size) * weight * diff
