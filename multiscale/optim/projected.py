"""Projected L-BFGS in float32: a fast, resumable box-constrained driver.

scipy's L-BFGS-B does its own work (generalised Cauchy point, subspace
minimisation) in float64 with per-variable bounds, at a cost per iteration
that becomes a sizeable share of the network's at large sizes
(``benchmarks/RESULTS.md``, "Optimiser's own time"). It cannot hand out its
correction pairs either, so a checkpoint of it cannot continue a run
exactly. This module is a drop-in alternative to
:func:`multiscale.optim.lbfgsb.minimize` (same arguments, same result and
stop reasons, same best-finite tracking) that needs a few passes over
float32 memory per iteration.

Algorithm
---------
Two-metric projection (Bertsekas 1982) with the compact L-BFGS inverse
Hessian (Byrd, Nocedal & Schnabel 1994):

1. *Active set.* A variable at a bound whose gradient points out of the box
   is frozen for this iteration; ``g_F`` is the gradient with those
   components zeroed.
2. *Direction* ``d = −H g_F`` with ``H`` built from the last ``m`` pairs
   ``s = x₊ − x``, ``y = g₊ − g`` and ``H₀ = γI``, ``γ = sᵀy / yᵀy`` of the
   newest pair; ``d`` is zeroed on the frozen variables. On the very first
   iteration ``γ`` makes the largest move a tenth of the box (of
   ``max(1, ‖x‖∞)`` without bounds).
3. *Line search* along the projected path ``x(α) = P(x + αd)`` from
   ``α = 1``, backtracking (safeguarded quadratic interpolation) until
   Armijo's ``f(x(α)) ≤ f(x) + c₁ gᵀ(x(α) − x)``.
4. A pair is kept only if ``sᵀy > ε yᵀy`` and ``sᵀy > 10⁻⁶ ‖s‖ ‖y‖`` (no
   Wolfe condition is imposed, so curvature can be missing, and float32
   pairs must not be dominated by rounding). A direction that is not a
   descent direction, or a failed line search, drops the memory and retries
   with the scaled gradient.
5. *Stops* as :func:`multiscale.optim.lbfgsb.minimize`: relative loss reduction
   ``(f − f₊) / max(|f|, |f₊|, 1) ≤ tol`` (scipy's ``ftol``), projected
   gradient zero, ``max_iter``, time limit, non-finite value, callback,
   Ctrl-C; ``"abnormal"`` when even a steepest-descent line search fails.

Memory and precision
--------------------
The pairs live in one float32 ring of ``m + 1`` slots (the spare slot takes
the trial step, so a kept pair is never overwritten before the iteration is
committed): ``2 (m + 1) n`` float32, about half of scipy's ``2 m n``
float64 (its ``ws`` and ``wy``). Beside it: the iterate, the trial point and
two gradients in float64, the masked gradient, the newest ``y`` and the
direction in float32, three boolean masks, and up to two float64 copies of
a best point that was not kept as the iterate (rare) — about 6 n-vectors of
float64 in all. A float32 start point (:func:`start_point` chooses one above
:data:`FLOAT32_ITERATE_ABOVE` variables) keeps those vectors in float32. At 1024² with ``m = 10``: 277 MB of pairs and about 150 MB
of vectors, against scipy's 503 MB of pairs. Per iteration the memory is
read twice (one product with ``[g_F, y]``, one linear combination for
``d``); the rest is about 30 passes over n-vectors. Products with
the memory are float32 BLAS over blocks of 4096 columns, single dot products
float32 over blocks of 256; both are summed across blocks in float64, so the
rounding error grows with the block, not with ``n`` (about 10⁻⁶ relative to
``Σ|aᵢbᵢ|`` at worst for the dots, against 5·10⁻⁴ for a float32 BLAS dot of
3·10⁶ terms).

Exact resume
------------
:class:`LBFGSState` is everything the driver needs to continue: the iterate
with its loss and gradient, the pairs and their products, ``γ``, counters,
the best point and the loss history. A run stopped after ``k`` iterations
(for any reason) and resumed with ``minimize(..., state=result.state)`` and
the same ``history`` and ``max_iter`` goes through bit for bit the iterates
an uninterrupted run would (an iteration cut short is redone; given a
deterministic objective and the same BLAS threads): the pairs go back to
the ring slots they had, because BLAS rounding depends on the layout. So a
long run can be cut into segments (``max_iter`` = 100, 200, …, each resumed
from the last ``result.state``) with a checkpoint between them, at no cost
to the result. :func:`save_state` / :func:`load_state` write and read it as
an ``.npz`` file. The result hands over the run's own buffers, not copies
(at 8192² each n-vector is 805 MB): ``result.state.S`` and ``.Y`` are views
of its memory block (reordered in place when the run ends), and
``result.x`` is the same array as ``result.state.best_x``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.linalg

from ..errors import CheckpointError, ConfigError
from ..io import PathLike
from ..npz import Member, read_npz, write_npz
from .base import STOP_REASONS, Objective, OptimizeResult, Progress

log = logging.getLogger(__name__)

#: Columns per block of the float32 products with the memory; sums over
#: blocks are float64. Larger blocks fall off OpenBLAS's fast path for these
#: thin products, smaller ones are slower.
_BLOCK = 4096
#: Block of the single dot products (einsum's speed does not depend on it).
_DOT_BLOCK = 256
#: Armijo's sufficient-decrease constant.
_C1 = 1e-4
#: Line-search trials (evaluations) before a direction is given up.
_MAX_TRIALS = 20
#: First iteration: largest move as a fraction of the box width.
_FIRST_MOVE = 0.1
#: Curvature tests for keeping a pair (see the module docstring).
_CURVATURE_EPS = float(np.finfo(np.float64).eps)
_CURVATURE_COS = 1e-6

_EMPTY = np.zeros((0, 0))

__all__ = [
    "STOP_REASONS",
    "LBFGSResult",
    "LBFGSState",
    "load_state",
    "minimize",
    "save_state",
    "start_point",
    "switch_objective",
]


@dataclass(frozen=True, eq=False)
class LBFGSState:
    """Where a projected L-BFGS run stands, to continue it exactly.

    Produced by :func:`minimize` (``result.state``) and :func:`load_state`;
    arrays are not copied on the way in, so do not modify them.

    Attributes
    ----------
    x : np.ndarray float64, shape (n,)
        The current iterate (not necessarily the best point).
    loss : float
        ``f(x)``.
    grad : np.ndarray float64, shape (n,)
        ``∇f(x)``.
    S, Y : np.ndarray float32, shape (k, n)
        The ``k ≤ history`` kept pairs ``s = x₊ − x`` and ``y = g₊ − g``,
        oldest first.
    sty : np.ndarray float64, shape (k, k)
        ``sᵢ · yⱼ`` for ``i ≤ j``; the lower triangle is zero.
    yty : np.ndarray float64, shape (k, k)
        ``yᵢ · yⱼ``, symmetric.
    pending : bool
        The newest pair's products with the older pairs (last column of
        ``sty`` and ``yty``, zero here) are still to be computed; the next
        iteration does so in the same pass over memory as its direction.
    gamma : float or None
        ``H₀ = γI``: ``sᵀy / yᵀy`` of the newest kept pair; ``None`` before
        the first step.
    slots : tuple of int
        Ring slot of each pair, kept so a resumed run lays the pairs out as
        the original did (BLAS rounding depends on the layout).
    iteration : int
        Completed iterations.
    evaluations : int
        Evaluations of the objective up to the end of that iteration.
    best_x : np.ndarray float64, shape (n,)
        The best finite point evaluated so far, and ``best_loss`` its loss.
    best_loss : float
    history : np.ndarray float64, shape (iteration,)
        Loss after each iteration.
    """

    x: np.ndarray
    loss: float
    grad: np.ndarray
    S: np.ndarray
    Y: np.ndarray
    sty: np.ndarray
    yty: np.ndarray
    pending: bool
    gamma: float | None
    slots: tuple[int, ...]
    iteration: int
    evaluations: int
    best_x: np.ndarray = field(repr=False)
    best_loss: float
    history: np.ndarray = field(repr=False)

    @property
    def size(self) -> int:
        """Number of variables ``n``."""
        return int(self.x.shape[0])

    @property
    def pairs(self) -> int:
        """Number of kept correction pairs ``k``."""
        return int(self.S.shape[0])


@dataclass
class LBFGSResult(OptimizeResult):
    """:class:`multiscale.optim.base.OptimizeResult` plus the state to resume from.

    ``iterations``, ``evaluations`` and ``history`` count from the start of
    the run the state came from, not from this call.

    Attributes
    ----------
    state : LBFGSState or None
        ``None`` only if the first evaluation did not succeed.
    """

    state: LBFGSState | None = None


class _Stop(Exception):
    """Ends the run from inside an evaluation."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class _Core:
    """The committed state between iterations; replaced whole, never mutated.

    Buffers it refers to are not written until a newer ``_Core`` no longer
    refers to them, so a stop at any point leaves a consistent state.
    """

    x: np.ndarray
    loss: float
    grad: np.ndarray
    slots: tuple[int, ...]
    sty: np.ndarray
    yty: np.ndarray
    pending: bool
    gamma: float | None
    iteration: int
    evaluations: int
    best_loss: float
    best_x: np.ndarray | None  # None: ``x`` is the best point


#: Above this many variables (about 2365² RGB pixels) :func:`start_point`
#: keeps the iterate in float32: at 4096² each float64 n-vector is 400 MB.
FLOAT32_ITERATE_ABOVE = 1 << 24


def start_point(x0: np.ndarray) -> np.ndarray:
    """``x0`` flattened, in the iterate dtype :func:`minimize` should use for its size.

    float64 up to :data:`FLOAT32_ITERATE_ABOVE` variables, float32 above:
    pixel values in [0, 1] need no more than float32's 6·10⁻⁸ resolution,
    and the optimiser's vectors are most of a large run's memory.
    """
    x0 = np.asarray(x0).reshape(-1)
    return x0.astype(np.float32 if x0.size > FLOAT32_ITERATE_ABOVE else np.float64, copy=False)


# --------------------------------------------------------------------------- numerics


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a · b`` of two float32 vectors: float32 within blocks of 256, float64 across."""
    n = a.shape[0]
    nb = n // _DOT_BLOCK
    cut = nb * _DOT_BLOCK
    total = 0.0
    if nb:
        blocks = np.einsum("ij,ij->i", a[:cut].reshape(nb, _DOT_BLOCK), b[:cut].reshape(nb, _DOT_BLOCK))
        total = float(blocks.sum(dtype=np.float64))
    if cut < n:
        total += float(np.dot(a[cut:].astype(np.float64), b[cut:].astype(np.float64)))
    return total


def _products(w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``w @ v.T`` for float32 ``w`` (r, n) and ``v`` (p, n): float64 (r, p).

    One pass over ``w``: a batch of (r, 4096) @ (4096, p) float32 products,
    summed in float64.
    """
    r, n = w.shape
    p = v.shape[0]
    nb = n // _BLOCK
    cut = nb * _BLOCK
    out = np.zeros((r, p))
    if nb:
        w3 = w[:, :cut].reshape(r, nb, _BLOCK).transpose(1, 0, 2)
        v3 = v[:, :cut].reshape(p, nb, _BLOCK).transpose(1, 2, 0)
        out += np.matmul(w3, v3).sum(axis=0, dtype=np.float64)
    if cut < n:
        out += w[:, cut:].astype(np.float64) @ v[:, cut:].astype(np.float64).T
    return out


def _compact_coefficients(
    sty: np.ndarray, yty: np.ndarray, gamma: float, u: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Coefficients of ``H g = γ g + S a − γ Y t`` in compact form.

    ``u = Sᵀg``, ``w = Yᵀg``; ``R`` is the upper triangle of ``sty`` and
    ``D`` its diagonal (Byrd, Nocedal & Schnabel 1994, eq. 3.1)::

        t = R⁻¹ u,    a = R⁻ᵀ ((D + γ YᵀY) t − γ w)

    Returns ``(a, t)``, or ``None`` if they are not finite.
    """
    r = np.triu(sty)
    with np.errstate(all="ignore"):
        t = scipy.linalg.solve_triangular(r, u, lower=False, check_finite=False)
        rhs = np.diag(r) * t + gamma * (yty @ t) - gamma * w
        a = scipy.linalg.solve_triangular(r, rhs, trans="T", lower=False, check_finite=False)
    if not (np.isfinite(a).all() and np.isfinite(t).all()):
        return None
    return a, t


# --------------------------------------------------------------------------- driver


class _Driver:
    """Buffers and steps of one run; :func:`minimize` holds the loop."""

    def __init__(
        self,
        fun: Objective,
        n: int,
        m: int,
        bounds: tuple[float, float] | None,
        time_limit: float | None,
        start: float,
        dtype: type | np.dtype = np.float64,
        block: np.ndarray | None = None,
    ) -> None:
        self.fun = fun
        self.dtype = dtype
        self.n, self.m = n, m
        self.bounded = bounds is not None
        self.lo, self.hi = (
            (float(bounds[0]), float(bounds[1])) if bounds is not None else (-math.inf, math.inf)
        )
        self.time_limit = time_limit
        self.start = start
        self.evaluations = 0
        # One float32 block: the ring (s in slots 0…m, y in m+1…2m+1; one slot is
        # always free), then g_F and a copy of the newest y. The products take the
        # ring against [g_F, y], and d is one combination of the ring and g_F.
        rows = 2 * (m + 1)
        self.block = np.zeros((rows + 2, n), np.float32) if block is None else block
        self.ring = self.block[:rows].reshape(2, m + 1, n)
        self.flat = self.block[:rows]
        self.v = self.block[rows:]  # [g_F, newest y]
        self.d = np.empty(n, np.float32)
        self.xt = np.empty(n, dtype)
        self.grad_buffers = (np.empty(n, dtype), np.empty(n, dtype))
        self.free = np.empty(n, bool)
        self.mask_a = np.empty(n, bool)
        self.mask_b = np.empty(n, bool)
        self.best_buffers: list[np.ndarray] = []
        self.core: _Core | None = None  # the committed state, replaced whole

    # -- evaluations

    def evaluate(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``fun(x)``, refusing to start after the time limit or to return non-finite values.

        The gradient is the objective's array: :meth:`keep` it before the
        next evaluation, which may reuse that array.
        """
        if self.time_limit is not None and time.perf_counter() - self.start > self.time_limit:
            raise _Stop("time_limit", f"time limit of {self.time_limit:g} s reached")
        view = x.view()
        view.flags.writeable = False  # x is a reused buffer: the objective may read it only
        loss, grad = self.fun(view)
        self.evaluations += 1
        loss = float(loss)
        grad = np.asarray(grad).reshape(-1)
        if grad.shape[0] != self.n:
            raise ValueError(
                f"the objective returned a gradient of size {grad.shape[0]} for {self.n} variables"
            )
        if not (math.isfinite(loss) and np.isfinite(grad).all()):
            raise _Stop(
                "non_finite",
                f"the loss or its gradient became non-finite at evaluation {self.evaluations}; "
                "kept the best finite image",
            )
        return loss, grad

    def keep(self, grad: np.ndarray) -> np.ndarray:
        """``grad`` copied (in the iterate's dtype) into a buffer the committed core does not use."""
        current = self.core.grad if self.core is not None else None
        buf = self.grad_buffers[0] if self.grad_buffers[0] is not current else self.grad_buffers[1]
        np.copyto(buf, grad, casting="same_kind")
        return buf

    def best_buffer(self, core: _Core) -> np.ndarray:
        """A buffer for a new best point that ``core`` does not refer to."""
        for buf in self.best_buffers:
            if buf is not core.best_x:
                return buf
        buf = np.empty(self.n, self.dtype)
        self.best_buffers.append(buf)
        return buf

    # -- one iteration's pieces

    def free_gradient(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """``g_F`` (float32, in ``self.v[0]``); ``self.free`` marks the variables not frozen."""
        gf = self.v[0]
        np.copyto(gf, grad, casting="same_kind")
        if self.bounded:
            free, a, b = self.free, self.mask_a, self.mask_b
            np.less_equal(x, self.lo, out=a)
            np.greater(gf, 0, out=b)
            a &= b
            np.greater_equal(x, self.hi, out=b)
            np.less(gf, 0, out=free)
            b &= free
            np.logical_or(a, b, out=free)
            np.logical_not(free, out=free)
            # A product, not a masked assignment: branch-free, several times faster.
            np.multiply(gf, free, out=gf)
        return gf

    def initial_gamma(self, x: np.ndarray, gf: np.ndarray) -> float:
        width = self.hi - self.lo if self.bounded else max(1.0, float(np.max(np.abs(x))))
        return _FIRST_MOVE * width / float(np.max(np.abs(gf)))

    def direction(self, core: _Core, gf: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Write ``d = −H g_F`` into ``self.d``; return the completed (sty, yty).

        Returns ``None`` when the memory is unusable (the caller resets it).
        """
        d, k, m = self.d, len(core.slots), self.m
        sty, yty = core.sty, core.yty
        if k == 0:
            np.multiply(gf, -gamma, out=d)
            return sty, yty
        p = 1
        if core.pending:
            np.copyto(self.v[1], self.ring[1, core.slots[-1]])
            p = 2
        prod = _products(self.flat, self.v[:p])
        s_rows = np.asarray(core.slots)
        y_rows = s_rows + m + 1
        if core.pending:
            sty, yty = sty.copy(), yty.copy()
            sty[: k - 1, k - 1] = prod[s_rows[:-1], 1]
            yty[: k - 1, k - 1] = yty[k - 1, : k - 1] = prod[y_rows[:-1], 1]
        coef = _compact_coefficients(sty, yty, gamma, prod[s_rows, 0], prod[y_rows, 0])
        if coef is None:
            return None
        a, t = coef
        c = np.zeros(2 * (m + 1) + 1, np.float32)
        c[s_rows] = -a
        c[y_rows] = gamma * t
        c[-1] = -gamma  # the row of g_F
        np.dot(c, self.block[: 2 * (m + 1) + 1], out=d)
        return sty, yty

    def free_slot(self, slots: tuple[int, ...]) -> int:
        used = set(slots)
        return next(i for i in range(self.m + 1) if i not in used)

    def line_search(self, gf: np.ndarray, slot: int) -> tuple[float, np.ndarray] | str | None:
        """Backtrack along ``P(x + α d)`` from ``self.core``; the step goes into ring slot ``slot``.

        Returns ``(loss, grad)`` at the accepted point (left in ``self.xt``),
        ``"stalled"`` if no representable step is left, or ``None`` if no
        trial was accepted. A better rejected trial updates ``self.core``.
        """
        core = self.core
        x, f0, d, xt = core.x, core.loss, self.d, self.xt
        s = self.ring[0, slot]
        alpha = 1.0
        trials = 0
        while trials < _MAX_TRIALS:
            if alpha == 1.0:  # the usual first trial: one pass fewer
                np.add(x, d, out=xt)
            else:
                np.multiply(d, xt.dtype.type(alpha), out=xt)
                xt += x
            if self.bounded:
                np.clip(xt, self.lo, self.hi, out=xt)
            np.subtract(xt, x, out=s, casting="same_kind")
            gs = _dot(gf, s)
            if not gs < 0:
                # Projection turned the step uphill, or it vanished.
                if not s.any():
                    return "stalled"
                alpha *= 0.5
                trials += 1
                continue
            loss, grad = self.evaluate(xt)
            trials += 1
            if loss <= f0 + _C1 * gs:
                return loss, self.keep(grad)
            if loss < self.core.best_loss:
                buf = self.best_buffer(self.core)
                np.copyto(buf, xt)
                self.core = _replace(self.core, best_loss=loss, best_x=buf)
            curvature = loss - f0 - gs
            shrink = -gs / (2.0 * curvature) if curvature > 0 else 0.5
            alpha *= min(0.5, max(0.1, shrink))
        return None

    def commit(
        self,
        core: _Core,
        sty: np.ndarray,
        yty: np.ndarray,
        gamma: float,
        slot: int,
        loss: float,
        grad: np.ndarray,
    ) -> _Core:
        """The core after a step to ``self.xt`` (loss, grad) taken from ``core.x``."""
        s, y = self.ring[0, slot], self.ring[1, slot]
        np.subtract(grad, core.grad, out=y, casting="same_kind")
        sy, yy, ss = _dot(s, y), _dot(y, y), _dot(s, s)
        slots, pending = core.slots, False
        if not math.isfinite(yy):
            y.fill(0)  # a free slot is multiplied by zero, and 0 · inf is nan
        elif sy > _CURVATURE_EPS * yy and sy > _CURVATURE_COS * math.sqrt(ss * yy):
            keep = len(slots) if len(slots) < self.m else self.m - 1
            k = keep + 1
            new_sty, new_yty = np.zeros((k, k)), np.zeros((k, k))
            new_sty[:keep, :keep] = sty[len(slots) - keep :, len(slots) - keep :]
            new_yty[:keep, :keep] = yty[len(slots) - keep :, len(slots) - keep :]
            new_sty[-1, -1], new_yty[-1, -1] = sy, yy
            slots = slots[len(slots) - keep :] + (slot,)
            sty, yty, gamma, pending = new_sty, new_yty, sy / yy, k > 1
        best_loss, best_x = core.best_loss, core.best_x
        if loss < best_loss:
            best_loss, best_x = loss, None
        elif best_x is None:  # a tie: the earlier point stays the best
            best_x = self.best_buffer(core)
            np.copyto(best_x, core.x)
        new = _Core(
            x=self.xt,
            loss=loss,
            grad=grad,
            slots=slots,
            sty=sty,
            yty=yty,
            pending=pending,
            gamma=gamma,
            iteration=core.iteration + 1,
            evaluations=self.evaluations,
            best_loss=best_loss,
            best_x=best_x,
        )
        return new

    # -- state in and out

    def restore(self, state: LBFGSState, *, take: bool = False) -> _Core:
        """Put a state's pairs back in the ring; the core to continue from.

        With ``take``, the state's vectors become this driver's (no copies)
        and pairs already in this driver's block (see :func:`_exported_block`)
        are moved back to their slots in place.
        """
        k = min(state.pairs, self.m)
        first = state.pairs - k
        slots = tuple(int(v) for v in state.slots[first:])
        if len(set(slots)) != k or any(not 0 <= v <= self.m for v in slots):
            slots = tuple(range(k))  # another history length: rounding may differ
        if take and _exported_block(state, self.m) is self.block:
            _permute_rows(self.ring, _inverse(_gather_order(slots, self.m + 1)))
        else:
            for j, slot in enumerate(slots):
                self.ring[0, slot] = state.S[first + j]
                self.ring[1, slot] = state.Y[first + j]
        at_x = state.best_loss == state.loss and np.array_equal(state.best_x, state.x)
        if take and _ownable(state.x, self.n, self.dtype):
            x = state.x
        else:
            np.copyto(self.xt, state.x)
            x, self.xt = self.xt, np.empty(self.n, self.dtype)
        best_x = None
        if not at_x:
            own = take and _ownable(state.best_x, self.n, self.dtype) and state.best_x is not x
            best_x = state.best_x if own else np.array(state.best_x, dtype=self.dtype)
            self.best_buffers.append(best_x)
        if (
            take
            and _ownable(state.grad, self.n, self.dtype)
            and state.grad is not x
            and state.grad is not best_x
        ):
            grad = state.grad
            self.grad_buffers = (grad, self.grad_buffers[1])
        else:
            grad = self.keep(state.grad)
        self.evaluations = state.evaluations
        return _Core(
            x=x,
            loss=float(state.loss),
            grad=grad,
            slots=slots,
            sty=np.array(state.sty[first:, first:], dtype=np.float64),
            yty=np.array(state.yty[first:, first:], dtype=np.float64),
            pending=bool(state.pending) and k > 1,
            gamma=state.gamma,
            iteration=state.iteration,
            evaluations=state.evaluations,
            best_loss=float(state.best_loss) if not at_x else float(state.loss),
            best_x=best_x,
        )

    def export(self, core: _Core, history: list[float]) -> LBFGSState:
        """The state of ``core``, sharing the driver's buffers: the run is over,
        so nothing writes them again. Reorders the ring in place."""
        k = len(core.slots)
        _gather_rows(self.ring, core.slots)
        best_x = core.x if core.best_x is None else core.best_x
        return LBFGSState(
            x=core.x,
            loss=core.loss,
            grad=core.grad,
            S=self.ring[0, :k],
            Y=self.ring[1, :k],
            sty=core.sty.copy(),
            yty=core.yty.copy(),
            pending=core.pending,
            gamma=core.gamma,
            slots=core.slots,
            iteration=core.iteration,
            evaluations=core.evaluations,
            best_x=best_x,
            best_loss=core.best_loss,
            history=np.asarray(history[: core.iteration], dtype=np.float64),
        )


def _replace(core: _Core, **changes: object) -> _Core:
    values = {name: getattr(core, name) for name in core.__dataclass_fields__}
    values.update(changes)
    return _Core(**values)  # type: ignore[arg-type]


def switch_objective(state: LBFGSState, *, loss: float, grad: np.ndarray) -> LBFGSState:
    """``state`` carried over to another objective of the same variables.

    The run goes on from the state's best point, where the new objective
    gives ``loss`` and ``grad`` (shape (n,), copied). The pairs were
    measured on the old objective and are dropped; ``γ`` (their scale), the
    counters and the loss history are kept, so iterations go on being
    counted from the run's start; the new objective's evaluation counts as
    one. Used to finish a bfloat16 run in float32.
    """
    x = state.best_x
    empty = np.empty((0, state.size), np.float32)
    return dataclasses.replace(
        state, x=x, loss=float(loss), grad=np.array(grad, dtype=x.dtype).reshape(-1), S=empty, Y=empty,
        sty=_EMPTY, yty=_EMPTY, pending=False, slots=(), best_x=x, best_loss=float(loss),
        evaluations=state.evaluations + 1,
    )  # fmt: skip


def _exported_block(state: LBFGSState, m: int) -> np.ndarray | None:
    """The memory block whose rows hold ``state.S`` and ``.Y`` as :meth:`_Driver.export`
    left them, if it is one of ``m`` pairs for this state's size; else ``None``."""
    base, n = state.S.base, state.size
    rows = 2 * (m + 1)
    if (
        not isinstance(base, np.ndarray)
        or state.Y.base is not base
        or base.dtype != np.float32
        or base.shape != (rows + 2, n)
        or not (base.flags.c_contiguous and base.flags.writeable)
        or state.pairs > m
        or state.S.strides != (4 * n, 4)
        or state.Y.strides != (4 * n, 4)
    ):
        return None
    start = base.__array_interface__["data"][0]
    s_at, y_at = state.S.__array_interface__["data"][0], state.Y.__array_interface__["data"][0]
    return base if (s_at, y_at) == (start, start + 4 * n * (m + 1)) else None


def _ownable(a: np.ndarray, n: int, dtype: np.dtype) -> bool:
    """Whether a run may use ``a`` as one of its n-vectors of ``dtype``."""
    return (
        isinstance(a, np.ndarray)
        and a.dtype == dtype
        and a.shape == (n,)
        and a.flags.c_contiguous
        and a.flags.writeable
    )


def _gather_order(slots: tuple[int, ...], count: int) -> list[int]:
    """Source of each row after :func:`_gather_rows`: the slots in order, then the free ones."""
    return list(slots) + [i for i in range(count) if i not in set(slots)]


def _inverse(order: list[int]) -> list[int]:
    inverse = [0] * len(order)
    for j, i in enumerate(order):
        inverse[i] = j
    return inverse


def _gather_rows(ring: np.ndarray, slots: tuple[int, ...]) -> None:
    """Move ``ring[:, slots[j]]`` to ``ring[:, j]`` in place, with one spare row."""
    _permute_rows(ring, _gather_order(slots, ring.shape[1]))


def _permute_rows(ring: np.ndarray, src: list[int]) -> None:
    """``ring[:, j] = ring[:, src[j]]`` for every j at once, in place, with one spare row."""
    count = ring.shape[1]
    done = [False] * count
    for start in range(count):
        if done[start] or src[start] == start:
            done[start] = True
            continue
        spare = ring[:, start].copy()
        j = start
        while True:
            done[j] = True
            nxt = src[j]
            if nxt == start:
                ring[:, j] = spare
                break
            ring[:, j] = ring[:, nxt]
            j = nxt


# --------------------------------------------------------------------------- minimize


def minimize(
    fun: Objective,
    x0: np.ndarray,
    *,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    max_iter: int = 200,
    tol: float = 1e-7,
    history: int = 10,
    time_limit: float | None = None,
    callback: Callable[[Progress], bool | None] | None = None,
    octave_losses: Callable[[], np.ndarray | None] | None = None,
    shape: tuple[int, ...] | None = None,
    state: LBFGSState | None = None,
    overwrite_inputs: bool = False,
) -> LBFGSResult:
    """Minimise ``fun`` in a box with projected L-BFGS, keeping the best finite point.

    Same arguments and results as :func:`multiscale.optim.lbfgsb.minimize`,
    plus ``state`` to continue a run.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> (loss, grad)``, ``x`` and ``grad`` of shape (n,).
        ``x`` is a read-only view of a buffer that is reused: copy it to keep it.
    x0 : np.ndarray
        Start point, shape (n,); clipped into ``bounds``. Ignored when
        ``state`` is given, except that its size must match. Its dtype sets
        the iterate's: float32 keeps the iterate, the gradients and the best
        point in float32 (half the memory of those vectors, for very large
        images), anything else float64.
    bounds : (low, high) or None
        Box applied to every variable; ``None`` for an unbounded run.
    max_iter : int
        Iterations at most, counted from the start of the run a ``state``
        came from (so a resumed run ends where the uninterrupted one would).
    tol : float
        Stop when ``(f − f₊) / max(|f|, |f₊|, 1) ≤ tol``.
    history : int
        Correction pairs kept (``m``).
    time_limit : float or None
        Seconds from this call; the run stops at the first evaluation after it.
    callback : callable or None
        Called with a :class:`~multiscale.optim.base.Progress` after each
        iteration; returning ``True`` stops the run (``"callback"``).
        ``Progress.image`` is a view of a reused buffer.
    octave_losses : callable or None
        Returns the per-octave losses of the last evaluation, for progress.
    shape : tuple or None
        Shape in which :class:`~multiscale.optim.base.Progress` carries the iterate.
    state : LBFGSState or None
        Continue from this state (``result.state`` or :func:`load_state`).
    overwrite_inputs : bool
        Let the run take ``x0``'s buffer (clipped in place) and ``state``'s
        arrays over instead of copying them, and overwrite them as it goes
        (the earlier result's ``x`` with them). A ``result.state`` keeps its
        run's whole memory block (the pairs): taking it back means a run cut
        into segments never holds two blocks (at 4096² with ``history=10``,
        4.4 GB each); taking ``x0`` saves one n-vector (805 MB at 8192²).

    Returns
    -------
    LBFGSResult
        Never raises for non-finite values, time limits or Ctrl-C: those end
        the run and are said in ``stop_reason`` and ``message``.

    Raises
    ------
    ConfigError
        If ``history`` or ``bounds`` cannot work.
    CheckpointError
        If ``state`` does not fit this problem (size, bounds) or is malformed.
    """
    start = time.perf_counter()
    x0 = np.asarray(x0)
    dtype = np.dtype(np.float32 if (state.x if state is not None else x0).dtype == np.float32 else np.float64)
    x0 = x0.astype(dtype, copy=False).reshape(-1)
    n = x0.size
    if isinstance(history, bool) or not isinstance(history, int | np.integer) or history < 1:
        raise ConfigError("history", f"must be an integer ≥ 1, got {history!r}")
    if bounds is not None and not (bounds[0] < bounds[1]):
        raise ConfigError("bounds", f"low must be below high, got {bounds!r}")
    block = _exported_block(state, int(history)) if overwrite_inputs and state is not None else None
    driver = _Driver(fun, n, int(history), bounds, time_limit, start, dtype, block)
    losses: list[float] = []
    if state is not None:
        _check_state(state, "state")
        if state.size != n:
            raise CheckpointError(f"state: it is for {state.size} variables, this run has {n}")
        if bounds is not None and not ((state.x >= bounds[0]).all() and (state.x <= bounds[1]).all()):
            raise CheckpointError(f"state: its point lies outside the bounds {bounds!r}")
        driver.core = driver.restore(state, take=overwrite_inputs)
        losses = [float(v) for v in state.history]
        start_x = driver.core.x
    else:
        own = overwrite_inputs and _ownable(x0, n, dtype)
        if bounds is not None:
            start_x = np.clip(x0, *bounds, out=x0 if own else None)
        else:
            start_x = x0 if own else x0.copy()

    reason, message = "abnormal", ""
    try:
        if driver.core is None:
            loss, grad = driver.evaluate(start_x)
            grad = driver.keep(grad)
            driver.core = _Core(
                x=start_x, loss=loss, grad=grad, slots=(), sty=_EMPTY, yty=_EMPTY, pending=False,
                gamma=None, iteration=0, evaluations=driver.evaluations, best_loss=loss, best_x=None,
            )  # fmt: skip
        reason, message = _iterate(driver, losses, max_iter, tol, callback, octave_losses, shape)
    except _Stop as stop:
        reason, message = stop.reason, stop.message
    except KeyboardInterrupt:
        reason, message = "interrupted", "interrupted (Ctrl-C or a stop signal)"
    elapsed = time.perf_counter() - start
    core = driver.core
    iterations = core.iteration if core is not None else 0
    log.info("projected L-BFGS ended after %d iterations: %s", iterations, message)
    if core is None:
        return LBFGSResult(
            x=start_x, loss=math.inf, iterations=0, evaluations=driver.evaluations, stop_reason=reason,
            message=message, elapsed_s=elapsed, history=[], state=None,
        )  # fmt: skip
    best = core.x if core.best_x is None else core.best_x
    return LBFGSResult(
        x=best,
        loss=core.best_loss,
        iterations=iterations,
        evaluations=driver.evaluations,
        stop_reason=reason,
        message=message,
        elapsed_s=elapsed,
        history=losses[:iterations],
        state=driver.export(core, losses),
    )


def _iterate(
    driver: _Driver,
    losses: list[float],
    max_iter: int,
    tol: float,
    callback: Callable[[Progress], bool | None] | None,
    octave_losses: Callable[[], np.ndarray | None] | None,
    shape: tuple[int, ...] | None,
) -> tuple[str, str]:
    """Iterate from ``driver.core`` until a stop; return (stop_reason, message)."""
    while True:
        core = driver.core
        if core.iteration >= max_iter:
            return "max_iter", f"reached {max_iter} iterations"
        gf = driver.free_gradient(core.x, core.grad)
        if not gf.any():
            return "converged", "converged (the projected gradient is zero)"
        gamma = core.gamma if core.gamma is not None else driver.initial_gamma(core.x, gf)
        outcome: tuple[float, np.ndarray] | str | None = None
        # The L-BFGS direction first; if it fails, the scaled gradient with the memory dropped.
        for attempt in ("lbfgs", "gradient"):
            if attempt == "gradient":
                if not driver.core.slots:
                    break
                driver.core = _replace(driver.core, slots=(), sty=_EMPTY, yty=_EMPTY, pending=False)
            done = driver.direction(driver.core, gf, gamma)
            if done is None:
                continue
            sty, yty = done
            if driver.bounded:
                np.multiply(driver.d, driver.free, out=driver.d)
            if not _dot(gf, driver.d) < 0:
                continue
            slot = driver.free_slot(driver.core.slots)
            outcome = driver.line_search(gf, slot)
            if outcome is not None:
                break
        if outcome == "stalled":
            return "converged", "converged (no representable step decreases the loss)"
        if outcome is None or isinstance(outcome, str):
            return "abnormal", "the line search found no decrease; kept the best point"
        loss, grad = outcome
        old = driver.core
        new = driver.commit(old, sty, yty, gamma, slot, loss, grad)
        losses.append(loss)  # before publishing: a stop in between must not lose it
        driver.core = new
        driver.xt = old.x  # the old iterate's buffer takes the next trial
        if callback is not None:
            per_octave = octave_losses() if octave_losses is not None else None
            progress = Progress(
                iteration=new.iteration,
                max_iter=max_iter,
                evaluations=driver.evaluations,
                loss=loss,
                best_loss=new.best_loss,
                elapsed_s=time.perf_counter() - driver.start,
                octave_losses=tuple(float(v) for v in per_octave) if per_octave is not None else (),
                image=np.reshape(new.x, shape) if shape is not None else None,
                best_image=(
                    np.reshape(new.x if new.best_x is None else new.best_x, shape)
                    if shape is not None
                    else None
                ),
            )
            if callback(progress):
                return "callback", "stopped by the progress callback"
        reduction = (old.loss - loss) / max(abs(old.loss), abs(loss), 1.0)
        if reduction <= tol:
            return "converged", f"converged (relative reduction {reduction:.2g} ≤ tol {tol:g})"


# --------------------------------------------------------------------------- checkpoints

#: First member of a checkpoint file, telling it from any other npz. The name
#: predates the module's (``lbfgs.py``); files carrying the name it had briefly
#: in between are read too.
_FORMAT = b"multiscale.lbfgs-state/1"
_FORMATS_READ = (_FORMAT, b"multiscale.optim.projected-state/1")

#: Members stored in the iterate's dtype: float64, or float32 for a run started in float32.
_ITERATE_MEMBERS = ("x", "grad", "best_x")
_ITERATE_DTYPES = (np.float64, np.float32)

#: What each member of a state file must be; the shapes' relations are checked by :func:`_check_state`.
_SCHEMA: dict[str, Member] = {
    "format": Member((None,), (np.uint8,)),
    "x": Member((None,), _ITERATE_DTYPES),
    "loss": Member((), (np.float64,)),
    "grad": Member((None,), _ITERATE_DTYPES),
    "S": Member((None, None), (np.float32,)),
    "Y": Member((None, None), (np.float32,)),
    "sty": Member((None, None), (np.float64,)),
    "yty": Member((None, None), (np.float64,)),
    "pending": Member((), (np.bool_,)),
    "gamma": Member((), (np.float64,)),
    "slots": Member((None,), (np.int64,)),
    "iteration": Member((), (np.int64,)),
    "evaluations": Member((), (np.int64,)),
    "best_x": Member((None,), _ITERATE_DTYPES),
    "best_loss": Member((), (np.float64,)),
    "history": Member((None,), (np.float64,)),
}


def save_state(path: PathLike, state: LBFGSState, *, overwrite: bool = False) -> Path:
    """Write ``state`` to ``path`` as an uncompressed ``.npz``, atomically.

    The name is used as given. Nothing is pickled.

    Returns
    -------
    Path

    Raises
    ------
    CheckpointError
        If ``state`` is malformed.
    OutputError
        If ``path`` exists and not ``overwrite``, or cannot be written.
    """
    _check_state(state, str(path))
    members = {
        "format": np.frombuffer(_FORMAT, dtype=np.uint8),
        "x": state.x,
        "loss": np.float64(state.loss),
        "grad": state.grad,
        "S": state.S,
        "Y": state.Y,
        "sty": state.sty,
        "yty": state.yty,
        "pending": np.bool_(state.pending),
        "gamma": np.float64(math.nan if state.gamma is None else state.gamma),
        "slots": np.asarray(state.slots, dtype=np.int64),
        "iteration": np.int64(state.iteration),
        "evaluations": np.int64(state.evaluations),
        "best_x": state.best_x,
        "best_loss": np.float64(state.best_loss),
        "history": state.history,
    }
    write_npz(path, members, overwrite=overwrite)
    log.info("wrote optimiser state %s (iteration %d, %d pairs)", path, state.iteration, state.pairs)
    return Path(path)


def load_state(path: PathLike, *, history: int | None = None) -> LBFGSState:
    """Read a state written by :func:`save_state`, checking it before use.

    Every member's ``.npy`` header is read and its dtype and shape checked
    (and its size against the archive) before any data is
    (:mod:`multiscale.npz`); object arrays are refused without unpickling,
    as are compressed, missing or unexpected members. Then values must be
    finite and consistent.

    The arrays are read straight into writable memory of their own (no
    second copy, even for a moment), so that :func:`minimize` with
    ``overwrite_inputs=True`` can take them over. With ``history`` (the
    run's ``m``), the pairs are read into the memory block a driver of that
    history uses, so a resumed run holds its state once: that block is
    ``2 (m + 1) + 2`` float32 rows of ``n`` (4.8 GB at 4096² with ``m = 10``).

    Raises
    ------
    CheckpointError
        Message starts with ``path``.
    """
    p = Path(path)
    block: np.ndarray | None = None  # the driver's (2(m+1) + 2, n) float32 block, for S and Y

    def into(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
        nonlocal block
        if name not in ("S", "Y") or history is None or shape[0] > history:
            return None
        if block is None:
            block = np.zeros((2 * (history + 1) + 2, shape[1]), np.float32)
        if block.shape[1] != shape[1]:
            return None  # S and Y disagree: _check_state says so
        start = 0 if name == "S" else history + 1
        return block[start : start + shape[0]]

    arrays = read_npz(
        p, _SCHEMA, error=CheckpointError, what="an optimiser checkpoint", fit="an optimiser checkpoint",
        into=into, compression=("stored",),
    )  # fmt: skip
    if arrays["format"].tobytes() not in _FORMATS_READ:
        raise CheckpointError(f"{p}: not an optimiser checkpoint of this version (format {_FORMAT.decode()})")
    gamma = float(arrays["gamma"])
    state = LBFGSState(
        x=arrays["x"],
        loss=float(arrays["loss"]),
        grad=arrays["grad"],
        S=arrays["S"],
        Y=arrays["Y"],
        sty=arrays["sty"],
        yty=arrays["yty"],
        pending=bool(arrays["pending"]),
        gamma=None if math.isnan(gamma) else gamma,
        slots=tuple(int(v) for v in arrays["slots"]),
        iteration=int(arrays["iteration"]),
        evaluations=int(arrays["evaluations"]),
        best_x=arrays["best_x"],
        best_loss=float(arrays["best_loss"]),
        history=arrays["history"],
    )
    _check_state(state, str(p))
    return state


def _check_state(state: LBFGSState, label: str) -> None:
    """Raise :class:`CheckpointError` unless ``state`` is well-formed and self-consistent."""

    def fail(what: str) -> CheckpointError:
        return CheckpointError(f"{label}: malformed optimiser state: {what}")

    def array(name: str, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
        value = getattr(state, name)
        if not isinstance(value, np.ndarray) or value.dtype != dtype or value.shape != shape:
            got = (
                f"{value.dtype} of shape {value.shape}"
                if isinstance(value, np.ndarray)
                else type(value).__name__
            )
            raise fail(f"{name} is {got}, expected {np.dtype(dtype)} of shape {shape}")
        if not np.isfinite(value).all():
            raise fail(f"{name} is not finite")
        return value

    if not isinstance(state.x, np.ndarray) or state.x.ndim != 1 or not isinstance(state.S, np.ndarray):
        raise fail("x must be a 1-d array and S a 2-d array")
    n, k = state.x.shape[0], state.S.shape[0] if state.S.ndim == 2 else -1
    if k < 0:
        raise fail(f"S has shape {state.S.shape}")
    dtype = np.float32 if state.x.dtype == np.float32 else np.float64
    array("x", dtype, (n,))
    array("grad", dtype, (n,))
    array("best_x", dtype, (n,))
    array("S", np.float32, (k, n))
    array("Y", np.float32, (k, n))
    sty = array("sty", np.float64, (k, k))
    yty = array("yty", np.float64, (k, k))
    for name in ("iteration", "evaluations"):
        value = getattr(state, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise fail(f"{name} must be an integer ≥ 0, got {value!r}")
    array("history", np.float64, (state.iteration,))
    if not (math.isfinite(state.loss) and math.isfinite(state.best_loss)) or state.best_loss > state.loss:
        raise fail("loss and best_loss must be finite, best_loss ≤ loss")
    if state.gamma is not None and not (math.isfinite(state.gamma) and state.gamma > 0):
        raise fail(f"gamma must be None or > 0, got {state.gamma!r}")
    slots = state.slots
    if (
        len(slots) != k
        or len(set(slots)) != k
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in slots)
    ):
        raise fail("slots must be k distinct integers ≥ 0")
    if k and not ((np.diag(sty) > 0).all() and (np.diag(yty) > 0).all()):
        raise fail("the pairs' curvature sᵀy and yᵀy must be positive")
    if not (np.tril(sty, -1) == 0).all() or not (yty == yty.T).all():
        raise fail("sty must be upper triangular and yty symmetric")
    if not isinstance(state.pending, bool | np.bool_) or (state.pending and k < 2):
        raise fail("pending needs at least two pairs")
    if k and state.gamma is None:
        raise fail("gamma must be set when there are pairs")
