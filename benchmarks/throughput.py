"""Throughput of the multiscale objective against the machine's conv peak.

For each output size: build a StyleObjective (targets from a sample source
resized to that size), warm it up (the first call traces the graph), then
time ``--repeats`` evaluations of value + gradient, as the L-BFGS-B driver
calls them (float64 vector in, float64 gradient out).

FLOPs are counted analytically, per evaluation, over every octave and every
convolution up to the deepest selected layer:

* forward conv: ``2·h·w·C_in·C_out·9`` (h, w: the layer's output size);
* backward conv: the same again, for the gradient w.r.t. the conv's input
  only. The kernels are constants, so TF prunes Conv2DBackpropFilter from
  the graph: the factor is ×2, not the ×3 of training. The first layer's
  input gradient is counted too: it is the gradient w.r.t. the pixels that
  the optimiser needs;
* Gram: ``2·h·w·C²`` forward; backward ``2 × that`` (one matmul for each
  operand of FᵀF, both the same tensor);
* ReLU, bias, pooling, the pyramid's 5-tap blur and the loss are left out
  (well under 1 % of the total).

The conv peak is a 3×3, 128→128 convolution of a 256×256 batch-1 NHWC image
under tf.function, in float32 and, where the CPU runs it, bfloat16; every
ratio is taken against the float32 figure measured in the same run.

    python benchmarks/throughput.py --sizes 256,512 --repeats 5
    python benchmarks/throughput.py --sizes 128 --repeats 2 --threads 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from multiscale.config import DescriptorConfig  # noqa: E402
from multiscale.layers import LAYER_NAMES, feature_size, layer_channels, layer_index, octave_sizes  # noqa: E402
from multiscale.measure.memory import human_bytes, peak_rss_bytes, process_memory  # noqa: E402

PEAK_SIDE, PEAK_CHANNELS = 256, 128


def objective_flops(height: int, width: int, config: DescriptorConfig) -> dict[str, float]:
    """FLOPs of one value-and-gradient evaluation, by kind (see the module docstring)."""
    deepest = max(layer_index(n) for n in config.layers)
    conv_fwd = gram_fwd = 0.0
    for h, w in octave_sizes(height, width, octaves=config.octaves, padding=config.padding):
        c_in = 3
        for name in LAYER_NAMES[: deepest + 1]:
            fh = feature_size(name, h, config.padding)
            fw = feature_size(name, w, config.padding)
            c = layer_channels(name)
            if name.startswith("conv"):
                conv_fwd += 2.0 * fh * fw * c_in * c * 9
                c_in = c
            if name in config.layers:
                gram_fwd += 2.0 * fh * fw * c * c
    return {
        "conv_forward": conv_fwd,
        "conv_backward": conv_fwd,  # input gradients only: kernels are constants
        "gram_forward": gram_fwd,
        "gram_backward": 2.0 * gram_fwd,
    }


def cpu_description() -> dict[str, str]:
    """CPU model, core counts and the SIMD flags that decide conv speed."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("unknown", "", platform.machine()):
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": model,
        "cores": f"{os.cpu_count()} logical, {usable} usable by this process",
        "simd": " ".join(f for f in wanted if f in flags) or "none of " + " ".join(wanted),
        "native_bf16": "yes" if {"avx512_bf16", "amx_bf16"} & flags else "no",
    }


def rss_now() -> int | None:
    """Current resident bytes, or ``None`` where /proc is missing."""
    mem = process_memory()
    return None if mem is None else mem[0]


def time_calls(fn, repeats: int, warmup: int) -> list[float]:  # noqa: ANN001
    """Seconds of each of ``repeats`` calls of ``fn()`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def conv_peak(tf, dtype, repeats: int) -> float:  # noqa: ANN001
    """Median seconds of one 3×3 128→128 conv on a 256² image in ``dtype``."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = tf.cast(tf.constant(rng.random((1, PEAK_SIDE, PEAK_SIDE, PEAK_CHANNELS), dtype=np.float32)), dtype)
    k = tf.cast(
        tf.constant(rng.normal(0, 0.05, (3, 3, PEAK_CHANNELS, PEAK_CHANNELS)).astype(np.float32)), dtype
    )

    @tf.function(input_signature=[tf.TensorSpec(x.shape, dtype)])
    def conv(inp):  # noqa: ANN001, ANN202
        return tf.nn.conv2d(inp, k, strides=1, padding="SAME")

    return statistics.median(time_calls(lambda: conv(x).numpy(), repeats, warmup=3))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="256,512", help="comma-separated output sides in pixels")
    parser.add_argument("--repeats", type=int, default=5, help="timed evaluations per size (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed evaluations first (tracing)")
    parser.add_argument("--octaves", type=int, default=DescriptorConfig().octaves)
    parser.add_argument("--source", default=str(ROOT / "samples" / "sources" / "gravel.png"))
    parser.add_argument("--threads", type=int, default=None, help="TF intra-op threads (default: TF's)")
    parser.add_argument("--inter-threads", type=int, default=None, help="TF inter-op threads (default: TF's)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from multiscale._tf import tf

    # Must precede the first op; TF refuses (RuntimeError) once it has started.
    if args.threads is not None:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    if args.inter_threads is not None:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_threads)

    import numpy as np

    from multiscale.io import load_image, resize_image
    from multiscale.measure.backbone import VGG16, load_weights
    from multiscale.measure.gram import image_grams
    from multiscale.measure.memory import estimate_synthesis_memory
    from multiscale.objectives.texture import StyleObjective

    try:
        from tensorflow.python.util import _pywrap_util_port

        onednn = "on" if _pywrap_util_port.IsMklEnabled() else "off"
    except (ImportError, AttributeError):
        onednn = "unknown"
    machine = cpu_description()
    print("machine")
    for key, value in machine.items():
        print(f"  {key:<12} {value}")
    print(
        f"  {'tensorflow':<12} {tf.__version__}, oneDNN {onednn} (TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')})"
    )
    print(f"  {'threads':<12} intra {tf.config.threading.get_intra_op_parallelism_threads()}, "
          f"inter {tf.config.threading.get_inter_op_parallelism_threads()} (0 = TF picks)")  # fmt: skip

    f32_before = conv_peak(tf, tf.float32, max(args.repeats, 5))

    config = DescriptorConfig(octaves=args.octaves)
    network = VGG16(load_weights(config.weights), pooling=config.pooling, padding=config.padding)
    source = load_image(args.source)
    rows = []
    for size in sizes:
        src = source if source.shape[:2] == (size, size) else resize_image(source, width=size, height=size)
        targets = image_grams(src, network=network, config=config)
        objective = StyleObjective(targets=targets, network=network, config=config, height=size, width=size)
        x = np.random.default_rng(0).random(objective.size)
        times = time_calls(lambda x=x, objective=objective: objective(x), args.repeats, args.warmup)
        flops = objective_flops(size, size, config)
        total = sum(flops.values())
        seconds = statistics.median(times)
        est = estimate_synthesis_memory(
            height=size, width=size, config=config, history=10, sources=[(size, size)]
        )
        # The objective alone: no L-BFGS-B arrays yet.
        est_objective = est.total - est.lbfgs - est.bounds
        rows.append((size, seconds, min(times), flops, total, peak_rss_bytes(), rss_now(), est_objective))

    # The conv peak is measured before and after the objective and the faster
    # figure kept, so a burst of load from elsewhere lowers neither ratio alone.
    peak_flops = 2.0 * PEAK_SIDE * PEAK_SIDE * PEAK_CHANNELS * PEAK_CHANNELS * 9
    peak_reps = max(args.repeats, 5)
    f32_s = min(f32_before, conv_peak(tf, tf.float32, peak_reps))
    f32_gflops = peak_flops / f32_s / 1e9
    print(f"\nconv peak: 3x3 {PEAK_CHANNELS}->{PEAK_CHANNELS} at {PEAK_SIDE}², batch 1, NHWC, "
          f"median of {peak_reps}, best of before/after the objective")  # fmt: skip
    print(f"  float32   {f32_s * 1e3:8.2f} ms  {f32_gflops:8.1f} GFLOP/s")
    try:
        bf16_s = conv_peak(tf, tf.bfloat16, peak_reps)
    except (tf.errors.OpError, TypeError, ValueError) as exc:
        print(f"  bfloat16  not available: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    else:
        ratio = f32_s / bf16_s
        print(
            f"  bfloat16  {bf16_s * 1e3:8.2f} ms  {peak_flops / bf16_s / 1e9:8.1f} GFLOP/s  ({ratio:.2f}× float32)"
        )
        if ratio < 0.67:
            print("  bfloat16 is much slower than float32: no native bf16 path on this CPU/TF build")

    print(f"\nobjective: {config.octaves} octaves, layers {','.join(config.layers)}, "
          f"median of {args.repeats} value+gradient evaluations after {args.warmup} warm-up")  # fmt: skip
    header = (
        f"{'size':>6} {'eval s':>8} {'min s':>8} {'GFLOP/eval':>10} {'conv %':>6} {'GFLOP/s':>8} "
        f"{'/f32 peak':>9} {'peak RSS':>10} {'RSS now':>10} {'est RSS':>10}"
    )
    print(header)
    print("-" * len(header))
    for size, seconds, fastest, flops, total, peak, now, est_objective in rows:
        conv_share = (flops["conv_forward"] + flops["conv_backward"]) / total
        gflops = total / seconds / 1e9
        print(
            f"{size:>6} {seconds:>8.3f} {fastest:>8.3f} {total / 1e9:>10.1f} {conv_share:>6.1%} {gflops:>8.1f} "
            f"{gflops / f32_gflops:>9.2f} {human_bytes(peak):>10} "
            f"{human_bytes(now) if now is not None else '?':>10} {human_bytes(est_objective):>10}"
        )
    print(
        "peak RSS: the process's high-water mark so far (sizes run in the order given); "
        "est RSS: multiscale.measure.memory's estimate for the objective alone (no L-BFGS-B arrays)"
    )


if __name__ == "__main__":
    main()
