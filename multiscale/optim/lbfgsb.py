"""The ``lbfgsb`` driver (scipy's L-BFGS-B): box bounds, best-finite tracking, progress, stopping.

scipy's L-BFGS-B is the reference optimiser. Three things about it are
handled here rather than trusted:

* Pixels are kept inside box bounds (default [0, 1]): unbounded L-BFGS lets
  pixels drift far outside the displayable range, and the saved (clipped,
  quantised) image is then far worse than the loss the optimiser reported.
* The best *finite* (loss, x) seen over all evaluations is kept here. After
  one non-finite value scipy may report "CONVERGENCE"; ``res.success`` is
  never consulted.
* Stopping for a time limit, a non-finite value, a callback's request or
  Ctrl-C all end the run cleanly with that best point as the result.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np
import scipy.optimize

from .base import Objective, OptimizeResult, Progress

log = logging.getLogger(__name__)


class _Stop(Exception):
    """Raised inside the objective wrapper to end scipy's loop early."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


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
) -> OptimizeResult:
    """Minimise ``fun`` with scipy's L-BFGS-B, keeping the best finite point.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> (loss, grad)`` with ``x`` and ``grad`` float64 of one
        shape (n,).
    x0 : np.ndarray
        Start point, shape (n,); clipped into ``bounds``.
    bounds : (low, high) or None
        Box applied to every variable; ``None`` for an unbounded run.
    max_iter, tol, history : see :class:`multiscale.config.SynthesisConfig`.
    time_limit : float or None
        Seconds; the run stops at the first evaluation after the limit.
    callback : callable or None
        Called with a :class:`Progress` after each iteration; returning
        ``True`` stops the run (``stop_reason="callback"``).
    octave_losses : callable or None
        Returns the per-octave losses of the last evaluation, for progress.
    shape : tuple or None
        Shape in which :class:`Progress` carries the current iterate.

    Returns
    -------
    OptimizeResult
        Never raises for non-finite values, time limits or Ctrl-C: those end
        the run and are said in ``stop_reason`` and ``message``.
    """
    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    if bounds is not None:
        x0 = np.clip(x0, *bounds)
    start = time.perf_counter()
    best = {"loss": math.inf, "x": x0.copy()}
    state = {"evals": 0, "iters": 0, "last_loss": math.inf}
    losses: list[float] = []

    def wrapped(x: np.ndarray) -> tuple[float, np.ndarray]:
        if time_limit is not None and time.perf_counter() - start > time_limit:
            raise _Stop("time_limit", f"time limit of {time_limit:g} s reached")
        loss, grad = fun(x)
        state["evals"] += 1
        if not (math.isfinite(loss) and np.isfinite(grad).all()):
            raise _Stop(
                "non_finite",
                f"the loss or its gradient became non-finite at evaluation {state['evals']}; "
                "kept the best finite image",
            )
        state["last_loss"] = loss
        if loss < best["loss"]:
            best["loss"] = loss
            best["x"] = x.copy()
        return loss, grad

    def on_iteration(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        state["iters"] += 1
        loss = float(intermediate_result.fun)
        losses.append(loss)
        if callback is not None:
            per_octave = octave_losses() if octave_losses is not None else None
            progress = Progress(
                iteration=state["iters"],
                max_iter=max_iter,
                evaluations=state["evals"],
                loss=loss,
                best_loss=best["loss"],
                elapsed_s=time.perf_counter() - start,
                octave_losses=tuple(float(v) for v in per_octave) if per_octave is not None else (),
                image=np.reshape(intermediate_result.x, shape) if shape is not None else None,
                best_image=np.reshape(best["x"], shape) if shape is not None else None,
            )
            if callback(progress):
                raise _Stop("callback", "stopped by the progress callback")

    # Arrays, not a list of n tuples: scipy converts a list element by element
    # in Python, which took longer than many iterations (benchmarks/RESULTS.md,
    # "Optimiser's own time").
    box = (
        scipy.optimize.Bounds(np.full(x0.size, bounds[0]), np.full(x0.size, bounds[1]))
        if bounds is not None
        else None
    )
    reason, message = "abnormal", ""
    try:
        res = scipy.optimize.minimize(
            wrapped,
            x0,
            jac=True,
            method="L-BFGS-B",
            bounds=box,
            callback=on_iteration,
            options={
                "maxiter": max_iter,
                "maxcor": history,
                "ftol": tol,
                "gtol": 0.0,
                "maxfun": max_iter * 5 + 20,
            },
        )
        if state["iters"] >= max_iter:
            reason, message = "max_iter", f"reached {max_iter} iterations"
        elif res.status == 0:
            reason, message = "converged", f"converged ({res.message})"
        else:
            # Line-search failures and evaluation limits: the best point stands.
            reason, message = "abnormal", f"L-BFGS-B stopped: {res.message}"
    except _Stop as stop:
        reason, message = stop.reason, stop.message
    except KeyboardInterrupt:
        reason, message = "interrupted", "interrupted (Ctrl-C or a stop signal)"
    elapsed = time.perf_counter() - start
    log.info("optimisation ended after %d iterations: %s", state["iters"], message)
    return OptimizeResult(
        x=best["x"],
        loss=best["loss"],
        iterations=state["iters"],
        evaluations=state["evals"],
        stop_reason=reason,
        message=message,
        elapsed_s=elapsed,
        history=losses,
    )
