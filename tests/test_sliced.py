"""The sliced-Wasserstein statistic: known answers, gradients, exact tiles, redraws."""

from __future__ import annotations

import numpy as np
import pytest

from multiscale._tf import tf
from multiscale.config import DescriptorConfig
from multiscale.errors import ConfigError
from multiscale.jobs.runner import measure_sliced
from multiscale.measure.backbone import VGG16, load_weights
from multiscale.measure.gram import image_grams, image_moments
from multiscale.measure.sliced import (
    MAX_SOURCE_POSITIONS,
    REDRAW_EVERY,
    QuantileBank,
    SlicedTargets,
    TargetQuantiles,
    bank_levels,
    directions,
    interpolate_quantiles,
    join_sliced,
    quantiles,
    rank_order,
    sample_positions,
    sorted_cotangent,
)
from multiscale.objectives.terms import sliced_term
from multiscale.objectives.texture import StyleObjective, TiledStyleObjective

LAYERS = ("conv1_1", "pool1")


def test_directions_are_unit_columns_and_depend_only_on_seed_draw_and_key() -> None:
    d = directions(16, seed=3, draw=2, key=(1, "pool1"))
    assert d.shape == (16, 16) and d.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(d, axis=0), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(d, directions(16, seed=3, draw=2, key=(1, "pool1")))
    for other in (dict(seed=4, draw=2, key=(1, "pool1")), dict(seed=3, draw=3, key=(1, "pool1"))):
        assert not np.array_equal(d, directions(16, **other))
    assert not np.array_equal(d, directions(16, seed=3, draw=2, key=(0, "pool1")))


def test_quantiles_of_the_same_count_are_the_values_and_interpolate_otherwise() -> None:
    values = np.arange(8, dtype=np.float64)[:, None]
    np.testing.assert_array_equal(quantiles(values, 8), values)
    # levels (i + ½)/4 of 8 order statistics fall halfway between pairs
    np.testing.assert_allclose(quantiles(values, 4)[:, 0], [0.5, 2.5, 4.5, 6.5])
    # more levels than values: clamped at the ends, linear between
    q = quantiles(values, 16)[:, 0]
    assert q[0] == 0.0 and q[-1] == 7.0 and np.all(np.diff(q) >= 0)


def test_averaging_quantile_functions_is_the_wasserstein_barycentre_in_1d() -> None:
    """Barycentre of N(0, 1) and N(4, 1) with equal weights is N(2, 1)."""
    rng = np.random.default_rng(0)
    z = np.sort(rng.standard_normal(20000))
    a = SlicedTargets(features={(0, "x"): [(z[:, None] + 0.0).astype(np.float32)]}, weights=[1.0])
    b = SlicedTargets(features={(0, "x"): [(z[:, None] + 4.0).astype(np.float32)]}, weights=[1.0])
    joined = join_sliced([a, b])
    _, target = joined.draw(seed=0, draw=0, counts={(0, "x"): 20000})[(0, "x")]
    # one direction in 1-D: ±1; the projected barycentre is the projection of N(2, 1)
    d = directions(1, seed=0, draw=0, key=(0, "x"))[0, 0]
    expected = np.sort((z + 2.0) * d)
    np.testing.assert_allclose(target.array()[:, 0], expected, atol=1e-5)


def test_sorted_cotangent_matches_tf_sort_and_finite_differences() -> None:
    """A row per direction: 3 directions of 50 projections each, the targets likewise."""
    rng = np.random.default_rng(1)
    p = rng.standard_normal((3, 50))
    t = np.sort(rng.standard_normal((3, 50)), axis=1)
    value, grad = sorted_cotangent(p, t, 0.7)
    assert grad.shape == p.shape
    pt = tf.constant(p)
    with tf.GradientTape() as tape:
        tape.watch(pt)
        tf_value = 0.7 * tf.reduce_mean(tf.square(tf.sort(pt, axis=-1) - t))
    assert value == pytest.approx(float(tf_value), rel=1e-12)
    np.testing.assert_allclose(grad, tape.gradient(tf_value, pt).numpy(), atol=1e-14)
    eps = 1e-6
    for i, j in [(0, 0), (1, 17), (2, 49)]:
        q = p.copy()
        q[i, j] += eps
        fd = (sorted_cotangent(q, t, 0.7)[0] - sorted_cotangent(p - (q - p), t, 0.7)[0]) / (2 * eps)
        assert grad[i, j] == pytest.approx(fd, rel=1e-5)


def test_rank_order_of_long_float32_rows_is_the_stable_sort_by_radix_passes() -> None:
    """Ties, both zeros, infinities, subnormals and values far apart: the radix passes give exactly
    numpy's stable order (ties in index order); short rows and float64 rows are sorted too."""
    import multiscale.measure.sliced as sliced

    rng = np.random.default_rng(7)
    n = sliced.RADIX_MIN_LENGTH + 904
    rows = (rng.standard_normal((4, n)) * 10.0 ** rng.integers(-30, 30, (4, n))).astype(np.float32)
    rows[:, :300] = 0.0
    rows[:, 300:400] = -0.0
    rows[:, 400:500] = 1.5
    rows[:, 500:510] = -np.inf
    rows[:, 510:520] = np.inf
    rows[:, 520:600] = np.float32(1e-42) * rng.integers(-3, 4, (4, 80))
    order = rank_order(rows)
    assert order.dtype == np.intp
    np.testing.assert_array_equal(order, np.argsort(rows, axis=1, kind="stable"))
    half = rows.astype(tf.bfloat16.as_numpy_dtype)
    np.testing.assert_array_equal(
        rank_order(half), np.argsort(half.astype(np.float32), axis=1, kind="stable")
    )
    for short in (rows[:, : sliced.RADIX_MIN_LENGTH - 1], rows.astype(np.float64)):
        np.testing.assert_array_equal(
            np.take_along_axis(short, rank_order(short), axis=1), np.sort(short, axis=1)
        )


def test_sorted_cotangent_is_the_same_ranked_by_radix_passes_or_by_argsort(monkeypatch) -> None:
    """Long directions are ranked by rank_order's radix passes: value and gradient as numpy's argsort
    gives them, bit for bit where no projections are equal."""
    import multiscale.measure.sliced as sliced

    rng = np.random.default_rng(8)
    p = rng.standard_normal((4, 3000)).astype(np.float32)
    t = np.sort(rng.standard_normal((4, 3000)), axis=1).astype(np.float32)
    monkeypatch.setattr(sliced, "RADIX_MIN_LENGTH", 2048)
    radix = sorted_cotangent(p, t, 0.5)
    monkeypatch.setattr(sliced, "RADIX_MIN_LENGTH", 1 << 40)
    argsort = sorted_cotangent(p, t, 0.5)
    assert radix[0] == argsort[0]
    np.testing.assert_array_equal(radix[1], argsort[1])


def test_targets_are_read_a_block_of_directions_at_a_time_as_the_whole_array_would_be() -> None:
    """Two sources of other sizes, and a bank: any block of directions reads, value for value, those
    columns of the whole array that quantiles() and interpolate_quantiles() give."""
    rng = np.random.default_rng(4)
    sources = [
        (w, np.sort(rng.standard_normal((n, 6)), axis=0).astype(np.float32))
        for w, n in ((0.3, 70), (0.7, 45))
    ]
    whole = np.zeros((50, 6))
    for w, values in sources:
        whole += w * quantiles(values, 50)
    whole = whole.astype(np.float32)
    mixed = TargetQuantiles(count=50, sources=tuple((w, np.ascontiguousarray(v.T)) for w, v in sources))
    np.testing.assert_array_equal(mixed.array(), whole)
    np.testing.assert_array_equal(mixed.rows(2, 5), whole[:, 2:5].T)
    assert mixed.norm() == pytest.approx(float(np.mean(whole.astype(np.float64) ** 2)), rel=1e-12)

    levels = bank_levels(8)
    stored = np.sort(rng.random((1, 8, 6)), axis=1).astype(np.float32)
    bank = QuantileBank(quantiles={(0, "a"): stored}, levels=levels)
    _, banked = bank.draw(seed=0, draw=0, counts={(0, "a"): 50})[(0, "a")]
    expected = interpolate_quantiles(levels, stored[0], 50).astype(np.float32)
    np.testing.assert_array_equal(banked.array(), expected)
    np.testing.assert_array_equal(banked.rows(1, 4), expected[:, 1:4].T)


def test_ranking_in_blocks_of_directions_gives_the_whole_ranking(monkeypatch) -> None:
    """Blocks of one, two or all five directions, ranked one or two at a time: the same value and
    the same gradient, bit for bit."""
    import multiscale.measure.sliced as sliced

    rng = np.random.default_rng(5)
    p = rng.standard_normal((5, 40)).astype(np.float32)
    target = TargetQuantiles(
        count=40, sources=((1.0, np.sort(rng.standard_normal((5, 64)), axis=1).astype(np.float32)),)
    )
    results = []
    for threads, block in ((1, 40), (2, 40), (1, 80), (2, 80), (1, 200)):
        monkeypatch.setattr(sliced, "RANK_THREADS", threads)
        monkeypatch.setattr(sliced, "RANK_BLOCK_VALUES", block)
        results.append(sorted_cotangent(p, target, 0.3))
    assert results[0][0] == results[1][0] and results[2][0] == results[3][0]
    whole_value, whole_grad = results[-1]
    for value, grad in results[:-1]:
        assert value == pytest.approx(whole_value, rel=1e-12)
        np.testing.assert_array_equal(grad, whole_grad)
    with pytest.raises(ValueError, match="targets of 5×40 for 5×39"):
        sorted_cotangent(p[:, :39], target, 0.3)


def test_sliced_term_is_zero_for_the_target_distribution_in_any_order() -> None:
    rng = np.random.default_rng(2)
    f = rng.standard_normal((40, 4)).astype(np.float32)
    d = directions(4, seed=0, draw=0, key=(0, "a"))
    target = np.sort(f @ d, axis=0)
    shuffled = f[rng.permutation(40)]
    assert float(sliced_term(tf.constant(shuffled), tf.constant(d), tf.constant(target), 1.0)) < 1e-12


@pytest.mark.parametrize("relu", [False, True])
def test_sliced_term_and_its_gradient_equal_tf_sort_ones_in_float64(relu) -> None:
    """The term ranks in numpy; tf.sort and its gradient are the reference. With ReLU zeros, equal
    projections may be ranked in another order: the value and the tied rows' summed gradient agree."""
    rng = np.random.default_rng(3)
    f = rng.standard_normal((300, 5))
    f = np.maximum(f, 0.0) if relu else f
    d = tf.constant(directions(5, seed=1, draw=0, key=(0, "a")).astype(np.float64))
    target = tf.constant(np.sort(rng.standard_normal((300, 5)), axis=0))
    x = tf.constant(f)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        value = sliced_term(x, d, target, 0.5)
        ranked = tf.transpose(tf.sort(tf.transpose(tf.matmul(x, d)), axis=-1))
        reference = tf.reduce_mean(tf.square(ranked - target)) / 0.5
    assert float(value) == pytest.approx(float(reference), rel=1e-12)
    grad, ref_grad = tape.gradient(value, x).numpy(), tape.gradient(reference, x).numpy()
    tied = np.all(f == 0.0, axis=1)
    assert tied.any() == relu
    np.testing.assert_allclose(grad[~tied], ref_grad[~tied], atol=1e-14)
    np.testing.assert_allclose(grad[tied].sum(axis=0), ref_grad[tied].sum(axis=0), atol=1e-14)


def test_source_positions_are_capped_by_a_fixed_subset() -> None:
    big = np.arange((MAX_SOURCE_POSITIONS + 10) * 2, dtype=np.float32).reshape(-1, 2)
    kept = sample_positions(big)
    assert kept.shape == (MAX_SOURCE_POSITIONS, 2)
    np.testing.assert_array_equal(kept, sample_positions(big))
    small = big[:100]
    np.testing.assert_array_equal(sample_positions(small), small)


def _objectives(config, *, size=(40, 32), tile=16, dtype=tf.float64, seed=5):
    h, w = size
    rng = np.random.default_rng(0)
    source = rng.uniform(size=(36, 44, 3)).astype(np.float32)
    net32 = VGG16(load_weights(), padding=config.padding)
    net = VGG16(load_weights(), padding=config.padding, dtype=dtype)
    grams, means = image_moments(source, network=net32, config=config)
    sliced = measure_sliced([source], network=net32, config=config)
    common = dict(
        targets=grams, network=net, config=config, height=h, width=w, sliced=sliced, seed=seed, means=means
    )
    whole = StyleObjective(**common)
    tiled = TiledStyleObjective(tile=tile, **common)
    return whole, tiled, rng.uniform(0.05, 0.95, size=h * w * 3), source


@pytest.mark.parametrize(
    ("statistics", "padding", "octaves"),
    [
        (("sliced",), "reflect", 2),
        (("gram", "sliced"), "reflect", 2),
        (("sliced",), "wrap", 2),
        (("sliced", "mean"), "reflect", 2),
        (("gram", "sliced", "mean"), "wrap", 2),
    ],
)
def test_tiled_sliced_loss_and_gradient_equal_the_untiled_ones(statistics, padding, octaves) -> None:
    config = DescriptorConfig(octaves=octaves, layers=LAYERS, padding=padding, statistics=statistics)
    whole, tiled, x, _ = _objectives(config)
    assert_tiled_equals_untiled(whole, tiled, x, draws=(0, 3))


def assert_tiled_equals_untiled(whole, tiled, x, *, draws) -> None:
    """Loss, gradient and octave losses of ``tiled`` equal ``whole``'s at ``x`` (float64) in each draw."""
    assert max(p.tiles for p in tiled.plans) > 1
    for draw in draws:
        whole.redraw(draw)
        tiled.redraw(draw)
        loss, grad = whole(x)
        tloss, tgrad = tiled(x)
        assert tloss == pytest.approx(loss, rel=1e-12)
        np.testing.assert_allclose(tgrad, grad, rtol=0, atol=1e-12 * np.abs(grad).max())
        np.testing.assert_allclose(tiled.last.octave_losses, whole.last.octave_losses, rtol=1e-12)


def test_sliced_gradient_matches_finite_differences_in_float64() -> None:
    config = DescriptorConfig(octaves=1, layers=("conv1_1",), statistics=("sliced",))
    whole, _, x, _ = _objectives(config, size=(16, 16))
    _, grad = whole(x)
    rng = np.random.default_rng(3)
    eps = 1e-5
    for i in rng.choice(x.size, 6, replace=False):
        e = np.zeros_like(x)
        e[i] = eps
        fd = (whole(x + e)[0] - whole(x - e)[0]) / (2 * eps)
        assert grad[i] == pytest.approx(fd, rel=1e-3, abs=1e-9 * np.abs(grad).max())


def test_the_source_itself_has_zero_sliced_loss_and_a_redraw_changes_a_noise_image_loss() -> None:
    config = DescriptorConfig(octaves=2, layers=LAYERS, statistics=("sliced",))
    net = VGG16(load_weights())
    source = np.random.default_rng(4).uniform(size=(32, 32, 3)).astype(np.float32)
    sliced = measure_sliced([source], network=net, config=config)
    obj = StyleObjective(targets={}, network=net, config=config, height=32, width=32, sliced=sliced, seed=0)
    assert obj.evaluate(source).total < 1e-10
    noise = np.full((32, 32, 3), 0.5, np.float32)
    first = obj.evaluate(noise).total
    obj.redraw(1)
    assert obj.draw == 1 and obj.evaluate(noise).total != first and obj.evaluate(source).total < 1e-10


def test_unknown_or_no_statistics_are_refused() -> None:
    # (descriptor files without a quantile bank: tests/test_sliced_bank.py)
    with pytest.raises(ConfigError, match="statistics"):
        DescriptorConfig(statistics=("moments",))
    with pytest.raises(ConfigError, match="statistics"):
        DescriptorConfig(statistics=())


def test_tiled_style_transfer_with_the_sliced_term_equals_the_untiled_one() -> None:
    from multiscale.measure.gram import content_features
    from multiscale.objectives.style import StylizeObjective, TiledStylizeObjective

    config = DescriptorConfig(octaves=2, layers=LAYERS, statistics=("gram", "sliced"))
    rng = np.random.default_rng(6)
    style = rng.uniform(size=(36, 36, 3)).astype(np.float32)
    content = rng.uniform(size=(40, 32, 3)).astype(np.float32)
    net32 = VGG16(load_weights())
    net = VGG16(load_weights(), dtype=tf.float64)
    common = dict(
        style_targets=image_grams(style, network=net32, config=config),
        content_targets=content_features(content, network=net32, layers=("conv1_2",)),
        network=net, config=config, content_weight=1.0, style_weight=2.0, tv_weight=0.5,
        height=40, width=32, sliced=measure_sliced([style], network=net32, config=config), seed=1,
    )  # fmt: skip
    whole, tiled = StylizeObjective(**common), TiledStylizeObjective(tile=16, **common)
    x = rng.uniform(0.05, 0.95, size=40 * 32 * 3)
    loss, grad = whole(x)
    tloss, tgrad = tiled(x)
    assert tloss == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(tgrad, grad, rtol=0, atol=1e-12 * np.abs(grad).max())
    np.testing.assert_allclose(list(tiled.last.terms.values()), list(whole.last.terms.values()), rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [REDRAW_EVERY, REDRAW_EVERY + 6])
def test_a_sliced_run_resumed_across_redraws_ends_where_an_uninterrupted_one_does(
    tmp_path, stop, stopped_run
) -> None:
    """The draw follows from the iteration, and the checkpoint holds the sources' features."""
    from multiscale.jobs.synthesize import make_config, resume_synthesis, run_synthesis

    source = np.random.default_rng(7).uniform(size=(40, 40, 3)).astype(np.float32)
    tiny = dict(octaves=2, layers=LAYERS, width=32, height=32, statistics=("sliced",), seed=2)
    total = 2 * REDRAW_EVERY + 5
    config = make_config(max_iter=total, **tiny)
    whole = run_synthesis(source, config=config)
    assert whole.report.iterations == total
    first = stopped_run(source, config=config, stop_at=stop)
    assert first.report.stop_reason == "callback"
    resumed, _ = resume_synthesis(tmp_path / "ck")
    assert resumed.report.iterations == total
    np.testing.assert_array_equal(resumed.image, whole.image)
    assert resumed.report.loss == whole.report.loss


@pytest.mark.slow
def test_a_draw_that_converges_early_gives_way_to_the_next_and_resumes_exactly(
    tmp_path, caplog, stopped_run
) -> None:
    """With a loose tol draws stop on their own within a few iterations; the run goes on with new
    directions to max_iter, and a checkpoint records the draw, so a resume repeats it.

    (A stop requested by the callback at the very iteration where a draw meets ``tol`` is taken
    first, and the resumed run then finishes that draw: so the stop is put elsewhere.)"""
    import logging
    import re

    from multiscale.jobs.checkpoint import read_checkpoint
    from multiscale.jobs.synthesize import make_config, resume_synthesis, run_synthesis

    source = np.random.default_rng(8).uniform(size=(40, 40, 3)).astype(np.float32)
    # Equal layer weights, as this tol was chosen for: draws end early, and not at every iteration.
    config = make_config(
        max_iter=30, tol=3e-4, octaves=2, layers=LAYERS, layer_weights=(1.0, 1.0), width=32, height=32,
        statistics=("sliced",), seed=1,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="multiscale.jobs.runner"):
        whole = run_synthesis(source, config=config)
    ends = {int(m) for m in re.findall(r"stopped at iteration (\d+)", caplog.text)}
    assert whole.report.iterations == 30 and len(ends) >= 2  # several draws ended early
    stop = next(k for k in range(min(ends) + 1, 30) if k not in ends)
    stopped_run(source, config=config, stop_at=stop)
    draw, began = read_checkpoint(tmp_path / "ck").sliced_draw
    assert draw >= 1 and began % REDRAW_EVERY != 0  # a draw that began early
    resumed, _ = resume_synthesis(tmp_path / "ck")
    np.testing.assert_array_equal(resumed.image, whole.image)
