"""Seconds and memory the L-BFGS-B driver itself costs, network excluded.

Runs :func:`multiscale.optim.lbfgsb.minimize` (scipy's L-BFGS-B plus our
best-point tracking) on a cheap, ill-conditioned quadratic with as many
variables as an H×W RGB image (n = H·W·3), with the pixel bounds [0, 1]
and without. The objective's own time is measured and subtracted, so what
remains is the driver's:

* ``setup s``: before the first evaluation and between the first and the
  second (scipy converts the list of n bounds and fills its bound arrays in
  Python loops there);
* ``driver s/iter``: the rest of the driver's time per iteration (the
  two-loop recursion, the Cauchy point and subspace step under bounds, the
  copies and finiteness checks in our wrapper);
* ``B/var peak``: the process's peak RSS above its size before the run,
  per variable, which includes the objective's own temporaries (3 float64
  vectors). Each case runs in a fresh process so the peaks are its own.

    python benchmarks/driver_overhead.py --sizes 512,1024 --iterations 10
    python benchmarks/driver_overhead.py --sizes 512,1024,2048 --history 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _rss() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in bytes."""
    from multiscale.measure.memory import process_memory

    return process_memory()


def run_case(size: int, bounded: bool, iterations: int, history: int) -> dict:
    """One driver run in this process; returns its timings and memory."""
    import numpy as np

    from multiscale.optim.lbfgsb import minimize

    n = size * size * 3
    rng = np.random.default_rng(0)
    # Targets partly outside [0, 1] so that bounds become active, and a
    # spread of curvatures so that L-BFGS-B does not finish in two steps.
    target = rng.uniform(-0.25, 1.25, n)
    curvature = np.geomspace(1.0, 1e4, n)
    rng.shuffle(curvature)
    x0 = rng.uniform(0.0, 1.0, n)
    entries: list[float] = []
    exits: list[float] = []

    def quadratic(x: np.ndarray) -> tuple[float, np.ndarray]:
        entries.append(time.perf_counter())
        g = curvature * (x - target)
        f = 0.5 * float(np.dot(g, x - target))
        exits.append(time.perf_counter())
        return f, g

    before = _rss()[0]
    start = time.perf_counter()
    res = minimize(
        quadratic,
        x0,
        bounds=(0.0, 1.0) if bounded else None,
        max_iter=iterations,
        tol=0.0,
        history=history,
    )
    total = time.perf_counter() - start
    peak = _rss()[1]
    inside = sum(b - a for a, b in zip(entries, exits, strict=True))
    setup = entries[0] - start + (entries[1] - exits[0] if len(entries) > 1 else 0.0)
    # The gap between the first two evaluations holds scipy's setup loops
    # *and* the first iteration's own work; one typical gap is given back.
    gaps = [entries[i + 1] - exits[i] for i in range(1, len(entries) - 1)]
    typical = sorted(gaps)[len(gaps) // 2] if gaps else 0.0
    setup = max(setup - typical, 0.0)
    driver = total - inside - setup
    return {
        "size": size,
        "n": n,
        "bounded": bounded,
        "iterations": res.iterations,
        "evaluations": res.evaluations,
        "stop": res.stop_reason,
        "total_s": total,
        "objective_s": inside,
        "setup_s": setup,
        "driver_s_per_iter": driver / max(res.iterations, 1),
        "peak_bytes_per_var": (peak - before) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="512,1024", help="comma-separated image sides (2048 needs ~6 GiB)")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--history", type=int, default=10, help="L-BFGS memory m")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        size, bounded, iterations, history = (int(v) for v in args.child)
        print(json.dumps(run_case(size, bool(bounded), iterations, history)))
        return

    import scipy

    print(f"L-BFGS-B driver (multiscale.optim.lbfgsb.minimize), scipy {scipy.__version__}, "
          f"history {args.history}, up to {args.iterations} iterations; fresh process per row")  # fmt: skip
    header = (
        f"{'size':>6} {'n':>10} {'bounds':>6} {'iters':>5} {'evals':>5} {'total s':>8} {'obj s':>7} "
        f"{'setup s':>7} {'driver s/iter':>13} {'ms/iter/Mvar':>12} {'B/var peak':>10}"
    )
    print(header)
    print("-" * len(header))
    for size in (int(s) for s in args.sizes.split(",")):
        for bounded in (True, False):
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(size), str(int(bounded)), str(args.iterations),
                 str(args.history)],
                capture_output=True, text=True, check=False, env=dict(os.environ),
            )  # fmt: skip
            if proc.returncode != 0:
                print(f"{size:>6} {'yes' if bounded else 'no':>6} failed: {proc.stderr.strip()[-300:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            per_mvar = r["driver_s_per_iter"] * 1e3 / (r["n"] / 1e6)
            print(
                f"{size:>6} {r['n']:>10} {'yes' if bounded else 'no':>6} {r['iterations']:>5} "
                f"{r['evaluations']:>5} {r['total_s']:>8.2f} {r['objective_s']:>7.2f} {r['setup_s']:>7.2f} "
                f"{r['driver_s_per_iter']:>13.4f} {per_mvar:>12.1f} {r['peak_bytes_per_var']:>10.0f}"
            )
    print(f"B/var peak includes 16·m = {16 * args.history} B/var of correction pairs and the objective's "
          "own temporaries (~24 B/var); compare multiscale.measure.memory's lbfgs, bounds and images terms")  # fmt: skip


if __name__ == "__main__":
    main()
