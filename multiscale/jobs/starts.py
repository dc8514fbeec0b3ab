"""Start images for the optimisation: where L-BFGS begins decides what it keeps.

A Gram (or sliced-Wasserstein) loss hardly sees per-pixel colour noise: the
finest chroma detail of the start survives hundreds of iterations as
rainbow speckle. So the start should already carry the source's colours and
fine-scale statistics, while staying random so that seeds give different
textures.

``spectrum`` (the default)
    Random-phase noise of the sources (asymptotic discrete spot noise,
    Galerne, Gousseau & Morel, IEEE TIP 2011): each source, minus its mean
    colour, is circularly convolved with one white-noise field shared by the
    three channels and divided by the square root of its area. The result
    is Gaussian with the source's mean colour and, in expectation, exactly
    its autocorrelation — its power spectrum and its colour covariance, the
    finest band's chroma included — and nothing finer. With several
    sources, each gets its own noise field and the fields are averaged
    (variance-preserving): the start's autocorrelation is the mean of the
    sources'. A source larger than the output contributes a random crop of
    the output's size; one smaller gives no power to wavelengths longer than
    itself, as the spectrum constraint's target does
    (:mod:`multiscale.objectives.spectrum`).
``smooth``
    What ``spectrum`` becomes without images (descriptor files): the mean
    colour plus low-frequency noise (white noise blurred to a tenth of the
    short side), luminance-only, so no chroma speckle either.
``noise``
    The mean colour plus independent Gaussian noise (σ = 0.1) in each
    channel: the historical start, kept for comparison. It leaves speckle.
``mean``
    The mean colour plus faint noise (σ = 0.01) to break symmetry.

Everything here is numpy (no TensorFlow); images are float32 (H, W, 3) RGB
in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import fft, ndimage

from ..io import load_image, resize_image
from ..objectives.spectrum import longer_than_example, taper_spot

#: Starts computed here (anything else is an image path, loaded by the caller).
GENERATED_STARTS = ("spectrum", "smooth", "noise", "mean")

#: σ of the ``smooth`` start's luminance noise, and its blur as a share of the short side.
SMOOTH_SIGMA = 0.05
SMOOTH_SCALE = 0.1


def spot_noise(
    exemplars: Sequence[np.ndarray],
    *,
    height: int,
    width: int,
    rng: np.random.Generator,
    long_waves: str = "cut",
) -> np.ndarray:
    """Random-phase noise with the exemplars' mean colour and autocorrelation.

    Parameters
    ----------
    exemplars : sequence of np.ndarray, float32 (h, w, 3) in [0, 1]
        The source images as measured (scaled). At least one.
    height, width : int
        Output size in pixels.
    rng : np.random.Generator
        Draws the noise fields (and the crop of an exemplar larger than the output).
    long_waves : {"cut", "keep"}
        For an exemplar smaller than the output: leave out the wavelengths
        longer than it (:func:`~multiscale.objectives.spectrum.longer_than_example`),
        or keep what its padded spectrum puts there.

    Returns
    -------
    np.ndarray, float32 (height, width, 3), clipped to [0, 1].

    Notes
    -----
    For one exemplar ``u`` of area ``A`` (cropped to at most the output's
    size) with mean colour ``m``: ``x = m + (u − m) ⊛ W / √A``, ``⊛`` the
    circular convolution on the output's grid and ``W`` white Gaussian noise
    of unit variance. The output is periodic, so it tiles. An exemplar
    smaller than the output is tapered at its padded edges first, as the
    spectrum constraint's is (:func:`~multiscale.objectives.spectrum.taper_spot`).
    """
    if not exemplars:
        raise ValueError("spot_noise needs at least one exemplar")
    out = np.zeros((height, width, 3), np.float32)
    mean_sum = np.zeros(3, np.float64)
    for ex in exemplars:
        ex = np.asarray(ex, np.float32)
        h, w = ex.shape[:2]
        r0 = int(rng.integers(0, h - height + 1)) if h > height else 0
        c0 = int(rng.integers(0, w - width + 1)) if w > width else 0
        crop = ex[r0 : r0 + min(h, height), c0 : c0 + min(w, width)]
        mean = crop.reshape(-1, 3).mean(axis=0, dtype=np.float64)
        mean_sum += mean
        noise_f = fft.rfft2(rng.standard_normal((height, width), dtype=np.float32), workers=-1)
        if long_waves == "cut":
            noise_f[longer_than_example(height=height, width=width, example_shape=crop.shape[:2])] = 0.0
        scale = np.float32(1.0 / np.sqrt(crop.shape[0] * crop.shape[1] * len(exemplars)))
        centred = taper_spot(crop - mean.astype(np.float32), height=height, width=width)
        spot = np.zeros((height, width), np.float32)
        for c in range(3):
            spot[: crop.shape[0], : crop.shape[1]] = centred[..., c]
            field = fft.irfft2(fft.rfft2(spot, workers=-1) * noise_f, s=(height, width), workers=-1)
            out[..., c] += scale * field.astype(np.float32, copy=False)
    out += (mean_sum / len(exemplars)).astype(np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


def smooth_noise(mean_color: np.ndarray, *, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """The mean colour plus low-frequency luminance noise (see the module docstring).

    Returns
    -------
    np.ndarray, float32 (height, width, 3), clipped to [0, 1].
    """
    sigma = max(SMOOTH_SCALE * min(height, width), 1.0)
    field = ndimage.gaussian_filter(
        rng.standard_normal((height, width)).astype(np.float32), sigma, mode="wrap"
    )
    field *= np.float32(SMOOTH_SIGMA / max(float(field.std()), 1e-12))
    out = np.asarray(mean_color, np.float32)[None, None, :] + field[..., None]
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def generated_start(
    init: str,
    *,
    height: int,
    width: int,
    mean_color: np.ndarray,
    seed: int,
    exemplars: Sequence[np.ndarray] = (),
    long_waves: str = "cut",
) -> np.ndarray:
    """The start ``init`` (one of :data:`GENERATED_STARTS`) for an H×W output.

    Parameters
    ----------
    mean_color : np.ndarray, shape (3,)
        RGB mean of the sources in [0, 1].
    seed : int
        Seeds the noise: the same seed gives the same start.
    exemplars : sequence of np.ndarray, float32 (h, w, 3)
        The sources as measured; ``spectrum`` without any is ``smooth``.
    long_waves : {"cut", "keep"}
        ``spectrum``'s wavelengths longer than a source: see :func:`spot_noise`.

    Returns
    -------
    np.ndarray, float32 (height, width, 3) in [0, 1].
    """
    if init not in GENERATED_STARTS:
        raise ValueError(f"unknown start {init!r}; expected one of {', '.join(GENERATED_STARTS)}")
    rng = np.random.default_rng(seed)
    if init == "spectrum" and exemplars:
        return spot_noise(exemplars, height=height, width=width, rng=rng, long_waves=long_waves)
    if init in ("spectrum", "smooth"):
        return smooth_noise(mean_color, height=height, width=width, rng=rng)
    sigma = 0.1 if init == "noise" else 0.01
    noise = rng.normal(0.0, sigma, size=(height, width, 3))
    return np.clip(np.asarray(mean_color)[None, None, :] + noise, 0.0, 1.0).astype(np.float32)


def initial_image(
    init: str,
    *,
    height: int,
    width: int,
    mean_color: np.ndarray,
    seed: int,
    max_input_pixels: int,
    exemplars: Sequence[np.ndarray] = (),
    long_waves: str = "cut",
) -> np.ndarray:
    """The start point of the optimisation, float32 (H, W, 3) in [0, 1].

    ``spectrum``, ``smooth``, ``noise`` and ``mean`` are made by
    :func:`multiscale.jobs.starts.generated_start` (``exemplars``: the sources as
    measured, for ``spectrum``, whose wavelengths longer than a source
    ``long_waves`` cuts or keeps); anything else is an image path, resized to
    the output size.
    """
    if init in GENERATED_STARTS:
        return generated_start(
            init, height=height, width=width, mean_color=mean_color, seed=seed, exemplars=exemplars,
            long_waves=long_waves,
        )  # fmt: skip
    image = load_image(init, max_pixels=max_input_pixels)
    if image.shape[:2] != (height, width):
        image = resize_image(image, width=width, height=height)
    return image


def upsample(images: np.ndarray, *, height: int, width: int, wrap: bool) -> np.ndarray:
    """Cubic upsampling of an (H, W, 3) image or (N, H, W, 3) frames to ``height`` × ``width``, float64 in [0, 1].

    ``wrap``: the image is periodic (a tileable output), and so is the
    interpolation, which leaves no seam for the next stage to mend.
    """
    x = np.asarray(images, np.float64)
    planes = x.reshape(-1, *x.shape[-3:])
    out = np.empty((planes.shape[0], height, width, 3))
    zoom = (height / x.shape[-3], width / x.shape[-2])
    for i, plane in enumerate(planes):  # each frame and channel on its own: the spline must not mix them
        for c in range(3):
            z = ndimage.zoom(
                plane[..., c], zoom, order=3, mode="grid-wrap" if wrap else "reflect", grid_mode=True
            )
            z = z[:height, :width]  # zoom rounds its output size; pad by the edge if it came out short
            out[i, ..., c] = np.pad(z, ((0, height - z.shape[0]), (0, width - z.shape[1])), mode="edge")
    out = out.reshape(*x.shape[:-3], height, width, 3)
    return np.clip(out, 0.0, 1.0)


#: A later stage's detail noise is seeded with ``seed + STAGE_SEED_STEP × stage index``: a prime
#: far from the ``seed + i`` of a series' textures and an animation's frames.
STAGE_SEED_STEP = 7919


def stage_start(
    previous: np.ndarray,
    *,
    height: int,
    width: int,
    wrap: bool,
    exemplars: Sequence[np.ndarray] = (),
    seed: int = 0,
    long_waves: str = "cut",
) -> np.ndarray:
    """The start of a stage after the first: the previous stage's result, upsampled, and with
    ``exemplars`` the finest octave it cannot carry.

    Cubic upsampling (:func:`upsample`) of an image half the size leaves the new stage nothing
    in its finest octave (wavelengths under 4 px), and the stage's few iterations do not
    regrow it all (benchmarks/RESULTS.md, "The finest octave at a stage's start"). With
    exemplars, that octave is taken from the ``spectrum`` start's noise at the stage's size
    (:func:`spot_noise`: the sources' spectrum and colour covariance, random phase) — the noise
    minus itself halved and upsampled back — and added.

    Parameters
    ----------
    previous : np.ndarray (h, w, 3) or frames (N, h, w, 3), in [0, 1]
    height, width : int
        The stage's size.
    wrap : bool
        The image is periodic (``--tileable``), as the interpolation then is.
    exemplars : sequence of np.ndarray, float32 (h', w', 3)
        The sources at the stage's scale; none: the upsampled image alone. One image only.
    seed : int
        Seeds the noise.
    long_waves : {"cut", "keep"}
        As :func:`spot_noise`'s (no effect on the finest octave unless a source is tiny).

    Returns
    -------
    np.ndarray, float64 (height, width, 3) or (N, height, width, 3), in [0, 1].
    """
    if exemplars and np.ndim(previous) != 3:
        raise ValueError("stage_start adds detail to one image, not to frames")
    up = upsample(previous, height=height, width=width, wrap=wrap)
    if not exemplars:
        return up
    rng = np.random.default_rng(seed)
    noise = spot_noise(exemplars, height=height, width=width, rng=rng, long_waves=long_waves)
    h, w = previous.shape[:2]
    coarse = upsample(resize_image(noise, width=w, height=h), height=height, width=width, wrap=wrap)
    return np.clip(up + (noise.astype(np.float64) - coarse), 0.0, 1.0)
