"""How well the progress of a run in stages predicts its time: each stage's share of the seconds
against its share of the work (``multiscale.jobs.runner.work_shares``: iterations × pixels, what the
progress bar and ``--time-limit`` go by) and of the iterations, and the run's total as a time
estimate at the end of the first stage would give it by each.

One synthesis with the defaults otherwise; every figure is from that one run (the seconds depend on
the machine and its load, the shares are what to read):

    python benchmarks/stage_progress.py --source ../shared/texbench/13/example.jpg --size 512
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import multiscale  # noqa: E402
from multiscale.jobs.runner import work_shares  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", default=str(ROOT / "samples/sources/gravel.png"))
    parser.add_argument("--size", type=int, default=512, help="output width and height")
    parser.add_argument(
        "--max-iter", type=int, default=None, help="the first stage's iterations (default: the default)"
    )
    args = parser.parse_args()
    options = {} if args.max_iter is None else {"max_iter": args.max_iter}
    result = multiscale.synthesize(args.source, width=args.size, height=args.size, **options)
    stages = result.report.stages
    if len(stages) < 2:
        sys.exit(f"{args.size}² runs in one stage: nothing to compare (use a larger --size)")
    seconds = [s["elapsed_s"] for s in stages]
    iterations = [s["iterations"] for s in stages]
    work = work_shares([(n, s["height"], s["width"]) for n, s in zip(iterations, stages, strict=True)])
    print(f"{args.source}, {args.size}², {len(stages)} stages, {sum(seconds):.0f} s optimising")
    print(f"{'stage':>5} {'size':>9} {'iters':>5} {'seconds':>8} {'time':>6} {'work':>6} {'iters':>6}")
    for s, sec, w in zip(stages, seconds, work, strict=True):
        print(
            f"{s['stage']:>5} {s['width']:>4}×{s['height']:<4} {s['iterations']:>5} {sec:>8.1f} "
            f"{sec / sum(seconds):>6.2f} {w:>6.2f} {s['iterations'] / sum(iterations):>6.2f}"
        )
    print(
        f"total as estimated at the end of stage 1: by the work {seconds[0] / work[0]:.0f} s, by the iterations "
        f"{seconds[0] * sum(iterations) / iterations[0]:.0f} s; taken {sum(seconds):.0f} s"
    )


if __name__ == "__main__":
    main()
