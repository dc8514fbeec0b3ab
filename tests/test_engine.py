"""Exact tiled evaluation: the same loss and gradient as the untiled objective, in less memory."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from multiscale_cli.main import cli

from multiscale._tf import tf
from multiscale.config import DescriptorConfig, SynthesisConfig
from multiscale.errors import ConfigError
from multiscale.jobs.synthesize import estimate_memory, plan_run_memory, synthesize
from multiscale.layers import LAYER_NAMES, feature_size, layer_index, octave_sizes
from multiscale.measure.backbone import VGG16, load_weights
from multiscale.measure.gram import image_grams, image_moments
from multiscale.measure.memory import GIB
from multiscale.measure.tiles import plan_axis, plan_octaves
from multiscale.objectives.texture import StyleObjective, TiledStyleObjective

LAYERS = ("conv1_1", "pool1", "conv3_2")


def _pair(
    padding, octaves, *, pooling="avg", size=(64, 48), dtype=tf.float64, tile=16, layers=LAYERS,
    statistics=("gram",),
):  # fmt: skip
    """(untiled, tiled) objectives on the same random targets, and a start point."""
    config = DescriptorConfig(
        octaves=octaves, layers=layers, padding=padding, pooling=pooling, statistics=statistics
    )
    h, w = size
    rng = np.random.default_rng(octaves)
    net = VGG16(load_weights(), pooling=pooling, padding=padding, dtype=dtype)
    source = rng.uniform(size=(h, w, 3)).astype(np.float32)
    targets, means = image_moments(
        source, network=VGG16(load_weights(), padding=padding, pooling=pooling), config=config
    )
    common = dict(targets=targets, means=means, network=net, config=config, height=h, width=w)
    return (
        StyleObjective(**common),
        TiledStyleObjective(tile=tile, **common),
        rng.uniform(0.05, 0.95, h * w * 3),
    )


# Tiles of 16 px: smaller than the halo, cut at every octave; valid
# padding needs a larger image for its shrinking maps.
CASES = [
    ("reflect", 3, (64, 48)),
    ("symmetric", 2, (64, 48)),
    ("same", 1, (64, 48)),
    ("wrap", 1, (64, 48)),
    ("wrap", 3, (64, 48)),
    ("valid", 2, (112, 96)),
]


@pytest.mark.parametrize(("padding", "octaves", "size"), CASES)
def test_tiled_loss_and_gradient_equal_the_untiled_ones_in_float64(padding, octaves, size):
    whole, tiled, x = _pair(padding, octaves, size=size)
    assert max(p.tiles for p in tiled.plans) > 4  # really tiled
    loss, grad = whole(x)
    tloss, tgrad = tiled(x)
    assert tloss == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(tgrad, grad, rtol=0, atol=1e-12 * np.abs(grad).max())
    np.testing.assert_allclose(tiled.last.octave_losses, whole.last.octave_losses, rtol=1e-12)


@pytest.mark.parametrize(("padding", "octaves", "size"), CASES)
@pytest.mark.parametrize("statistics", [("mean",), ("gram", "mean")])
def test_tiled_mean_term_loss_and_gradient_equal_the_untiled_ones_in_float64(
    padding, octaves, size, statistics
):
    """The first pass's feature sums and the second pass's broadcast seeds are exact."""
    whole, tiled, x = _pair(padding, octaves, size=size, statistics=statistics)
    assert max(p.tiles for p in tiled.plans) > 4
    loss, grad = whole(x)
    tloss, tgrad = tiled(x)
    assert loss > 0 and tloss == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(tgrad, grad, rtol=0, atol=1e-12 * np.abs(grad).max())
    np.testing.assert_allclose(tiled.last.octave_losses, whole.last.octave_losses, rtol=1e-12)
    assert tiled.evaluate(x.reshape(*size, 3)).total == pytest.approx(loss, rel=1e-12)


def test_tiled_equals_untiled_at_float32_tolerance_with_max_pooling():
    whole, tiled, x = _pair("reflect", 2, pooling="max", dtype=tf.float32, tile=24)
    loss, grad = whole(x)
    tloss, tgrad = tiled(x)
    assert tloss == pytest.approx(loss, rel=1e-5)
    assert np.abs(tgrad - grad).max() <= 1e-4 * np.abs(grad).max()
    assert tiled.evaluate(x.reshape(64, 48, 3)).total == pytest.approx(loss, rel=1e-5)


@pytest.mark.parametrize("mode", ["reflect", "same", "valid", "wrap"])
@pytest.mark.parametrize("n", [64, 97, 130, 256])
@pytest.mark.parametrize("tile", [8, 21, 40, 1000])
def test_interiors_partition_every_layers_map(mode, n, tile):
    layers = ("conv1_2", "pool2", "conv3_3")
    if mode == "wrap" and n % 4 and tile < n:  # a split periodic axis must halve even sizes
        with pytest.raises(ConfigError, match="tile_size"):
            plan_axis(n, layers=layers, mode=mode, tile=tile)
        return
    segments, sizes = plan_axis(n, layers=layers, mode=mode, tile=tile)
    assert len(segments) == (1 if tile >= n else -(-n // tile))
    for name in layers:
        assert sizes[name] == feature_size(name, n, mode)
        covered = sum(s.interiors[name][1] - s.interiors[name][0] for s in segments)
        assert covered == sizes[name]  # no position counted twice or missed
    for s in segments:
        assert len(s.edges) == layer_index("conv3_3") + 1
        if mode != "wrap":
            assert 0 <= s.start < s.stop <= n  # reads inside the image
    if len(segments) > 1:
        assert segments[1].start < segments[0].stop  # neighbours overlap: the halo


def test_one_tile_reads_the_whole_axis_and_pads_like_the_untiled_network():
    (segment,), _ = plan_axis(50, layers=LAYERS, mode="reflect", tile=None)
    assert (segment.start, segment.stop) == (0, 50)
    convs = [e for e, name in zip(segment.edges, LAYER_NAMES, strict=False) if name.startswith("conv")]
    assert all(e == (1, 1) for e in convs)


def test_wrap_tiling_refuses_an_odd_size_at_a_pooling():
    config = DescriptorConfig(octaves=2, layers=LAYERS, padding="wrap")
    with pytest.raises(ConfigError, match="tile_size"):
        plan_octaves(68, 68, config=config, tile=16)  # octave 1: 34 → pool1 17 → pool2 halves 17
    plan_octaves(72, 72, config=config, tile=16)  # 36 → 18 → 9: every pooling halves an even size


def test_octaves_no_larger_than_the_tile_are_one_tile():
    config = DescriptorConfig(octaves=4)
    plans = plan_octaves(1024, 768, config=config, tile=256)
    assert [p.tiles for p in plans] == [4 * 3, 2 * 2, 1, 1]
    assert [p.size for p in plans] == octave_sizes(1024, 768, octaves=4, padding="reflect")


def test_tiled_estimate_is_far_below_the_untiled_one_at_4096():
    config = SynthesisConfig(width=4096, height=4096)
    untiled = estimate_memory(config, height=4096, width=4096)
    tiled = estimate_memory(config, height=4096, width=4096, tile=512)
    assert untiled.activations > 25 * GIB
    assert tiled.activations < 2 * GIB
    assert tiled.lbfgs == untiled.lbfgs  # tiling does not touch the optimiser's vectors


def test_automatic_tiling_only_when_the_untiled_run_does_not_fit():
    roomy = SynthesisConfig(width=1024, height=1024, max_memory=64 * GIB)
    assert plan_run_memory(roomy, height=1024, width=1024)[0] is None
    tight = SynthesisConfig(width=1024, height=1024, max_memory=2 * GIB)
    tile, estimate, limit = plan_run_memory(tight, height=1024, width=1024)
    assert tile in (512, 256, 128) and estimate.total <= limit == 2 * GIB
    given = SynthesisConfig(width=1024, height=1024, tile_size=300, max_memory=64 * GIB)
    assert plan_run_memory(given, height=1024, width=1024)[0] == 300
    # a tile at least the image is no tiling
    whole = SynthesisConfig(width=256, height=256, tile_size=256)
    assert plan_run_memory(whole, height=256, width=256)[0] is None


def test_tile_size_below_the_minimum_is_a_config_error():
    with pytest.raises(ConfigError, match="tile_size"):
        SynthesisConfig(tile_size=16)


def test_tiled_synthesis_follows_the_untiled_one_and_records_the_tile(tmp_path):
    rng = np.random.default_rng(3)
    source = rng.uniform(size=(64, 64, 3)).astype(np.float32)
    common = dict(width=64, height=64, octaves=2, max_iter=4)
    whole = synthesize(source, **common)
    tiled = synthesize(source, tile_size=32, **common)
    assert whole.report.tile_size is None and tiled.report.tile_size == 32
    # float32 sums in another order: the runs drift apart only by rounding
    assert tiled.report.best_loss == pytest.approx(whole.report.best_loss, rel=2e-2)
    assert json.loads(json.dumps(tiled.report.to_dict()))["tile_size"] == 32


def test_dry_run_shows_the_tiling_plan():
    runner = CliRunner()
    res = runner.invoke(
        cli, ["synthesize", "-s", "x.png", "-W", "4096", "-H", "4096", "--tile-size", "512", "--dry-run"]
    )
    assert res.exit_code == 0, res.output
    assert "512 px tiles" in res.output and "tiles per octave: 64, 16, 4, 1" in res.output
    res = runner.invoke(cli, ["synthesize", "-s", "x.png", "-W", "256", "-H", "256", "--dry-run"])
    assert "tiling      none" in res.output


def test_tile_size_option_is_checked_by_the_cli():
    res = CliRunner().invoke(cli, ["synthesize", "-s", "x.png", "--tile-size", "8", "--dry-run"])
    assert res.exit_code == 2 and "--tile-size" in res.output


@pytest.mark.parametrize(
    ("weights", "channels", "padding", "statistics"),
    [
        ((1.0, 1.0, 0.5), 3, "reflect", ("gram",)),
        ((1.0, 0.0, 0.1), 1, "reflect", ("gram",)),
        ((0.5, 2.0, 0.0), 3, "wrap", ("gram",)),
        ((1.0, 2.0, 0.5), 3, "reflect", ("gram", "mean")),
        ((0.5, 1.0, 0.1), 1, "wrap", ("mean",)),
    ],
)
def test_tiled_style_transfer_objective_equals_the_untiled_one(weights, channels, padding, statistics):
    from multiscale.measure.gram import content_features
    from multiscale.objectives.style import StylizeObjective, TiledStylizeObjective

    config = DescriptorConfig(
        octaves=2, layers=("conv1_1", "pool1", "conv2_1"), padding=padding, statistics=statistics
    )
    h, w = 64, 48
    rng = np.random.default_rng(5)
    net = VGG16(load_weights(), padding=padding, dtype=tf.float64)
    net32 = VGG16(load_weights(), padding=padding)
    style, means = image_moments(rng.uniform(size=(h, w, 3)).astype(np.float32), network=net32, config=config)
    content = content_features(rng.uniform(size=(h, w, 3)), network=net, layers=("conv2_2",))
    kwargs = dict(
        style_targets=style, content_targets=content, network=net, config=config, content_weight=weights[0],
        style_weight=weights[1], tv_weight=weights[2], height=h, width=w, channels=channels, means=means,
    )  # fmt: skip
    whole = StylizeObjective(**kwargs)
    tiled = TiledStylizeObjective(tile=16, **kwargs)
    x = rng.uniform(0.05, 0.95, size=h * w * channels)
    loss, grad = whole(x)
    tloss, tgrad = tiled(x)
    assert tloss == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(tgrad, grad, rtol=0, atol=1e-12 * np.abs(grad).max())
    np.testing.assert_allclose(
        list(tiled.last.terms.values()), list(whole.last.terms.values()), rtol=1e-12, atol=1e-300
    )
    scored = tiled.evaluate(x.reshape(h, w, channels))
    total, terms = scored.total, scored.terms
    assert total == pytest.approx(loss, rel=1e-12) and set(terms) == {"content", "style", "tv"}


def test_tiled_grams_means_and_features_of_a_large_image_equal_the_whole_images():
    from multiscale.layers import layer_channels
    from multiscale.measure.engine import tiled_features, tiled_grams, tiled_moments
    from multiscale.measure.gram import content_features

    config = DescriptorConfig(octaves=2, layers=("pool1", "conv2_1"))
    net = VGG16(load_weights())  # float32, as sources are measured
    image = np.random.default_rng(6).uniform(size=(72, 56, 3)).astype(np.float32)
    whole = image_grams(image, network=net, config=config)
    tiled = tiled_grams(image, network=net, config=config, tile=20)
    assert set(tiled) == set(whole)
    for key in whole:
        np.testing.assert_allclose(tiled[key], whole[key], rtol=0, atol=1e-5 * np.abs(whole[key]).max())
    whole_means = image_moments(image, network=net, config=config)[1]
    tiled_means = tiled_moments(image, network=net, config=config, tile=20)[1]
    for key in whole:
        assert tiled_means[key].shape == (layer_channels(key[1]),)
        np.testing.assert_allclose(
            tiled_means[key], whole_means[key], rtol=0, atol=1e-5 * np.abs(whole_means[key]).max()
        )
    feats = content_features(image, network=net, layers=("conv2_2", "conv3_1"))
    tfeats = tiled_features(image, network=net, config=config, layers=("conv2_2", "conv3_1"), tile=20)
    for name in feats:
        assert tfeats[name].shape == feats[name].shape
        np.testing.assert_allclose(tfeats[name], feats[name], rtol=0, atol=1e-5 * np.abs(feats[name]).max())


def test_stylize_tiles_a_stage_when_asked_and_follows_the_untiled_run():
    from multiscale.jobs.stylize import stylize

    rng = np.random.default_rng(7)
    content = rng.uniform(size=(60, 80, 3)).astype(np.float32)
    style = rng.uniform(size=(64, 64, 3)).astype(np.float32)
    common = dict(width=80, stages=1, max_iter=3, octaves=2)
    whole = stylize(content, style, **common)
    tiled = stylize(content, style, tile_size=32, **common)
    assert whole.report.stages[-1].tile_size is None and tiled.report.stages[-1].tile_size == 32
    assert tiled.report.loss == pytest.approx(whole.report.loss, rel=2e-2)


def test_stylize_chooses_tiles_when_the_last_stage_would_not_fit():
    from multiscale.config import StyleConfig
    from multiscale.jobs.stylize import stage_tiling

    roomy = StyleConfig(max_memory=64 * GIB)
    assert stage_tiling(2048, 2730, config=roomy)[0] is None
    tight = StyleConfig(max_memory=6 * GIB)
    tile, estimate, limit = stage_tiling(2048, 2730, config=tight)
    assert tile is not None and estimate.total <= limit
