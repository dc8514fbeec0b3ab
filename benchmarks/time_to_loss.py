"""Time to reach the reference's loss: drivers, parameterisations and staged schedules.

The reference is scipy's L-BFGS-B over plain pixels from noise, ``--iters``
iterations; its yardstick L_ref is the loss of its result *as saved*
(clipped to [0, 1], quantised to 8 bits). Every candidate then runs, from
the same noise and on the same objective, until the loss of its own best
image as saved is ≤ L_ref, or until ``--cap`` seconds (default: the
reference's own time), and the table gives the time it took and
T_ref / T_candidate. Candidates (``--candidate``, repeatable):

``projected``
    plain pixels, the default float32 projected L-BFGS (box [0, 1]);
``laplacian``
    pixels parameterised as a Laplacian pyramid (:mod:`param`, beside this script,
    ``--levels``, ``--level-scale``), projected driver unbounded, the loss
    evaluated on the clipped image plus the out-of-box penalty;
``staged:S=N,…``
    coarse stages, then the full problem: for each ``S=N`` (coarsest
    first) the finest ``S`` octaves are skipped and the image is
    ``U^S y`` with ``y`` at 1/2^S of the size, ``N`` iterations
    (:func:`param.coarse_stage`, :func:`param.subspace_map`);
    the result is expanded and the next stage starts from it; the last
    stage is the full problem with the projected driver;
``bf16``
    the library's bfloat16 schedule: the projected driver on the objective
    whose convolutions run in bfloat16, with the library's default ``tol``,
    until it stops on its own; then, from its best point, the float32
    objective with fresh memory (:func:`multiscale.optim.projected.switch_objective`)
    until L_ref. Its bfloat16 evaluations count at their measured cost.
    Needs a CPU with native bfloat16 to mean anything.

The clock runs from each candidate's first evaluation and includes
everything the candidate does (its coarse stages, the parameterisation's
numpy work); it is paused while the benchmark measures the loss of a saved
image. All objectives are built and traced before any clock starts. Before
each run three evaluations of the full objective are timed, to show how the
load of the (shared) machine drifted. Since the load can change the wall
time severalfold within a run, the table also converts each candidate's
evaluations into full-size evaluations of equal cost (each objective's
seconds per evaluation, measured back to back at the start): that ratio is
the one to trust on a shared machine (it leaves out scipy's own time, about
0.18 s per iteration at 512², so it flatters the reference). With
``--repeat-reference`` the reference runs again at the end.

    python benchmarks/time_to_loss.py                       # 512², every candidate
    python benchmarks/time_to_loss.py --size 256 --candidate projected
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from multiscale.config import DescriptorConfig
from multiscale.io import load_image
from multiscale.jobs.runner import quantize
from multiscale.jobs.starts import initial_image
from multiscale.jobs.synthesize import SynthesisConfig
from multiscale.measure.backbone import VGG16, load_weights
from multiscale.measure.gram import image_grams
from multiscale.objectives.texture import StyleObjective
from multiscale.optim.lbfgsb import minimize as lbfgsb
from multiscale.optim.projected import minimize as projected
from multiscale.optim.projected import switch_objective

sys.path.insert(0, str(Path(__file__).resolve().parent))
from param import (  # noqa: E402  (benchmarks/param.py: research code, not the library's)
    DEFAULT_PENALTY,
    LaplacianPyramid,
    ParameterizedObjective,
    coarse_stage,
    subspace_map,
    upsample,
)

SOURCE = Path(__file__).resolve().parent.parent / "samples" / "sources" / "gravel.png"
CHECKPOINTS_S = (15, 30, 60, 90, 120, 180, 240, 360, 480, 600, 900)


class Clock:
    """Wall time with pauses (the benchmark's own measurements are not the candidate's)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.paused = 0.0

    def __call__(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def pause(self) -> float:
        return time.perf_counter()

    def resume(self, since: float) -> None:
        self.paused += time.perf_counter() - since


@dataclass
class Outcome:
    name: str
    seconds: float | None  # to the reference's saved loss; None: not reached
    evaluations: str
    equivalent: float  # full-size evaluations costing the same (see Problem.costs)
    saved_loss: float
    wall: float
    probe: float
    marks: list[tuple[float, float]] = field(default_factory=list)  # (s, best loss of the full problem)
    notes: list[str] = field(default_factory=list)


class Problem:
    """The objectives of one benchmark (full size and coarse stages), built and traced once."""

    def __init__(self, *, size: int, octaves: int) -> None:
        self.size = size
        self.config = DescriptorConfig(octaves=octaves)
        self.network = VGG16(load_weights(), pooling=self.config.pooling, padding=self.config.padding)
        source = load_image(SOURCE)
        self.grams = image_grams(source, network=self.network, config=self.config)
        self.mean_color = source.reshape(-1, 3).mean(axis=0)
        self.full = self.objective(0)
        self.x0 = initial_image(
            "noise", height=size, width=size, mean_color=self.mean_color, seed=0, max_input_pixels=1 << 30
        ).astype(np.float64)
        self._stages: dict[int, ParameterizedObjective] = {}
        self.costs: dict[str, float] = {}
        self.bf16: StyleObjective | None = None

    def use_bf16(self) -> None:
        """Build and trace the objective whose convolutions run in bfloat16."""
        from multiscale._tf import tf

        net = VGG16(self.network.weights, pooling=self.config.pooling, padding=self.config.padding,
                    compute_dtype=tf.bfloat16)  # fmt: skip
        self.bf16 = StyleObjective(targets=self.grams, network=net, config=self.config, height=self.size,
                                   width=self.size)  # fmt: skip
        self.bf16(np.full(self.size * self.size * 3, 0.5))

    def objective(self, skip: int) -> StyleObjective:
        grams, config = coarse_stage(self.grams, config=self.config, skip=skip)
        side = -(-self.size // 2**skip)
        obj = StyleObjective(targets=grams, network=self.network, config=config, height=side, width=side)
        obj(np.full(side * side * 3, 0.5))  # trace now, not on a candidate's clock
        return obj

    def stage(self, skip: int) -> ParameterizedObjective:
        if skip not in self._stages:
            self._stages[skip] = ParameterizedObjective(
                self.objective(skip), transform=subspace_map(self.size, self.size, skip=skip)
            )
        return self._stages[skip]

    def saved_loss(self, image: np.ndarray) -> float:
        return self.full.evaluate(quantize(np.reshape(image, (self.size, self.size, 3)), bit_depth=8)).total

    def probe(self, fun=None, x: np.ndarray | None = None) -> float:
        """Seconds per evaluation of ``fun`` (default: the full objective) now, median of 3."""
        fun = fun or self.full
        x = self.x0.reshape(-1) if x is None else x
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fun(x)
            times.append(time.perf_counter() - t)
        return float(np.median(times))

    def measure_costs(self, laplacian: ParameterizedObjective | None) -> None:
        """Seconds per evaluation of every objective a candidate uses, measured back to back.

        Their ratios to the full objective's convert a candidate's mix of
        evaluations into full-size evaluations: a measure of work that the
        load of a shared machine does not change, as wall time does.
        """
        self.costs["full"] = self.probe()
        if self.bf16 is not None:
            self.costs["bf16"] = self.probe(self.bf16)
        if laplacian is not None:
            self.costs["laplacian"] = self.probe(laplacian, laplacian.transform.from_pixels(self.x0))
        for skip, fun in sorted(self._stages.items()):
            self.costs[f"stage{skip}"] = self.probe(fun, np.full(fun.size, 0.5))


def run_reference(problem: Problem, iters: int) -> Outcome:
    probe = problem.probe()
    clock = Clock()
    marks: list[tuple[float, float]] = []
    res = lbfgsb(
        problem.full, problem.x0.reshape(-1), bounds=(0.0, 1.0), max_iter=iters, tol=0.0,
        callback=lambda p: marks.append((clock(), p.best_loss)),
    )  # fmt: skip
    wall = clock()
    saved = problem.saved_loss(res.x)
    return Outcome(
        "scipy L-BFGS-B, pixels (reference)", wall, str(res.evaluations), float(res.evaluations), saved, wall,
        probe, marks,
        [f"{res.iterations} iterations; best optimiser loss {res.loss:.4g}, saved {saved:.4g}"],
    )  # fmt: skip


class Target:
    """Callback that stops a run once the saved image of its best point reaches ``l_ref``."""

    def __init__(self, problem: Problem, clock: Clock, l_ref: float, to_image, marks) -> None:
        self.problem, self.clock, self.l_ref, self.to_image, self.marks = (
            problem,
            clock,
            l_ref,
            to_image,
            marks,
        )
        self.reached: float | None = None
        self.saved = float("inf")

    def __call__(self, p) -> bool:
        now = self.clock()
        self.marks.append((now, p.best_loss))
        if p.best_loss > self.l_ref:
            return False
        since = self.clock.pause()
        self.saved = self.problem.saved_loss(self.to_image(p.best_image))
        self.clock.resume(since)
        if self.saved <= self.l_ref:
            self.reached = now
            return True
        return False


def run_candidate(problem: Problem, spec: str, *, l_ref: float, cap: float, args) -> Outcome:
    probe = problem.probe()
    marks: list[tuple[float, float]] = []
    notes: list[str] = []
    clock = Clock()
    n = problem.size
    if spec == "projected":
        target = Target(problem, clock, l_ref, lambda im: im, marks)
        res = projected(
            problem.full, problem.x0.reshape(-1), max_iter=100_000, tol=0.0, time_limit=cap, callback=target,
            shape=(n * n * 3,),
        )  # fmt: skip
        final, evals, equivalent = res.x, str(res.evaluations), float(res.evaluations)
    elif spec == "laplacian":
        fun = args.laplacian_objective
        pyramid = fun.transform
        target = Target(problem, clock, l_ref, fun.pixels, marks)
        res = projected(
            fun, pyramid.from_pixels(problem.x0), bounds=None, max_iter=100_000, tol=0.0, time_limit=cap,
            callback=target, shape=(pyramid.size,),
        )  # fmt: skip
        final, evals = fun.pixels(res.x), str(res.evaluations)
        equivalent = res.evaluations * problem.costs["laplacian"] / problem.costs["full"]
        notes.append(f"{pyramid.size} variables, level scales {[round(s, 3) for s in pyramid.scales]}")
    elif spec == "bf16":
        target = Target(problem, clock, l_ref, lambda im: im, marks)
        res = projected(
            problem.bf16, problem.x0.reshape(-1), max_iter=100_000, tol=SynthesisConfig().tol, time_limit=cap,
            callback=target, shape=(n * n * 3,),
        )  # fmt: skip
        fast = res.evaluations
        equivalent = fast * problem.costs["bf16"] / problem.costs["full"]
        notes.append(
            f"bfloat16 phase: {res.iterations} it, {fast} evaluations, {res.message}, ends at {clock():.1f} s"
        )
        evals = f"{fast} bf16"
        if target.reached is None and res.stop_reason in ("converged", "abnormal"):
            loss, grad = problem.full(res.state.best_x)
            state = switch_objective(res.state, loss=loss, grad=grad)
            res = projected(
                problem.full, problem.x0.reshape(-1), max_iter=100_000, tol=0.0,
                time_limit=max(cap - clock(), 1e-9), callback=target, shape=(n * n * 3,), state=state,
            )  # fmt: skip
            exact = res.evaluations - fast
            equivalent += exact
            evals += f" + {exact} f32"
            notes.append(f"float32 from iteration {state.iteration} (loss {loss:.4g})")
        final = res.x
    elif spec.startswith("staged:"):
        plan = [(int(a), int(b)) for a, b in (item.split("=") for item in spec[len("staged:") :].split(","))]
        if [s for s, _ in plan] != sorted({s for s, _ in plan}, reverse=True) or plan[-1][0] < 1:
            raise SystemExit(f"{spec}: stages must skip decreasing numbers of octaves ≥ 1")
        first = plan[0][0]
        side = -(-n // 2**first)
        y = initial_image(
            "noise", height=side, width=side, mean_color=problem.mean_color, seed=0, max_input_pixels=1 << 30
        ).astype(np.float64)
        counts, equivalent = [], 0.0
        for i, (skip, iters) in enumerate(plan):
            fun = problem.stage(skip)
            left = cap - clock()
            res = projected(fun, y.reshape(-1), max_iter=iters, tol=0.0, time_limit=max(left, 1e-9))
            counts.append(f"{res.evaluations}@{fun.transform.pixel_shape[0]}²")
            equivalent += res.evaluations * problem.costs[f"stage{skip}"] / problem.costs["full"]
            y = res.x.reshape(fun.transform.coefficient_shape)
            nxt = plan[i + 1][0] if i + 1 < len(plan) else 0
            for level in range(skip - 1, nxt - 1, -1):
                side = -(-n // 2**level)
                y = upsample(y, height=side, width=side)
            notes.append(
                f"stage skipping {skip} octave(s): {res.iterations} it, {res.message}, ends at {clock():.1f} s"
            )
        since = clock.pause()
        notes.append(f"expanded to {n}²: loss {problem.full.evaluate(y.astype(np.float32)).total:.4g}")
        clock.resume(since)
        target = Target(problem, clock, l_ref, lambda im: im, marks)
        res = projected(
            problem.full, y.reshape(-1), max_iter=100_000, tol=0.0, time_limit=max(cap - clock(), 1e-9),
            callback=target, shape=(n * n * 3,),
        )  # fmt: skip
        counts.append(f"{res.evaluations}@{n}²")
        equivalent += res.evaluations
        final, evals = res.x, " + ".join(counts)
    else:
        raise SystemExit(f"unknown candidate {spec!r}")
    wall = clock()
    saved = target.saved if target.reached is not None else problem.saved_loss(final)
    notes.append(res.message)
    return Outcome(spec, target.reached, evals, equivalent, saved, wall, probe, marks, notes)


def loss_at(marks: list[tuple[float, float]], t: float) -> str:
    before = [loss for s, loss in marks if s <= t]
    return f"{before[-1]:.3g}" if before else "—"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--iters", type=int, default=250, help="iterations of the reference")
    parser.add_argument("--octaves", type=int, default=4)
    parser.add_argument("--candidate", action="append", help="see above; repeatable")
    parser.add_argument("--cap", type=float, help="seconds per candidate (default: the reference's time)")
    parser.add_argument("--levels", type=int, help="Laplacian levels (default: --octaves)")
    parser.add_argument("--level-scale", type=float, default=0.35)
    parser.add_argument("--penalty", type=float, default=DEFAULT_PENALTY)
    parser.add_argument("--repeat-reference", action="store_true")
    args = parser.parse_args()
    args.levels = args.levels or args.octaves
    candidates = args.candidate or ["projected", "laplacian", "staged:1=100", "staged:3=150,2=100,1=50"]

    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs (shared; load average {os.getloadavg()[0]:.1f} at start); "
        f"{args.size}², {args.octaves} octaves, default layers, gravel, seed 0",
        flush=True,
    )
    problem = Problem(size=args.size, octaves=args.octaves)
    for skip in {
        int(s.split("=")[0]) for c in candidates if c.startswith("staged:") for s in c[7:].split(",")
    }:
        problem.stage(skip)
    if "bf16" in candidates:
        problem.use_bf16()
    args.laplacian_objective = None
    if "laplacian" in candidates:
        pyramid = LaplacianPyramid(
            height=args.size, width=args.size, levels=args.levels, level_scale=args.level_scale
        )
        args.laplacian_objective = ParameterizedObjective(
            problem.full, transform=pyramid, penalty=args.penalty
        )
    problem.measure_costs(args.laplacian_objective)
    full_cost = problem.costs["full"]
    print(
        "s/evaluation, measured back to back: "
        + ", ".join(f"{k} {v:.3f} ({v / full_cost:.3f} of full)" for k, v in problem.costs.items()),
        flush=True,
    )

    ref = run_reference(problem, args.iters)
    l_ref, cap = ref.saved_loss, args.cap or ref.wall
    print(
        f"reference: {ref.wall:.1f} s, {ref.evaluations} evaluations, L_ref = {l_ref:.4g} (saved image)",
        flush=True,
    )
    outcomes = [ref]
    for spec in candidates:
        out = run_candidate(problem, spec, l_ref=l_ref, cap=cap, args=args)
        reached = f"{out.seconds:.1f} s" if out.seconds is not None else "not reached"
        print(f"{spec}: {reached}; {'; '.join(out.notes)}", flush=True)
        outcomes.append(out)
    if args.repeat_reference:
        again = run_reference(problem, args.iters)
        again.name = "reference, repeated at the end"
        outcomes.append(again)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")

    print(
        f"\n| candidate | s to L_ref = {l_ref:.4g} | T_ref / T | evaluations | full-size equivalent "
        "| ratio in evaluations | saved loss at stop | s/eval probe |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for o in outcomes:
        if o.seconds is None:
            when, ratio, work = f"not reached in {o.wall:.0f} s", "< 1", "< 1"
        else:
            when, ratio = f"{o.seconds:.1f}", f"{ref.wall / o.seconds:.2f}×"
            work = f"{ref.equivalent / o.equivalent:.2f}×"
        print(
            f"| {o.name} | {when} | {ratio} | {o.evaluations} | {o.equivalent:.0f} | {work} "
            f"| {o.saved_loss:.4g} | {o.probe:.2f} |"
        )
    times = [t for t in CHECKPOINTS_S if t <= max(o.wall for o in outcomes)]
    print("\nBest optimiser loss of the full problem against wall time (— : still in a coarse stage)\n")
    print("| candidate | " + " | ".join(f"{t} s" for t in times) + " |")
    print("|---|" + "---|" * len(times))
    for o in outcomes:
        print(f"| {o.name} | " + " | ".join(loss_at(o.marks, t) for t in times) + " |")
    for o in outcomes:
        for note in o.notes:
            print(f"  {o.name}: {note}")


if __name__ == "__main__":
    main()
