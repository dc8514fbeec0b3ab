"""Staged schedule against a single stage: loss at the final resolution over time.

Runs ``stylize`` twice with the same wall-time budget (``--time-limit``):

* ``staged``: the default schedule (stages chosen from the output size:
  512 px first, then doubling up to ``--width``);
* ``single``: one stage at ``--width`` from the start.

During each run the current image is kept at checkpoints (every
``budget / checkpoints`` seconds of job time, loading included). Afterwards
every kept image is upsampled to the output size if it is an earlier
stage's, and evaluated with the objective at the output size (content and
style targets computed there), so the two schedules are measured with one
yardstick. Prints a table of loss against time.

    python benchmarks/stylize_schedule.py --width 1024 --budget 300

Numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from multiscale.io import resize_image
from multiscale.jobs.stylize import build_objective, make_config, prepare_stylize, run_plan
from multiscale.measure.backbone import VGG16, load_weights

ROOT = Path(__file__).resolve().parent.parent


def run(name: str, plan, checkpoints: list[float]) -> tuple[list[tuple[float, np.ndarray]], float]:
    """Run ``plan``; return (checkpoint time, image) pairs and the wall time."""
    kept: list[tuple[float, np.ndarray]] = []
    pending = list(checkpoints)

    def on_progress(p) -> None:
        while pending and p.elapsed_s >= pending[0]:
            kept.append((pending.pop(0), np.array(p.image, dtype=np.float32)))

    started = time.perf_counter()
    result = run_plan(plan, callback=on_progress)
    wall = time.perf_counter() - started
    for t in pending:  # the run ended before these: its final image stands for them
        kept.append((t, result.image))
    kept.append((wall, result.image))
    stages = ", ".join(f"{s.width}×{s.height}: {s.iterations} it" for s in result.report.stages)
    print(f"{name}: {stages}; {result.report.message}; {wall:.0f} s", flush=True)
    return kept, wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--content", default=str(ROOT / "samples" / "style" / "chelsea.png"))
    parser.add_argument("--style", default=str(ROOT / "samples" / "sources" / "hubble_field.png"))
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of optimisation per schedule")
    parser.add_argument("--checkpoints", type=int, default=6)
    args = parser.parse_args()

    checkpoints = [args.budget * (k + 1) / args.checkpoints for k in range(args.checkpoints)]
    common = dict(width=args.width, time_limit=args.budget, max_iter=100_000, tol=0.0)
    staged = prepare_stylize(args.content, args.style, config=make_config(**common))
    single = prepare_stylize(args.content, args.style, config=make_config(stages=1, **common))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs (load average "
        f"{os.getloadavg()[0]:.1f} at start); output {staged.width}×{staged.height}; "
        f"staged sizes {[w for _, w in staged.stage_sizes]}; budget {args.budget:g} s",
        flush=True,
    )
    kept = {"staged": run("staged", staged, checkpoints), "single": run("single", single, checkpoints)}

    d = staged.config.descriptor
    network = VGG16(load_weights(d.weights), pooling=d.pooling, padding=d.padding)
    objective = build_objective(staged, network, staged.height, staged.width)

    def final_loss(image: np.ndarray) -> float:
        if image.shape[:2] != (staged.height, staged.width):
            image = resize_image(image, width=staged.width, height=staged.height)
        return objective.evaluate(image).total

    columns = {name: [(t, final_loss(im)) for t, im in pairs] for name, (pairs, _) in kept.items()}
    print(f"\nloss at {staged.width}×{staged.height} (content + style + TV, default weights)")
    print(f"{'time (s)':>10} {'staged':>10} {'single':>10}")
    for (t, a), (_, b) in zip(columns["staged"][:-1], columns["single"][:-1], strict=True):
        print(f"{t:10.0f} {a:10.4f} {b:10.4f}")
    (ta, a), (tb, b) = columns["staged"][-1], columns["single"][-1]
    print(f"{'end':>10} {a:10.4f} {b:10.4f}   (wall {ta:.0f} s / {tb:.0f} s, loading included)")


if __name__ == "__main__":
    main()
