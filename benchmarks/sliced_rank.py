"""Time to rank one key of the sliced statistic (:func:`multiscale.measure.sliced.sorted_cotangent`), in one
thread and in :data:`~multiscale.measure.sliced.RANK_THREADS`, measured in the same run.

For each shape (positions × directions) it prints the best of ``--repeat`` runs with one thread and with
the library's number, their ratio, and whether value and gradient came out bit for bit the same.
The shapes are those of the default layers' keys: ``conv1_1`` at octave 0 of a 1024² output is
1M × 64, ``conv3_2`` at octave 0 of a 2048² output 256k × 256.

    python benchmarks/sliced_rank.py --shapes 1048576x64,262144x256,65536x64 --repeat 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from multiscale.measure import sliced


def _best(
    projected: np.ndarray, target: sliced.TargetQuantiles, repeat: int
) -> tuple[float, float, np.ndarray]:
    best, value, grad = float("inf"), 0.0, projected
    for _ in range(repeat):
        start = time.perf_counter()
        value, grad = sliced.sorted_cotangent(projected, target, 1.0)
        best = min(best, time.perf_counter() - start)
    return best, value, grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="1048576x64,262144x256,65536x64", help="NxK,NxK,…")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    threads = sliced.RANK_THREADS
    rng = np.random.default_rng(0)
    print(f"| positions × directions | 1 thread | {threads} threads | ratio | identical |")
    print("|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        n, k = (int(v) for v in shape.lower().split("x"))
        projected = rng.standard_normal((n, k)).astype(np.float32)
        target = sliced.TargetQuantiles.of(np.sort(rng.standard_normal((n, k)).astype(np.float32), axis=0))
        try:
            sliced.RANK_THREADS = 1
            one, v1, g1 = _best(projected, target, args.repeat)
        finally:
            sliced.RANK_THREADS = threads
        many, vn, gn = _best(projected, target, args.repeat)
        same = v1 == vn and np.array_equal(g1, gn)
        print(f"| {n} × {k} | {one:.2f} s | {many:.2f} s | {many / one:.2f} | {same} |")


if __name__ == "__main__":
    main()
