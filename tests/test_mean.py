"""The ``mean`` statistic (first moments): its term, its targets, descriptor files, checkpoints, CLI.

Per (octave, layer) the term is ``‖μ(F) − μ_t‖² / max(‖μ_t‖², floor)`` with μ
the layer's mean feature vector over positions, weighted like the Gram terms.
Tiled against untiled evaluation: tests/test_engine.py and tests/test_sliced.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from multiscale_cli.main import cli

import multiscale.descriptors.descriptor as descriptor_module
from multiscale._tf import tf
from multiscale.config import DescriptorConfig
from multiscale.descriptors.build import build_descriptor
from multiscale.descriptors.descriptor import (
    BANK_VERSION,
    GRAMS_ONLY_VERSION,
    MEANS_VERSION,
    GramDescriptor,
    require_means,
)
from multiscale.errors import ConfigError, DescriptorError
from multiscale.io import load_image
from multiscale.layers import layer_channels
from multiscale.measure.backbone import VGG16, load_weights
from multiscale.measure.gram import feature_mean, image_moments, pyramid_features
from multiscale.measure.memory import estimate_synthesis_memory
from multiscale.objectives.terms import mean_loss, term_shares
from multiscale.objectives.texture import StyleObjective

from .test_sliced_bank import _meta, _photo, _rewrite

LAYERS = ("conv1_1", "pool1")
CONFIG = DescriptorConfig(octaves=2, layers=LAYERS, statistics=("gram", "mean"))
KEYS = [(o, layer) for o in range(2) for layer in LAYERS]
WEIGHTS_SHA = "ab" * 32
MEASURE = ["--octaves", "2", "--layers", "conv1_1,pool1"]


# ---------------------------------------------------------------------------- the term


def test_the_term_is_the_relative_squared_error_weighted_like_the_grams():
    config = DescriptorConfig(octaves=2, layers=LAYERS, layer_weights=(1.0, 3.0), octave_weights=(2.0, 1.0))
    rng = np.random.default_rng(0)
    means = {k: rng.normal(size=layer_channels(k[1])) for k in KEYS}
    targets = {k: rng.normal(size=layer_channels(k[1])) for k in KEYS}
    total, per_octave = mean_loss(
        {k: tf.constant(v) for k, v in means.items()},
        {k: tf.constant(v) for k, v in targets.items()},
        config=config,
    )
    shares = term_shares(config)
    expected = {k: shares[k] * np.sum((means[k] - targets[k]) ** 2) / np.sum(targets[k] ** 2) for k in KEYS}
    assert float(total) == pytest.approx(sum(expected.values()), rel=1e-12)
    for o in range(2):
        assert float(per_octave[o]) == pytest.approx(
            sum(v for k, v in expected.items() if k[0] == o), rel=1e-12
        )


def test_an_all_zero_target_is_floored_not_divided_by():
    total, _ = mean_loss(
        {k: tf.ones([layer_channels(k[1])], tf.float64) for k in KEYS},
        {k: tf.zeros([layer_channels(k[1])], tf.float64) for k in KEYS},
        config=CONFIG,
    )
    assert np.isfinite(float(total)) and float(total) > 0


@pytest.fixture(scope="module")
def net64() -> VGG16:
    return VGG16(load_weights(), dtype=tf.float64)


@pytest.fixture(scope="module")
def source() -> np.ndarray:
    return np.random.default_rng(1).uniform(size=(32, 32, 3))


def _own_means(image: np.ndarray, net: VGG16, config: DescriptorConfig) -> dict:
    """The image's mean feature vectors, measured in the network's (float64) precision."""
    feats = pyramid_features(tf.constant(image[None], net.dtype), network=net, config=config)
    return {k: feature_mean(f).numpy() for k, f in feats.items()}


def test_an_image_whose_means_are_the_target_has_zero_term_and_doubled_targets_give_a_quarter(net64, source):
    config = DescriptorConfig(octaves=2, layers=LAYERS, statistics=("mean",), octave_weights=(1.0, 3.0))
    means = _own_means(source, net64, config)
    own = StyleObjective(targets={}, means=means, network=net64, config=config, height=32, width=32)
    assert own.evaluate(source).total < 1e-24
    # ‖μ − 2μ‖² / ‖2μ‖² = 1/4 for every key; the shares sum to 1, octave 1 holds 3/4 of them
    doubled = {k: 2 * m for k, m in means.items()}
    obj = StyleObjective(targets={}, means=doubled, network=net64, config=config, height=32, width=32)
    scored = obj.evaluate(source)
    assert scored.total == pytest.approx(0.25, rel=1e-12)
    np.testing.assert_allclose(scored.octave_losses, [0.25 / 4, 0.25 * 3 / 4], rtol=1e-12)


def test_the_mean_term_adds_to_the_gram_term(net64, source):
    gram_only = DescriptorConfig(octaves=2, layers=LAYERS)
    grams = image_moments(source.astype(np.float32), network=VGG16(load_weights()), config=gram_only)[0]
    doubled = {k: 2 * m for k, m in _own_means(source, net64, gram_only).items()}
    common = dict(targets=grams, network=net64, height=32, width=32, means=doubled)
    gram = StyleObjective(config=gram_only, **common).evaluate(source).total
    both = StyleObjective(config=CONFIG, **common).evaluate(source).total
    assert both == pytest.approx(gram + 0.25, rel=1e-9)


def test_gradient_matches_central_finite_differences_in_float64(net64, source):
    config = DescriptorConfig(octaves=2, layers=LAYERS, statistics=("mean",), padding="wrap")
    other = np.random.default_rng(2).uniform(size=(40, 36, 3))
    obj = StyleObjective(
        targets={}, means=_own_means(other, net64, config), network=net64, config=config, height=32, width=32
    )
    x = np.random.default_rng(3).uniform(0.1, 0.9, size=32 * 32 * 3)
    loss, grad = obj(x)
    assert loss > 1e-4
    eps = 1e-5
    for i in np.random.default_rng(4).choice(x.size, 8, replace=False):
        e = np.zeros_like(x)
        e[i] = eps
        fd = (obj(x + e)[0] - obj(x - e)[0]) / (2 * eps)
        assert grad[i] == pytest.approx(fd, rel=1e-5, abs=1e-9 * np.abs(grad).max())


def test_an_objective_asked_for_mean_without_targets_is_a_bug_caught_early(net64):
    with pytest.raises(ValueError, match="mean feature vectors"):
        StyleObjective(targets={}, network=net64, config=CONFIG, height=32, width=32)


def test_image_moments_are_the_grams_and_the_per_channel_means():
    net = VGG16(load_weights())
    image = np.random.default_rng(5).uniform(size=(40, 32, 3)).astype(np.float32)
    grams, means = image_moments(image, network=net, config=CONFIG)
    feats = pyramid_features(tf.constant(image[None]), network=net, config=CONFIG)
    for k, f in feats.items():
        flat = f.numpy().reshape(-1, f.shape[-1]).astype(np.float64)
        assert means[k].dtype == np.float64 and means[k].shape == (f.shape[-1],)
        np.testing.assert_allclose(means[k], flat.mean(axis=0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(grams[k], flat.T @ flat / len(flat), rtol=1e-4, atol=1e-5)


def test_the_memory_estimate_counts_the_means_and_only_with_mean():
    kwargs = dict(height=256, width=256, history=5, sources=[(256, 256)], optimizer="projected")
    gram = estimate_synthesis_memory(config=DescriptorConfig(), **kwargs)
    both = estimate_synthesis_memory(config=DescriptorConfig(statistics=("gram", "mean")), **kwargs)
    tiled = estimate_synthesis_memory(config=DescriptorConfig(statistics=("gram", "mean")), tile=64, **kwargs)
    assert gram.means == 0 and both.total - gram.total == both.means > 0
    assert 0 < tiled.means < both.means < 0.02 * both.total  # tiny beside the activations


def test_auto_stays_alone_and_stylize_takes_mean():
    from multiscale.config import StyleConfig

    assert DescriptorConfig(statistics=("gram", "sliced", "mean")).statistics == ("gram", "sliced", "mean")
    with pytest.raises(ConfigError, match="give it alone"):
        DescriptorConfig(statistics=("auto", "mean"))
    with pytest.raises(ConfigError, match="listed twice"):
        DescriptorConfig(statistics=("mean", "mean"))
    StyleConfig(descriptor=DescriptorConfig(statistics=("gram", "mean"))).validate()


# ---------------------------------------------------------------------------- descriptor files


def _moments(i: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(100 + i)
    grams, means = {}, {}
    for k in KEYS:
        c = layer_channels(k[1])
        a = rng.normal(size=(c, c))
        grams[k] = a @ a.T / c + np.eye(c)
        means[k] = rng.normal(size=c)
    return grams, means


def _descriptor(images, *, means: bool = True, bank: bool = False) -> GramDescriptor:
    from multiscale.measure.sliced import BANK_DRAWS, BANK_LEVELS

    d = GramDescriptor.empty(
        config=CONFIG, backbone="vgg16-test", weights_sha256=WEIGHTS_SHA,
        channels={layer: layer_channels(layer) for layer in LAYERS}, means=means, bank=bank,
    )  # fmt: skip
    for i in images:
        grams, m = _moments(i)
        quantiles = (
            {k: np.sort(np.random.default_rng(i).normal(size=(BANK_DRAWS, BANK_LEVELS, layer_channels(k[1]))), axis=1)
             for k in KEYS}
            if bank else None
        )  # fmt: skip
        d.add(
            grams,
            name=f"p{i}.png",
            sha256=f"{i:064x}",
            weight=1.0 + i,
            means=m if means else None,
            bank=quantiles,
        )
    return d


def test_means_are_the_weighted_mean_and_merge_exactly():
    whole = _descriptor(range(3))
    for k in KEYS:
        expected = sum((1.0 + i) * _moments(i)[1][k] for i in range(3)) / sum(1.0 + i for i in range(3))
        np.testing.assert_allclose(whole.means[k], expected, rtol=1e-13)
    merged = _descriptor([0]).merge(_descriptor([1, 2]))
    for k in KEYS:
        # sums add (never a mean of means): equal to float64 round-off of the addition order
        np.testing.assert_allclose(merged.mean_sums[k], whole.mean_sums[k], rtol=1e-13, atol=1e-15)
    assert merged.total_weight == whole.total_weight and merged.count == 3


def test_merging_with_a_descriptor_without_means_holds_none_and_says_so(caplog):
    with caplog.at_level(logging.WARNING):
        merged = _descriptor([0]).merge(_descriptor([1], means=False))
    assert not merged.has_means and merged.means is None
    assert "--statistics gram,mean" in caplog.text


def test_file_round_trip_keeps_the_means_and_the_versions_follow_what_a_file_holds(tmp_path):
    d = _descriptor(range(2))
    e = GramDescriptor.load(d.save(tmp_path / "m.npz"))
    assert e.version == MEANS_VERSION == 3 and e.has_means and e.info()["means"] is True
    for k in KEYS:
        np.testing.assert_array_equal(e.mean_sums[k], d.mean_sums[k])
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert z["mean_sum/1/pool1"].dtype == np.float64 and z["mean_sum/1/pool1"].shape == (64,)
    plain = GramDescriptor.load(_descriptor(range(2), means=False).save(tmp_path / "p.npz"))
    assert plain.version == GRAMS_ONLY_VERSION and not plain.has_means and plain.info()["means"] is False
    both = GramDescriptor.load(_descriptor(range(2), bank=True).save(tmp_path / "b.npz"))
    assert both.version == MEANS_VERSION and both.has_bank and both.has_means
    banked = GramDescriptor.load(_descriptor(range(2), means=False, bank=True).save(tmp_path / "s.npz"))
    assert banked.version == BANK_VERSION and not banked.has_means


def test_an_older_reader_refuses_a_file_with_means_asking_for_an_upgrade(tmp_path, monkeypatch):
    path = _descriptor(range(1)).save(tmp_path / "m.npz")
    monkeypatch.setattr(descriptor_module, "FORMAT_VERSION", BANK_VERSION)
    with pytest.raises(DescriptorError, match="newer multiscale.*upgrade"):
        GramDescriptor.load(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(version=BANK_VERSION), "format version 2 does not have"),
        (lambda m: m.update(means="yes"), "meta means must be true or false"),
        (lambda m: m.pop("means"), "mean_sum"),  # members the meta does not announce
    ],
)
def test_a_file_whose_meta_and_means_disagree_is_refused(tmp_path, change, message):
    path = _rewrite(
        _descriptor(range(1)).save(tmp_path / "m.npz"), tmp_path / "bad.npz", lambda m: _meta(m, change)
    )
    with pytest.raises(DescriptorError, match=message):
        GramDescriptor.load(path)


def test_add_checks_the_means_before_anything_changes():
    d = _descriptor([0])
    grams, means = _moments(1)
    with pytest.raises(DescriptorError, match="give the image's"):
        d.add(grams, name="x.png", sha256="1" * 64)
    with pytest.raises(DescriptorError, match=r"shape \(3,\), expected \(64,\)"):
        d.add(grams, name="x.png", sha256="1" * 64, means={**means, (0, "conv1_1"): np.zeros(3)})
    with pytest.raises(DescriptorError, match="NaN"):
        d.add(grams, name="x.png", sha256="1" * 64, means={**means, (0, "pool1"): np.full(64, np.nan)})
    with pytest.raises(DescriptorError, match="holds none"):
        _descriptor([0], means=False).add(grams, name="x.png", sha256="1" * 64, means=means)
    assert d.count == 1


def test_mean_from_files_without_means_is_refused_with_how_to_rebuild():
    from multiscale.jobs.synthesize import config_for_descriptors, make_config, targets_from_descriptors

    config = make_config(width=32, height=32, statistics=("gram", "mean"), octaves=2, layers=LAYERS)
    plain = _descriptor([0], means=False)
    with pytest.raises(ConfigError, match=r"grams build --statistics gram,mean"):
        require_means(config.descriptor, [plain])
    with pytest.raises(ConfigError, match="holds no mean feature vectors"):
        config_for_descriptors([plain], config, explicit={"statistics"})
    with pytest.raises(ConfigError, match="holds no mean feature vectors"):
        targets_from_descriptors([plain], config=config, backbone="vgg16-test", weights_sha256=WEIGHTS_SHA)


def test_descriptors_means_are_blended_with_the_grams_shares():
    from multiscale.jobs.synthesize import make_config, targets_from_descriptors

    config = make_config(width=32, height=32, statistics=("gram", "mean"), octaves=2, layers=LAYERS)
    a, b = _descriptor([0]), _descriptor([1, 2])
    targets = targets_from_descriptors(
        [a, b], config=config, backbone="vgg16-test", weights_sha256=WEIGHTS_SHA, grams_weights=[1, 3]
    )
    for k in KEYS:
        np.testing.assert_allclose(targets.means[k], 0.25 * a.means[k] + 0.75 * b.means[k], rtol=1e-13)
        np.testing.assert_allclose(targets.grams[k], 0.25 * a.join()[k] + 0.75 * b.join()[k], rtol=1e-13)


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    (tmp_path / "photos").mkdir()
    return [_photo(tmp_path / "photos" / f"p{i}.png", seed=i) for i in range(3)]


def test_a_merge_of_photo_sets_files_equals_the_file_built_from_all(photos, tmp_path):
    a = build_descriptor(photos[:1], config=CONFIG).descriptor.save(tmp_path / "a.npz")
    b = build_descriptor(photos[1:], config=CONFIG).descriptor.save(tmp_path / "b.npz")
    both = build_descriptor(photos, config=CONFIG).descriptor
    merged = GramDescriptor.load(a).merge(GramDescriptor.load(b))
    net = VGG16(load_weights())
    measured = [image_moments(load_image(p), network=net, config=CONFIG)[1] for p in photos]
    for k in KEYS:
        np.testing.assert_allclose(merged.mean_sums[k], both.mean_sums[k], rtol=1e-12, atol=0)
        np.testing.assert_allclose(both.means[k], sum(m[k] for m in measured) / len(measured), rtol=1e-6)
    assert not build_descriptor(
        photos[:1], config=DescriptorConfig(octaves=2, layers=LAYERS)
    ).descriptor.has_means


# ---------------------------------------------------------------------------- runs and CLI


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_builds_means_synthesizes_from_them_and_refuses_a_file_without(photos, tmp_path):
    with_means, plain = tmp_path / "m.grams.npz", tmp_path / "p.grams.npz"
    result = _invoke("grams", "build", *photos, "-o", with_means, *MEASURE, "--statistics", "gram,mean", "-q")
    assert result.exit_code == 0, result.output
    assert _invoke("grams", "build", *photos, "-o", plain, *MEASURE, "-q").exit_code == 0
    assert re.search(r"^means +yes \(--statistics mean\)$", _invoke("grams", "info", with_means).output, re.M)
    assert "rebuild with --statistics gram,mean" in _invoke("grams", "info", plain).output
    out = tmp_path / "t.png"
    result = _invoke(
        "synthesize", "--grams", with_means, "--statistics", "gram,mean", "-W", "32", "-H", "32", "-o", out,
        "--max-iter", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "t.png.json").read_text())["config"]["descriptor"]["statistics"] == [
        "gram",
        "mean",
    ]
    refused = _invoke(
        "synthesize", "--grams", plain, "--statistics", "gram,mean", "-W", "32", "-H", "32", "-o", tmp_path / "x.png"
    )  # fmt: skip
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    assert "rebuild it with `multiscale grams build --statistics gram,mean`" in refused.stderr
    assert str(plain) in refused.stderr and not (tmp_path / "x.png").exists()


def test_help_lists_mean_and_dry_run_shows_it(photos):
    for command in ("synthesize", "stylize"):
        text = " ".join(_invoke(command, "--help").output.split())
        assert "mean (first moments: each layer's mean feature vector" in text
    assert "with mean, the images' mean feature vectors" in " ".join(
        _invoke("grams", "build", "--help").output.split()
    )
    result = _invoke("synthesize", "-s", photos[0], "--statistics", "gram,mean", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "statistics  gram, mean\n" in result.output


TINY = dict(octaves=2, layers=LAYERS, width=32, height=32)


@pytest.fixture(scope="module")
def gravel(samples_dir):
    return load_image(samples_dir / "gravel.png")[:64, :64].copy()


@pytest.mark.parametrize("statistics", [("gram", "mean"), ("gram", "sliced", "mean")])
def test_a_resumed_run_with_mean_ends_where_an_uninterrupted_one_does(gravel, tmp_path, statistics):
    from multiscale.jobs.checkpoint import read_checkpoint
    from multiscale.jobs.synthesize import make_config, resume_synthesis, run_synthesis, synthesize

    whole = synthesize(gravel, max_iter=12, seed=3, statistics=statistics, **TINY)
    config = make_config(max_iter=12, seed=3, statistics=statistics, **TINY)
    first = run_synthesis(
        gravel, config=config, callback=lambda p: p.iteration == 5, checkpoint=tmp_path / "ck",
        output=tmp_path / "o.png",
    )  # fmt: skip
    assert first.report.stop_reason == "callback"
    ck = read_checkpoint(tmp_path / "ck")
    assert set(ck.means) == set(KEYS) and all(m.shape == (layer_channels(k[1]),) for k, m in ck.means.items())
    resumed, _ = resume_synthesis(ck)
    assert resumed.report.iterations == 12
    np.testing.assert_array_equal(resumed.image, whole.image)
    assert resumed.report.loss == whole.report.loss


def test_frames_and_tileable_runs_match_the_mean_too(gravel):
    from multiscale.jobs.synthesize import synthesize

    frames = synthesize(gravel, frames=2, statistics=("gram", "mean"), max_iter=3, **TINY)
    assert frames.image.shape == (2, 32, 32, 3) and np.isfinite(frames.report.loss)
    tileable = synthesize(gravel, padding="wrap", statistics=("mean",), max_iter=3, **TINY)
    assert np.isfinite(tileable.report.loss) and tileable.report.config.descriptor.padding == "wrap"


def test_stylize_with_mean_matches_the_styles_blended_means(samples_dir):
    from multiscale.config import StyleConfig
    from multiscale.jobs.stylize import _stage_styles, prepare_stylize, stage_targets, stylize

    content = load_image(Path(__file__).resolve().parent.parent / "samples" / "style" / "chelsea.png")[
        :48, :64
    ]
    styles = [load_image(samples_dir / n)[:48, :48].copy() for n in ("gravel.png", "hubble_field.png")]
    options = dict(octaves=2, layers=LAYERS, content_layers=("conv2_2",), statistics=("gram", "mean"))
    res = stylize(content, styles, style_weights=(1.0, 3.0), max_iter=3, **options)
    assert np.isfinite(res.report.loss) and res.report.config.descriptor.statistics == ("gram", "mean")
    config = StyleConfig(
        descriptor=DescriptorConfig(octaves=2, layers=LAYERS, statistics=("gram", "mean")),
        content_layers=("conv2_2",), style_weights=(1.0, 3.0),
    )  # fmt: skip
    plan = prepare_stylize(content, styles, config=config)
    net = VGG16(load_weights())
    for (_, w), targets in zip(plan.stage_sizes, stage_targets(plan, net), strict=True):
        images, weights = _stage_styles(plan, w)
        measured = [image_moments(im, network=net, config=config.descriptor) for im in images]
        assert weights == [0.25, 0.75]
        for k in KEYS:  # blended like the Grams, with the same weights
            for i in (0, 1):
                np.testing.assert_allclose(
                    targets.means[k] if i else targets.grams[k],
                    sum(wt * m[i][k] for wt, m in zip(weights, measured, strict=True)),
                    rtol=1e-6,
                )
    no_mean = dataclasses.replace(config, descriptor=DescriptorConfig(octaves=2, layers=LAYERS))
    assert stage_targets(prepare_stylize(content, styles, config=no_mean), net)[0].means is None


def test_a_stylize_checkpoint_carries_each_stages_means(tmp_path):
    from multiscale.config import StyleConfig
    from multiscale.jobs.checkpoint import StylePosition, read_style_checkpoint, write_style_checkpoint

    config = StyleConfig(descriptor=CONFIG, max_iter=10, palette_weight=0.0)  # the means alone
    sizes = [(8, 12), (16, 24)]
    rng = np.random.default_rng(0)
    contents = [rng.uniform(size=(h, w, 3)).astype(np.float32) for h, w in sizes]
    moments = [_moments(s) for s in range(2)]
    position = StylePosition(
        stage=0, stage_iterations=3, stage_evaluations=4, stage_elapsed_s=0.5, best_loss=0.25, stages=[],
        image=contents[0], history=np.linspace(1, 0.1, 3),
    )  # fmt: skip
    info = {"name": "cat.png", "sha256": "0" * 64, "height": 16, "width": 24}
    folder = write_style_checkpoint(
        tmp_path / "ck", config=config, output=tmp_path / "out.png", content=info, styles=[info],
        style_blend=[1.0], contents=contents, grams=[g for g, _ in moments], means=[m for _, m in moments],
        position=position, current=contents[0], best=contents[0],
    )  # fmt: skip
    ck = read_style_checkpoint(folder)
    assert len(ck.means) == 2
    for s in range(2):
        for k in KEYS:
            np.testing.assert_array_equal(ck.means[s][k], moments[s][1][k])


def test_a_stylize_run_with_mean_stopped_in_stage_2_resumes_exactly(samples_dir, tmp_path):
    from multiscale.io import resize_image
    from multiscale.jobs.checkpoint import read_style_checkpoint
    from multiscale.jobs.stylize import make_config, prepare_stylize, resume_stylize, run_plan

    cat = load_image(samples_dir.parent / "style" / "chelsea.png")
    content = resize_image(cat, width=64, height=43)
    style = resize_image(load_image(samples_dir / "gravel.png")[:128, :128], width=64, height=64)
    config = make_config(
        stages=2, max_iter=4, checkpoint_every=3, octaves=2, layers=LAYERS, content_layers=("conv1_1",),
        statistics=("gram", "mean"),
    )  # fmt: skip
    plan = prepare_stylize(content, style, config=config)
    whole = run_plan(plan)
    folder = tmp_path / "o.png.ckpt"
    first = run_plan(
        plan, callback=lambda p: p.stage == 2 and p.stage_iteration == 1, checkpoint=folder,
        output=tmp_path / "o.png",
    )  # fmt: skip
    assert first.report.stop_reason == "callback"
    assert [set(m) for m in read_style_checkpoint(folder).means] == [set(KEYS)] * 2
    resumed, _ = resume_stylize(folder)
    np.testing.assert_array_equal(resumed.image, whole.image)
    assert resumed.report.history == whole.report.history and resumed.report.loss == whole.report.loss
