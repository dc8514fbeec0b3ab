"""bfloat16 convolutions with float32 outputs, CPU detection and the precision choice."""

import dataclasses
import json

import numpy as np
import pytest

from multiscale._tf import tf
from multiscale.config import DescriptorConfig
from multiscale.jobs import precision
from multiscale.jobs.precision import (
    MAX_LOSS_REL_DIFF,
    MIN_GRAD_COSINE,
    PRECISIONS,
    accuracy_check,
    choose_precision,
    compute_dtype,
    cpu_features,
    native_bf16,
)
from multiscale.measure.backbone import VGG16, load_weights, preprocess
from multiscale.measure.gram import gram_matrix, pyramid_grams

LAYERS = ("conv1_1", "pool1", "conv2_2", "conv3_2")
X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu vme sse2 avx2 fma avx512f avx512_vnni avx512_bf16
bugs\t\t: sysret_ss_attrs

processor\t: 1
flags\t\t: fpu
"""
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\nCPU implementer\t: 0x41\n"


@pytest.fixture(scope="module")
def weights():
    return load_weights()


@pytest.fixture(scope="module")
def nets(weights):
    """(float32, bfloat16) networks by padding, built once: each holds all 13 kernels."""
    cache = {}

    def get(padding="reflect"):
        if padding not in cache:
            cache[padding] = (
                VGG16(weights, padding=padding),
                VGG16(weights, padding=padding, compute_dtype=tf.bfloat16),
            )
        return cache[padding]

    return get


@pytest.fixture(scope="module")
def image():
    return preprocess(tf.random.stateless_uniform([1, 40, 40, 3], seed=[3, 4]))


@pytest.mark.parametrize("padding", ["reflect", "wrap", "same"])
def test_bf16_features_are_float32_and_within_bf16_rounding(nets, image, padding):
    net32, net16 = nets(padding)
    ref, low = net32.features(image, LAYERS), net16.features(image, LAYERS)
    for name in LAYERS:
        assert low[name].dtype == tf.float32
        a, b = ref[name].numpy(), low[name].numpy()
        rel = np.linalg.norm(b - a) / np.linalg.norm(a)
        # bfloat16 keeps 8 mantissa bits (relative rounding 2**-9 ≈ 2e-3 per value);
        # measured 3e-3 … 6e-3 through conv3_2. Above 1e-4: the stack did run in bfloat16.
        assert 1e-4 < rel < 2e-2, (name, rel)
        ga, gb = gram_matrix(ref[name]).numpy(), gram_matrix(low[name]).numpy()
        assert np.linalg.norm(gb - ga) / np.linalg.norm(ga) < 2e-2


def test_compute_dtype_defaults_to_the_network_dtype(nets):
    net32, net16 = nets()
    assert net32.compute_dtype == tf.float32 and net32.dtype == tf.float32
    assert net16.compute_dtype == tf.bfloat16 and net16.dtype == tf.float32


def test_bf16_gradients_reach_the_pixels_in_float32(nets):
    config = DescriptorConfig(octaves=2)
    x = tf.random.stateless_uniform([1, 48, 48, 3], seed=[5, 6])
    grads = {}
    for label, net in zip(("f32", "bf16"), nets(), strict=True):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.add_n([tf.reduce_sum(g) for g in pyramid_grams(x, network=net, config=config).values()])
        grads[label] = tape.gradient(loss, x)
    g32, g16 = grads["f32"].numpy().ravel(), grads["bf16"].numpy().ravel()
    assert grads["bf16"].dtype == tf.float32
    assert np.isfinite(g16).all() and np.abs(g16).max() > 0
    assert g16 @ g32 / (np.linalg.norm(g16) * np.linalg.norm(g32)) > 0.99


def test_cpu_features_parse_x86_and_arm_text():
    flags = cpu_features(X86_CPUINFO)
    assert {"avx512f", "avx512_bf16", "avx2"} <= flags and "sysret_ss_attrs" not in flags
    assert native_bf16(flags)
    arm = cpu_features(ARM_CPUINFO)
    assert "bf16" in arm and not native_bf16(arm)  # ARM's bf16 is not what oneDNN's x86 path uses
    assert cpu_features("") == frozenset()
    assert cpu_features("processor : 0\nmodel name : something\n") == frozenset()
    assert not native_bf16(cpu_features(X86_CPUINFO.replace(" avx512_bf16", "")))


def test_cpu_features_without_proc_cpuinfo_is_empty(monkeypatch):
    def no_file(*args, **kwargs):
        raise FileNotFoundError("/proc/cpuinfo")

    monkeypatch.setattr("builtins.open", no_file)
    assert cpu_features() == frozenset()


def test_auto_is_float32_without_native_bf16_and_measures_nothing(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("must not measure")

    monkeypatch.setattr(precision, "_measure", fail)
    choice = choose_precision(
        config=DescriptorConfig(), height=512, width=512, flags=frozenset({"avx2", "fma", "avx512f"})
    )
    assert choice.precision == "float32" and choice.requested == "auto"
    assert not choice.native_bf16 and choice.probe_size is None and choice.accuracy is None
    assert "avx512_bf16" in choice.reason
    assert choice.cpu_flags == ("avx2", "fma", "avx512f")


def test_auto_is_float32_when_onednn_is_off(monkeypatch):
    monkeypatch.setattr(precision, "onednn_enabled", lambda: False)
    monkeypatch.setattr(precision, "_measure", lambda *a, **k: pytest.fail("must not measure"))
    choice = choose_precision(config=DescriptorConfig(), height=64, width=64, flags=frozenset({"amx_bf16"}))
    assert choice.precision == "float32" and "oneDNN" in choice.reason


@pytest.mark.parametrize("requested", ["float32", "bfloat16"])
def test_forced_precisions_are_taken_as_given(requested):
    choice = choose_precision(
        config=DescriptorConfig(), height=64, width=64, requested=requested, flags=frozenset()
    )
    assert choice.precision == requested and choice.requested == requested
    assert choice.seconds_float32 is None and choice.accuracy is None
    assert ("emulated" in choice.reason) == (requested == "bfloat16")
    assert compute_dtype(requested) == choice.compute_dtype
    json.dumps(choice.to_dict())


def test_bad_values_are_refused():
    assert PRECISIONS == ("auto", "float32", "bfloat16")
    with pytest.raises(ValueError, match="auto, float32, bfloat16"):
        choose_precision(config=DescriptorConfig(), height=64, width=64, requested="float16")
    with pytest.raises(ValueError, match="auto"):
        compute_dtype("auto")
    assert compute_dtype("float32") is None and compute_dtype("bfloat16") == tf.bfloat16


def test_accuracy_check_passes_agreement_and_fails_a_broken_path():
    g = np.random.default_rng(0).normal(size=300)
    same = accuracy_check((0.2, g), (0.2, g))
    assert same.passed and same.loss_rel_diff == 0 and same.grad_cosine == pytest.approx(1.0)
    close = accuracy_check((0.2, g), (0.2 * (1 + MAX_LOSS_REL_DIFF / 2), g * 1.01))
    assert close.passed
    assert not accuracy_check((0.2, g), (0.2 * (1 + 2 * MAX_LOSS_REL_DIFF), g)).passed
    noisy = g + np.random.default_rng(1).normal(size=300) * 0.1
    assert 1 - noisy @ g / np.linalg.norm(noisy) / np.linalg.norm(g) > 1 - MIN_GRAD_COSINE
    assert not accuracy_check((0.2, g), (0.2, noisy)).passed
    assert not accuracy_check((0.2, g), (float("nan"), g)).passed


def test_auto_measures_both_precisions_and_caches(monkeypatch, weights):
    """The measured path end to end on a small probe (timings vary; the accuracy figures do not)."""
    monkeypatch.setattr(precision, "onednn_enabled", lambda: True)
    monkeypatch.setattr(precision, "_CACHE", {})
    config = DescriptorConfig(octaves=2, layers=("conv1_1", "pool1"))
    args = dict(
        config=config, height=48, width=48, weights=weights, budget_s=0.0, flags=frozenset({"avx512_bf16"})
    )
    choice = choose_precision(**args)
    assert choice.probe_size == (48, 48) and choice.native_bf16
    assert choice.timed_pairs >= 1 and choice.seconds_float32 > 0 and choice.seconds_bfloat16 > 0
    acc = choice.accuracy
    assert acc.passed and 0 < acc.loss_rel_diff < MAX_LOSS_REL_DIFF and MIN_GRAD_COSINE < acc.grad_cosine < 1
    expected = "bfloat16" if choice.speedup >= precision.MIN_SPEEDUP else "float32"
    assert choice.precision == expected and choice.reason.startswith(expected)
    assert choose_precision(**args) is choice
    record = choice.to_dict()
    assert json.loads(json.dumps(record))["accuracy"]["passed"] is True
    assert dataclasses.replace(choice, precision="float32").compute_dtype is None


def test_a_bfloat16_synthesis_records_its_precision_and_scores_its_image_in_float32():
    from multiscale.jobs.synthesize import synthesize

    source = np.random.default_rng(4).uniform(size=(48, 48, 3)).astype(np.float32)
    common = dict(width=48, height=48, octaves=2, max_iter=5, seed=1)
    f32 = synthesize(source, **common)
    bf16 = synthesize(source, precision="bfloat16", **common)
    assert f32.report.precision["precision"] == "float32"
    assert (
        bf16.report.precision["precision"] == "bfloat16" and bf16.report.precision["requested"] == "bfloat16"
    )
    # the saved image is scored by the float32 objective: comparable with a float32 run's
    assert bf16.report.loss == pytest.approx(f32.report.loss, rel=0.5)
    assert bf16.report.config.precision == "bfloat16"
    assert bf16.report.precision["float32_from_iteration"] is None  # it ran to max_iter in bfloat16


SWITCH_SOURCE = np.random.default_rng(4).uniform(size=(48, 48, 3)).astype(np.float32)
#: tol 0.03 is met by the bfloat16 driver after a few iterations of this problem
SWITCH_RUN = dict(width=48, height=48, octaves=2, max_iter=12, seed=1, tol=0.03)


def test_a_bfloat16_run_that_stops_on_its_own_finishes_in_float32():
    from multiscale.jobs.synthesize import synthesize

    bf16 = synthesize(SWITCH_SOURCE, precision="bfloat16", **SWITCH_RUN)
    k = bf16.report.precision["float32_from_iteration"]
    assert k is not None and 1 <= k < bf16.report.iterations <= SWITCH_RUN["max_iter"]
    assert len(bf16.report.history) == bf16.report.iterations
    # the float32 phase went on from the bfloat16 result and lowered the loss
    assert bf16.report.history[k] < bf16.report.history[k - 1]
    assert synthesize(SWITCH_SOURCE, **SWITCH_RUN).report.precision["float32_from_iteration"] is None


def test_a_checkpoint_taken_in_the_float32_finish_resumes_in_float32(tmp_path):
    from multiscale.jobs.checkpoint import read_checkpoint
    from multiscale.jobs.synthesize import make_config, resume_synthesis, run_synthesis

    config = make_config(precision="bfloat16", **SWITCH_RUN)
    whole = run_synthesis(SWITCH_SOURCE, config=config)
    k = whole.report.precision["float32_from_iteration"]
    assert k is not None
    stopped = run_synthesis(
        SWITCH_SOURCE, config=config, callback=lambda p: p.iteration > k, checkpoint=tmp_path / "ck",
        output=tmp_path / "out.png",
    )  # fmt: skip
    assert stopped.report.stop_reason == "callback"
    ck = read_checkpoint(tmp_path / "ck")
    assert ck.float32_from_iteration == k and ck.state.iteration == k + 1
    resumed, _ = resume_synthesis(tmp_path / "ck")
    assert resumed.report.precision["float32_from_iteration"] == k
    # the same iterations as the uninterrupted run up to the stop, then on in float32
    assert resumed.report.history[: k + 1] == whole.report.history[: k + 1]
    assert resumed.report.iterations > k + 1


def test_a_checkpoint_of_an_auto_run_keeps_the_precision_it_chose(tmp_path):
    from multiscale.jobs.checkpoint import read_checkpoint
    from multiscale.jobs.synthesize import make_config, run_synthesis

    config = make_config(precision="auto", **{**SWITCH_RUN, "max_iter": 2})
    result = run_synthesis(
        SWITCH_SOURCE,
        config=config,
        callback=lambda p: True,
        checkpoint=tmp_path / "ck",
        output=tmp_path / "o.png",
    )
    chosen = result.report.precision["precision"]
    assert chosen in ("float32", "bfloat16") and result.report.config.precision == "auto"
    # a resume runs in what was chosen, without measuring again
    assert read_checkpoint(tmp_path / "ck").config.precision == chosen
