"""The memory estimate: its structure, its helpers, and (slow) its accuracy."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pytest

from multiscale.config import DescriptorConfig
from multiscale.errors import ResourceError
from multiscale.measure import memory
from multiscale.measure.memory import (
    MemoryEstimate,
    check_memory,
    default_max_memory,
    estimate_synthesis_memory,
    human_bytes,
    layer_output_bytes,
    lbfgs_bytes,
    parse_memory,
)

CONFIG = DescriptorConfig()


def estimate(size: int = 256, history: int = 10, config: DescriptorConfig = CONFIG, **kw) -> MemoryEstimate:
    sources = kw.pop("sources", [(size, size)])
    return estimate_synthesis_memory(
        height=kw.pop("height", size), width=kw.pop("width", size), config=config, history=history,
        sources=sources, **kw,
    )  # fmt: skip


def test_total_is_the_sum_with_sources_and_activations_overlapping():
    e = estimate(256)
    parts = e.components()
    assert parts["total"] == e.total
    assert e.total == (
        e.baseline
        + e.weights
        + max(e.sources, e.activations)
        + e.lbfgs
        + e.bounds
        + e.images
        + e.sliced
        + e.means
    )
    assert all(isinstance(v, int) and v >= 0 for v in parts.values())
    assert list(parts) == [
        "baseline",
        "weights",
        "sources",
        "activations",
        "lbfgs",
        "bounds",
        "images",
        "sliced",
        "means",
        "total",
    ]


@pytest.mark.parametrize("history", [1, 5, 10, 50])
def test_lbfgs_term_is_scipys_workspace(history):
    n = 300 * 200 * 3
    e = estimate(height=300, width=200, history=history)
    m = history
    assert e.lbfgs == 2 * m * n * 8 + 8 * (5 * n + 11 * m * m + 8 * m) + 4 * 3 * n + 20 * n
    # One more correction pair costs two float64 vectors of n (plus O(m) scalars).
    assert lbfgs_bytes(n, m + 1) - lbfgs_bytes(n, m) == 2 * n * 8 + 8 * 11 * (2 * m + 1) + 8 * 8


def test_monotone_in_size_history_octaves_and_depth():
    totals = [estimate(s).total for s in (64, 128, 256, 512, 1024)]
    assert totals == sorted(totals) and len(set(totals)) == len(totals)
    assert estimate(256, width=384, sources=[(256, 256)]).total > estimate(256, sources=[(256, 256)]).total
    by_history = [estimate(256, history=m).total for m in (1, 5, 10, 20)]
    assert by_history == sorted(by_history) and len(set(by_history)) == 4
    shallow = DescriptorConfig(octaves=2)
    assert estimate(256, config=shallow).activations < estimate(256).activations
    deep = DescriptorConfig(layers=(*CONFIG.layers, "pool4"))
    assert estimate(256, config=deep).activations > estimate(256).activations


def test_activations_grow_linearly_with_pixels():
    a, b = estimate(512).activations, estimate(1024).activations
    fixed = memory.GRAPH_BYTES
    assert (b - fixed) / (a - fixed) == pytest.approx(4.0, rel=1e-3)


def test_sources_count_only_when_larger_than_the_activations():
    small = estimate(256, sources=[(256, 256)])
    big = estimate(256, sources=[(256, 256), (2048, 2048)])
    assert big.sources > small.sources
    assert big.sources > big.activations
    assert big.total - small.total == big.sources - small.activations
    assert estimate(256, sources=[]).sources == 0


def test_bounds_term_only_when_bounded():
    assert estimate(256, bounded=False).bounds == 0
    assert estimate(256).bounds == memory.BOUNDS_BYTES_PER_VALUE * 256 * 256 * 3


def test_layer_output_bytes_by_hand():
    one = DescriptorConfig(octaves=1, layers=("conv1_1",))
    assert layer_output_bytes(8, 8, config=one) == 8 * 8 * 64 * 4
    pooled = DescriptorConfig(octaves=1, layers=("pool1",))
    assert layer_output_bytes(8, 6, config=pooled) == 2 * 8 * 6 * 64 * 4 + 4 * 3 * 64 * 4
    # Octave 1 of 8×8 is 4×4: a quarter more.
    two = DescriptorConfig(octaves=2, layers=("conv1_1",))
    assert layer_output_bytes(8, 8, config=two) == (64 + 16) * 64 * 4


def test_projected_driver_needs_less_than_scipy():
    m, n = 10, 512 * 512 * 3
    assert memory.projected_lbfgs_bytes(n, m) == 4 * 2 * 11 * n + 64 * n
    cfg = DescriptorConfig(octaves=2, layers=("conv1_1",))
    kw = dict(height=512, width=512, config=cfg, history=m, sources=[])
    projected = memory.estimate_synthesis_memory(optimizer="projected", **kw)
    scipy = memory.estimate_synthesis_memory(optimizer="lbfgsb", **kw)
    assert projected.bounds == 0 and projected.lbfgs < scipy.lbfgs
    assert (
        memory.estimate_synthesis_memory(optimizer="projected", frames=3, **kw).lbfgs == 3 * projected.lbfgs
    )


def test_weights_are_the_whole_vgg16_conv_stack():
    # 14,714,688 parameters in VGG16's 13 convolutions, float32.
    assert memory.vgg16_parameter_bytes() == 14_714_688 * 4
    assert estimate(64).weights == int(memory.WEIGHT_COPIES * 14_714_688 * 4)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        (1536, "1.50 KiB"),
        (15 * 1024 * 1024, "15.0 MiB"),
        (640 * 1024 * 1024, "640 MiB"),
        (3 * 1024**3, "3.00 GiB"),
        (5 * 1024**6, "5120 PiB"),
        (-2048, "-2.00 KiB"),
    ],
)
def test_human_bytes(n, text):
    assert human_bytes(n) == text


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("1000", 1000),
        ("4G", 4 * 1024**3),
        ("4GiB", 4 * 1024**3),
        ("4gb", 4 * 1024**3),
        ("512M", 512 * 1024**2),
        ("1.5g", 3 * 1024**3 // 2),
        (" 64 KiB ", 64 * 1024),
    ],
)
def test_parse_memory(text, n):
    assert parse_memory(text) == n


@pytest.mark.parametrize("text", ["", "G", "four", "4X", "-1G", "150%", "0%"])
def test_parse_memory_rejects(text):
    with pytest.raises(ValueError):
        parse_memory(text)


def test_parse_memory_percentage(monkeypatch):
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 10 * 1024**3)
    assert parse_memory("50%") == 5 * 1024**3


def test_available_and_default_budget(monkeypatch):
    available = memory.available_memory_bytes()
    if sys.platform.startswith("linux"):
        assert available is not None and available > 0
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 1000)
    assert default_max_memory() == 800
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: None)
    assert default_max_memory() is None


def test_cgroup_limit_caps_the_available_memory(monkeypatch, tmp_path):
    (tmp_path / "memory.max").write_text("1000\n")
    (tmp_path / "memory.current").write_text("200\n")
    unlimited = tmp_path / "outer"
    unlimited.mkdir()
    (unlimited / "memory.max").write_text("max\n")
    (unlimited / "memory.current").write_text("5\n")
    monkeypatch.setattr(
        memory,
        "_cgroup_dirs",
        lambda: [
            (str(tmp_path), "memory.max", "memory.current"),
            (str(unlimited), "memory.max", "memory.current"),
        ],
    )
    assert memory.available_memory_bytes() == 800


def test_check_memory():
    e = estimate(512)
    check_memory(e, max_memory=None)
    check_memory(e, max_memory=e.total)
    with pytest.raises(ResourceError, match=r"output needs about .* GiB .*--max-memory") as info:
        check_memory(e, max_memory=e.total - 1, what="output")
    assert isinstance(info.value, MemoryError)


def test_importing_memory_starts_no_tensorflow():
    code = "import sys, multiscale.measure.memory; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# A fresh process per case: peak RSS is a process's high-water mark.
_CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from multiscale.jobs.synthesize import synthesize
    size, history, max_iter = (int(v) for v in sys.argv[1:4])
    statistics = tuple(sys.argv[4].split(","))
    source = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
    synthesize(source, width=size, height=size, octaves=4, history=history, max_iter=max_iter, statistics=statistics)
    from multiscale.measure.memory import peak_rss_bytes  # VmHWM: ru_maxrss survives fork+exec
    print(json.dumps(peak_rss_bytes()))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in KiB on Linux only")
def test_estimate_within_25_percent_of_measured_peak_rss():
    # history 1 with 2 iterations touches every correction pair scipy
    # allocates (lazily, by calloc), so the run's peak is the whole run's.
    history, max_iter = 1, 2
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    for size, statistics in ((128, "gram"), (224, "gram"), (320, "gram"), (224, "sliced")):
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(size), str(history), str(max_iter), statistics],
            capture_output=True, text=True, env=env, timeout=300, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        measured = json.loads(proc.stdout.strip().splitlines()[-1])
        config = dataclasses.replace(CONFIG, statistics=tuple(statistics.split(",")))
        e = estimate(size, history=history, config=config)
        assert 0.75 <= e.total / measured <= 1.25, (
            f"{size}²: estimated {human_bytes(e.total)}, measured {human_bytes(measured)}: {e.describe()}"
        )


def test_the_sliced_statistic_adds_its_projections_and_source_features_to_the_estimate():
    from multiscale.measure.memory import (
        SLICED_BLOCK_BYTES,
        SLICED_BYTES_PER_RADIX_VALUE,
        SLICED_BYTES_PER_RANKED_VALUE,
        SLICED_BYTES_PER_VALUE,
        estimate_synthesis_memory,
        sliced_bytes,
    )
    from multiscale.measure.sliced import RANK_BLOCK_VALUES, RANK_THREADS

    one = DescriptorConfig(octaves=1, layers=("conv1_1",), statistics=("sliced",))
    # 64² output: 4096 positions × 64 channels, gathered once more as the largest key, and one
    # block's ranking; a 32² source: 1024 × 64 float32 features and as many sorted projections
    assert sliced_bytes(64, 64, config=one, sources=[(32, 32)]) == (
        4096 * 64 * (SLICED_BYTES_PER_VALUE + 4)
        + SLICED_BLOCK_BYTES
        + 8 * 1024 * 64
        + SLICED_BYTES_PER_RADIX_VALUE * RANK_THREADS * 4096  # a direction of 4096 takes radix passes
    )
    # 2048²: a direction of 4M positions is longer than a block, and each thread ranks one whole
    n = 2048 * 2048
    assert n > RANK_BLOCK_VALUES
    assert sliced_bytes(2048, 2048, config=one, sources=[]) == (
        n * 64 * (SLICED_BYTES_PER_VALUE + 4)
        + (SLICED_BYTES_PER_RANKED_VALUE + SLICED_BYTES_PER_RADIX_VALUE) * RANK_THREADS * n
    )
    # a direction shorter than RADIX_MIN_LENGTH is ranked by numpy's argsort, without radix passes
    assert (
        sliced_bytes(32, 32, config=one, sources=[])
        == 1024 * 64 * (SLICED_BYTES_PER_VALUE + 4) + SLICED_BLOCK_BYTES
    )
    kwargs = dict(height=256, width=256, history=5, sources=[(256, 256)], optimizer="projected")
    gram = estimate_synthesis_memory(config=DescriptorConfig(), **kwargs)
    both = estimate_synthesis_memory(config=DescriptorConfig(statistics=("gram", "sliced")), **kwargs)
    assert gram.sliced == 0 and both.total - gram.total == both.sliced > 0
