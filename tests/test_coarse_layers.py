"""Coarse layers: deeper layers matched at the coarse octaves only, everywhere a statistic goes."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from multiscale_cli.main import cli

from multiscale.config import DescriptorConfig
from multiscale.errors import ConfigError, DescriptorError
from multiscale.measure.backbone import VGG16, load_weights
from multiscale.measure.gram import image_moments, min_image_side
from multiscale.objectives.terms import term_shares

from .test_sliced import _objectives, assert_tiled_equals_untiled
from .test_sliced_bank import _meta, _photo, _rewrite

#: conv1_1 at every octave, conv2_1 from octave 1 on.
COARSE = DescriptorConfig(octaves=3, layers=("conv1_1",), coarse_layers=("conv2_1",), coarse_from=1)


def test_each_octave_matches_its_layers_and_every_key_is_listed_once() -> None:
    assert COARSE.layers_at(0) == ("conv1_1",)
    assert COARSE.layers_at(1) == COARSE.layers_at(2) == ("conv1_1", "conv2_1")
    assert COARSE.all_layers == ("conv1_1", "conv2_1")
    assert COARSE.octave_layers() == [
        (0, "conv1_1"),
        (1, "conv1_1"),
        (1, "conv2_1"),
        (2, "conv1_1"),
        (2, "conv2_1"),
    ]
    plain = DescriptorConfig(octaves=3, layers=("conv1_1", "pool1"))
    assert plain.octave_layers() == [(k, n) for k in range(3) for n in ("conv1_1", "pool1")]


def test_a_stage_below_the_output_keeps_the_coarse_layers_at_the_same_scale() -> None:
    """A stage one halving below the output matches the output's octaves 1 and 2 as its 0 and 1:
    the coarse layers start at its octave 0."""
    stage = COARSE.shifted(1)
    assert stage.octaves == 2 and stage.coarse_from == 0
    assert stage.layers_at(0) == COARSE.layers_at(1)
    assert COARSE.shifted(2).layers_at(0) == COARSE.layers_at(2)


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"coarse_layers": ("conv9_9",)}, "coarse_layers", "unknown layer"),
        (
            {"layers": ("conv1_1", "conv2_1"), "coarse_layers": ("conv2_1",)},
            "coarse_layers",
            "already matched",
        ),
        ({"coarse_layers": ("conv2_1", "conv2_1")}, "coarse_layers", "listed twice"),
        ({"coarse_layers": ("conv2_1",), "coarse_from": 3}, "coarse_from", "does not exist with 3 octave"),
        ({"coarse_from": -1}, "coarse_from", "≥ 0"),
    ],
)
def test_impossible_coarse_layers_are_refused_naming_the_field(options, field, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        DescriptorConfig(**{"octaves": 3, "layers": ("conv1_1",), **options})
    assert info.value.field == field


def test_weights_sum_to_one_with_coarse_layers_and_are_unchanged_without() -> None:
    shares = term_shares(COARSE)
    assert set(shares) == set(COARSE.octave_layers())
    assert sum(shares.values()) == pytest.approx(1.0, rel=1e-12)
    # conv1_1 weighs 2 by default, conv2_1 1: at octave 1, conv1_1's share is twice conv2_1's
    assert shares[(1, "conv1_1")] == pytest.approx(2 * shares[(1, "conv2_1")], rel=1e-12)
    assert shares[(0, "conv1_1")] == shares[(1, "conv1_1")]
    plain = DescriptorConfig(octaves=3, layers=("conv1_1", "pool1"), octave_weights=(1.0, 0.5, 0.25))
    lw = dict(zip(plain.layers, plain.resolved_layer_weights, strict=True))
    norm = sum(plain.resolved_octave_weights) * sum(lw.values())
    for (k, layer), share in term_shares(plain).items():  # bit for bit the formula before coarse layers
        assert share == plain.resolved_octave_weights[k] * lw[layer] / norm


def test_sources_are_measured_with_each_octaves_layers_and_the_smallest_image_counts_them() -> None:
    source = np.random.default_rng(0).uniform(size=(40, 48, 3)).astype(np.float32)
    grams, means = image_moments(source, network=VGG16(load_weights()), config=COARSE)
    assert set(grams) == set(means) == set(COARSE.octave_layers())
    assert grams[(2, "conv2_1")].shape == (128, 128)
    assert min_image_side(COARSE) > min_image_side(DescriptorConfig(octaves=3, layers=("conv1_1",)))


@pytest.mark.parametrize(
    ("statistics", "padding"),
    [(("gram", "mean"), "reflect"), (("sliced",), "wrap"), (("gram", "sliced"), "reflect")],
)
def test_tiled_loss_and_gradient_with_coarse_layers_equal_the_untiled_ones(statistics, padding) -> None:
    config = DescriptorConfig(
        octaves=2, layers=("conv1_1",), coarse_layers=("pool1",), coarse_from=1, padding=padding,
        statistics=statistics,
    )  # fmt: skip
    whole, tiled, x, _ = _objectives(config)
    assert {n for p in tiled.plans for n in p.layers} == {"conv1_1", "pool1"}
    assert tiled.plans[0].layers == ("conv1_1",)
    assert_tiled_equals_untiled(whole, tiled, x, draws=(0,))


def test_the_coarse_layers_change_the_loss_only_where_they_are_matched() -> None:
    """Octave 0's loss is the same with or without coarse layers from octave 1; octave 1's is not."""
    plain = DescriptorConfig(octaves=2, layers=("conv1_1",))
    coarse = DescriptorConfig(octaves=2, layers=("conv1_1",), coarse_layers=("pool1",), coarse_from=1)
    (a, _, x, _), (b, _, _, _) = _objectives(plain), _objectives(coarse)
    ea, eb = a.evaluate(x), b.evaluate(x)
    shares_a, shares_b = term_shares(plain), term_shares(coarse)
    # the same octave-0 term, weighted by its share in each objective
    scale = shares_b[(0, "conv1_1")] / shares_a[(0, "conv1_1")]
    assert eb.octave_losses[0] == pytest.approx(ea.octave_losses[0] * scale, rel=1e-9)
    assert eb.octave_losses[1] != pytest.approx(ea.octave_losses[1] * scale, rel=1e-3)


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_a_descriptor_file_holds_its_coarse_layers_and_a_synthesis_from_it_uses_them(tmp_path) -> None:
    photos = [_photo(tmp_path / f"p{i}.png", seed=i) for i in range(2)]
    measure = ["--octaves", "2", "--layers", "conv1_1", "--coarse-layers", "pool1", "--coarse-from", "1"]
    coarse, plain = tmp_path / "c.grams.npz", tmp_path / "p.grams.npz"
    assert _invoke("grams", "build", *photos, "-o", coarse, *measure, "-q").exit_code == 0
    assert _invoke("grams", "build", *photos, "-o", plain, *measure[:4], "-q").exit_code == 0
    from multiscale.descriptors.descriptor import COARSE_VERSION, GramDescriptor

    info = _invoke("grams", "info", coarse)
    assert "coarse layers  pool1 (64 ch) from octave 1 on" in info.output, info.output
    loaded = GramDescriptor.load(coarse)
    assert loaded.version == COARSE_VERSION
    assert loaded.descriptor_config().layers_at(1) == ("conv1_1", "pool1")
    assert set(loaded.keys) == {(0, "conv1_1"), (1, "conv1_1"), (1, "pool1")}
    # a file without coarse layers is written as before: older versions read it
    old = GramDescriptor.load(plain)
    assert old.version < COARSE_VERSION and old.descriptor_config().coarse_layers == ()
    assert "coarse_layers" not in json.dumps(_read_meta(plain)["descriptor"])
    out = tmp_path / "t.png"
    result = _invoke("synthesize", "--grams", coarse, "-W", "32", "-H", "32", "-o", out, "--max-iter", "2")
    assert result.exit_code == 0, result.output
    ran = json.loads((tmp_path / "t.png.json").read_text())["config"]["descriptor"]
    assert ran["coarse_layers"] == ["pool1"] and ran["coarse_from"] == 1
    mixed = _invoke(
        "synthesize", "--grams", coarse, "--grams", plain, "-W", "32", "-H", "32", "-o", tmp_path / "m.png"
    )
    assert mixed.exit_code != 0 and "coarse_layers" in mixed.stderr and "Traceback" not in mixed.output


def _read_meta(path):
    with zipfile.ZipFile(path) as z:
        return json.loads(np.load(io.BytesIO(z.read("meta.npy"))).tobytes())


def test_a_file_of_an_older_format_that_claims_coarse_layers_is_refused(tmp_path) -> None:
    photos = [_photo(tmp_path / "p.png", seed=0)]
    coarse = tmp_path / "c.grams.npz"
    measure = ["--octaves", "2", "--layers", "conv1_1", "--coarse-layers", "pool1"]
    assert _invoke("grams", "build", *photos, "-o", coarse, *measure, "-q").exit_code == 0
    from multiscale.descriptors.descriptor import GramDescriptor

    def older(meta):
        meta["version"] = 3

    bad = _rewrite(coarse, tmp_path / "bad.grams.npz", lambda m: _meta(m, older))
    with pytest.raises(DescriptorError, match="coarse_layers is not in format version 3"):
        GramDescriptor.load(bad)


def test_a_run_with_coarse_layers_in_stages_resumes_bit_for_bit(tmp_path, stopped_run) -> None:
    from multiscale.jobs.synthesize import make_config, resume_synthesis, run_synthesis

    source = np.random.default_rng(3).uniform(size=(48, 48, 3)).astype(np.float32)
    config = make_config(
        octaves=3, layers=("conv1_1",), coarse_layers=("pool1",), coarse_from=2, width=48, height=48,
        statistics=("gram", "mean"), stages=2, max_iter=8, seed=1,
    )  # fmt: skip
    whole = run_synthesis(source, config=config)
    assert [s["stage"] for s in whole.report.stages] == [1, 2]
    stopped_run(source, config=config, stop_at=5)
    resumed, _ = resume_synthesis(tmp_path / "ck")
    np.testing.assert_array_equal(resumed.image, whole.image)
    assert resumed.report.loss == whole.report.loss


def test_stylize_matches_the_styles_coarse_layers() -> None:
    from multiscale.jobs.runner import load_network
    from multiscale.jobs.stylize import make_config, prepare_stylize, run_stylize, stage_targets

    rng = np.random.default_rng(4)
    content = rng.uniform(size=(40, 40, 3)).astype(np.float32)
    style = rng.uniform(size=(40, 40, 3)).astype(np.float32)
    config = make_config(
        width=40, octaves=2, layers=("conv1_1",), coarse_layers=("pool1",), coarse_from=1, max_iter=2, stages=1,
        statistics=("gram", "mean"),
    )  # fmt: skip
    (targets,) = stage_targets(
        prepare_stylize(content, [style], config=config), load_network(config.descriptor)[1]
    )
    assert set(targets.grams) == set(targets.means) == {(0, "conv1_1"), (1, "conv1_1"), (1, "pool1")}
    result = run_stylize(content, [style], config=config)
    assert np.isfinite(result.report.loss) and result.report.config.descriptor.coarse_layers == ("pool1",)
