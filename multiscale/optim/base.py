"""What both optimisers share: why a run stopped, the progress a callback
receives, and the result they return.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: Why a run ended (``OptimizeResult.stop_reason``).
STOP_REASONS = ("max_iter", "converged", "time_limit", "non_finite", "interrupted", "callback", "abnormal")


@dataclass(frozen=True)
class Progress:
    """What a progress callback receives after every iteration.

    Attributes
    ----------
    iteration : int
        Completed L-BFGS iterations (1-based).
    max_iter : int
    evaluations : int
        Loss-and-gradient evaluations so far (≥ iteration: line searches).
    loss : float
        Loss at the current iterate.
    best_loss : float
        Lowest finite loss seen so far.
    elapsed_s : float
        Seconds since the run started.
    octave_losses : tuple of float
        Each octave's share of ``loss`` (empty if the objective has none).
    image : np.ndarray or None
        The current iterate, float64, reshaped to the ``shape`` given to
        :func:`minimize` (a view: copy it to keep it).
    best_image : np.ndarray or None
        The point of ``best_loss`` in the same shape (a view), from
        :func:`minimize`; other drivers leave it ``None``.
    """

    iteration: int
    max_iter: int
    evaluations: int
    loss: float
    best_loss: float
    elapsed_s: float
    octave_losses: tuple[float, ...] = ()
    image: np.ndarray | None = field(default=None, repr=False)
    best_image: np.ndarray | None = field(default=None, repr=False)


@dataclass
class OptimizeResult:
    """Outcome of :func:`minimize`.

    Attributes
    ----------
    x : np.ndarray float64
        The best finite point found (the start point if none was finite).
    loss : float
        Its loss (``inf`` if no evaluation was finite).
    iterations, evaluations : int
    stop_reason : str
        One of :data:`STOP_REASONS`.
    message : str
        Human-readable explanation of the stop.
    elapsed_s : float
    history : list of float
        Loss after each iteration.
    """

    x: np.ndarray
    loss: float
    iterations: int
    evaluations: int
    stop_reason: str
    message: str
    elapsed_s: float
    history: list[float] = field(default_factory=list)


Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]
