"""The image terms' share of an evaluation: the palette term and the spectrum constraint against the network.

The terms of the image alone (``multiscale.objectives.image_terms``) run in
numpy on the whole image, once per evaluation, beside the network objective
(VGG16 at every octave, tiled where the stage would not fit). This prints,
per output size, the seconds of one value-and-gradient evaluation of each,
measured in the same run, and each term's share of the whole evaluation:

* ``network``: the style transfer objective without its image terms
  (content, multiscale style, TV), as ``stylize --width W`` builds it for its
  last stage (tiled where it tiles);
* ``palette``: the palette term of that run (block means above 2¹⁸ px);
* ``synthesis``: the texture objective of ``synthesize -W W -H H`` from the
  style image, for its last stage (statistics ``auto`` resolved, tiled where
  it tiles), and ``spectrum``: that run's spectrum constraint.

The median of ``--repeats`` timings of each (after one untimed call, which
traces the network's graph; ``throughput.time_calls``). Figures depend on the machine and on what else
runs on it; the shares are the ratios to read.

    python benchmarks/image_terms.py --sizes 512,1024,2048 --repeats 3
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import platform
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from throughput import time_calls  # noqa: E402

from multiscale.config import SynthesisConfig  # noqa: E402
from multiscale.io import load_image  # noqa: E402
from multiscale.jobs.runner import load_network  # noqa: E402
from multiscale.jobs.stylize import build_objective, make_config, prepare_stylize  # noqa: E402
from multiscale.jobs.synthesize import make_objective, plan_run_memory, prepare_targets, resolve_statistics  # noqa: E402
from multiscale.objectives.image_terms import image_terms  # noqa: E402


def median_seconds(repeats: int, fn: Callable[..., object], *args: object) -> float:
    """The median wall time of ``repeats`` calls ``fn(*args)``, after one untimed call (which
    traces a network's graph)."""
    return statistics.median(time_calls(functools.partial(fn, *args), repeats, warmup=1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--content", default=str(ROOT / "samples" / "style" / "chelsea.png"))
    parser.add_argument("--style", default=str(ROOT / "samples" / "sources" / "hubble_field.png"))
    parser.add_argument("--sizes", default="512,1024,2048", help="output widths, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    style = load_image(args.style)
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs (load average "
        f"{os.getloadavg()[0]:.1f} at start); content {args.content}, style {args.style}; "
        f"median of {args.repeats}",
        flush=True,
    )
    print(
        f"\n{'output':>11} | {'stylize s':>9} {'palette s':>9} {'share':>6} | "
        f"{'synthesis s':>11} {'spectrum s':>10} {'share':>6}"
    )
    network = load_network(make_config().descriptor)[1]  # the defaults' network, for every size
    for width in (int(s) for s in args.sizes.split(",")):
        plan = prepare_stylize(args.content, args.style, config=make_config(width=width))
        objective = build_objective(plan, network, plan.height, plan.width)
        inner, terms = objective.inner, {t.name: t for t in objective.terms}
        rng = np.random.default_rng(0)
        image = rng.uniform(0.2, 0.8, size=(plan.height, plan.width, 3)).astype(np.float32)
        x = image.astype(np.float64).reshape(-1)
        net_s = median_seconds(args.repeats, inner, x)
        pal_s = median_seconds(args.repeats, terms["palette"].fn, image)

        synthesis = SynthesisConfig.with_options(height=plan.height, width=plan.width)
        targets = prepare_targets([args.style], config=synthesis, network=network)
        synthesis = resolve_statistics(
            synthesis, height=plan.height, width=plan.width, sliced=targets.sliced is not None
        )
        tile = plan_run_memory(synthesis, height=plan.height, width=plan.width)[0]
        texture = make_objective(
            targets.grams, network=network, config=synthesis.descriptor, height=plan.height,
            width=plan.width, tile=tile, sliced=targets.sliced, means=targets.means,
        )  # fmt: skip
        tex_s = median_seconds(args.repeats, texture, x)
        (spectrum,) = image_terms(
            dataclasses.replace(synthesis, spectrum_weight=1.0), exemplars=[style], height=plan.height,
            width=plan.width,
        )  # fmt: skip
        spec_s = median_seconds(args.repeats, spectrum.fn, image)
        size = f"{plan.width}×{plan.height}"
        print(
            f"{size:>11} | {net_s:9.2f} {pal_s:9.3f} {pal_s / (net_s + pal_s):6.1%} | "
            f"{tex_s:11.2f} {spec_s:10.3f} {spec_s / (tex_s + spec_s):6.1%}",
            flush=True,
        )
    print("\nshare: the term's seconds over its objective's whole evaluation (network plus the term)")


if __name__ == "__main__":
    main()
