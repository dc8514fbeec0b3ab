"""Image parameterisations: optimise coefficients that map linearly to pixels.

L-BFGS is not invariant to a linear change of variables: its first step, and
the scale ``H₀ = γI`` of every later one, treat all variables alike. Over the
pixels that means every spatial frequency gets the same step, and the coarse
structure that the deep octaves of the style loss measure (whose gradient is
a faint, smooth field) is the slowest to form. Writing the image as

    x = A z = Σ_k  s_k · U^k z_k            (k = 0 … levels − 1)

with ``z_k`` an image at 1/2^k of the size, ``U`` the 2× binomial expand of
Burt & Adelson's Laplacian pyramid and ``s_k`` a per-level scale, and
optimising over ``z``, is L-BFGS over the pixels preconditioned by
``A Aᵀ = Σ s_k² U^k U^kᵀ``: a smooth pattern of 2^k pixels moves about
``s_k² 4^k`` times as fast as pixel noise. ``z`` has about 4/3 as many
variables as the image (the representation is overcomplete).

Bounds
------
The pixel box ``0 ≤ A z ≤ 1`` is not a box in ``z``, and projecting onto it
needs an inner solve. :class:`ParameterizedObjective` instead runs the driver
*unbounded* in ``z`` and

* evaluates the style loss on ``clip(A z, 0, 1)`` — so the loss the driver
  sees is the loss of the image that will be saved (up to quantisation); an
  unbounded run cannot report a loss the saved image does not have;
* adds ``penalty · mean((A z − clip(A z))²)``, zero inside the box, so the
  pixels that clipping has cut off from the style gradient are pulled back to
  the box instead of drifting away where a step would not reach them.

The driver's best point is then saved as :meth:`ParameterizedObjective.pixels`.

Coarse stages
-------------
:func:`coarse_stage` poses the same problem on a smaller grid: the image is
``X = U^j y`` (``y`` at 1/2^j of the size) and only octaves ``j, j+1, …`` of
the loss are matched. Octave ``j + i`` of ``X`` is octave ``i`` of
``D^j U^j y`` (``D`` the pyramid's reduce), so the stage evaluates the style
loss on the small image ``M y = D^j U^j y`` (:func:`subspace_map`) against
the sources' octaves ``j…``, at a fraction of the cost. Its result,
expanded (:func:`upsample`), starts the next stage with those octaves' loss
unchanged: a schedule of stages optimises one image, in growing subspaces.
A box on ``y`` keeps ``X`` in the box (``U`` and ``D`` average with weights
≥ 0), so a stage runs with the ordinary bounded driver.

Neither is the synthesis default: at 512² the Laplacian variables took more
evaluations than plain pixels to reach the reference's loss, and a coarse
stage saved about 5 % of the work (``benchmarks/time_to_loss.py``; figures in
``benchmarks/RESULTS.md``, "Convergence at 512²").
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import scipy.sparse

if TYPE_CHECKING:
    from multiscale.config import DescriptorConfig

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PENALTY",
    "ImageMap",
    "LaplacianPyramid",
    "ParameterizedObjective",
    "PixelObjective",
    "SeparableMap",
    "coarse_stage",
    "expand_matrix",
    "reduce_matrix",
    "subspace_map",
    "upsample",
]

#: Weight of the out-of-box penalty (per mean squared excess, in loss units).
DEFAULT_PENALTY = 1.0

#: Expand kernel of the Laplacian pyramid: the binomial [1, 4, 6, 4, 1]/16
#: times 2 (half the samples of the zero-inserted signal are zeros).
_EXPAND = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 8.0
_REDUCE = _EXPAND / 2.0

_PADDINGS = ("reflect", "wrap")


class PixelObjective(Protocol):
    """What :class:`ParameterizedObjective` wraps (e.g. :class:`multiscale.objectives.texture.StyleObjective`)."""

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]: ...


class ImageMap(Protocol):
    """A linear map from a flat coefficient vector to an image, with its exact adjoint."""

    size: int
    pixel_shape: tuple[int, int, int]

    def to_pixels(self, z: np.ndarray) -> np.ndarray: ...

    def adjoint(self, g: np.ndarray) -> np.ndarray: ...


def _padded_indices(n: int, pad: int, padding: str) -> np.ndarray:
    """Indices into a length-``n`` signal of its padded version (length ``n + 2·pad``)."""
    if padding not in _PADDINGS:
        raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")
    return np.pad(np.arange(n), pad, mode="reflect" if padding == "reflect" else "wrap")


def _check_length(n: int, padding: str) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"length must be an integer ≥ 1, got {n!r}")
    if padding == "wrap" and n % 2:
        raise ValueError(f"wrap padding needs an even length to halve, got {n}")


def expand_matrix(n: int, *, padding: str = "reflect") -> scipy.sparse.csr_matrix:
    """The 1-d 2× expand of the Laplacian pyramid as a sparse matrix.

    The coarse signal ``c`` (length ``ceil(n / 2)``) is put on the even
    samples of a length-``n`` signal of zeros, which is padded and filtered
    with ``[1, 4, 6, 4, 1] / 8``: even samples get ``(c₋₁ + 6c + c₊₁)/8``,
    odd ones ``(c + c₊₁)/2``.

    Parameters
    ----------
    n : int ≥ 1
        Length of the fine signal.
    padding : {"reflect", "wrap"}
        Border: mirror without repeating the edge sample, or circular
        (``n`` must then be even).

    Returns
    -------
    scipy.sparse.csr_matrix, float64, shape (n, ceil(n / 2))
        Every row sums to 1 (a constant stays constant) and every entry is
        ≥ 0, so a coarse signal in [0, 1] expands into [0, 1].
    """
    _check_length(n, padding)
    if n == 1:  # padding repeats the one sample, which is even: every tap would land on it
        return scipy.sparse.csr_matrix(np.ones((1, 1)))
    m = (n + 1) // 2
    idx = _padded_indices(n, 2, padding)
    rows, cols, vals = [], [], []
    for t, k in enumerate(_EXPAND):
        src = idx[t : t + n]  # sample of the zero-inserted signal under tap t of output i
        even = src % 2 == 0
        rows.append(np.arange(n)[even])
        cols.append(src[even] // 2)
        vals.append(np.full(int(even.sum()), k))
    mat = scipy.sparse.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, m)
    )
    return mat.tocsr()  # duplicates (reflected taps) are summed


def reduce_matrix(n: int, *, padding: str = "reflect") -> scipy.sparse.csr_matrix:
    """The 1-d 2× reduce: binomial blur ``[1, 4, 6, 4, 1] / 16``, keep the even samples.

    The same operation as :func:`multiscale.measure.pyramid.downsample` along one
    axis (for its ``reflect`` and ``wrap`` modes).

    Returns
    -------
    scipy.sparse.csr_matrix, float64, shape (ceil(n / 2), n); rows sum to 1.
    """
    _check_length(n, padding)
    m = (n + 1) // 2
    idx = _padded_indices(n, 2, padding)
    rows, cols, vals = [], [], []
    for t, k in enumerate(_REDUCE):
        rows.append(np.arange(m))
        cols.append(idx[2 * np.arange(m) + t])
        vals.append(np.full(m, k))
    mat = scipy.sparse.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m, n)
    )
    return mat.tocsr()


def _separable(rows: scipy.sparse.spmatrix, cols: scipy.sparse.spmatrix, a: np.ndarray) -> np.ndarray:
    """``rows @ a[..., c] @ cols.T`` for every channel ``c`` of an (h, w, C) array."""
    h, w, c = a.shape
    out_h, out_w = rows.shape[0], cols.shape[0]
    t = rows @ a.reshape(h, w * c)  # (out_h, w·C)
    t = np.ascontiguousarray(t.reshape(out_h, w, c).transpose(1, 0, 2)).reshape(w, out_h * c)
    t = cols @ t  # (out_w, out_h·C)
    return np.ascontiguousarray(t.reshape(out_w, out_h, c).transpose(1, 0, 2))


def upsample(image: np.ndarray, *, height: int, width: int, padding: str = "reflect") -> np.ndarray:
    """Expand an image 2× with the Laplacian pyramid's filter (:func:`expand_matrix`).

    Parameters
    ----------
    image : np.ndarray, shape (ceil(height / 2), ceil(width / 2), C)
        Any range; an image in [0, 1] stays in [0, 1].
    height, width : int
        Output size.
    padding : {"reflect", "wrap"}

    Returns
    -------
    np.ndarray float64, shape (height, width, C)
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3 or image.shape[:2] != ((height + 1) // 2, (width + 1) // 2):
        raise ValueError(
            f"a {width}×{height} output needs an image of {(width + 1) // 2}×{(height + 1) // 2}, "
            f"got shape {image.shape}"
        )
    return _separable(expand_matrix(height, padding=padding), expand_matrix(width, padding=padding), image)


class LaplacianPyramid:
    """The linear map ``x = A z = Σ_k s_k U^k z_k`` from pyramid coefficients to pixels.

    Parameters
    ----------
    height, width : int
        Image size in pixels.
    levels : int ≥ 1
        Number of pyramid levels; level k is ``ceil(height / 2^k)`` ×
        ``ceil(width / 2^k)``. One level is the identity map.
    level_scale : float or sequence of float
        ``s_k``: a number ``r`` gives ``s_k = r^k``; a sequence gives one
        value per level. All > 0.
    padding : {"reflect", "wrap"}
        Border of the expand filter; ``wrap`` for tileable images (every
        level but the coarsest must then have even sides).
    channels : int
        Channels of the image (3 for RGB).

    Attributes
    ----------
    shapes : list of (h, w, channels)
        Shape of each level's coefficients, finest first.
    scales : tuple of float
        ``s_k``.
    size : int
        Number of coefficients (length of ``z``).
    pixel_shape : (height, width, channels)

    Notes
    -----
    ``z`` is a flat float64 vector: the levels' coefficients one after the
    other, finest first, each in C order (h, w, channels).
    """

    def __init__(
        self,
        *,
        height: int,
        width: int,
        levels: int,
        level_scale: float | Sequence[float] = 1.0,
        padding: str = "reflect",
        channels: int = 3,
    ) -> None:
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be an integer ≥ 1, got {levels!r}")
        if isinstance(level_scale, (int, float)):
            scales = tuple(float(level_scale) ** k for k in range(levels))
        else:
            scales = tuple(float(s) for s in level_scale)
        if len(scales) != levels or not all(math.isfinite(s) and s > 0 for s in scales):
            raise ValueError(f"level_scale must give {levels} finite values > 0, got {level_scale!r}")
        sizes = [(height, width)]
        for _ in range(levels - 1):
            h, w = sizes[-1]
            sizes.append(((h + 1) // 2, (w + 1) // 2))
        self.scales = scales
        self.padding = padding
        self.pixel_shape = (height, width, channels)
        self.shapes = [(h, w, channels) for h, w in sizes]
        self._expand = [
            (expand_matrix(h, padding=padding), expand_matrix(w, padding=padding)) for h, w in sizes[:-1]
        ]
        self._expand_t = [(eh.T.tocsr(), ew.T.tocsr()) for eh, ew in self._expand]
        self._reduce = [
            (reduce_matrix(h, padding=padding), reduce_matrix(w, padding=padding)) for h, w in sizes[:-1]
        ]
        self._offsets = np.cumsum([0] + [math.prod(s) for s in self.shapes])
        self.size = int(self._offsets[-1])

    def _split(self, z: np.ndarray) -> list[np.ndarray]:
        z = np.asarray(z, dtype=np.float64).reshape(-1)
        if z.shape[0] != self.size:
            raise ValueError(f"expected {self.size} coefficients, got {z.shape[0]}")
        return [
            z[a:b].reshape(s)
            for a, b, s in zip(self._offsets[:-1], self._offsets[1:], self.shapes, strict=True)
        ]

    def to_pixels(self, z: np.ndarray) -> np.ndarray:
        """``A z``: the image, float64 (height, width, channels), unclipped."""
        parts = self._split(z)
        acc = self.scales[-1] * parts[-1]
        for k in range(len(parts) - 2, -1, -1):
            acc = _separable(*self._expand[k], acc)
            acc += self.scales[k] * parts[k]
        return acc

    def adjoint(self, g: np.ndarray) -> np.ndarray:
        """``Aᵀ g`` for a pixel-space vector ``g`` (an image's shape or flat): flat float64, length :attr:`size`."""
        acc = np.asarray(g, dtype=np.float64).reshape(self.pixel_shape)
        out = np.empty(self.size)
        for k in range(len(self.shapes)):
            if k:
                acc = _separable(*self._expand_t[k - 1], acc)
            out[self._offsets[k] : self._offsets[k + 1]] = self.scales[k] * acc.reshape(-1)
        return out

    def from_pixels(self, x: np.ndarray) -> np.ndarray:
        """Coefficients of an image: its Laplacian pyramid, divided by the level scales.

        Level k holds ``g_k − U g_{k+1}`` with ``g_0 = x`` and ``g_{k+1}``
        the binomial reduce of ``g_k``; the coarsest holds ``g``. So
        ``to_pixels(from_pixels(x)) == x`` up to rounding (the map is
        overcomplete: this is one of many ``z`` for ``x``, the one whose
        detail levels are band-pass).

        Parameters
        ----------
        x : np.ndarray, shape (height, width, channels) or flat

        Returns
        -------
        np.ndarray float64, flat, length :attr:`size`
        """
        g = np.asarray(x, dtype=np.float64).reshape(self.pixel_shape)
        out = np.empty(self.size)
        for k in range(len(self.shapes)):
            if k == len(self.shapes) - 1:
                band = g
            else:
                coarse = _separable(*self._reduce[k], g)
                band = g - _separable(*self._expand[k], coarse)
            out[self._offsets[k] : self._offsets[k + 1]] = band.reshape(-1) / self.scales[k]
            if k < len(self.shapes) - 1:
                g = coarse
        return out


class SeparableMap:
    """The linear map ``x[:, :, c] = rows @ z[:, :, c] @ colsᵀ`` for every channel ``c``.

    Parameters
    ----------
    rows : sparse matrix, shape (height, h)
    cols : sparse matrix, shape (width, w)
    channels : int

    Attributes
    ----------
    size : int
        ``h · w · channels``, the length of ``z``.
    coefficient_shape : (h, w, channels)
    pixel_shape : (height, width, channels)
    """

    def __init__(
        self, rows: scipy.sparse.spmatrix, cols: scipy.sparse.spmatrix, *, channels: int = 3
    ) -> None:
        self._rows, self._cols = rows.tocsr(), cols.tocsr()
        self._rows_t, self._cols_t = rows.T.tocsr(), cols.T.tocsr()
        self.coefficient_shape = (rows.shape[1], cols.shape[1], channels)
        self.pixel_shape = (rows.shape[0], cols.shape[0], channels)
        self.size = math.prod(self.coefficient_shape)

    def to_pixels(self, z: np.ndarray) -> np.ndarray:
        """The image of ``z`` (flat or shaped): float64, :attr:`pixel_shape`."""
        z = np.asarray(z, dtype=np.float64)
        if z.size != self.size:
            raise ValueError(f"expected {self.size} coefficients, got {z.size}")
        return _separable(self._rows, self._cols, z.reshape(self.coefficient_shape))

    def adjoint(self, g: np.ndarray) -> np.ndarray:
        """``Aᵀ g`` for an image-shaped (or flat) ``g``: flat float64, length :attr:`size`."""
        g = np.asarray(g, dtype=np.float64).reshape(self.pixel_shape)
        return _separable(self._rows_t, self._cols_t, g).reshape(-1)


def _reduce_expand(n: int, skip: int, padding: str) -> scipy.sparse.csr_matrix:
    """``D^skip U^skip`` along one axis of length ``n``: square, of the coarse length."""
    lengths = [n]
    for _ in range(skip):
        lengths.append((lengths[-1] + 1) // 2)
    up = scipy.sparse.identity(lengths[-1], format="csr")
    for m in reversed(lengths[:-1]):
        up = expand_matrix(m, padding=padding) @ up
    for m in lengths[:-1]:
        up = reduce_matrix(m, padding=padding) @ up
    return up.tocsr()


def subspace_map(height: int, width: int, *, skip: int, padding: str = "reflect") -> SeparableMap:
    """``M = D^skip U^skip``: octave ``skip`` of the image expanded ``skip`` times from ``y``.

    Parameters
    ----------
    height, width : int
        Size of the full image ``X = U^skip y``.
    skip : int ≥ 0
        Octaves skipped; ``y`` and ``M y`` are ``ceil(height / 2^skip)`` ×
        ``ceil(width / 2^skip)``, the size of octave ``skip`` of the
        Gaussian pyramid (:func:`multiscale.measure.pyramid.octave_sizes`).
    padding : {"reflect", "wrap"}
        The pyramid's border mode (the style loss's padding).

    Returns
    -------
    SeparableMap
        Its rows sum to 1 and its entries are ≥ 0.
    """
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise ValueError(f"skip must be an integer ≥ 0, got {skip!r}")
    return SeparableMap(_reduce_expand(height, skip, padding), _reduce_expand(width, skip, padding))


def coarse_stage(
    grams: Mapping[tuple[int, str], np.ndarray], *, config: DescriptorConfig, skip: int
) -> tuple[dict[tuple[int, str], np.ndarray], DescriptorConfig]:
    """Targets and descriptor config of a stage that skips the finest ``skip`` octaves.

    Parameters
    ----------
    grams : dict of (octave, layer) → np.ndarray (C, C)
        The full problem's targets.
    config : DescriptorConfig
        The full problem's descriptor.
    skip : int, 0 ≤ skip < config.octaves

    Returns
    -------
    grams : dict
        ``grams[(k + skip, layer)]`` under the key ``(k, layer)``.
    config : DescriptorConfig
        ``config.octaves − skip`` octaves with the full problem's weights of
        octaves ``skip…`` (the loss is their weighted mean, comparable with
        the full loss).
    """
    if isinstance(skip, bool) or not isinstance(skip, int) or not 0 <= skip < config.octaves:
        raise ValueError(f"skip must be an integer in [0, {config.octaves}), got {skip!r}")
    weights = tuple(config.resolved_octave_weights[skip:])
    stage = dataclasses.replace(config, octaves=config.octaves - skip, octave_weights=weights)
    return {(k - skip, layer): g for (k, layer), g in grams.items() if k >= skip}, stage


class ParameterizedObjective:
    """A pixel objective seen through a linear map (e.g. a :class:`LaplacianPyramid`).

    ``f(z) = objective(clip(A z, 0, 1)) + penalty · mean((A z − clip(A z, 0, 1))²)``
    (see the module docstring for why). The gradient is
    ``Aᵀ (mask ⊙ ∇objective + 2 · penalty / n · (A z − clip(A z)))`` with
    ``mask`` zero where the pixel is outside the box (the clip's derivative).

    Parameters
    ----------
    objective : callable
        ``objective(x) -> (loss, grad)`` on flat float64 pixels in [0, 1]
        (e.g. :class:`multiscale.objectives.texture.StyleObjective`).
    transform : ImageMap
        ``A``: a :class:`LaplacianPyramid` (run the driver unbounded) or a
        :func:`subspace_map` (whose box is a box: run it bounded, and the
        clip and penalty never act).
    penalty : float ≥ 0
        Weight of the out-of-box penalty.

    Attributes
    ----------
    size : int
        Number of variables (``transform.size``).
    last_penalty : float
        Penalty term at the last evaluation.
    """

    def __init__(
        self, objective: PixelObjective, *, transform: ImageMap, penalty: float = DEFAULT_PENALTY
    ) -> None:
        if not (math.isfinite(penalty) and penalty >= 0):
            raise ValueError(f"penalty must be finite and ≥ 0, got {penalty!r}")
        self.objective = objective
        self.transform = transform
        self.penalty = float(penalty)
        self.size = transform.size
        self.last_penalty = 0.0

    @property
    def last_octave_losses(self) -> Any:
        """The wrapped objective's per-octave losses at the last evaluation, if it has them."""
        last = getattr(self.objective, "last", None)
        return None if last is None else last.octave_losses

    def pixels(self, z: np.ndarray) -> np.ndarray:
        """The image of ``z`` as it is evaluated and saved: float64 (H, W, C), clipped to [0, 1]."""
        return np.clip(self.transform.to_pixels(z), 0.0, 1.0)

    def __call__(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient at the flat float64 coefficient vector ``z``."""
        x = self.transform.to_pixels(z)
        clipped = np.clip(x, 0.0, 1.0)
        loss, grad = self.objective(clipped.reshape(-1))
        grad = np.asarray(grad, dtype=np.float64).reshape(x.shape)
        excess = x - clipped
        outside = excess != 0
        if outside.any():
            grad = np.where(outside, 0.0, grad)
            scale = self.penalty / excess.size
            self.last_penalty = scale * float(np.dot(excess.reshape(-1), excess.reshape(-1)))
            grad += 2.0 * scale * excess
        else:
            self.last_penalty = 0.0
        return float(loss) + self.last_penalty, self.transform.adjoint(grad)
