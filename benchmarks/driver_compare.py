"""scipy's L-BFGS-B against the projected float32 L-BFGS: driver cost and loss per wall time.

Part 1 — the driver's own cost. A cheap separable quadratic with random
curvature (1…100) and targets in [−0.2, 1.2] (so about 14 % of the pixels
end at a bound) stands in for the network; the time spent inside it is
measured and subtracted, leaving what each driver spends on its first
iteration (set-up included) and per later iteration, at each size (n = H·W·3, history m = 10). The peak of traced
memory (tracemalloc: numpy arrays, including scipy's workspace) over a short
run is printed too.

Part 2 — what it buys on the real objective: StyleObjective (default layers,
4 octaves) at 256² from the same noise start, each driver given the same
wall time after the network is warmed up; the loss reached, iterations and
evaluations.

Timings on a shared machine are noisy: the per-iteration figure is the
median over the iterations of a run (the first left out).

    python benchmarks/driver_compare.py --sizes 512 1024 --iters 20 --style-size 256 --seconds 60
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np

from multiscale.optim import lbfgsb as optimize
from multiscale.optim import projected as lbfgs

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "sources"
DRIVERS = {"scipy L-BFGS-B": optimize.minimize, "projected L-BFGS": lbfgs.minimize}


class Quadratic:
    """``Σ cᵢ (xᵢ − tᵢ)²``; counts the wall and CPU seconds spent in its calls."""

    def __init__(self, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.curv = rng.uniform(1.0, 100.0, n)
        self.target = rng.uniform(-0.2, 1.2, n)
        self.inside = np.zeros(2)  # wall, CPU

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        t0 = _clocks()
        d = x - self.target
        grad = self.curv * d
        loss = float(grad @ d)
        grad *= 2.0
        self.inside += _clocks() - t0
        return loss, grad


def _clocks() -> np.ndarray:
    """(wall, CPU of this process) seconds. CPU time counts every BLAS thread."""
    return np.array([time.perf_counter(), time.process_time()])


def driver_cost(name: str, n: int, iters: int) -> dict[str, float]:
    """Seconds per iteration spent outside the objective, wall and CPU."""
    fun = Quadratic(n)
    x0 = np.random.default_rng(1).uniform(0.0, 1.0, n)
    stamps: list[np.ndarray] = []  # own (wall, CPU) up to each iteration's end

    def cb(_p: optimize.Progress) -> None:
        stamps.append(_clocks() - start - fun.inside)

    start = _clocks()
    res = DRIVERS[name](fun, x0, max_iter=iters, tol=0.0, history=10, callback=cb)
    # Per-iteration driver time from consecutive callbacks; the first iteration
    # (set-up, allocation, first line search) is reported on its own.
    own = np.diff(np.array(stamps), axis=0)
    return {
        "iters": res.iterations,
        "evals": res.evaluations,
        "first": stamps[0][0],
        "wall": float(np.median(own[:, 0])),
        "cpu": float(np.median(own[:, 1])),
        "fun": fun.inside[0] / max(res.evaluations, 1),
    }


def peak_memory(name: str, n: int) -> float:
    """Peak traced MiB over a 3-iteration run (the objective's temporaries included)."""
    fun = Quadratic(n)
    x0 = np.full(n, 0.5)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    DRIVERS[name](fun, x0, max_iter=3, tol=0.0, history=10)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - base) / 2**20


def style_race(size: int, seconds: float) -> list[tuple[str, float, int, int, float]]:
    from multiscale.config import DescriptorConfig
    from multiscale.io import load_image, resize_image
    from multiscale.measure.backbone import VGG16, load_weights
    from multiscale.measure.gram import image_grams
    from multiscale.objectives.texture import StyleObjective

    config = DescriptorConfig()
    net = VGG16(load_weights(), pooling=config.pooling, padding=config.padding)
    source = resize_image(load_image(SAMPLES / "gravel.png"), width=size, height=size)
    targets = image_grams(source, network=net, config=config)
    objective = StyleObjective(targets=targets, network=net, config=config, height=size, width=size)
    rng = np.random.default_rng(0)
    x0 = np.clip(source.mean(axis=(0, 1)) + rng.normal(0, 0.1, (size, size, 3)), 0, 1).reshape(-1)
    objective(x0)  # trace the graph before timing
    rows = []
    for name, run in DRIVERS.items():
        start = time.perf_counter()
        res = run(objective, x0, max_iter=100000, tol=0.0, time_limit=seconds)
        rows.append((name, res.loss, res.iterations, res.evaluations, time.perf_counter() - start))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="image sides (px)")
    parser.add_argument("--iters", type=int, default=20, help="iterations per driver-cost run")
    parser.add_argument("--style-size", type=int, default=256, help="side of the style race (0: skip)")
    parser.add_argument("--seconds", type=float, default=60.0, help="wall time per driver in the race")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, load average: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")

    print("\nDriver's own seconds (objective excluded), history m = 10: the first iteration's wall")
    print("time (set-up included), then medians over the later iterations, wall and CPU")
    head = (
        f"{'size':>6} {'n':>9}  {'driver':<17} {'iters':>5} {'evals':>5} "
        f"{'1st iter':>8} {'wall/iter':>9} {'CPU/iter':>8} {'fun/eval':>8}"
    )
    print(head)
    print("-" * len(head))
    for side in args.sizes:
        n = side * side * 3
        results = {name: driver_cost(name, n, args.iters) for name in DRIVERS}
        for name, r in results.items():
            print(
                f"{side:>5}² {n:>9}  {name:<17} {r['iters']:>5} {r['evals']:>5} "
                f"{r['first']:>8.3f} {r['wall']:>9.3f} {r['cpu']:>8.3f} {r['fun']:>8.3f}"
            )
        (wa, ca), (wb, cb) = ((results[name]["wall"], results[name]["cpu"]) for name in DRIVERS)
        print(f"{'':>17} driver speed-up per iteration: {wa / wb:.1f}× wall, {ca / cb:.1f}× CPU")

    print("\nPeak traced memory of a 3-iteration run (MiB; x, gradients and the memory)")
    print(f"{'size':>6}  " + "  ".join(f"{name:>17}" for name in DRIVERS))
    for side in args.sizes:
        n = side * side * 3
        print(f"{side:>5}²  " + "  ".join(f"{peak_memory(name, n):>17.0f}" for name in DRIVERS))

    if args.style_size:
        print(f"\nStyleObjective {args.style_size}² (4 octaves, default layers), {args.seconds:g} s each")
        print(f"{'driver':<17} {'loss':>10} {'iters':>6} {'evals':>6} {'wall s':>7}")
        for name, loss, iters, evals, wall in style_race(args.style_size, args.seconds):
            print(f"{name:<17} {loss:>10.4g} {iters:>6} {evals:>6} {wall:>7.1f}")


if __name__ == "__main__":
    main()
