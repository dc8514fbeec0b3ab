"""Which precision the network's convolutions run in: detected, measured, recorded.

The convolutions are nearly all of an evaluation's work (see
``benchmarks/throughput.py``). Where the CPU has native bfloat16
(``avx512_bf16`` on AVX-512 parts such as AMD Zen 4 and Intel Cooper Lake,
AMX on Intel Sapphire Rapids and later) oneDNN runs a 3×3 bfloat16
convolution faster than float32; without it, or with oneDNN off, bfloat16
is emulated and far slower (measured figures: ``benchmarks/RESULTS.md``,
"Objective throughput"). :class:`~multiscale.measure.backbone.VGG16` takes
``compute_dtype`` to run the conv stack in bfloat16 while Grams and losses
stay float32.

:func:`choose_precision` turns the ``precision`` setting (one of
:data:`PRECISIONS`) into a :class:`PrecisionChoice`:

* ``"float32"`` / ``"bfloat16"``: taken as given, nothing measured;
* ``"auto"``: float32 unless the CPU reports native bfloat16 and
  TensorFlow's oneDNN kernels are on (:func:`onednn_enabled`); then a probe
  (the real descriptor settings on a synthetic image of at most
  :data:`PROBE_SIDE` px per side) is evaluated in both precisions,
  alternately, and bfloat16 is chosen only if it passes the accuracy check
  and is at least :data:`MIN_SPEEDUP` times faster.

The accuracy check evaluates loss and gradient at one fixed point in both
precisions: targets from one synthetic image (smooth random blobs plus
noise, :func:`probe_images`), evaluated at another drawn from the same
distribution, so the loss lies where an optimisation spends its iterations
rather than at a random start, where the precisions agree far more closely
than they do later. :data:`MAX_LOSS_REL_DIFF` and :data:`MIN_GRAD_COSINE`
leave a wide margin over every case measured, at the probe and on real and
synthetic textures (``benchmarks/RESULTS.md``, "bfloat16 against float32");
a broken bfloat16 path (wrong layout, emulation bug) would give errors of
order 1.

What the check does not promise: convergence to low losses. bfloat16 loss
and gradient carry rounding noise of a fraction of a percent of the loss;
once an iteration's decrease is that small, line searches take tiny steps
and the run stops early, above the loss a float32 run reaches. So a
bfloat16 run is best finished in float32 (``benchmarks/precision.py
--iterations N`` measures this), and a synthesis does so: when the bfloat16
driver stops on its own, the run goes on in float32 from its best point
(:func:`multiscale.optim.projected.switch_objective`). How much sooner that
schedule reaches a float32 run's loss: ``benchmarks/RESULTS.md``,
"Convergence at 512²" (``benchmarks/time_to_loss.py --candidate bf16``).

The choice is cached per process and meant to be saved beside the output
(:meth:`PrecisionChoice.to_dict`). Timing makes ``"auto"`` machine- and
load-dependent by design; the accuracy figures are deterministic. The
targets (Grams of the sources, descriptor files) are best taken with a
float32 network whatever the choice, so they do not depend on the machine.

This module imports TensorFlow only inside :func:`choose_precision` and
:func:`onednn_enabled`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import PRECISIONS, DescriptorConfig

if TYPE_CHECKING:
    from ..measure.backbone import VGGWeights

log = logging.getLogger(__name__)

#: Values of the ``precision`` setting.
#: CPU flags (Linux ``/proc/cpuinfo`` names) that mean native bfloat16 arithmetic.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: Flags worth recording beside a choice.
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
#: Largest side of the probe image, in pixels (smaller outputs are probed at their size).
PROBE_SIDE = 128
#: bfloat16 must be at least this many times faster than float32 to be chosen.
MIN_SPEEDUP = 1.2
#: Accuracy check: largest relative loss difference bfloat16 vs float32.
MAX_LOSS_REL_DIFF = 5e-2
#: Accuracy check: smallest cosine similarity of the bfloat16 and float32 gradients.
MIN_GRAD_COSINE = 0.999
_PROBE_SEED = 0


def cpu_features(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags, as Linux names them in ``/proc/cpuinfo``.

    Parameters
    ----------
    cpuinfo : str or None
        Text in ``/proc/cpuinfo`` format to parse; ``None`` reads the file.

    Returns
    -------
    frozenset of str
        The first processor's ``flags`` (x86) or ``Features`` (ARM) line,
        lower case. Empty where the file is missing or unreadable (macOS,
        Windows, a sandbox): callers then treat every optional feature as
        absent.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                cpuinfo = fh.read()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.lower().split())
    return frozenset()


def native_bf16(flags: frozenset[str] | set[str]) -> bool:
    """Whether ``flags`` include an instruction set with native bfloat16 arithmetic."""
    return any(f in flags for f in NATIVE_BF16_FLAGS)


def onednn_enabled() -> bool | None:
    """Whether TensorFlow runs its oneDNN kernels (``None``: this build does not say).

    Imports TensorFlow. oneDNN is on by default on x86-64 Linux; the
    environment variable ``TF_ENABLE_ONEDNN_OPTS=0`` turns it off, and with
    it the only fast bfloat16 convolution.
    """
    from .._tf import tf  # noqa: F401  (TF must be started the package's way first)

    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    try:
        return bool(_pywrap_util_port.IsMklEnabled())
    except AttributeError:
        return None


@dataclass(frozen=True)
class AccuracyCheck:
    """bfloat16 against float32 at the probe point.

    Attributes
    ----------
    loss_float32, loss_bfloat16 : float
        The style loss at the probe point in each precision.
    loss_rel_diff : float
        ``|loss_bfloat16 − loss_float32| / loss_float32``.
    grad_cosine : float
        Cosine similarity of the two gradients (1: same direction).
    grad_norm_ratio : float
        ``‖g_bfloat16‖ / ‖g_float32‖``.
    passed : bool
        ``loss_rel_diff < MAX_LOSS_REL_DIFF`` and ``grad_cosine > MIN_GRAD_COSINE``.
    """

    loss_float32: float
    loss_bfloat16: float
    loss_rel_diff: float
    grad_cosine: float
    grad_norm_ratio: float
    passed: bool


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run uses, and why.

    Attributes
    ----------
    precision : {"float32", "bfloat16"}
        What the network's convolutions run in.
    requested : {"auto", "float32", "bfloat16"}
        The setting it came from.
    reason : str
        One sentence for logs and the output's JSON.
    cpu_flags : tuple of str
        The :data:`REPORTED_FLAGS` this CPU has.
    native_bf16 : bool
        Whether one of :data:`NATIVE_BF16_FLAGS` is among them.
    probe_size : (height, width) or None
        Size of the probe image; ``None`` when nothing was measured.
    seconds_float32, seconds_bfloat16 : float or None
        Median seconds of one loss-and-gradient evaluation of the probe.
    speedup : float or None
        ``seconds_float32 / seconds_bfloat16``.
    timed_pairs : int
        Evaluations timed per precision (alternating, float32 first).
    accuracy : AccuracyCheck or None
    """

    precision: str
    requested: str
    reason: str
    cpu_flags: tuple[str, ...]
    native_bf16: bool
    probe_size: tuple[int, int] | None = None
    seconds_float32: float | None = None
    seconds_bfloat16: float | None = None
    speedup: float | None = None
    timed_pairs: int = 0
    accuracy: AccuracyCheck | None = None

    @property
    def compute_dtype(self) -> Any:
        """``tf.bfloat16`` or ``None`` (float32): the ``compute_dtype`` for :class:`~multiscale.measure.backbone.VGG16`."""
        return compute_dtype(self.precision)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists for tuples, ``None`` kept)."""
        out = asdict(self)
        out["cpu_flags"] = list(self.cpu_flags)
        out["probe_size"] = None if self.probe_size is None else list(self.probe_size)
        return out


def compute_dtype(precision: str) -> Any:
    """``tf.bfloat16`` for ``"bfloat16"``, ``None`` (the network's own dtype) for ``"float32"``.

    Raises
    ------
    ValueError
        For ``"auto"`` (resolve it with :func:`choose_precision` first) or
        an unknown value.
    """
    if precision == "float32":
        return None
    if precision == "bfloat16":
        from .._tf import tf

        return tf.bfloat16
    raise ValueError(f"precision must be 'float32' or 'bfloat16' here, got {precision!r}")


def choose_precision(
    *,
    config: DescriptorConfig,
    height: int,
    width: int,
    requested: str = "auto",
    weights: VGGWeights | None = None,
    budget_s: float = 3.0,
    flags: frozenset[str] | None = None,
) -> PrecisionChoice:
    """Resolve the ``precision`` setting for a run (see the module docstring).

    Parameters
    ----------
    config : DescriptorConfig
        The descriptor the run optimises (octaves, layers, padding, pooling,
        weights); the probe uses it as is.
    height, width : int
        Output size in pixels; the probe is at most :data:`PROBE_SIDE` on each side.
    requested : {"auto", "float32", "bfloat16"}
    weights : VGGWeights or None
        Loaded weights; ``None`` loads ``config.weights``.
    budget_s : float
        Seconds the alternating timing may take after the first (untimed)
        evaluation of each precision; at least 2 evaluations of each are
        timed whatever the budget (1 if bfloat16's first is the slower), at
        most 5.
    flags : frozenset of str or None
        CPU flags; ``None`` reads :func:`cpu_features` (tests pass their own).

    Returns
    -------
    PrecisionChoice
        Cached per process for ``"auto"`` (same config, probe size, weights
        and flags give the same object without measuring again).

    Raises
    ------
    ValueError
        If ``requested`` is not one of :data:`PRECISIONS`.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    flags = cpu_features() if flags is None else frozenset(flags)
    reported = tuple(f for f in REPORTED_FLAGS if f in flags)
    native = native_bf16(flags)
    if requested != "auto":
        reason = f"{requested} requested"
        if requested == "bfloat16" and not native:
            reason += "; this CPU reports no native bfloat16, so it is emulated and likely slower"
            log.warning("bfloat16 requested but the CPU reports none of %s", ", ".join(NATIVE_BF16_FLAGS))
        return PrecisionChoice(
            precision=requested, requested=requested, reason=reason, cpu_flags=reported, native_bf16=native
        )
    if not native:
        return PrecisionChoice(
            precision="float32",
            requested="auto",
            reason=f"float32: the CPU reports none of {', '.join(NATIVE_BF16_FLAGS)} (bfloat16 would be emulated)",
            cpu_flags=reported,
            native_bf16=False,
        )
    if onednn_enabled() is False:
        return PrecisionChoice(
            precision="float32",
            requested="auto",
            reason="float32: TensorFlow's oneDNN kernels are off (TF_ENABLE_ONEDNN_OPTS=0), "
            "and without them bfloat16 convolutions are emulated, far slower than float32",
            cpu_flags=reported,
            native_bf16=True,
        )
    if weights is None:
        from ..measure.backbone import load_weights

        weights = load_weights(config.weights)
    side = max(PROBE_SIDE, _min_side(config))
    probe = (min(height, side), min(width, side))
    key = (config, probe, weights.sha256, reported)
    if key not in _CACHE:
        _CACHE[key] = _measure(config, probe, weights, float(budget_s), reported)
    return _CACHE[key]


def _min_side(config: DescriptorConfig) -> int:
    from ..measure.gram import min_image_side

    return min_image_side(config)


def probe_images(height: int, width: int, *, seed: int = _PROBE_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The accuracy probe's (source, point): two float32 (H, W, 3) images in [0, 1].

    Each is 70 % smooth random blobs (a 16× coarser uniform grid, repeated)
    plus 30 % uniform noise, from independent draws of one seeded generator;
    the point's Grams are close to the source's, as mid-optimisation.
    """
    rng = np.random.default_rng(seed)

    def draw() -> np.ndarray:
        coarse = rng.random((-(-height // 16), -(-width // 16), 3))
        blobs = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1)[:height, :width]
        return np.clip(0.7 * blobs + 0.3 * rng.random((height, width, 3)), 0.0, 1.0).astype(np.float32)

    return draw(), draw()


_CACHE: dict[tuple[Any, ...], PrecisionChoice] = {}


def _measure(
    config: DescriptorConfig,
    probe: tuple[int, int],
    weights: VGGWeights,
    budget_s: float,
    reported: tuple[str, ...],
) -> PrecisionChoice:
    from .._tf import tf
    from ..measure.backbone import VGG16
    from ..measure.gram import image_grams
    from ..objectives.texture import StyleObjective

    base = dict(requested="auto", cpu_flags=reported, native_bf16=True, probe_size=probe)
    # The probe times the network; the Gram loss stands for every statistic.
    config = dataclasses.replace(config, statistics=("gram",))
    height, width = probe
    source, point = probe_images(height, width)
    x = point.reshape(-1).astype(np.float64)
    f32 = VGG16(weights, pooling=config.pooling, padding=config.padding)
    targets = image_grams(source, network=f32, config=config)
    objectives = {
        "float32": StyleObjective(targets=targets, network=f32, config=config, height=height, width=width)
    }
    try:
        bf16 = VGG16(weights, pooling=config.pooling, padding=config.padding, compute_dtype=tf.bfloat16)
        objectives["bfloat16"] = StyleObjective(
            targets=targets, network=bf16, config=config, height=height, width=width
        )
        # The first call of each traces its graph: untimed, and its values are the accuracy check's.
        first = {name: obj(x) for name, obj in objectives.items()}
    except (tf.errors.OpError, TypeError, ValueError) as exc:
        log.info("bfloat16 probe failed: %s", exc)
        return PrecisionChoice(
            precision="float32",
            reason=f"float32: bfloat16 does not run in this TensorFlow build ({type(exc).__name__})",
            **base,
        )
    accuracy = accuracy_check(first["float32"], first["bfloat16"])

    times: dict[str, list[float]] = {name: [] for name in objectives}
    started = time.perf_counter()
    while True:
        for name, obj in objectives.items():
            t = time.perf_counter()
            obj(x)
            times[name].append(time.perf_counter() - t)
        pairs = len(times["float32"])
        clearly_slower = times["bfloat16"][-1] > times["float32"][-1]
        if pairs >= 5 or (pairs >= 2 and time.perf_counter() - started > budget_s) or clearly_slower:
            break
    s32, s16 = statistics.median(times["float32"]), statistics.median(times["bfloat16"])
    speedup = s32 / s16
    measured = dict(
        seconds_float32=s32, seconds_bfloat16=s16, speedup=speedup, timed_pairs=pairs, accuracy=accuracy
    )
    if not accuracy.passed:
        reason = (
            f"float32: bfloat16 failed the accuracy check (loss rel. diff {accuracy.loss_rel_diff:.1e}, "
            f"gradient cosine {accuracy.grad_cosine:.5f})"
        )
        precision = "float32"
    elif speedup < MIN_SPEEDUP:
        reason = f"float32: bfloat16 is only {speedup:.2f}× as fast (needs {MIN_SPEEDUP}×)"
        precision = "float32"
    else:
        reason = f"bfloat16: {speedup:.2f}× as fast as float32 and within the accuracy check"
        precision = "bfloat16"
    log.info("precision %s (%s)", precision, reason)
    return PrecisionChoice(precision=precision, reason=reason, **base, **measured)


def accuracy_check(reference: tuple[float, np.ndarray], candidate: tuple[float, np.ndarray]) -> AccuracyCheck:
    """Compare two ``(loss, gradient)`` evaluations of the same point.

    Parameters
    ----------
    reference : (float, np.ndarray)
        float32 loss and flat float64 gradient.
    candidate : (float, np.ndarray)
        bfloat16's, same shapes.
    """
    l32, g32 = reference
    l16, g16 = candidate
    n32, n16 = float(np.linalg.norm(g32)), float(np.linalg.norm(g16))
    rel = abs(l16 - l32) / abs(l32) if l32 != 0 else (0.0 if l16 == 0 else math.inf)
    cosine = float(np.dot(g32, g16) / (n32 * n16)) if n32 > 0 and n16 > 0 else float(n32 == n16)
    ratio = n16 / n32 if n32 > 0 else (1.0 if n16 == 0 else math.inf)
    finite = all(math.isfinite(v) for v in (l16, rel, cosine, ratio))
    return AccuracyCheck(
        loss_float32=float(l32),
        loss_bfloat16=float(l16),
        loss_rel_diff=float(rel),
        grad_cosine=cosine,
        grad_norm_ratio=float(ratio),
        passed=finite and rel < MAX_LOSS_REL_DIFF and cosine > MIN_GRAD_COSINE,
    )


__all__ = [
    "MAX_LOSS_REL_DIFF",
    "MIN_GRAD_COSINE",
    "MIN_SPEEDUP",
    "NATIVE_BF16_FLAGS",
    "PRECISIONS",
    "PROBE_SIDE",
    "AccuracyCheck",
    "PrecisionChoice",
    "accuracy_check",
    "choose_precision",
    "compute_dtype",
    "cpu_features",
    "native_bf16",
    "onednn_enabled",
    "probe_images",
]
