"""Time to reach the reference's final loss: default driver against scipy's L-BFGS-B.

Runs the reference (``--optimizer lbfgsb``, plain pixels from noise) for
``--iters`` iterations and records its final loss L_ref and wall time T_ref;
then runs the default (``projected``) from the same start until its loss is
at most L_ref (or ``--iters`` × 2 iterations) and reports the time it took.
Both runs use the same objective, so the ratio T_ref / T_default is the
speed-up that matters: time to equal quality, not time per evaluation.

    python benchmarks/time_to_loss.py --size 256 --iters 250
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from multiscale.io import load_image
from multiscale.synthesize import synthesize

SOURCE = Path(__file__).resolve().parent.parent / "samples" / "sources" / "gravel.png"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--iters", type=int, default=250)
    parser.add_argument("--octaves", type=int, default=4)
    args = parser.parse_args()
    source = load_image(SOURCE)
    common = dict(width=args.size, height=args.size, octaves=args.octaves, seed=0, tol=0.0)

    marks: list[tuple[float, float]] = []
    start = time.perf_counter()
    ref = synthesize(
        source, optimizer="lbfgsb", max_iter=args.iters,
        callback=lambda p: marks.append((time.perf_counter() - start, p.best_loss)), **common,
    )  # fmt: skip
    t_ref, l_ref = marks[-1]

    reached: dict[str, float] = {}
    start = time.perf_counter()

    def stop_when_reached(p) -> bool:
        if p.best_loss <= l_ref:
            reached.update(t=time.perf_counter() - start, it=p.iteration, loss=p.best_loss)
            return True
        return False

    fast = synthesize(
        source, optimizer="projected", max_iter=2 * args.iters, callback=stop_when_reached, **common
    )
    print(
        f"{args.size}², {args.octaves} octaves, default layers; objective evaluations counted by each driver"
    )
    print(f"{'driver':24s} {'iterations':>10s} {'evals':>6s} {'seconds':>8s} {'best loss':>10s}")
    print(
        f"{'scipy L-BFGS-B (ref)':24s} {ref.report.iterations:10d} {ref.report.evaluations:6d} {t_ref:8.1f} {l_ref:10.4g}"
    )
    if reached:
        print(
            f"{'projected (default)':24s} {reached['it']:10d} {fast.report.evaluations:6d} {reached['t']:8.1f} {reached['loss']:10.4g}"
        )
        print(f"time to the reference's final loss: {t_ref / reached['t']:.2f}× faster")
    else:
        print(
            f"projected did not reach {l_ref:.4g} in {fast.report.iterations} iterations (best {fast.report.best_loss:.4g})"
        )


if __name__ == "__main__":
    main()
