"""Style transfer: the objective, colour handling, stages, the API and the CLI.

Sizes stay ≤ 64 px with 2 octaves and shallow layers so the whole file runs
in about a minute on two cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from multiscale_cli.main import cli
from PIL import Image

import multiscale.objectives.style
from multiscale._tf import tf
from multiscale.config import DescriptorConfig, StyleConfig
from multiscale.errors import ConfigError, ImageError, ImageTooSmallError, ResourceError
from multiscale.io import load_image, resize_image
from multiscale.jobs.runner import quantize
from multiscale.jobs.stylize import (
    auto_stages,
    estimate_memory,
    make_config,
    output_size,
    prepare_stylize,
    stage_sizes,
    stylize,
)
from multiscale.measure.backbone import VGG16, load_weights
from multiscale.measure.color import luminance, match_color, recombine, rgb_to_yiq, yiq_to_rgb
from multiscale.measure.gram import content_features, image_grams, min_image_side
from multiscale.objectives.style import StylizeObjective
from multiscale.objectives.texture import StyleObjective

#: 2 octaves, shallow style layers and a shallow content layer: fast, and
#: still every part of the pipeline.
SMALL = dict(octaves=2, layers=("conv1_1", "pool1", "pool2"), content_layers=("conv2_2",))
CLI_SMALL = ["--octaves", "2", "--layers", "conv1_1,pool1,pool2", "--content-layers", "conv2_2"]


@pytest.fixture(scope="module")
def content() -> np.ndarray:
    """Chelsea the cat (samples/style/chelsea.png) at 64×43, float32 RGB in [0, 1]."""
    image = load_image(Path(__file__).resolve().parent.parent / "samples" / "style" / "chelsea.png")
    return resize_image(image, width=64, height=43)


@pytest.fixture(scope="module")
def styles(samples_dir: Path) -> list[np.ndarray]:
    """64×64 crops of the Hubble field (colour) and of the gravel (grey)."""
    hubble = load_image(samples_dir / "hubble_field.png")[:128, :128]
    gravel = load_image(samples_dir / "gravel.png")[:128, :128]
    return [resize_image(im, width=64, height=64) for im in (hubble, gravel)]


# ---------------------------------------------------------------------------
# Sizes, config, colour: no network
# ---------------------------------------------------------------------------


def test_stage_sizes_double_up_to_the_output_and_auto_stages_start_at_most_512():
    assert stage_sizes(1365, 2048, 3) == [(341, 512), (682, 1024), (1365, 2048)]
    d = DescriptorConfig()
    assert auto_stages(256, 384, config=d) == 1
    assert auto_stages(1365, 2048, config=d) == 3
    assert auto_stages(3072, 4096, config=d) == 4
    # never so many that the first stage is too small for the octaves
    deep = DescriptorConfig(layers=("conv1_1", "pool3"))
    assert min_image_side(deep) > 75
    assert stage_sizes(300, 4096, auto_stages(300, 4096, config=deep))[0] == (150, 2048)


def test_output_size_follows_the_content_aspect_and_refuses_more_than_4096():
    assert output_size(300, 451, width=2048) == (1362, 2048)
    assert output_size(300, 451, width=None) == (300, 451)
    with pytest.raises(ConfigError, match="width: .*at most 4096"):
        output_size(451, 300, width=4096)
    with pytest.raises(ConfigError, match="width: the content is 5000 px wide"):
        output_size(100, 5000, width=None)


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="preserve_color"):
        StyleConfig(preserve_color="sepia")
    with pytest.raises(ConfigError, match="content_layers: unknown layer"):
        StyleConfig(content_layers=("conv9_9",))
    with pytest.raises(ConfigError, match="style_weights"):
        StyleConfig(style_weights=(-1.0, 2.0))
    with pytest.raises(ConfigError, match="nothing to optimise"):
        StyleConfig(content_weight=0, style_weight=0, tv_weight=0)
    with pytest.raises(ConfigError, match="content_target: must be one of"):
        StyleConfig(content_target="style")
    with pytest.raises(ConfigError, match="palette_weight"):
        StyleConfig(palette_weight=-1.0)
    # the palette term only where the colours are the styles'
    assert StyleConfig().uses_palette_term
    assert not StyleConfig(palette_weight=0).uses_palette_term
    assert not StyleConfig(preserve_color="luminance").uses_palette_term
    assert not StyleConfig(style_weight=0).uses_palette_term
    with pytest.raises(ConfigError, match="width"):
        StyleConfig(width=5000)
    with pytest.raises(ConfigError, match="source_scale"):
        StyleConfig(descriptor=DescriptorConfig(source_scale=0.5))
    with pytest.raises(ConfigError, match="is not an option of stylize"):
        make_config(source_scale=0.5)
    assert make_config(layers=["conv1_1"], style_weights=[1, 2]).descriptor.layers == ("conv1_1",)


def test_yiq_round_trip_and_recombine_keeps_chroma():
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0.2, 0.8, size=(8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(yiq_to_rgb(rgb_to_yiq(rgb)), rgb, atol=1e-6)
    y = np.clip(luminance(rgb) + 0.05, 0, 1)
    out = recombine(y, rgb)
    np.testing.assert_allclose(rgb_to_yiq(out)[..., 1:], rgb_to_yiq(rgb)[..., 1:], atol=1e-5)
    np.testing.assert_allclose(luminance(out), y, atol=1e-5)


def test_match_color_gives_the_reference_mean_and_covariance():
    rng = np.random.default_rng(1)
    image = rng.uniform(0.3, 0.6, size=(40, 40, 3)) * np.array([1.0, 0.5, 0.8]) + 0.1
    reference = rng.normal([0.5, 0.4, 0.3], [0.05, 0.08, 0.03], size=(30, 30, 3)).clip(0, 1)
    out = match_color(image, reference).reshape(-1, 3).astype(np.float64)
    ref = reference.reshape(-1, 3)
    np.testing.assert_allclose(out.mean(axis=0), ref.mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(np.cov(out, rowvar=False), np.cov(ref, rowvar=False), atol=2e-4)
    # a grey image has a rank-one covariance: mapped without NaN
    grey = np.repeat(image[..., :1], 3, axis=-1)
    assert np.isfinite(match_color(grey, reference)).all()


def test_match_palette_takes_the_blend_of_the_references_colour_distributions():
    from multiscale.measure.color import match_palette

    rng = np.random.default_rng(2)
    image = rng.uniform(0.3, 0.6, size=(40, 40, 3))
    a = rng.normal([0.2, 0.3, 0.4], 0.03, size=(30, 30, 3)).clip(0, 1)
    b = rng.normal([0.7, 0.5, 0.3], 0.05, size=(20, 20, 3)).clip(0, 1)
    np.testing.assert_allclose(match_palette(image, [a]), match_color(image, a), atol=1e-6)
    out = match_palette(image, [a, b], [0.25, 0.75]).reshape(-1, 3).astype(np.float64)
    # the mixture of a (¼) and b (¾): its mean, and its covariance with the spread of the two means
    ma, mb = a.reshape(-1, 3).mean(axis=0), b.reshape(-1, 3).mean(axis=0)
    mean = 0.25 * ma + 0.75 * mb
    cov = (
        0.25 * np.cov(a.reshape(-1, 3), rowvar=False) + 0.75 * np.cov(b.reshape(-1, 3), rowvar=False)
        + 0.25 * 0.75 * np.outer(ma - mb, ma - mb)
    )  # fmt: skip
    np.testing.assert_allclose(out.mean(axis=0), mean, atol=1e-3)
    np.testing.assert_allclose(np.cov(out, rowvar=False), cov, atol=2e-3)


# ---------------------------------------------------------------------------
# The objective
# ---------------------------------------------------------------------------

GRAD_CFG = DescriptorConfig(octaves=2, layers=("conv1_1", "pool1", "conv2_1"))


@pytest.mark.parametrize("channels", [3, 1])
def test_gradient_of_the_combined_objective_matches_central_differences_in_float64(channels):
    rng = np.random.default_rng(0)
    size = 20
    net64 = VGG16(load_weights(), dtype=tf.float64)
    net32 = VGG16(load_weights())
    style = rng.uniform(size=(size, size, 3)).astype(np.float32)
    photo = rng.uniform(size=(size, size, 3)).astype(np.float32)
    obj = StylizeObjective(
        style_targets=image_grams(style, network=net32, config=GRAD_CFG),
        content_targets=content_features(photo, network=net64, layers=("conv2_1",)),
        network=net64, config=GRAD_CFG, content_weight=1.0, style_weight=3.0, tv_weight=20.0,
        height=size, width=size, channels=channels,
    )  # fmt: skip
    x = rng.uniform(0.2, 0.8, size=size * size * channels)
    loss, grad = obj(x)
    assert grad.dtype == np.float64 and grad.shape == x.shape
    assert all(v > 0 for v in obj.last.terms.values())
    h = 1e-5
    for _ in range(3):
        v = rng.normal(size=x.shape)
        v /= np.linalg.norm(v)
        fd = (obj(x + h * v)[0] - obj(x - h * v)[0]) / (2 * h)
        assert grad @ v == pytest.approx(fd, rel=1e-6, abs=1e-10 * abs(loss))
    for i in rng.choice(x.size, size=2, replace=False):
        e = np.zeros_like(x)
        e[i] = h
        fd = (obj(x + e)[0] - obj(x - e)[0]) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_style_term_is_the_synthesis_style_loss_and_content_is_zero_at_the_content(content, styles):
    net = VGG16(load_weights())
    cfg = DescriptorConfig(octaves=2, layers=SMALL["layers"])
    targets = image_grams(styles[0], network=net, config=cfg)
    h, w = content.shape[:2]
    obj = StylizeObjective(
        style_targets=targets, content_targets=content_features(content, network=net, layers=("conv2_2",)),
        network=net, config=cfg, content_weight=2.0, style_weight=5.0, tv_weight=7.0, height=h, width=w,
    )  # fmt: skip
    scored = obj.evaluate(content)
    total, terms, per_octave = scored.total, scored.terms, scored.octave_losses
    ref = StyleObjective(targets=targets, network=net, config=cfg, height=h, width=w).evaluate(content)
    reference, ref_octaves = ref.total, ref.octave_losses
    assert terms["style"] == pytest.approx(reference, rel=1e-5)
    np.testing.assert_allclose(per_octave, ref_octaves, rtol=1e-5)
    assert terms["content"] == pytest.approx(0.0, abs=1e-9)
    assert total == pytest.approx(5.0 * terms["style"] + 7.0 * terms["tv"], rel=1e-5)


# ---------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------


def test_content_loss_alone_pulls_noise_toward_the_content(content, styles):
    """conv1_1 keeps nearly all pixel information, so its content loss alone restores the pixels.

    (Deeper layers restore the layout but leave noise that their ReLUs do not
    see: measured at this size, conv2_2 cuts the pixel error by 1.2×, conv1_1
    by 6× in 60 iterations.)
    """
    options = {**SMALL, "content_layers": ("conv1_1",)}
    res = stylize(
        content, styles[0], init="noise", content_target="content", style_weight=0, tv_weight=0, max_iter=60,
        seed=3, **options,
    )  # fmt: skip
    mean = content.reshape(-1, 3).mean(axis=0)
    start = np.clip(mean + np.random.default_rng(3).normal(0, 0.1, content.shape), 0, 1)
    before = np.sqrt(np.mean((start - content) ** 2))
    after = np.sqrt(np.mean((res.image - content) ** 2))
    assert after < before / 4, (before, after)
    assert res.report.history[-1] < res.report.history[0] / 100


def test_zero_style_weight_with_content_init_leaves_the_content_unchanged(content, styles):
    res = stylize(
        content, styles[0], style_weight=0, tv_weight=0, max_iter=10, init="content", content_target="content",
        **SMALL,
    )  # fmt: skip
    np.testing.assert_array_equal(res.image, quantize(content, bit_depth=8))
    assert res.report.iterations == 0 and res.report.stop_reason == "converged"
    assert res.report.loss < 1e-3  # the content loss of 8-bit rounding (measured 4e-5)


def test_preserve_color_luminance_keeps_the_content_chroma(content, styles):
    res = stylize(content, styles[0], preserve_color="luminance", max_iter=15, **SMALL)
    assert res.report.palette_loss is None  # the colours are the content's: no palette term
    chroma_out = rgb_to_yiq(res.image)[..., 1:]
    chroma_in = rgb_to_yiq(content)[..., 1:]
    err = np.abs(chroma_out - chroma_in)
    # 8-bit quantisation moves I and Q by at most ~0.003; clipping to the
    # RGB cube moves a few saturated pixels more.
    assert err.mean() < 0.004 and np.quantile(err, 0.99) < 0.02, (err.mean(), np.quantile(err, 0.99))
    # while the luminance did change
    assert np.abs(luminance(res.image) - luminance(content)).mean() > 0.01


def test_the_palette_term_keeps_a_grey_styles_output_grey(content, styles):
    """Started from the coloured cat, with the content term asking for its colours: the palette
    term takes out the chroma the grey gravel does not have, and leaves the lightness alone."""
    grey = styles[1]
    assert np.abs(rgb_to_yiq(grey)[..., 1:]).max() < 1e-6
    options = dict(SMALL, init="content", content_target="content", max_iter=15)
    with_term = stylize(content, grey, **options)
    without = stylize(content, grey, palette_weight=0, **options)

    def chroma(image: np.ndarray) -> float:
        return float(np.sqrt(np.mean(rgb_to_yiq(image)[..., 1:] ** 2)))

    assert chroma(with_term.image) < 0.2 * chroma(without.image)
    assert np.abs(luminance(with_term.image) - luminance(without.image)).mean() < 0.05
    assert with_term.report.palette_loss is not None and with_term.report.palette_loss > 0
    assert without.report.palette_loss is None
    assert with_term.report.loss > with_term.report.style_loss  # the term is in the total


def test_style_weights_1_0_give_the_first_style_alone(content, styles):
    both = stylize(content, styles, style_weights=(1.0, 0.0), max_iter=6, **SMALL)
    alone = stylize(content, styles[0], max_iter=6, **SMALL)
    np.testing.assert_array_equal(both.image, alone.image)
    assert both.report.style_blend == [1.0, 0.0]


def test_two_stages_upsample_and_refine(content, styles):
    seen = []
    res = stylize(content, styles[1], stages=2, max_iter=5, time_limit=1000, callback=seen.append, **SMALL)
    r = res.report
    assert [(s.height, s.width) for s in r.stages] == [(22, 32), (43, 64)]
    # the time limit is shared out by pixel count (and nearly all of it is left)
    assert r.stages[0].time_limit_s == pytest.approx(1000 * 704 / (704 + 2752), rel=0.01)
    assert res.image.shape == (43, 64, 3)
    assert r.loss is not None and r.iterations == sum(s.iterations for s in r.stages)
    assert {p.stage for p in seen} == {1, 2} and seen[-1].max_iter == 10
    assert [p.iteration for p in seen] == sorted(p.iteration for p in seen)
    assert seen[0].image.shape == (22, 32, 3) and seen[-1].image.shape == (43, 64, 3)
    assert json.dumps(r.to_dict(), allow_nan=False)
    # the work done moves by pixels too: stage 1's iterations are 704 / (704 + 2752) of it
    assert [p.work for p in seen] == sorted(p.work for p in seen)
    end_of_first = [p.work for p in seen if p.stage == 1 and p.stage_iteration == r.stages[0].iterations]
    assert end_of_first == [pytest.approx(704 / (704 + 2752) * r.stages[0].iterations / 5)]


def test_each_stage_records_the_precision_it_ran_in(content, styles):
    bf16 = stylize(content, styles[0], stages=2, max_iter=2, precision="bfloat16", **SMALL)
    assert [s.precision["precision"] for s in bf16.report.stages] == ["bfloat16", "bfloat16"]
    f32 = stylize(content, styles[0], max_iter=2, **SMALL)
    assert [s.precision for s in f32.report.stages] == [None]


def test_auto_precision_is_chosen_once_and_the_checkpoint_keeps_the_choice(
    content, styles, tmp_path, monkeypatch
):
    import multiscale.jobs.precision
    from multiscale.jobs.checkpoint import read_style_checkpoint
    from multiscale.jobs.precision import PrecisionChoice
    from multiscale.jobs.stylize import run_plan

    asked = []

    def choose(*, config, height, width, requested, weights):
        asked.append((height, width, requested))
        return PrecisionChoice(
            precision="bfloat16",
            requested="auto",
            reason="bfloat16: measured",
            cpu_flags=(),
            native_bf16=True,
        )

    monkeypatch.setattr(multiscale.jobs.precision, "choose_precision", choose)
    plan = prepare_stylize(
        content, styles[0], config=make_config(stages=2, max_iter=2, precision="auto", **SMALL)
    )
    result = run_plan(
        plan, callback=lambda p: p.stage == 2, checkpoint=tmp_path / "ck", output=tmp_path / "o.png"
    )
    assert asked == [(43, 64, "auto")]  # once, at the last stage's size
    assert [s.precision["reason"] for s in result.report.stages] == ["bfloat16: measured"] * 2
    assert result.report.config.precision == "auto"
    # a resume runs in what was chosen, without measuring again
    assert read_style_checkpoint(tmp_path / "ck").config.precision == "bfloat16"


def test_a_bfloat16_stylize_scores_its_image_in_float32(content, styles):
    from multiscale.jobs.stylize import build_objective

    bf16 = stylize(content, styles[0], max_iter=3, precision="bfloat16", **SMALL)
    assert bf16.report.stages[0].precision["precision"] == "bfloat16"
    # the targets and the score are float32 measurements: the float32 objective's value
    plan = prepare_stylize(content, styles[0], config=make_config(max_iter=3, **SMALL))
    weights = load_weights()
    network = VGG16(weights, pooling=plan.config.descriptor.pooling, padding=plan.config.descriptor.padding)
    total = build_objective(plan, network, 43, 64).evaluate(bf16.image).total
    assert bf16.report.loss == pytest.approx(total, rel=1e-5)


@pytest.mark.parametrize("fault", ["ctrl_c", "nan"])
def test_a_fault_in_a_later_stage_keeps_the_best_image_at_the_output_size(
    content, styles, monkeypatch, fault
):
    calls = {"n": 0}
    original = StylizeObjective.__call__

    def faulty(self, x):
        calls["n"] += 1
        if self.shape[1] == 43 and calls["n"] > 9:
            if fault == "ctrl_c":
                raise KeyboardInterrupt
            return float("nan"), np.zeros_like(x)
        return original(self, x)

    monkeypatch.setattr(StylizeObjective, "__call__", faulty)
    res = stylize(content, styles[0], stages=2, max_iter=4, **SMALL)
    expected = {"ctrl_c": "interrupted", "nan": "non_finite"}[fault]
    assert res.report.stop_reason == expected and res.report.stages[-1].stop_reason == expected
    assert res.image.shape == (43, 64, 3) and np.isfinite(res.image).all()
    assert res.report.interrupted == (fault == "ctrl_c")
    assert json.dumps(res.report.to_dict(), allow_nan=False)


def test_a_run_that_cannot_fit_in_memory_is_refused_before_it_starts(content, styles):
    config = make_config(width=2048, max_memory=2**30)
    with pytest.raises(ResourceError, match=r"a 2048×1376 stylize run needs about .* GiB .*smaller --width"):
        prepare_stylize(content, styles[0], config=config)
    assert (
        estimate_memory(1376, 2048, config=config).total
        > 2**30
        > estimate_memory(64, 96, config=config).total
    )
    plan = prepare_stylize(content, styles[0], config=make_config(width=2048, max_memory=2**40))
    assert plan.stages == 3


def test_bad_inputs_raise_clear_errors(content, styles, tmp_path):
    with pytest.raises(ImageError, match="missing.png: no such file"):
        stylize(tmp_path / "missing.png", styles[0], **SMALL)
    with pytest.raises(ConfigError, match="style_weights: needs one weight per style image \\(2\\), got 3"):
        stylize(content, styles, style_weights=(1, 1, 1), **SMALL)
    with pytest.raises(ImageTooSmallError, match="stage 1 of 3"):
        stylize(content, styles[0], stages=3, **SMALL)
    with pytest.raises(ImageTooSmallError, match="style #1>: resized to"):
        stylize(content, styles[0], style_scale=0.2, **SMALL)
    with pytest.raises(ImageError, match="nope.png"):
        stylize(content, styles[0], init=tmp_path / "nope.png", **SMALL)


@pytest.mark.parametrize("preserve_color", ["none", "luminance", "histogram"])
def test_the_palette_content_target_is_the_palette_start_and_the_content_under_preserve_color(
    content, styles, preserve_color
):
    """``content_target="palette"``: the content term's image is the content recoloured to the
    styles' palette, the very image the ``palette`` start begins from; with ``preserve_color``
    (the styles already take the content's colours, or only luminance is transferred) it is the
    content as it is."""
    from multiscale.jobs.stylize import _start_image, stage_targets
    from multiscale.measure.color import match_palette

    net = VGG16(load_weights())
    options = dict(SMALL, preserve_color=preserve_color, stages=2)
    recoloured = prepare_stylize(content, styles, config=make_config(content_target="palette", **options))
    plain = prepare_stylize(content, styles, config=make_config(content_target="content", **options))
    for (h, w), target, base in zip(
        recoloured.stage_sizes, stage_targets(recoloured, net), stage_targets(plain, net), strict=True
    ):
        np.testing.assert_array_equal(base.content, resize_image(content, width=w, height=h))
        if preserve_color == "none":
            np.testing.assert_array_equal(target.content, _start_image(recoloured, h, w))
            wanted = match_palette(content, styles).reshape(-1, 3).mean(axis=0)
            np.testing.assert_allclose(target.content.reshape(-1, 3).mean(axis=0), wanted, atol=0.01)
            assert np.abs(target.content - base.content).mean() > 0.05  # the palette moved it
        else:
            np.testing.assert_array_equal(target.content, base.content)


def test_histogram_mode_gives_the_styles_the_content_colours(content, styles):
    plan = prepare_stylize(content, styles[0], config=make_config(preserve_color="histogram", **SMALL))
    np.testing.assert_allclose(
        plan.styles[0].reshape(-1, 3).mean(axis=0), content.reshape(-1, 3).mean(axis=0), atol=0.03
    )


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(cli, ["stylize", *args])


def clean_error(result: Result, *fragments: str) -> str:
    """Assert a non-zero exit with one ``Error:`` line holding every fragment, no traceback."""
    assert "Traceback" not in result.output, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def files(tmp_path: Path, content, styles) -> dict[str, Path]:
    paths = {
        "content": tmp_path / "cat.png",
        "style": tmp_path / "hubble.png",
        "style2": tmp_path / "grav.png",
    }
    for key, image in (("content", content), ("style", styles[0]), ("style2", styles[1])):
        Image.fromarray((image * 255).round().astype(np.uint8)).save(paths[key])
    paths["text"] = tmp_path / "notes.png"
    paths["text"].write_text("not an image\n")
    paths["out"] = tmp_path / "out.png"
    return paths


def test_cli_refuses_bad_inputs_with_one_line(files):
    f = files
    base = ["-o", str(f["out"]), *CLI_SMALL, "--max-iter", "2"]
    line = clean_error(run_cli("-c", str(f["content"].with_name("gone.jpg")), "-s", str(f["style"]), *base),
                       "gone.jpg", "no such file")  # fmt: skip
    assert line
    clean_error(
        run_cli("-c", str(f["content"]), "-s", str(f["text"]), *base), "notes.png", "not a recognised image"
    )
    clean_error(
        run_cli("-c", str(f["content"]), "-s", str(f["style"]), "-s", str(f["style2"]),
                "--style-weights", "0.7,0.2,0.1", *base),
        "--style-weights", "(2), got 3",
    )  # fmt: skip
    clean_error(run_cli("-c", str(f["content"]), "-s", str(f["style"]), "--preserve-color", "sepia", *base),
                "--preserve-color", "sepia")  # fmt: skip
    f["out"].write_bytes(b"keep me")
    clean_error(run_cli("-c", str(f["content"]), "-s", str(f["style"]), *base), "out.png", "--overwrite")
    assert f["out"].read_bytes() == b"keep me"
    assert not f["out"].with_name("out.png.json").exists()


def test_cli_end_to_end_writes_the_image_and_its_json(files):
    f = files
    result = run_cli(
        "-c", str(f["content"]), "-s", str(f["style"]), "-s", str(f["style2"]), "--style-weights", "3,1",
        "--preserve-color", "luminance", "-W", "48", "--max-iter", "3", "--stages", "2", "--save-every", "2",
        "-q", "-o", str(f["out"]), *CLI_SMALL,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    image = load_image(f["out"])
    assert image.shape == (32, 48, 3)
    # intermediates count iterations over all stages and have their stage's size
    assert load_image(f["out"].with_name("out.iter00002.png")).shape == (16, 24, 3)
    assert load_image(f["out"].with_name("out.iter00004.png")).shape == (32, 48, 3)
    meta = json.loads(f["out"].with_name("out.png.json").read_text())
    assert meta["config"]["preserve_color"] == "luminance" and meta["config"]["style_weights"] == [3.0, 1.0]
    assert meta["style_blend"] == [0.75, 0.25] and len(meta["weights_sha256"]) == 64
    assert meta["stop_reason"] == "max_iter" and meta["loss"] > 0 and "tensorflow" in meta["versions"]
    assert meta["content"]["sha256"] and len(meta["styles"]) == 2 and len(meta["stages"]) == 2


def test_cli_ctrl_c_writes_the_best_image_and_exits_130(files, monkeypatch):
    calls = {"n": 0}
    original = multiscale.objectives.style.StylizeObjective.__call__

    def interrupted(self, x):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, x)

    monkeypatch.setattr(multiscale.objectives.style.StylizeObjective, "__call__", interrupted)
    f = files
    result = run_cli("-c", str(f["content"]), "-s", str(f["style"]), "-o", str(f["out"]), *CLI_SMALL)
    assert result.exit_code == 130, result.output
    assert "best image so far written to" in result.output and "Traceback" not in result.output
    assert f["out"].exists()
    assert json.loads(f["out"].with_name("out.png.json").read_text())["stop_reason"] == "interrupted"
