"""Check multiscale.measure.memory's estimate against measured peak RSS.

Every case runs in a fresh Python process (peak RSS is a process's
high-water mark, so cases cannot share one) and reports ``ru_maxrss``.

Default mode: a real :func:`multiscale.jobs.synthesize.synthesize` run per size
(square array source of the output's size, ``--octaves``, ``--history``,
``--max-iter``) against :func:`multiscale.measure.memory.estimate_synthesis_memory`.
Use a history no larger than ``max_iter - 1``: scipy's correction vectors
are allocated lazily (calloc), so a short run with a long history has not
touched them all and reads low against an estimate made for a whole run.

``--phases`` instead measures, per size, the baseline after imports, the
weights, the source pass and one loss-and-gradient evaluation separately,
and prints the factors they imply for the constants in multiscale.memory.

    python benchmarks/memory_calibration.py --sizes 128,256,512
    python benchmarks/memory_calibration.py --phases --sizes 256,512,1024
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from multiscale.config import DescriptorConfig  # noqa: E402
from multiscale.measure.memory import (
    ACTIVATION_FACTOR,
    IMAGE_BYTES_PER_VALUE,
    SOURCE_FACTOR,
    TF_BASELINE_BYTES,
    WEIGHT_COPIES,
    estimate_synthesis_memory,
    human_bytes,
    layer_output_bytes,
    peak_rss_bytes,
    process_memory,
    vgg16_parameter_bytes,
)


def _status() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in bytes."""
    return process_memory()


def child_synthesize(
    size: int, octaves: int, history: int, max_iter: int, source_size: int, layers: tuple[str, ...]
) -> dict:
    """One full synthesis run; returns peak RSS and timings."""
    import numpy as np

    from multiscale.jobs.synthesize import synthesize

    source = np.random.default_rng(0).random((source_size, source_size, 3), dtype=np.float32)
    started = time.perf_counter()
    result = synthesize(
        source,
        width=size,
        height=size,
        octaves=octaves,
        layers=layers,
        history=history,
        max_iter=max_iter,
        seed=0,
        stages=1,  # the peak of a run at this size (a staged run's is its last stage's)
    )
    return {
        "peak": peak_rss_bytes(),
        "seconds": time.perf_counter() - started,
        "iterations": result.report.iterations,
        "evaluations": result.report.evaluations,
        # what the run matched (statistics auto resolves by size): the estimate must count the same
        "statistics": list(result.report.config.descriptor.statistics),
    }


def child_phases(size: int, octaves: int) -> dict:
    """(VmRSS, VmHWM) after each phase: imports, weights, the source pass."""
    import numpy as np

    import multiscale.jobs.synthesize  # noqa: F401

    # Everything a synthesis run imports belongs to the baseline.
    import multiscale.objectives.texture  # noqa: F401
    import multiscale.optim.lbfgsb  # noqa: F401
    from multiscale._tf import tf
    from multiscale.measure.backbone import VGG16, load_weights
    from multiscale.measure.gram import image_grams

    config = DescriptorConfig(octaves=octaves)
    tf.constant([1.0]) + 1.0
    out = {"baseline": _status()}
    network = VGG16(load_weights())
    out["weights"] = _status()
    rng = np.random.default_rng(0)
    image_grams(rng.random((size, size, 3), dtype=np.float32), network=network, config=config)
    out["source"] = _status()
    return out


def child_eval(size: int, octaves: int) -> dict:
    """RSS around three loss-and-gradient evaluations after a tiny source pass."""
    import numpy as np

    import multiscale.jobs.synthesize  # noqa: F401
    import multiscale.optim.lbfgsb  # noqa: F401
    from multiscale._tf import tf
    from multiscale.measure.backbone import VGG16, load_weights
    from multiscale.measure.gram import image_grams, min_image_side
    from multiscale.objectives.texture import StyleObjective

    config = DescriptorConfig(octaves=octaves)
    tf.constant([1.0]) + 1.0
    network = VGG16(load_weights())
    rng = np.random.default_rng(0)
    small = min_image_side(config)
    grams = image_grams(rng.random((small, small, 3), dtype=np.float32), network=network, config=config)
    before = _status()
    objective = StyleObjective(targets=grams, network=network, config=config, height=size, width=size)
    x = rng.random(size * size * 3)
    for _ in range(3):
        objective(x)
    return {"before": before, "after": _status()}


def run_child(*args: str) -> dict:
    """Run this script as a child with ``args``; return its JSON answer."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main_synthesize(
    sizes: list[int],
    octaves: int,
    history: int,
    max_iter: int,
    source_size: int | None,
    layers: tuple[str, ...],
) -> None:
    config = DescriptorConfig(octaves=octaves, layers=layers)
    source_text = f"{source_size}² source" if source_size else "source of the output's size"
    print(
        f"synthesize, {octaves} octaves, layers {','.join(layers)}, history {history}, max_iter {max_iter}, "
        f"{source_text}; fresh process per size"
    )
    header = f"{'size':>6} {'iters':>5} {'evals':>5} {'seconds':>8} {'measured':>10} {'estimate':>10} {'est/meas':>8}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for size in sizes:
        src = source_size or size
        r = run_child("synth", str(size), str(octaves), str(history), str(max_iter), str(src), *layers)
        run_config = dataclasses.replace(config, statistics=tuple(r["statistics"]))
        est = estimate_synthesis_memory(
            height=size, width=size, config=run_config, history=history, sources=[(src, src)]
        )
        ratio = est.total / r["peak"]
        worst = max(worst, abs(ratio - 1))
        print(
            f"{size:>6} {r['iterations']:>5} {r['evaluations']:>5} {r['seconds']:>8.1f} "
            f"{human_bytes(r['peak']):>10} {human_bytes(est.total):>10} {ratio:>8.3f}"
        )
        print(f"{'':>6} estimate: {est.describe()}")
    print(f"largest deviation of the estimate: {worst:.1%}")


def main_phases(sizes: list[int], octaves: int) -> None:
    config = DescriptorConfig(octaves=octaves)
    params = vgg16_parameter_bytes()
    print(f"phases, {octaves} octaves; each row two fresh processes")
    print(f"model constants: baseline {human_bytes(TF_BASELINE_BYTES)}, weight copies {WEIGHT_COPIES}, "
          f"activation factor {ACTIVATION_FACTOR}, source factor {SOURCE_FACTOR}")  # fmt: skip
    header = (
        f"{'size':>6} {'A(H,W)':>10} {'baseline':>10} {'weights':>9} {'w copies':>8} "
        f"{'source':>10} {'src fac':>7} {'eval':>10} {'act fac':>7}"
    )
    print(header)
    print("-" * len(header))
    for size in sizes:
        p = run_child("phases", str(size), str(octaves))
        e = run_child("eval", str(size), str(octaves))
        a = layer_output_bytes(size, size, config=config)
        weights = p["weights"][0] - p["baseline"][0]
        # Against RSS after the weights: memory freed before the pass is reused by it.
        source = p["source"][1] - p["weights"][0]
        evaluation = e["after"][1] - e["before"][0]
        # The objective's own float32/float64 copies are IMAGE_BYTES_PER_VALUE's business.
        act = (evaluation - 24 * size * size * 3) / a
        print(
            f"{size:>6} {human_bytes(a):>10} {human_bytes(p['baseline'][0]):>10} {human_bytes(weights):>9} "
            f"{weights / params:>8.2f} {human_bytes(source):>10} {source / a:>7.2f} "
            f"{human_bytes(evaluation):>10} {act:>7.2f}"
        )
    print(
        f"(images term: {IMAGE_BYTES_PER_VALUE} B per variable; see benchmarks/driver_overhead.py --memory)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="128,256,512", help="comma-separated output sides in pixels")
    parser.add_argument("--octaves", type=int, default=4)
    parser.add_argument("--history", type=int, default=2, help="L-BFGS memory m (≤ max_iter - 1)")
    parser.add_argument("--max-iter", type=int, default=3)
    parser.add_argument("--source-size", type=int, default=None, help="source side (default: the output's)")
    parser.add_argument("--layers", default=",".join(DescriptorConfig().layers))
    parser.add_argument("--phases", action="store_true", help="measure each phase and print implied factors")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "synth":
            answer = child_synthesize(*(int(v) for v in rest[:5]), layers=tuple(rest[5:]))
        else:
            answer = {"phases": child_phases, "eval": child_eval}[kind](*(int(v) for v in rest))
        print(json.dumps(answer))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.phases:
        main_phases(sizes, args.octaves)
    else:
        layers = tuple(n.strip() for n in args.layers.split(",") if n.strip())
        main_synthesize(sizes, args.octaves, args.history, args.max_iter, args.source_size, layers)


if __name__ == "__main__":
    main()
