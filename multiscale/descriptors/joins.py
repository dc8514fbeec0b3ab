"""Means ("joins") of symmetric positive (semi)definite matrices.

A texture descriptor built from many images needs one Gram matrix per
(octave, layer). Three ways to average Gram matrices ``G_1 … G_n`` with
weights ``w_1 … w_n`` are provided, all in float64:

``mean``
    The weighted arithmetic mean ``Σ w_i G_i / Σ w_i``. Exact, streams with a
    running sum, and is what a single image's loss "sees" on average.
``log-Euclidean``
    ``exp(Σ w_i log(R(G_i)) / Σ w_i)``: the arithmetic mean in the matrix-log
    domain. Streams with a running sum of logs; a geometric mean that does not
    let one bright image dominate the energy of the result.
``affine-invariant``
    The weighted Karcher (Riemannian, Fréchet) mean of ``R(G_i)`` for the
    affine-invariant metric, the unique SPD ``X`` with
    ``Σ w_i log(X^-½ R(G_i) X^-½) = 0``. Invariant under congruence
    ``G → M G Mᵀ``; it needs every matrix at once and is iterated.

``R`` is the regulariser of :func:`regularise`. Gram matrices of ReLU
features are positive *semi*-definite and often rank-deficient (dead or
collinear channels, small images at coarse octaves with fewer positions than
channels), so their logarithm does not exist; ``R`` shifts the spectrum by a
small multiple of its mean eigenvalue to make every matrix strictly positive
definite. It is a no-op for the arithmetic mean.

The functions take single matrices of shape ``(C, C)`` or stacks of shape
``(n, C, C)``; they do not print and do not import TensorFlow.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import DescriptorError

logger = logging.getLogger(__name__)

#: Default relative regulariser: ``eps`` times the mean eigenvalue
#: ``trace(G)/C`` is added to every eigenvalue. 1e-4 lifts the null space of a
#: rank-deficient Gram to 1e-4 of its average energy: small enough to change
#: the arithmetic content of a Gram by at most 1e-4 of its trace, large enough
#: that log(λ) stays within ~10 of log(trace/C), so one null direction cannot
#: dominate a log-domain mean.
DEFAULT_EPS = 1e-4

#: Default stopping tolerance of :func:`affine_invariant_mean`: relative
#: Frobenius norm of the last update, ``‖X_{k+1} - X_k‖_F / ‖X_{k+1}‖_F``.
DEFAULT_TOL = 1e-10

#: Default iteration cap of :func:`affine_invariant_mean`.
DEFAULT_MAX_ITER = 100

#: A relative step below this many machine epsilons times cond(X) is
#: round-off: the iterate cannot move less than that, whatever ``tol`` says.
_ROUNDOFF_FACTOR = 64

#: An eigenvalue below ``-PSD_RTOL * max|λ|`` means the input is not a Gram
#: matrix (round-off in a float32 Gram stays orders of magnitude smaller);
#: negative eigenvalues above it are round-off and are clipped to zero.
PSD_RTOL = 1e-2

FloatArray = NDArray[np.float64]

__all__ = [
    "DEFAULT_EPS",
    "DEFAULT_MAX_ITER",
    "DEFAULT_TOL",
    "JoinConvergenceWarning",
    "affine_invariant_mean",
    "log_euclidean_join",
    "log_euclidean_mean",
    "mean_join",
    "regularise",
    "spd_exp",
    "spd_log",
    "symmetrise",
]


class JoinConvergenceWarning(RuntimeWarning):
    """The affine-invariant mean stopped at ``max_iter`` above its tolerance.

    The returned matrix is the last iterate: symmetric positive definite and
    usually close to the mean; the message states the last relative step.
    """


def symmetrise(a: ArrayLike) -> FloatArray:
    """Return ``(A + Aᵀ) / 2`` in float64.

    Parameters
    ----------
    a : array_like, shape (..., C, C)
        Square matrix or stack of square matrices.

    Returns
    -------
    ndarray, float64, shape (..., C, C)
        Exactly symmetric (``out == swapaxes(out, -1, -2)`` bit for bit).
    """
    a = _square(a)
    return 0.5 * (a + np.swapaxes(a, -1, -2))


def mean_join(sum_: ArrayLike, weight_total: float) -> FloatArray:
    """Weighted arithmetic mean from a running sum: ``sum_ / weight_total``.

    Parameters
    ----------
    sum_ : array_like, shape (C, C)
        ``Σ w_i G_i``.
    weight_total : float
        ``Σ w_i``; must be finite and > 0.

    Returns
    -------
    ndarray, float64, shape (C, C)
    """
    return _square(sum_) / _positive_total(weight_total)


def regularise(g: ArrayLike, *, eps: float = DEFAULT_EPS) -> FloatArray:
    """Make a Gram matrix strictly positive definite: ``R(G) = G⁺ + eps·(trace(G⁺)/C)·I``.

    ``G⁺`` is the projection of the symmetrised ``G`` on the PSD cone: its
    negative eigenvalues, which in a Gram matrix are round-off, are set to 0.
    For a PSD input ``R(G) = G + eps·(trace(G)/C)·I`` exactly (up to
    round-off): every eigenvalue is raised by ``eps`` times the mean
    eigenvalue. The shift is relative, so ``R`` commutes with scaling
    (``R(sG) = s·R(G)``) and rotation (``R(QGQᵀ) = Q R(G) Qᵀ``).

    Parameters
    ----------
    g : array_like, shape (..., C, C)
        Symmetric PSD matrix or stack of them.
    eps : float
        Relative shift, ≥ 0 (default :data:`DEFAULT_EPS`). With 0 the input
        is only symmetrised and clipped.

    Returns
    -------
    ndarray, float64, shape (..., C, C)
        Symmetric; positive definite when ``eps > 0`` and ``trace(G) > 0``.

    Raises
    ------
    DescriptorError
        If ``G`` has an eigenvalue below ``-PSD_RTOL·max|λ|`` (not a Gram
        matrix) or is not finite.
    """
    lam, vec = _regularised_eigh(g, eps=eps)
    return _from_eig(lam, vec)


def spd_log(g: ArrayLike, *, eps: float) -> FloatArray:
    """Matrix logarithm of the regularised Gram, ``log(R(G))``, by eigendecomposition.

    Parameters
    ----------
    g : array_like, shape (..., C, C)
        Symmetric PSD matrix or stack; it is symmetrised first.
    eps : float
        Relative regulariser of :func:`regularise` (≥ 0). Pass 0 only for
        matrices known to be positive definite.

    Returns
    -------
    ndarray, float64, shape (..., C, C)
        Symmetric matrix ``V diag(log λ) Vᵀ`` where ``R(G) = V diag(λ) Vᵀ``.

    Raises
    ------
    DescriptorError
        If ``R(G)`` is singular (an all-zero Gram, or a rank-deficient one
        with ``eps = 0``), not PSD, or not finite.
    """
    lam, vec = _regularised_eigh(g, eps=eps)
    tiny = np.finfo(np.float64).tiny
    if np.any(lam <= tiny):
        hint = "an all-zero Gram matrix" if eps > 0 else "a singular matrix; use eps > 0"
        raise DescriptorError(f"matrix logarithm of {hint} (smallest eigenvalue {lam.min():.3g})")
    return _from_eig(np.log(lam), vec)


def spd_exp(log_g: ArrayLike) -> FloatArray:
    """Matrix exponential of a symmetric matrix by eigendecomposition.

    Parameters
    ----------
    log_g : array_like, shape (..., C, C)
        Symmetric matrix or stack; it is symmetrised first.

    Returns
    -------
    ndarray, float64, shape (..., C, C)
        Symmetric positive definite ``V diag(exp μ) Vᵀ``.

    Raises
    ------
    DescriptorError
        If the input is not finite or the exponential overflows.
    """
    mu, vec = _eigh(symmetrise(log_g))
    if np.any(mu > np.log(np.finfo(np.float64).max) - 1):
        raise DescriptorError(f"matrix exponential overflows (largest log-eigenvalue {mu.max():.3g})")
    return _from_eig(np.exp(mu), vec)


def log_euclidean_join(log_sum: ArrayLike, weight_total: float) -> FloatArray:
    """Log-Euclidean mean from a running sum of logs: ``exp(log_sum / weight_total)``.

    Parameters
    ----------
    log_sum : array_like, shape (C, C)
        ``Σ w_i log(R(G_i))`` (see :func:`spd_log`).
    weight_total : float
        ``Σ w_i``; finite and > 0.

    Returns
    -------
    ndarray, float64, shape (C, C)
        Symmetric positive definite.
    """
    return spd_exp(_square(log_sum) / _positive_total(weight_total))


def log_euclidean_mean(
    grams: ArrayLike | Sequence[ArrayLike],
    weights: ArrayLike | None = None,
    *,
    eps: float = DEFAULT_EPS,
) -> FloatArray:
    """Weighted log-Euclidean mean ``exp(Σ w_i log(R(G_i)) / Σ w_i)``.

    For matrices that share eigenvectors it is the element-wise weighted
    geometric mean of their (regularised) eigenvalues.

    Parameters
    ----------
    grams : array_like, shape (n, C, C) or (C, C)
        Symmetric PSD matrices; a single ``(C, C)`` matrix counts as n = 1.
    weights : array_like, shape (n,), optional
        Finite, ≥ 0, with a positive sum; default all 1.
    eps : float
        Relative regulariser of :func:`regularise`.

    Returns
    -------
    ndarray, float64, shape (C, C)
        Symmetric positive definite. For n = 1 it is ``R(G_1)`` exactly.
    """
    stack = _stack(grams)
    w = _normalised_weights(weights, len(stack))
    if len(stack) == 1:
        return regularise(stack[0], eps=eps)
    return spd_exp(np.einsum("i,ijk->jk", w, spd_log(stack, eps=eps)))


def affine_invariant_mean(
    grams: ArrayLike | Sequence[ArrayLike],
    weights: ArrayLike | None = None,
    *,
    eps: float = DEFAULT_EPS,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    init: ArrayLike | None = None,
) -> FloatArray:
    """Weighted affine-invariant (Karcher) mean of regularised Gram matrices.

    Solves ``Σ w_i log(X^-½ P_i X^-½) = 0`` for ``P_i = R(G_i)`` with the
    standard fixed-point iteration (Riemannian gradient descent)::

        S = Σ w_i log(X^-½ P_i X^-½) / Σ w_i
        X ← X^½ exp(θ S) X^½

    starting from the log-Euclidean mean, which is usually already close. The
    step ``θ`` is Bini & Iannazzo's (Linear Algebra Appl. 438, 2013):
    ``θ = 2 / Σ w_i (c_i + 1) log(c_i) / (c_i - 1)`` with ``c_i`` the
    condition number of ``X^-½ P_i X^-½``; it is 1 (the plain fixed point)
    for nearby matrices and smaller for spread-out ones, such as regularised
    rank-deficient Grams, where the unit step oscillates and never
    converges. It stops when ``‖X_{k+1} - X_k‖_F / ‖X_{k+1}‖_F ≤ tol``, or
    when that step is below the round-off floor ``64·ε_mach·cond(X)``
    (the iterate cannot move less). For two matrices
    the result is the geodesic midpoint ``A # B = A^½ (A^-½ B A^-½)^½ A^½``;
    for any ``M`` invertible, the mean of ``M G_i Mᵀ`` is ``M X Mᵀ`` (with
    ``eps = 0``, since the regulariser is relative to each matrix's trace).

    Parameters
    ----------
    grams : array_like, shape (n, C, C) or (C, C)
        Symmetric PSD matrices.
    weights : array_like, shape (n,), optional
        Finite, ≥ 0, with a positive sum; default all 1.
    eps : float
        Relative regulariser of :func:`regularise`.
    tol : float
        Relative Frobenius norm of the update at which to stop (> 0).
    max_iter : int
        Iterations at most (≥ 1). Each costs ``n + 2`` eigendecompositions of
        ``C×C`` matrices.
    init : array_like, shape (C, C), optional
        Starting point (SPD); default the log-Euclidean mean.

    Returns
    -------
    ndarray, float64, shape (C, C)
        Symmetric positive definite. For n = 1 it is ``R(G_1)`` exactly.

    Warns
    -----
    JoinConvergenceWarning
        If the tolerance is not reached in ``max_iter`` iterations; the last
        iterate is returned.
    """
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer ≥ 1, got {max_iter!r}")
    stack = _stack(grams)
    w = _normalised_weights(weights, len(stack))
    if len(stack) == 1:
        return regularise(stack[0], eps=eps)
    # Regularise once; the iteration then works on SPD matrices (eps = 0 below).
    lam, vec = _regularised_eigh(stack, eps=eps)
    if np.any(lam <= np.finfo(np.float64).tiny):
        raise DescriptorError("affine-invariant mean of a singular matrix; use eps > 0")
    spd = _from_eig(lam, vec)
    if init is None:
        x = spd_exp(np.einsum("i,ijk->jk", w, _from_eig(np.log(lam), vec)))
    else:
        x = symmetrise(init)
        if x.shape != spd.shape[1:]:
            raise ValueError(f"init has shape {x.shape}, expected {spd.shape[1:]}")
    step = math.inf
    for iteration in range(1, max_iter + 1):
        mu, u = _eigh(x)
        if np.any(mu <= 0):
            raise DescriptorError("affine-invariant mean: iterate lost positive definiteness")
        root = np.sqrt(mu)
        x_half = (u * root) @ u.T
        x_inv_half = (u / root) @ u.T
        lam_w, vec_w = _eigh(symmetrise(x_inv_half @ spd @ x_inv_half))
        if np.any(lam_w <= 0):
            raise DescriptorError("affine-invariant mean: whitened matrix lost positive definiteness")
        s = np.einsum("i,ijk->jk", w, _from_eig(np.log(lam_w), vec_w))
        new = symmetrise(x_half @ spd_exp(_richardson_step(lam_w, w) * s) @ x_half)
        step = float(np.linalg.norm(new - x) / np.linalg.norm(new))
        x = new
        floor = _ROUNDOFF_FACTOR * np.finfo(np.float64).eps * float(mu[-1] / mu[0])
        if step <= max(tol, floor):
            logger.debug(
                "affine-invariant mean converged in %d iterations (relative step %.3g, tol %.3g, "
                "round-off floor %.3g)",
                iteration,
                step,
                tol,
                floor,
            )
            return x
    warnings.warn(
        f"affine-invariant mean did not reach tol={tol:g} in {max_iter} iterations "
        f"(last relative step {step:.3g}); returning the last iterate",
        JoinConvergenceWarning,
        stacklevel=2,
    )
    return x


def _richardson_step(lam_w: FloatArray, w: FloatArray) -> float:
    """Step length of Bini & Iannazzo's Richardson-like iteration.

    ``θ = 2 / Σ w_i (c_i + 1) log(c_i) / (c_i - 1)`` with ``c_i`` the
    condition number of ``X^-½ P_i X^-½``. It is 1 (the plain fixed point)
    when the matrices are close, and shrinks when they are spread out, where
    the unit step overshoots and can oscillate forever.
    """
    c = lam_w[:, -1] / lam_w[:, 0]
    d = c - 1.0
    # log(c)/(c-1) → 1 as c → 1; log1p keeps it accurate near there.
    ratio = np.where(d > 1e-12, np.log1p(d) / np.where(d > 1e-12, d, 1.0), 1.0)
    return float(2.0 / np.sum(w * (c + 1.0) * ratio))


# --------------------------------------------------------------------------- helpers


def _square(a: ArrayLike) -> FloatArray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"expected square matrices of shape (..., C, C), got shape {arr.shape}")
    return arr


def _stack(grams: ArrayLike | Sequence[ArrayLike]) -> FloatArray:
    arr = _square(np.asarray(grams, dtype=np.float64))
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise ValueError(f"expected a stack of shape (n, C, C) with n ≥ 1, got shape {arr.shape}")
    return arr


def _positive_total(weight_total: float) -> float:
    total = float(weight_total)
    if not (math.isfinite(total) and total > 0):
        raise ValueError(f"weight_total must be finite and > 0, got {weight_total!r}")
    return total


def _normalised_weights(weights: ArrayLike | None, n: int) -> FloatArray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"expected {n} weights, got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be finite, ≥ 0 and not all zero")
    return w / w.sum()


def _eigh(a: FloatArray) -> tuple[FloatArray, FloatArray]:
    if not np.all(np.isfinite(a)):
        raise DescriptorError("matrix has NaN or infinite entries")
    lam, vec = np.linalg.eigh(a)
    return lam, vec


def _from_eig(lam: FloatArray, vec: FloatArray) -> FloatArray:
    # V diag(λ) Vᵀ, symmetrised so that later comparisons and eigh see an
    # exactly symmetric matrix.
    return symmetrise((vec * lam[..., np.newaxis, :]) @ np.swapaxes(vec, -1, -2))


def _regularised_eigh(g: ArrayLike, *, eps: float) -> tuple[FloatArray, FloatArray]:
    """Eigen-pairs of ``R(G)``: clipped eigenvalues plus ``eps·mean(clipped)``."""
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number ≥ 0, got {eps!r}")
    lam, vec = _eigh(symmetrise(g))
    scale = np.max(np.abs(lam), axis=-1, keepdims=True)
    if np.any(lam < -PSD_RTOL * scale):
        worst = float(np.min(lam / np.where(scale > 0, scale, 1.0)))
        raise DescriptorError(
            f"matrix is not positive semidefinite (smallest eigenvalue {worst:.3g} × the largest |λ|); "
            "is it a Gram matrix?"
        )
    lam = np.maximum(lam, 0.0)
    c = lam.shape[-1]
    return lam + eps * lam.sum(axis=-1, keepdims=True) / c, vec
