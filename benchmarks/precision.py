"""bfloat16 against float32 convolutions: peak, per evaluation, accuracy, choice.

Everything printed is measured in this run:

1. the CPU's flags and whether TensorFlow's oneDNN kernels are on;
2. the 3×3 128→128 conv peak at 256² in float32 and bfloat16
   (``benchmarks/throughput.py``'s :func:`conv_peak`, alternated twice,
   the faster median of each kept);
3. seconds per loss-and-gradient evaluation of the style objective at
   ``--size`` (default 512², default descriptor) with a float32 network and
   with ``VGG16(..., compute_dtype=tf.bfloat16)``, evaluated alternately
   (A B A B …) after an untimed warm-up and reported as medians; GFLOP/s
   from ``throughput.py``'s analytic count and its share of the peak
   measured in the same precision;
4. the accuracy of that bfloat16 evaluation against float32 at the same
   (random) point, and :func:`multiscale.jobs.precision.choose_precision`'s own
   probe figures and pick for this size;
5. with ``--xla``: the same evaluation compiled with XLA
   (``tf.function(jit_compile=True)``), in both precisions (slow to compile);
6. with ``--iterations N``: a synthesis of ``--synth-size`` px (gravel, seed
   0, projected L-BFGS, up to N iterations) in float32, in bfloat16, and in
   bfloat16 for N/2 iterations finished in float32 from the L-BFGS state;
   each final 8-bit image scored by the float32 objective. (The runs follow
   each other, so their wall times are exposed to changes of load.)

On a machine shared with other work the timings wander; the alternation
keeps the comparison fair, not the absolute figures stable.

    python benchmarks/precision.py
    python benchmarks/precision.py --size 256 --repeats 7 --xla --iterations 100
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import PEAK_CHANNELS, PEAK_SIDE, conv_peak, cpu_description, objective_flops  # noqa: E402

from multiscale.config import DescriptorConfig  # noqa: E402


def alternate(functions: dict, repeats: int) -> dict[str, list[float]]:  # noqa: ANN001
    """Seconds of ``repeats`` rounds of calling each function once, in turn."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def xla_objective(tf, targets, network, config, size):  # noqa: ANN001, ANN201
    """A value-and-gradient function like StyleObjective's, compiled with XLA."""
    import numpy as np

    from multiscale.measure.gram import pyramid_grams
    from multiscale.objectives.terms import style_loss

    consts = {key: tf.constant(g, dtype=tf.float32) for key, g in targets.items()}

    @tf.function(input_signature=[tf.TensorSpec((1, size, size, 3), tf.float32)], jit_compile=True)
    def loss_and_grad(x):  # noqa: ANN001, ANN202
        with tf.GradientTape() as tape:
            tape.watch(x)
            total, _ = style_loss(pyramid_grams(x, network=network, config=config), consts, config=config)
        return total, tape.gradient(total, x)

    def call(x: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = loss_and_grad(tf.constant(x.reshape(1, size, size, 3), dtype=tf.float32))
        return float(total.numpy()), grad.numpy().reshape(-1).astype(np.float64)

    return call


def synthesis_check(tf, networks, config, size: int, iterations: int) -> None:  # noqa: ANN001
    """The same synthesis in float32, in bfloat16, and in bfloat16 finished in float32.

    The last runs bfloat16 for the first half of the iterations, then
    resumes the projected L-BFGS state in float32 (its loss and gradient
    re-evaluated in float32, the correction pairs kept). Every final 8-bit
    image is scored by the float32 objective.
    """
    import dataclasses

    from multiscale.io import load_image
    from multiscale.jobs.runner import quantize
    from multiscale.jobs.starts import initial_image
    from multiscale.measure.gram import image_grams
    from multiscale.objectives.texture import StyleObjective
    from multiscale.optim.projected import minimize

    source = load_image(ROOT / "samples" / "sources" / "gravel.png")
    targets = image_grams(source, network=networks["float32"], config=config)
    objectives = {
        name: StyleObjective(targets=targets, network=net, config=config, height=size, width=size)
        for name, net in networks.items()
    }
    f32 = objectives["float32"]
    x0 = initial_image(
        "noise", height=size, width=size, mean_color=source.reshape(-1, 3).mean(0), seed=0,
        max_input_pixels=size * size,
    ).reshape(-1)  # fmt: skip
    common = dict(bounds=(0.0, 1.0), tol=1e-7, history=10)
    for objective in objectives.values():
        objective(x0)  # trace both graphs before any run is timed

    def plain(name: str):  # noqa: ANN202
        return minimize(objectives[name], x0, max_iter=iterations, **common)

    def finished_in_float32():  # noqa: ANN202
        first = minimize(objectives["bfloat16"], x0, max_iter=iterations // 2, **common)
        state = first.state
        loss, grad = f32(state.x.copy())
        state = dataclasses.replace(state, loss=loss, grad=grad, best_x=state.x.copy(), best_loss=loss)
        return minimize(f32, x0, max_iter=iterations, state=state, **common)

    runs = {
        "float32": lambda: plain("float32"),
        "bfloat16": lambda: plain("bfloat16"),
        "bf16→f32": finished_in_float32,
    }
    print(f"\nsynthesis: gravel, {size}², seed 0, projected L-BFGS (tol 1e-7), up to {iterations} iterations; "
          f"bf16→f32: bfloat16 for {iterations // 2}, then float32 from the L-BFGS state")  # fmt: skip
    print(f"  {'run':<10} {'wall s':>7} {'iters':>6} {'evals':>6}  {'float32 loss, 8-bit':>20}  stop")
    for name, run in runs.items():
        start = time.perf_counter()
        res = run()
        elapsed = time.perf_counter() - start
        image = quantize(res.x.reshape(size, size, 3), bit_depth=8)
        scored = f32.evaluate(image).total
        print(
            f"  {name:<10} {elapsed:>7.1f} {res.iterations:>6} {res.evaluations:>6}  {scored:>20.6f}  "
            f"{res.stop_reason}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size", type=int, default=512, help="output side in pixels for the per-evaluation timing"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (each precision once per round)")
    parser.add_argument("--octaves", type=int, default=DescriptorConfig().octaves)
    parser.add_argument("--source", default=str(ROOT / "samples" / "sources" / "gravel.png"))
    parser.add_argument(
        "--xla", action="store_true", help="also time XLA-compiled evaluations (slow to compile)"
    )
    parser.add_argument(
        "--iterations", type=int, default=0, help="also run a synthesis of this many iterations"
    )
    parser.add_argument("--synth-size", type=int, default=256, help="side of that synthesis in pixels")
    args = parser.parse_args()

    import numpy as np

    from multiscale._tf import tf
    from multiscale.io import load_image, resize_image
    from multiscale.jobs.precision import accuracy_check, choose_precision, cpu_features, onednn_enabled
    from multiscale.measure.backbone import VGG16, load_weights
    from multiscale.measure.gram import image_grams
    from multiscale.objectives.texture import StyleObjective

    machine = cpu_description()
    print("machine")
    for key, value in machine.items():
        print(f"  {key:<12} {value}")
    flags = cpu_features()
    print(f"  {'bf16 flags':<12} {' '.join(f for f in sorted(flags) if 'bf16' in f or 'amx' in f) or 'none'}")
    print(
        f"  {'tensorflow':<12} {tf.__version__}, oneDNN {dict([(True, 'on'), (False, 'off')]).get(onednn_enabled(), 'unknown')}"
    )

    print(f"  {'threads':<12} intra {tf.config.threading.get_intra_op_parallelism_threads()}, "
          f"inter {tf.config.threading.get_inter_op_parallelism_threads()} (0 = TF picks)")  # fmt: skip

    peak_flops = 2.0 * PEAK_SIDE * PEAK_SIDE * PEAK_CHANNELS * PEAK_CHANNELS * 9
    peaks: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for _ in range(2):
        for name, dtype in (("float32", tf.float32), ("bfloat16", tf.bfloat16)):
            peaks[name].append(conv_peak(tf, dtype, 5))
    peak_gflops = {name: peak_flops / min(s) / 1e9 for name, s in peaks.items()}
    print(f"\nconv peak: 3x3 {PEAK_CHANNELS}->{PEAK_CHANNELS} at {PEAK_SIDE}², batch 1, NHWC "
          "(median of 5, faster of 2 alternated runs)")  # fmt: skip
    for name, s in peaks.items():
        print(f"  {name:<9} {min(s) * 1e3:8.2f} ms  {peak_gflops[name]:8.1f} GFLOP/s")
    print(f"  bfloat16 / float32: {peak_gflops['bfloat16'] / peak_gflops['float32']:.2f}×")

    size = args.size
    config = DescriptorConfig(octaves=args.octaves)
    weights = load_weights(config.weights)
    networks = {
        "float32": VGG16(weights, pooling=config.pooling, padding=config.padding),
        "bfloat16": VGG16(weights, pooling=config.pooling, padding=config.padding, compute_dtype=tf.bfloat16),
    }
    source = load_image(args.source)
    src = source if source.shape[:2] == (size, size) else resize_image(source, width=size, height=size)
    targets = image_grams(src, network=networks["float32"], config=config)
    candidates = {
        name: StyleObjective(targets=targets, network=net, config=config, height=size, width=size)
        for name, net in networks.items()
    }
    if args.xla:
        for name, net in list(networks.items()):
            candidates[f"{name}+xla"] = xla_objective(tf, targets, net, config, size)
    x = np.random.default_rng(0).random(size * size * 3)
    first, compile_s = {}, {}
    for name, objective in candidates.items():
        start = time.perf_counter()
        first[name] = objective(x)
        compile_s[name] = time.perf_counter() - start
        objective(x)
    times = alternate({name: (lambda o=o: o(x)) for name, o in candidates.items()}, args.repeats)

    total = sum(objective_flops(size, size, config).values())
    print(f"\nobjective at {size}²: {config.octaves} octaves, layers {','.join(config.layers)}, "
          f"{total / 1e9:.1f} GFLOP per value+gradient; median of {args.repeats} alternated rounds")  # fmt: skip
    header = f"  {'network':<14} {'1st call s':>10} {'eval s':>8} {'min s':>8} {'GFLOP/s':>8} {'/own peak':>9} {'speed-up':>8}"
    print(header)
    base = statistics.median(times["float32"])
    for name, ts in times.items():
        med = statistics.median(ts)
        gflops = total / med / 1e9
        own_peak = peak_gflops["bfloat16" if name.startswith("bfloat16") else "float32"]
        print(
            f"  {name:<14} {compile_s[name]:>10.1f} {med:>8.3f} {min(ts):>8.3f} {gflops:>8.1f} "
            f"{gflops / own_peak:>9.1%} {base / med:>7.2f}×"
        )

    print(f"\naccuracy at {size}² (same random point, float32 vs each):")
    for name in candidates:
        if name == "float32":
            continue
        acc = accuracy_check(first["float32"], first[name])
        print(f"  {name:<14} loss rel. diff {acc.loss_rel_diff:.2e}, gradient cosine {acc.grad_cosine:.6f}, "
              f"norm ratio {acc.grad_norm_ratio:.4f}")  # fmt: skip

    start = time.perf_counter()
    choice = choose_precision(config=config, height=size, width=size, weights=weights)
    took = time.perf_counter() - start
    print(f"\nchoose_precision(auto) for {size}²: {choice.precision}  ({took:.1f} s)")
    print(f"  reason: {choice.reason}")
    if choice.accuracy is not None:
        acc = choice.accuracy
        print(f"  probe {choice.probe_size[0]}×{choice.probe_size[1]}: float32 {choice.seconds_float32:.3f} s, "
              f"bfloat16 {choice.seconds_bfloat16:.3f} s ({choice.speedup:.2f}×, {choice.timed_pairs} pairs)")  # fmt: skip
        print(f"  accuracy check: loss {acc.loss_float32:.5f} vs {acc.loss_bfloat16:.5f} "
              f"(rel. diff {acc.loss_rel_diff:.2e}), gradient cosine {acc.grad_cosine:.6f}, "
              f"passed: {acc.passed}")  # fmt: skip

    if args.iterations > 0:
        synthesis_check(tf, networks, config, args.synth_size, args.iterations)


if __name__ == "__main__":
    main()
