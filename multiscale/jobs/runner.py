"""The one job runner: what synthesis, style transfer, animation and resume share.

A job (:mod:`multiscale.jobs.synthesize`, :mod:`multiscale.jobs.stylize`)
prepares its targets and its objective; everything after that is here:

* loading the network (:func:`load_network`) and choosing its precision
  (:func:`resolve_precision`, :func:`precision_network`);
* the optimise-checkpoint loop (:func:`optimize`): the chosen driver, in
  checkpointed segments with the projected driver, with the sliced
  statistic's redraws and a bfloat16 run's float32 finish, its position
  kept in a :class:`Phase`; a resume hands it the driver's state and the
  phase it was in, and goes on exactly;
* what every report records (:class:`SourceInfo`, :func:`versions`) and how
  every image is checked and quantised (:func:`check_array`, :func:`quantize`).

Style transfer runs :func:`optimize` once per stage, synthesis once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._version import __version__
from ..config import DescriptorConfig
from ..errors import ImageError
from ..measure.sliced import SlicedTargets, join_sliced
from ..optim.base import Progress

log = logging.getLogger(__name__)

#: An image given to a job: a file path, or a float32 (H, W, 3) array in [0, 1].
ImageSource = str | os.PathLike[str] | np.ndarray


@dataclass(kw_only=True)
class RunReport:
    """What every job's report holds (written as JSON beside every output); the jobs' reports
    add their own fields.

    Attributes
    ----------
    loss : float or None
        Loss of the returned image as it will be saved (quantised to
        ``config.bit_depth`` bits); ``None`` where it was not scored.
    best_loss : float or None
        Lowest loss the optimiser evaluated (before quantisation).
    octave_losses : list of float
        Each octave's share of the texture statistics' part of ``loss``.
    iterations, evaluations : int
    stop_reason, message : str
        Why the run ended (see :data:`multiscale.optim.base.STOP_REASONS`).
    elapsed_s : float
        Wall time of the whole job, loading included.
    history : list of float
        Loss after each iteration.
    config : RunConfig
    backbone, weights_path, weights_sha256 : str
    versions : dict of str → str
    checkpoint : str or None
        The checkpoint folder last written, if any.
    """

    loss: float | None
    best_loss: float | None
    octave_losses: list[float]
    iterations: int
    evaluations: int
    stop_reason: str
    message: str
    elapsed_s: float
    history: list[float]
    config: Any
    backbone: str
    weights_path: str
    weights_sha256: str
    versions: dict[str, str] = field(default_factory=dict)
    checkpoint: str | None = None

    @property
    def interrupted(self) -> bool:
        """True if the run was stopped by Ctrl-C or a stop signal."""
        return self.stop_reason == "interrupted"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, written beside every output."""
        d = dataclasses.asdict(self)
        d["config"] = self.config.to_dict()
        return d


def load_network(descriptor: DescriptorConfig) -> tuple[Any, Any]:
    """The descriptor's weights and a float32 VGG16 on them, with its pooling and padding."""
    from ..measure.backbone import network_for

    return network_for(descriptor.weights, pooling=descriptor.pooling, padding=descriptor.padding)


@dataclass(frozen=True)
class Limits:
    """How one optimisation runs: the driver and where it stops.

    ``max_iter`` counts from the start of the problem (a resumed driver
    state's iterations included); ``checkpoint_every`` (projected driver
    only) cuts the run into segments that end at multiples of it, counted
    from ``checkpoint_offset`` iterations before the problem's start (style
    transfer counts its checkpoints over all stages).
    """

    optimizer: str
    max_iter: int
    tol: float
    history: int
    time_limit: float | None = None
    checkpoint_every: int | None = None
    checkpoint_offset: int = 0

    @classmethod
    def of(cls, config: Any, **changes: Any) -> Limits:
        """The limits of a :class:`~multiscale.config.SynthesisConfig` or
        :class:`~multiscale.config.StyleConfig`, with ``changes``."""
        fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if hasattr(config, f.name)}
        return cls(**{**fields, **changes})


@dataclass
class Phase:
    """Where an optimisation stands beyond the driver's own state.

    Attributes
    ----------
    switched : int or None
        The iteration at which a bfloat16 run went on in float32 (``None``:
        not yet, or a float32 run); the report's ``float32_from_iteration``.
    draw : int or None
        The sliced directions' current draw (``None``: no sliced term).
    draw_from : int
        The iteration that draw began at.
    """

    switched: int | None = None
    draw: int | None = None
    draw_from: int = 0


@dataclass(frozen=True)
class StageProgress(Progress):
    """A :class:`~multiscale.optim.base.Progress` that spans all stages of a run in stages.

    ``iteration`` counts from the start of the first stage and ``max_iter``
    is the plan's total; ``loss`` and ``best_loss`` are the current stage's.
    ``image`` is the current iterate at the stage's size (``height`` ×
    ``width``; float64 or float32, values in [0, 1]). ``work`` is the share
    of the plan's work done, in [0, 1] (:func:`work_done`): a bar or a time
    estimate on it runs evenly through the cheap early stages, where one on
    ``iteration`` rushes through them and then stalls (a synthesis's first
    stage runs the most iterations on the fewest pixels).
    """

    stage: int = 1
    stages: int = 1
    stage_iteration: int = 0
    height: int = 0
    width: int = 0
    work: float = 0.0


def work_shares(plan: Sequence[tuple[int, int, int]]) -> list[float]:
    """Each stage's share of a run's work, from its ``(iterations, height, width)``: sums to 1.

    An evaluation's time grows about in proportion to the pixels from 128 px on, so a stage
    weighs iterations × pixels: a stage of four times the pixels and half the iterations is
    twice the work. How closely that predicts each stage's share of the time is measured in
    ``benchmarks/RESULTS.md``, "The progress of a run in stages".
    """
    cost = [float(n) * h * w for n, h, w in plan]
    total = sum(cost)
    return [c / total for c in cost] if total > 0 else [1.0 / len(plan)] * len(plan)


def work_done(shares: Sequence[float], stage: int, fraction: float) -> float:
    """The share of a run done when stage ``stage`` (0-based) is ``fraction`` through its
    iterations (clipped to [0, 1]), with the stages' :func:`work_shares`."""
    return min(1.0, float(sum(shares[:stage])) + shares[stage] * min(max(fraction, 0.0), 1.0))


def share_of_rest(shares: Sequence[float], stage: int) -> float:
    """Stage ``stage``'s share of the work left when it starts: how much of the time left it gets."""
    rest = float(sum(shares[stage:]))
    return shares[stage] / rest if rest > 0 else 1.0


def stage_sizes(height: int, width: int, stages: int) -> list[tuple[int, int]]:
    """(height, width) of each stage, smallest first: the output size halved (stages − 1 − i) times."""
    sizes = []
    for i in range(stages):
        f = 2 ** (stages - 1 - i)
        sizes.append((max(1, round(height / f)), max(1, round(width / f))))
    return sizes


@dataclass(frozen=True)
class SourceInfo:
    """Where one source image came from (recorded in the report)."""

    name: str
    sha256: str | None
    height: int
    width: int


def versions() -> dict[str, str]:
    """Versions of multiscale and the libraries that decide its numbers."""
    import PIL
    import scipy

    from .._tf import tf

    return {
        "multiscale": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pillow": PIL.__version__,
        "machine": platform.machine(),
    }


def check_array(image: np.ndarray, *, name: str) -> np.ndarray:
    """``image`` as a contiguous float32 (H, W, 3) array in [0, 1]; ImageError naming ``name`` otherwise."""
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ImageError(f"{name}: expected an (H, W, 3) RGB array, got shape {image.shape}")
    image = np.asarray(image, dtype=np.float32)
    if not np.isfinite(image).all():
        raise ImageError(f"{name}: holds NaN or Inf values")
    if image.min() < 0 or image.max() > 1:
        raise ImageError(f"{name}: values must lie in [0, 1], got {image.min():g}…{image.max():g}")
    return np.ascontiguousarray(image)


def quantize(image: np.ndarray, *, bit_depth: int) -> np.ndarray:
    """Round an image in [0, 1] to the levels an integer file of ``bit_depth`` holds."""
    levels = (1 << bit_depth) - 1
    out = np.clip(image, 0.0, 1.0)  # one new array, then in place: at 8192² each is 805 MB
    out *= levels
    np.round(out, out=out)
    out /= levels
    return out.astype(np.float32, copy=False)


def resolve_precision(config: Any, *, height: int, width: int, weights: Any) -> Any:
    """The run's :class:`~multiscale.jobs.precision.PrecisionChoice` (``auto`` measures), logged."""
    from .precision import choose_precision

    choice = choose_precision(
        config=config.descriptor, height=height, width=width, requested=config.precision, weights=weights
    )
    if config.precision != "float32":
        log.info("precision: %s", choice.reason)
    return choice


def precision_network(network: Any, choice: Any) -> Any:
    """``network``'s twin whose convolutions run in the chosen precision (activations float32)."""
    from ..measure.backbone import VGG16

    return VGG16(
        network.weights, pooling=network.pooling, padding=network.padding, compute_dtype=choice.compute_dtype
    )


def measure_sliced(
    images: Sequence[np.ndarray],
    *,
    network: Any,
    config: DescriptorConfig,
    weights: Sequence[float] | None = None,
) -> SlicedTargets | None:
    """The images' features for the sliced statistic, or ``None`` when ``config`` does not use it
    (with ``auto`` they are measured, for the run to choose).

    ``weights``: each image's share of the quantile barycentre (default equal).
    """
    if not {"sliced", "auto"} & set(config.statistics):
        return None
    from ..measure.gram import image_sliced_features

    parts = [
        SlicedTargets(
            features={k: [f] for k, f in image_sliced_features(im, network=network, config=config).items()},
            weights=[1.0],
        )
        for im in images
    ]
    return join_sliced(parts, weights)


#: Why a run stopped before its end, leaving a checkpoint to continue from.
STOPPED_EARLY = ("interrupted", "time_limit", "callback")


def optimize(
    objective: Any,
    x0: np.ndarray,
    *,
    limits: Limits,
    callback: Callable[[Any], bool | None] | None,
    shape: tuple[int, ...],
    octave_losses: Callable[[], np.ndarray | None] | None,
    resume_state: Any = None,
    on_checkpoint: Callable[[Any], None] | None = None,
    finish: Any = None,
    phase: Phase | None = None,
    redraw_every: int | None = None,
) -> tuple[Any, int | None]:
    """Run the chosen driver on ``objective``; with the projected one, in checkpointed segments.

    Parameters
    ----------
    objective : Objective
        What is minimised (:mod:`multiscale.objectives`).
    x0 : np.ndarray
        The flat start (ignored for a resumed state, which holds its point).
    limits : Limits
    callback, octave_losses, shape
        As the drivers take them.
    resume_state : LBFGSState or None
        The projected driver's state to continue (a checkpoint's).
    on_checkpoint : callable or None
        ``on_checkpoint(state)`` at the end of every segment; it reads
        ``phase`` for the draw and the float32 switch. The checkpoint of a
        stop (:data:`STOPPED_EARLY`) is the caller's, from ``result.state``,
        after the image.
    finish : Objective or None
        The float32 objective a bfloat16 run switches to when its driver
        stops on its own before ``max_iter``; ``phase.switched`` is the
        iteration of that switch (set here, or already set for a resumed
        float32 state).
    phase : Phase or None
        Updated in place; a resumed run passes the one it was in.
    redraw_every : int or None
        The sliced statistic's directions change every ``redraw_every``
        iterations (``objective.redraw_every`` for a synthesis; ``None``:
        one draw for the whole run), and sooner when the driver stops on its
        own within a draw (``tol`` met for these directions, or no decrease
        found: the texture is not done, only this draw's 1-D marginals); the
        driver goes on from its best point with fresh L-BFGS memory (the
        objective changed). With scipy's driver the first draw serves the
        whole run.

    Returns the driver's :class:`~multiscale.optim.base.OptimizeResult` and
    the iteration of the last checkpoint written (``None``: none).
    """
    common = dict(
        bounds=(0.0, 1.0), tol=limits.tol, history=limits.history, callback=callback,
        octave_losses=octave_losses, shape=shape,
    )  # fmt: skip
    if limits.optimizer == "lbfgsb":
        from ..optim.lbfgsb import minimize

        res = minimize(objective, x0, max_iter=limits.max_iter, time_limit=limits.time_limit, **common)
        return res, None

    from ..optim.projected import minimize as projected
    from ..optim.projected import start_point, switch_objective

    x0 = start_point(x0)
    phase = Phase() if phase is None else phase
    current = finish if finish is not None and phase.switched is not None else objective

    def redraw(draw: int) -> None:
        for target in (objective, finish):
            if target is not None:
                target.redraw(draw)

    started = time.perf_counter()
    state, checkpointed = resume_state, None
    every, offset = limits.checkpoint_every, limits.checkpoint_offset
    sliced = bool(redraw_every)
    if sliced:
        phase.draw = 0 if phase.draw is None else phase.draw
        redraw(phase.draw)

    def next_draw(state: Any) -> Any:
        """The next draw of directions, from the best point so far, with fresh L-BFGS memory."""
        draw = phase.draw + 1
        redraw(draw)
        try:
            loss, grad = current(state.best_x)
        except KeyboardInterrupt:
            redraw(phase.draw)  # the state is still the old draw's, and so is a checkpoint of it
            raise
        phase.draw, phase.draw_from = draw, state.iteration
        return switch_objective(state, loss=loss, grad=grad)

    while True:
        done = state.iteration if state is not None else 0
        if sliced and state is not None and phase.draw_from + redraw_every <= done < limits.max_iter:
            try:
                state = next_draw(state)
            except KeyboardInterrupt:
                return interrupted_at(state), checkpointed
        # segments end where the iterations counted from the offset reach a multiple of `every`
        cap = min(limits.max_iter, done + every - (offset + done) % every) if every else limits.max_iter
        if sliced:
            cap = min(cap, phase.draw_from + redraw_every)
        remaining = (
            None
            if limits.time_limit is None
            else max(limits.time_limit - (time.perf_counter() - started), 1e-9)
        )
        try:
            # overwrite_inputs: the run starts in x0's buffer, a segment in the previous one's memory
            res = projected(
                current, x0, max_iter=cap, time_limit=remaining, state=state, overwrite_inputs=True, **common
            )
        except KeyboardInterrupt:
            # Not in the driver's own handling: while it took over the previous segment's memory or
            # handed it back, so its pairs may be half rearranged. The best point is a whole image;
            # no checkpoint comes from that memory (the last one written stays).
            if state is None:
                raise
            res = dataclasses.replace(
                interrupted_at(state), state=None,
                message="interrupted between two segments; the last checkpoint written is kept",
            )  # fmt: skip
            return res, checkpointed
        state = res.state if res.state is not None else state
        res.state = state
        segment_end = res.stop_reason == "max_iter" and res.iterations < limits.max_iter
        if on_checkpoint is not None and state is not None and every and res.stop_reason == "max_iter":
            try:
                on_checkpoint(state)
            except KeyboardInterrupt:
                # The previous checkpoint is intact; the caller writes this stop's after the image.
                res.stop_reason, res.message = "interrupted", "interrupted while writing a checkpoint"
                return res, checkpointed
            checkpointed = state.iteration
        if segment_end:
            continue
        if (
            sliced
            and res.stop_reason in ("converged", "abnormal")
            and state is not None
            and phase.draw_from < state.iteration < limits.max_iter
            and (finish is None or current is finish)
            and (limits.time_limit is None or time.perf_counter() - started < limits.time_limit)
        ):
            log.info("draw %d stopped at iteration %d (%s); drawing new directions", phase.draw,
                     state.iteration, res.message)  # fmt: skip
            try:
                state = next_draw(state)
            except KeyboardInterrupt:
                return interrupted_at(state), checkpointed
            continue
        if (
            finish is None
            or current is finish
            or res.stop_reason not in ("converged", "abnormal")
            or state is None
            or state.iteration >= limits.max_iter
        ):
            return res, checkpointed
        # The bfloat16 driver stopped on its own: go on in float32 from its best point.
        if limits.time_limit is not None and time.perf_counter() - started > limits.time_limit:
            return res, checkpointed
        try:
            loss, grad = finish(state.best_x)
        except KeyboardInterrupt:
            return res, checkpointed
        if not (np.isfinite(loss) and np.isfinite(grad).all()):
            log.warning("float32 finish skipped: the loss at the bfloat16 result is not finite")
            return res, checkpointed
        log.info(
            "bfloat16 stopped at iteration %d (%s); finishing in float32 from loss %.4g",
            state.iteration, res.message, loss,
        )  # fmt: skip
        state = switch_objective(state, loss=loss, grad=grad)
        res, current = None, finish
        phase.switched = state.iteration


def interrupted_at(state: Any) -> Any:
    """The result of a run interrupted between two segments: its best point so far."""
    from ..optim.projected import LBFGSResult

    return LBFGSResult(
        x=state.best_x, loss=state.best_loss, iterations=state.iteration, evaluations=state.evaluations,
        stop_reason="interrupted", message="interrupted between two draws of the sliced directions",
        elapsed_s=0.0, history=list(state.history), state=state,
    )  # fmt: skip
