"""The palette term of style transfer: the output's colours, as a whole distribution, matched to the styles'.

The style term's Gram matrices (``pool1``, ``conv3_2``) barely see the colour
of single pixels, and where the content term pulls against them the output
invents hues that no style has: rainbow rings in a cat's eyes and colour
fringes along strong edges, on a style that is grey (benchmarks/RESULTS.md,
"The palette term"). This term asks for the styles' colours directly. It is
a sliced Wasserstein-2 distance between the output's pixel colours and the
styles' (Heitz et al. 2021 on features; here on the pixels themselves),
restricted to **chroma**: every direction lies in the plane orthogonal to
grey (1, 1, 1), so the term moves hue and saturation and leaves lightness,
and with it the content's layout and the style's strokes, to the other
terms. A grey style makes a grey output; a style of a few hues makes an
output of those hues, in the proportions the style has them.

With ``K`` unit directions ``d_k`` in that plane, the output's ``n`` pixels
``x_i`` (RGB in [0, 1]) and the styles' quantile functions ``Q_k`` of
``d_k · y`` (their pixels ``y`` blended, :func:`palette_target`)::

    L = Σ_k Σ_j (d_k · x_(j,k) − Q_k((j + ½) / n))² / (K · n · s²)

where ``x_(j,k)`` is the pixel of rank ``j`` along ``d_k`` and ``s²`` the
styles' mean per-channel variance (so the term is relative, as every other
one). Its gradient is ``2 (d_k · x − Q_k) d_k / (K n s²)`` at each pixel,
summed over ``k`` (sorting is piecewise constant). It is a term of the
image alone (:class:`~multiscale.objectives.base.ImageTerm`), evaluated on
the whole image, so a tiled stage uses it unchanged. An image of more than
:data:`PALETTE_MAX_PIXELS` pixels is averaged over blocks first (the term is
then that of the block means, its gradient spread evenly over each block).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..measure.sliced import (
    MAX_SOURCE_POSITIONS,
    TargetQuantiles,
    interpolate_quantiles,
    sample_positions,
    sorted_cotangent,
)

#: Directions in the chroma plane, evenly spread over a half-turn (a direction
#: and its opposite sort alike). 8 put any hue within 12° of one; 16 scored the
#: same on six pairs and cost twice the time (benchmarks/RESULTS.md, "The palette term").
PALETTE_DIRECTIONS = 8
#: Levels at which the styles' quantile functions are kept (and stored in a
#: checkpoint); an output's pixels take them linearly interpolated.
PALETTE_LEVELS = 1024
#: Most pixels the term sorts: a larger output is first averaged over f × f blocks, the
#: smallest f that brings it under this (512² equivalent), and a larger style is
#: represented by a fixed sample of this many (the sliced statistic's
#: :func:`~multiscale.measure.sliced.sample_positions`). A colour distribution needs no
#: more samples, and sorting the projections of a print-size image (millions of pixels)
#: would cost seconds per evaluation.
PALETTE_MAX_PIXELS = MAX_SOURCE_POSITIONS
#: Floor of the styles' variance ``s²`` (a flat style, a single colour).
_VARIANCE_FLOOR = 1e-4


def chroma_directions(count: int = PALETTE_DIRECTIONS) -> np.ndarray:
    """``count`` unit vectors orthogonal to grey (1, 1, 1), at angles πk/count: float64 (count, 3)."""
    a = np.array([1.0, -1.0, 0.0]) / np.sqrt(2.0)
    b = np.array([1.0, 1.0, -2.0]) / np.sqrt(6.0)
    angles = np.pi * np.arange(count) / count
    return np.cos(angles)[:, None] * a + np.sin(angles)[:, None] * b


@dataclass(frozen=True)
class PaletteTarget:
    """What the palette term matches: the styles' chroma quantile functions and their scale.

    Attributes
    ----------
    quantiles : np.ndarray float64 (levels, K)
        ``Q_k`` at the levels ``(i + ½) / levels``, one column per direction
        of :func:`chroma_directions` (K of them), in RGB units.
    variance : float
        ``s²``: the styles' mean per-channel variance, floored.
    """

    quantiles: np.ndarray
    variance: float


def palette_target(
    images: Sequence[np.ndarray], weights: Sequence[float] | None = None, *, levels: int = PALETTE_LEVELS
) -> PaletteTarget:
    """The palette of ``images`` blended by ``weights`` (default equal): the mixture of their pixel
    colours, each image counting by its weight whatever its size.

    An image of more than :data:`PALETTE_MAX_PIXELS` pixels is represented by
    that many of them drawn at random (the same ones every time), so that a
    print-size style costs no more than a 512² one.

    Parameters
    ----------
    images : sequence of np.ndarray float (h, w, 3) RGB in [0, 1]
    weights : sequence of float ≥ 0, not all 0, or None
    """
    w = np.ones(len(images)) if weights is None else np.asarray(weights, dtype=np.float64)
    kept = [i for i in range(len(images)) if w[i] > 0]  # an image of weight 0 has no colour in the blend
    w = w[kept] / w[kept].sum()
    directions = chroma_directions()
    pixels = [sample_positions(np.reshape(images[i], (-1, 3))).astype(np.float64) for i in kept]
    projections = np.concatenate([p @ directions.T for p in pixels])  # (Σ m, K)
    mass = np.concatenate([np.full(len(p), wi / len(p)) for wi, p in zip(w, pixels, strict=True)])
    at = (np.arange(levels) + 0.5) / levels
    quantiles = np.empty((levels, directions.shape[0]))
    for k in range(directions.shape[0]):
        order = np.argsort(projections[:, k], kind="stable")
        cumulative = np.cumsum(mass[order]) - 0.5 * mass[order]  # each value at its mass's middle
        quantiles[:, k] = np.interp(at, cumulative, projections[order, k])
    mean = sum(wi * p.mean(axis=0) for wi, p in zip(w, pixels, strict=True))
    second = sum(wi * np.mean(p * p, axis=0) for wi, p in zip(w, pixels, strict=True))
    variance = float(np.mean(second - mean * mean))
    return PaletteTarget(quantiles=quantiles, variance=max(variance, _VARIANCE_FLOOR))


def palette_loss(
    image: np.ndarray, target: PaletteTarget, *, max_pixels: int = PALETTE_MAX_PIXELS
) -> tuple[float, np.ndarray]:
    """The palette term ``L`` (see the module docstring) of an (H, W, 3) RGB image and its gradient.

    Over :data:`PALETTE_MAX_PIXELS` (``max_pixels``) pixels, ``L`` is that of
    the image's means over f × f blocks (:func:`block_means`); the image is
    then never copied at its full size in float64.

    Returns
    -------
    value : float
        ≥ 0; 0 when the image's chroma along every direction is distributed
        as the target's (up to the interpolation between its levels).
    grad : np.ndarray, the image's shape: float64, or for an image averaged over blocks its
        float dtype (float64 for an integer image)
    """
    image = np.asarray(image)
    dtype = image.dtype if image.dtype.kind == "f" else np.dtype(np.float64)  # of a large gradient
    height, width = image.shape[:2]
    factor = 1
    while -(-height // factor) * -(-width // factor) > max_pixels:
        factor += 1
    means, counts = block_means(image, factor)
    x = means.reshape(-1, 3)
    n = x.shape[0]
    directions = chroma_directions(target.quantiles.shape[1])
    levels = target.quantiles.shape[0]
    wanted = interpolate_quantiles((np.arange(levels) + 0.5) / levels, target.quantiles, n)
    value, cotangent = sorted_cotangent(directions @ x.T, TargetQuantiles.of(wanted), 1.0 / target.variance)
    grad = (cotangent.T @ directions).reshape(means.shape) / counts[..., None]
    if factor > 1:  # each block mean's gradient, shared by the pixels it averages
        grad = np.repeat(np.repeat(grad.astype(dtype), factor, axis=0), factor, axis=1)[:height, :width]
    return value, grad


def block_means(image: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """The means of an (H, W, 3) image over ``factor`` × ``factor`` blocks (smaller ones along the
    bottom and right edges where ``factor`` does not divide H or W), and each block's pixel count.

    Returns
    -------
    means : np.ndarray float64 (⌈H/f⌉, ⌈W/f⌉, 3)
    counts : np.ndarray float64 (⌈H/f⌉, ⌈W/f⌉)
    """
    if factor == 1:
        return np.asarray(image, dtype=np.float64), np.ones(image.shape[:2])
    height, width = image.shape[:2]
    rows, cols = np.arange(0, height, factor), np.arange(0, width, factor)
    sums = np.add.reduceat(np.add.reduceat(image, rows, axis=0, dtype=np.float64), cols, axis=1)
    counts = np.outer(np.diff(rows, append=height), np.diff(cols, append=width)).astype(np.float64)
    return sums / counts[..., None], counts
