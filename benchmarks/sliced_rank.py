"""Time to rank one key of the sliced statistic (:func:`multiscale.measure.sliced.sorted_cotangent`): in one
thread and in :data:`~multiscale.measure.sliced.RANK_THREADS`, and by numpy's argsort against
:func:`~multiscale.measure.sliced.rank_order`'s radix passes, all measured in the same run.

For each shape (positions × directions) it prints the best of ``--repeat`` runs of:

* ``argsort, 1 thread`` and ``argsort, N threads``: every direction ranked by ``np.argsort`` (the
  library before its radix passes), and whether threads left value and gradient bit for bit the same;
* ``radix, N threads``: the library as it runs (radix passes on directions of at least
  :data:`~multiscale.measure.sliced.RADIX_MIN_LENGTH`), its time over argsort's in as many threads,
  whether the value is the same and the largest gradient difference (zero unless projections tie).

The shapes are those of the default layers' keys: ``conv1_1`` at octave 0 of a 256² output is
64k × 64, of a 1024² output 1M × 64; ``conv3_2`` at octave 0 of a 2048² output 256k × 256.

Then, for the same shapes, the library's layout (the projections a row per direction, ranked in place,
gathered and scattered a row at a time) against the one it had before 2026-12-02 (a column per direction,
each block copied out and back, ``take_along_axis`` / ``put_along_axis``), alternated, and whether they
give the same value and gradient bit for bit. Then the peak memory of the radix passes over one direction of 1M values (tracemalloc, bytes per
value beyond the order they return: ``SLICED_BYTES_PER_RADIX_VALUE`` of the memory estimate), and,
with ``--objective-sizes``, one value-and-gradient evaluation of the default synthesis objective
(untiled, targets from ``--source``) at each size, the two rankings alternated ``--objective-repeat``
times in the same process, medians:

    python benchmarks/sliced_rank.py --shapes 65536x64,16384x64,1048576x64,262144x256 --repeat 3
    python benchmarks/sliced_rank.py --shapes 65536x64 --objective-sizes 128,256,512,1024 --objective-repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from multiscale.measure import sliced  # noqa: E402


def _best(
    projected: np.ndarray, target: sliced.TargetQuantiles, repeat: int, *, threads: int, radix: bool
) -> tuple[float, float, np.ndarray]:
    saved = sliced.RANK_THREADS, sliced.RADIX_MIN_LENGTH
    sliced.RANK_THREADS = threads
    sliced.RADIX_MIN_LENGTH = saved[1] if radix else 1 << 62
    try:
        best, value, grad = float("inf"), 0.0, projected
        for _ in range(repeat):
            start = time.perf_counter()
            value, grad = sliced.sorted_cotangent(projected, target, 1.0)
            best = min(best, time.perf_counter() - start)
        return best, value, grad
    finally:
        sliced.RANK_THREADS, sliced.RADIX_MIN_LENGTH = saved


def _columns_cotangent(projected_nk: np.ndarray, target: sliced.TargetQuantiles) -> tuple[float, np.ndarray]:
    """:func:`~multiscale.measure.sliced.sorted_cotangent` as it ranked (N, K) projections, a column per
    direction, before 2026-12-02 (same blocks and threads): the reference for the rows layout."""
    from concurrent.futures import ThreadPoolExecutor

    n, k = projected_nk.shape
    grad = np.empty_like(projected_nk)
    two_scale = projected_nk.dtype.type(2.0 / (n * k))

    def rank(start: int, stop: int) -> float:
        rows = np.ascontiguousarray(projected_nk[:, start:stop].T)
        order = sliced.rank_order(rows)
        diff = np.take_along_axis(rows, order, axis=1)
        diff -= target.rows(start, stop, rows.dtype)
        value = float(np.sum(np.square(diff, dtype=np.float64)))
        diff *= two_scale
        np.put_along_axis(rows, order, diff, axis=1)
        grad[:, start:stop] = rows.T
        return value

    step = sliced._block_rows(n, k)
    blocks = [(start, min(start + step, k)) for start in range(0, k, step)]
    with ThreadPoolExecutor(max_workers=sliced.RANK_THREADS) as pool:
        total = sum(pool.map(lambda block: rank(*block), blocks))
    return total / (n * k), grad


def _layouts(projected: np.ndarray, target: sliced.TargetQuantiles, repeat: int) -> tuple[float, float, bool]:
    """Best seconds of the columns layout (:func:`_columns_cotangent`) and of the library's rows layout,
    alternated, and whether they give the same value and (transposed) gradient bit for bit."""
    columns_input = np.ascontiguousarray(projected.T)
    best = {"columns": float("inf"), "rows": float("inf")}
    for _ in range(repeat):
        start = time.perf_counter()
        v_columns, g_columns = _columns_cotangent(columns_input, target)
        best["columns"] = min(best["columns"], time.perf_counter() - start)
        start = time.perf_counter()
        v_rows, g_rows = sliced.sorted_cotangent(projected, target, 1.0)
        best["rows"] = min(best["rows"], time.perf_counter() - start)
    return best["columns"], best["rows"], v_rows == v_columns and np.array_equal(g_rows, g_columns.T)


def radix_peak_bytes_per_value(length: int = 1 << 20) -> float:
    """tracemalloc's peak while :func:`~multiscale.measure.sliced.rank_order` ranks one direction of
    ``length`` values by radix passes, beyond the order it returns, per value."""
    row = np.random.default_rng(1).standard_normal((1, length)).astype(np.float32)
    tracemalloc.start()
    try:
        order = sliced.rank_order(row)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - order.nbytes) / length


def objective_seconds(source: str, size: int, repeat: int) -> tuple[float, float]:
    """Median seconds of one evaluation of the default synthesis objective at ``size``², ranked by
    argsort and by radix passes alternately (the first call of each, which traces, untimed)."""
    from multiscale.config import SynthesisConfig
    from multiscale.jobs.runner import load_network
    from multiscale.jobs.synthesize import make_objective, prepare_targets, resolve_statistics

    config = SynthesisConfig.with_options(height=size, width=size)
    network = load_network(config.descriptor)[1]
    targets = prepare_targets([source], config=config, network=network)
    config = resolve_statistics(config, height=size, width=size, sliced=targets.sliced is not None)
    objective = make_objective(
        targets.grams, network=network, config=config.descriptor, height=size, width=size, tile=None,
        sliced=targets.sliced, means=targets.means,
    )  # fmt: skip
    x = np.random.default_rng(0).uniform(0.2, 0.8, size * size * 3)
    saved = sliced.RADIX_MIN_LENGTH
    times: dict[int, list[float]] = {1 << 62: [], saved: []}
    try:
        for i in range(repeat + 1):
            for threshold, seconds in times.items():
                sliced.RADIX_MIN_LENGTH = threshold
                start = time.perf_counter()
                objective(x)
                if i:
                    seconds.append(time.perf_counter() - start)
    finally:
        sliced.RADIX_MIN_LENGTH = saved
    return statistics.median(times[1 << 62]), statistics.median(times[saved])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="65536x64,16384x64,1048576x64,262144x256", help="NxK,NxK,…")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--objective-sizes", default="", help="output sides, comma-separated (none: skip)")
    parser.add_argument("--objective-repeat", type=int, default=3)
    parser.add_argument("--source", default=str(ROOT / "samples" / "sources" / "gravel.png"))
    args = parser.parse_args()
    threads = sliced.RANK_THREADS
    rng = np.random.default_rng(0)
    layouts = []
    print(
        f"| positions × directions | argsort, 1 thread | argsort, {threads} threads | identical | "
        f"radix, {threads} threads | radix / argsort | same value | largest gradient difference |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        n, k = (int(v) for v in shape.lower().split("x"))
        # ReLU features projected on unit directions, as the statistic ranks them
        features = np.maximum(rng.standard_normal((n, min(k, 64))), 0).astype(np.float32)
        d = rng.standard_normal((features.shape[1], k)).astype(np.float32)
        # a row per direction, as the statistic ranks them
        projected = np.ascontiguousarray((features @ (d / np.linalg.norm(d, axis=0))).T)
        target = sliced.TargetQuantiles.of(np.sort(projected + 0.1, axis=1).T)
        one, v1, g1 = _best(projected, target, args.repeat, threads=1, radix=False)
        many, vn, gn = _best(projected, target, args.repeat, threads=threads, radix=False)
        fast, vr, gr = _best(projected, target, args.repeat, threads=threads, radix=True)
        same = v1 == vn and np.array_equal(g1, gn)
        print(
            f"| {n} × {k} | {one:.3f} s | {many:.3f} s | {same} | {fast:.3f} s | {fast / many:.2f} | "
            f"{vr == vn} | {float(np.max(np.abs(gr - gn))):.2g} |",
            flush=True,
        )
        layouts.append((n, k, *_layouts(projected, target, args.repeat)))

    print(
        f"\nradix passes, {threads} threads: the projections a row per direction (as ranked now) against a "
        "column per direction (before 2026-12-02: each block of directions copied out of the columns, "
        "gathered and scattered by take_along_axis / put_along_axis, copied back), best of "
        f"{args.repeat}, value and gradient compared:"
    )
    print("| positions × directions | columns | rows | rows / columns | same value and gradient |")
    print("|---|---|---|---|---|")
    for n, k, columns, rows, same in layouts:
        print(f"| {n} × {k} | {columns:.3f} s | {rows:.3f} s | {rows / columns:.2f} | {same} |")

    print(
        f"\nradix passes over one direction of 1M values: {radix_peak_bytes_per_value():.0f} B/value at peak"
    )
    sizes = [int(v) for v in args.objective_sizes.split(",") if v]
    if sizes:
        print(
            f"\none evaluation of the default objective ({args.source}), medians of {args.objective_repeat}:"
        )
        print("| output | argsort | radix passes | ratio |\n|---|---|---|---|")
    for size in sizes:
        old, new = objective_seconds(args.source, size, args.objective_repeat)
        print(f"| {size}² | {old:.3f} s | {new:.3f} s | {new / old:.2f} |", flush=True)


if __name__ == "__main__":
    main()
