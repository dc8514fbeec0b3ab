"""A synthesis in stages: coarse to fine, each stage matching the output's octaves it holds."""

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner
from multiscale_cli.main import cli

from multiscale.config import SynthesisConfig
from multiscale.errors import ConfigError
from multiscale.io import load_image, save_image
from multiscale.jobs.runner import StageProgress, share_of_rest, work_done, work_shares
from multiscale.jobs.starts import upsample
from multiscale.jobs.synthesize import (
    Stage,
    auto_stages,
    make_config,
    plan_stages,
    resume_synthesis,
    run_synthesis,
    stage_config,
    stage_targets,
)
from multiscale.layers import shift_octaves
from multiscale.measure.sliced import QuantileBank, SlicedTargets, bank_levels

# three octaves, so that a 64² output can run in up to three stages (16², 32², 64²)
SMALL = dict(octaves=3, layers=("conv1_1", "pool1"), width=64, height=64, spectrum_weight=0.0)


@pytest.fixture(scope="module")
def source(samples_dir):
    return load_image(samples_dir / "gravel.png")[:96, :96].copy()


# ---------------------------------------------------------------- the plan


@pytest.mark.parametrize(
    "side, expected", [(128, 1), (129, 2), (256, 2), (300, 3), (512, 3), (1024, 4), (2048, 4), (8192, 4)]
)
def test_auto_stages_start_at_most_128_px_and_never_exceed_the_octaves(side, expected):
    assert auto_stages(side, side, octaves=4) == expected


def test_each_stage_doubles_the_size_keeps_one_octave_less_and_runs_half_the_iterations():
    config = make_config(width=1024, height=768, max_iter=200, octaves=4, stages=3)
    stages = plan_stages(config, height=768, width=1024)
    assert [(s.width, s.height) for s in stages] == [(256, 192), (512, 384), (1024, 768)]
    assert [s.shift for s in stages] == [2, 1, 0]
    assert [s.max_iter for s in stages] == [200, 100, 50]
    assert [stage_config(config, s).descriptor.octaves for s in stages] == [2, 3, 4]
    assert stage_config(config, stages[-1]).max_iter == 50


def test_the_last_of_several_stages_weighs_the_spectrum_constraint_by_its_share():
    config = make_config(width=1024, height=768, stages=3, spectrum_weight=2.0, spectrum_last_stage=0.25)
    stages = plan_stages(config, height=768, width=1024)
    assert [stage_config(config, s).spectrum_weight for s in stages] == [2.0, 2.0, 0.5]
    alone = make_config(width=128, height=128, stages=1, spectrum_weight=2.0, spectrum_last_stage=0.25)
    assert stage_config(alone, plan_stages(alone, height=128, width=128)[0]).spectrum_weight == 2.0
    unresolved = make_config(width=1024, height=768, stages=3)  # None: resolved from the sources later
    assert stage_config(unresolved, stages[-1]).spectrum_weight is None
    with pytest.raises(ConfigError, match="spectrum_last_stage"):
        make_config(spectrum_last_stage=-1.0)


def test_the_spectrum_taper_splits_the_last_stage_in_two_parts_of_its_iterations():
    config = make_config(width=256, height=256, octaves=4, spectrum_taper=0.3)
    stages = plan_stages(config, height=256, width=256)
    assert [(s.width, s.max_iter, s.border_taper, s.continues) for s in stages] == [
        (128, 350, False, False),
        (256, 52, True, False),
        (256, 123, False, True),
    ]
    assert [s.index for s in stages] == [0, 1, 2] and [s.shift for s in stages] == [1, 0, 0]
    # both parts weigh the constraint as the last stage does
    weighed = make_config(width=256, height=256, octaves=4, spectrum_taper=0.3, spectrum_weight=2.0)
    assert [stage_config(weighed, s).spectrum_weight for s in stages] == [2.0, 0.5, 0.5]


@pytest.mark.parametrize(
    "side, options",
    [
        (256, {"spectrum_taper": 0.0}),
        (256, {"spectrum_taper": 0.3, "stages": 1}),
        (256, {"spectrum_taper": 0.3, "spectrum_weight": 0.0}),
        (256, {"spectrum_taper": 0.3, "padding": "wrap"}),  # a tileable output has no border
        # the stage detail gives the last stage's start a finest octave inside the image
        (256, {"spectrum_taper": 0.3, "stage_detail": True}),
        (1024, {"spectrum_taper": 0.3}),  # four stages: the detail's by default
    ],
)
def test_the_last_stage_runs_in_one_part_without_a_border_to_taper_or_an_empty_finest_octave(side, options):
    config = make_config(width=side, height=side, octaves=4, **options)
    stages = plan_stages(config, height=side, width=side)
    assert not any(s.border_taper or s.continues for s in stages)
    assert stages[-1].width == side and len({s.width for s in stages}) == len(stages)


def test_an_animation_asking_for_the_stage_detail_splits_its_last_stage_as_its_resume_will():
    # frames take no detail, whatever is asked: the resolved False is what a checkpoint records
    asked = make_config(width=256, height=256, octaves=4, spectrum_taper=0.3, frames=2, stage_detail=True)
    resolved = dataclasses.replace(asked, stage_detail=False)
    planned = [plan_stages(c, height=256, width=256) for c in (asked, resolved)]
    assert planned[0] == planned[1] and planned[0][-1].continues


def test_without_the_stage_detail_a_four_stage_run_splits_its_last_stage_too():
    config = make_config(width=1024, height=1024, octaves=4, spectrum_taper=0.3, stage_detail=False)
    stages = plan_stages(config, height=1024, width=1024)
    assert [(s.width, s.max_iter, s.border_taper) for s in stages[-2:]] == [
        (1024, 13, True),
        (1024, 31, False),
    ]


@pytest.mark.parametrize("share", [-0.1, 1.0, float("nan")])
def test_the_spectrum_taper_is_a_share_below_one(share):
    with pytest.raises(ConfigError, match="spectrum_taper"):
        make_config(spectrum_taper=share)


def test_stages_are_at_most_the_octaves_and_the_api_and_cli_refuse_more(source, tmp_path):
    with pytest.raises(ConfigError, match="stages"):
        SynthesisConfig.with_options(octaves=3, stages=4)
    result = CliRunner().invoke(
        cli,
        ["synthesize", "-s", str(save_image(tmp_path / "s.png", source)), "--octaves", "2", "--stages", "3"],
    )
    assert result.exit_code != 0 and "stages" in result.output and "Traceback" not in result.output


def test_octave_weights_follow_the_octaves_a_stage_keeps():
    config = make_config(octaves=3, octave_weights=(1.0, 2.0, 3.0), width=64, height=64)
    coarse = stage_config(config, Stage(index=0, shift=2, height=16, width=16, max_iter=10))
    assert coarse.descriptor.octaves == 1 and coarse.descriptor.octave_weights == (3.0,)


# ---------------------------------------------------------------- renumbered targets


def test_shift_octaves_keeps_octaves_from_the_shift_on_renumbered_from_zero():
    mapping = {(k, layer): f"{k}{layer}" for k in range(3) for layer in ("a", "b")}
    assert shift_octaves(mapping, 1) == {(0, "a"): "1a", (0, "b"): "1b", (1, "a"): "2a", (1, "b"): "2b"}
    assert shift_octaves(mapping, 0) == mapping


def test_shifted_sliced_targets_draw_what_the_octaves_they_came_from_draw():
    rng = np.random.default_rng(0)
    feats = {(k, "conv1_1"): [rng.random((50, 4)).astype(np.float32)] for k in range(3)}
    targets = SlicedTargets(features=feats, weights=[1.0])
    whole = targets.draw(seed=5, draw=2, counts={key: 20 for key in feats})
    part = targets.shifted(1).draw(seed=5, draw=2, counts={(0, "conv1_1"): 20, (1, "conv1_1"): 20})
    for k in (0, 1):
        (d_part, t_part), (d_whole, t_whole) = part[(k, "conv1_1")], whole[(k + 1, "conv1_1")]
        np.testing.assert_array_equal(d_part, d_whole)
        np.testing.assert_array_equal(t_part.array(), t_whole.array())


def test_a_shifted_quantile_bank_draws_what_the_octaves_it_came_from_draw():
    rng = np.random.default_rng(1)
    levels = bank_levels(8)
    quantiles = {(k, "pool1"): np.sort(rng.random((3, 8, 4)), axis=1).astype(np.float32) for k in range(3)}
    bank = QuantileBank(quantiles=quantiles, levels=levels)
    whole = bank.draw(seed=1, draw=0, counts={key: 10 for key in quantiles})
    part = bank.shifted(2).draw(seed=1, draw=0, counts={(0, "pool1"): 10})
    assert list(part) == [(0, "pool1")]
    (d_part, t_part), (d_whole, t_whole) = part[(0, "pool1")], whole[(2, "pool1")]
    np.testing.assert_array_equal(d_part, d_whole)
    np.testing.assert_array_equal(t_part.array(), t_whole.array())


@pytest.mark.parametrize("statistics", [("gram",), ("sliced",)])
def test_a_stage_scores_an_image_as_the_output_objective_scores_the_octaves_it_holds(source, statistics):
    """Octave j of the pyramid of the output's octave t is the output's octave j + t, so a stage
    ``t`` halvings down, given that octave, reports the output objective's octaves t, t+1, …
    (renormalised: each objective's octave shares sum to its total)."""
    from multiscale.jobs.runner import load_network
    from multiscale.jobs.synthesize import make_objective, prepare_targets
    from multiscale.measure.pyramid import gaussian_pyramid

    config = make_config(statistics=statistics, **SMALL)
    network = load_network(config.descriptor)[1]
    targets = prepare_targets(source, config=config, network=network)
    image = np.random.default_rng(2).random((64, 64, 3)).astype(np.float32)
    full = make_objective(
        targets.grams, network=network, config=config.descriptor, height=64, width=64, tile=None,
        sliced=targets.sliced, seed=0,
    ).evaluate(image)  # fmt: skip
    octave1 = gaussian_pyramid(image[None], octaves=2, padding="reflect")[1][0].numpy()
    stage = Stage(index=0, shift=1, height=32, width=32, max_iter=1)
    part = stage_targets(targets, stage)
    coarse = make_objective(
        part.grams, network=network, config=stage_config(config, stage).descriptor, height=32, width=32,
        tile=None, sliced=part.sliced, seed=0,
    ).evaluate(octave1)  # fmt: skip
    np.testing.assert_allclose(coarse.octave_losses * 2, full.octave_losses[1:] * 3, rtol=2e-4)


# ---------------------------------------------------------------- upsampling


def test_upsampling_doubles_the_size_keeps_the_range_and_the_mean():
    rng = np.random.default_rng(3)
    small = rng.random((8, 10, 3))
    big = upsample(small, height=16, width=20, wrap=False)
    assert big.shape == (16, 20, 3) and big.min() >= 0 and big.max() <= 1
    assert big.mean() == pytest.approx(small.mean(), abs=0.02)
    frames = upsample(np.stack([small, small[::-1]]), height=16, width=20, wrap=False)
    assert frames.shape == (2, 16, 20, 3)
    np.testing.assert_allclose(frames[0], big)


def test_a_tileable_stage_upsamples_periodically():
    """Rolling a periodic image by one pixel rolls its upsampled version by two: no seam at the border."""
    rng = np.random.default_rng(4)
    small = rng.random((8, 8, 3)) * 0.5 + 0.25
    big = upsample(small, height=16, width=16, wrap=True)
    rolled = upsample(np.roll(small, 1, axis=1), height=16, width=16, wrap=True)
    np.testing.assert_allclose(rolled, np.roll(big, 2, axis=1), atol=1e-12)


# ---------------------------------------------------------------- runs


def test_a_run_in_stages_reports_every_stage_and_its_progress_counts_over_all(source):
    seen = []
    config = make_config(stages=3, max_iter=8, **SMALL)
    result = run_synthesis(source, config=config, callback=seen.append)
    report = result.report
    assert result.image.shape == (64, 64, 3)
    assert [(s["width"], s["octaves"]) for s in report.stages] == [(16, 1), (32, 2), (64, 3)]
    assert [s["iterations"] for s in report.stages] == [8, 4, 2]
    assert 0 < sum(s["elapsed_s"] for s in report.stages) <= seen[-1].elapsed_s
    assert report.iterations == 14 and len(report.history) == 14 and len(report.octave_losses) == 3
    assert all(isinstance(p, StageProgress) and p.max_iter == 14 for p in seen)
    assert [p.iteration for p in seen] == list(range(1, 15))
    assert [p.stage for p in seen] == [1] * 8 + [2] * 4 + [3] * 2
    assert (seen[0].width, seen[-1].width) == (16, 64)
    # the work done weighs each iteration by its stage's pixels: 8 × 16², 4 × 32², 2 × 64² are 1 : 2 : 4
    assert [p.work for p in seen if p.stage_iteration == 1] == pytest.approx(
        [1 / 56, 1 / 7 + 2 / 28, 3 / 7 + 4 / 14]
    )
    assert [seen[7].work, seen[11].work, seen[13].work] == pytest.approx([1 / 7, 3 / 7, 1.0])
    assert all(
        a.elapsed_s <= b.elapsed_s for a, b in zip(seen, seen[1:], strict=False)
    )  # since the run began
    saved = json.loads(json.dumps(report.to_dict(), default=str))
    assert saved["stages"][0]["stage"] == 1 and saved["config"]["stages"] == 3


def test_a_run_stopped_in_an_early_stage_returns_its_image_at_the_output_size(source, tmp_path, stopped_run):
    config = make_config(stages=2, max_iter=6, **SMALL)
    result = stopped_run(source, config=config, stop_at=3)
    assert result.report.stop_reason == "callback" and result.report.loss is None
    assert result.image.shape == (64, 64, 3) and "stage 1 of 2" in result.report.message
    assert json.loads((tmp_path / "ck" / "checkpoint.json").read_text())["stage"] == 0


@pytest.mark.parametrize("stop_at", [3, 8])  # in the first stage; in the last
def test_a_run_in_stages_resumes_bit_for_bit(source, tmp_path, stop_at, stopped_run):
    config = make_config(stages=2, max_iter=6, seed=2, statistics=("sliced",), **SMALL)
    whole = run_synthesis(source, config=config)
    first = stopped_run(source, config=config, stop_at=stop_at)
    assert first.report.stop_reason == "callback"
    resumed, _ = resume_synthesis(tmp_path / "ck")
    np.testing.assert_array_equal(resumed.image, whole.image)
    assert resumed.report.loss == whole.report.loss


def test_a_run_with_the_spectrum_constraint_records_each_stages_weight_and_resumes_bit_for_bit(
    source, tmp_path, stopped_run
):
    config = make_config(
        stages=2, max_iter=6, seed=2, **{**SMALL, "spectrum_weight": 1.0}, spectrum_last_stage=0.5
    )
    whole = run_synthesis(source, config=config)
    assert [s["spectrum_weight"] for s in whole.report.stages] == [1.0, 0.5]
    first = stopped_run(source, config=config, stop_at=8)  # in the last stage
    resumed, _ = resume_synthesis(tmp_path / "ck")
    np.testing.assert_array_equal(resumed.image, whole.image)
    assert resumed.report.loss == whole.report.loss and first.report.stop_reason == "callback"


def test_a_run_with_the_spectrum_taper_starts_its_second_part_from_the_first_and_resumes_bit_for_bit(
    source, tmp_path, stopped_run, monkeypatch
):
    from multiscale.jobs import synthesize as job

    config = make_config(
        stages=2, max_iter=8, seed=2, **{**SMALL, "spectrum_weight": 1.0}, spectrum_taper=0.5
    )
    starts = []
    real_start = job.stage_start
    monkeypatch.setattr(job, "stage_start", lambda x, **kw: starts.append(x.shape) or real_start(x, **kw))
    seen = []
    whole = run_synthesis(source, config=config, callback=seen.append)
    assert starts == [(32, 32, 3)]  # the 64² stage's first part is upsampled; its second part is not
    assert [
        (s["width"], s["iterations"], s.get("spectrum_border_taper", False)) for s in whole.report.stages
    ] == [
        (32, 8, False),
        (64, 2, True),
        (64, 2, False),
    ]
    assert [p.stage for p in seen] == [1] * 8 + [2] * 2 + [3] * 2 and seen[-1].stages == 3
    plain = run_synthesis(source, config=dataclasses.replace(config, spectrum_taper=0.0))
    assert whole.report.stages[0]["loss"] == plain.report.stages[0]["loss"]  # the first stage is the same
    assert not np.array_equal(whole.image, plain.image)
    for stop_at in (9, 11):  # in the first part, in the second
        first = stopped_run(source, config=config, stop_at=stop_at)
        assert first.report.stop_reason == "callback"
        resumed, _ = resume_synthesis(tmp_path / "ck")
        np.testing.assert_array_equal(resumed.image, whole.image)
        assert resumed.report.loss == whole.report.loss


def test_a_run_with_stage_detail_changes_only_the_later_stages_and_resumes_bit_for_bit(
    source, tmp_path, stopped_run
):
    config = make_config(stages=2, max_iter=6, seed=2, stage_detail=True, **SMALL)
    whole = run_synthesis(source, config=config)
    plain = run_synthesis(source, config=dataclasses.replace(config, stage_detail=False))
    assert whole.report.stages[0]["loss"] == plain.report.stages[0]["loss"]  # the first stage is the same
    assert not np.array_equal(whole.image, plain.image)
    assert whole.report.to_dict()["config"]["stage_detail"] is True
    first = stopped_run(source, config=config, stop_at=3)  # in the first stage: the resume adds the detail
    resumed, _ = resume_synthesis(tmp_path / "ck")
    np.testing.assert_array_equal(resumed.image, whole.image)
    assert first.report.stop_reason == "callback"


@pytest.mark.parametrize(("stages", "detail"), [(1, False), (3, False), (4, True)])
def test_by_default_the_finest_octave_is_added_in_runs_of_four_stages_or_more(source, stages, detail):
    config = make_config(stages=stages, max_iter=3, seed=2, **{**SMALL, "octaves": 4})
    assert config.stage_detail is None
    auto = run_synthesis(source, config=config)
    assert auto.report.to_dict()["config"]["stage_detail"] is detail  # recorded resolved
    chosen = run_synthesis(source, config=dataclasses.replace(config, stage_detail=detail))
    np.testing.assert_array_equal(auto.image, chosen.image)


@pytest.mark.parametrize("stage_detail", [False, True])
def test_a_tileable_run_in_stages_stays_seamless(source, stage_detail):
    config = make_config(stages=2, max_iter=6, padding="wrap", stage_detail=stage_detail, **SMALL)
    image = run_synthesis(source, config=config).image
    inner = np.abs(np.diff(image, axis=1)).mean()
    seam = np.abs(image[:, 0] - image[:, -1]).mean()
    assert seam < 2 * inner


def test_animation_frames_run_in_stages(source):
    config = make_config(stages=2, max_iter=4, frames=2, **SMALL)
    result = run_synthesis(source, config=config)
    assert result.image.shape == (2, 64, 64, 3) and len(result.report.stages) == 2


def test_an_animation_takes_no_stage_detail_and_its_checkpoint_keeps_no_sources_for_it(
    source, tmp_path, stopped_run
):
    # frames start each later stage from the upsampled result alone: the run resolves and records
    # the detail as off, so the checkpoint (no spectrum constraint here) has no use for the sources
    config = make_config(stages=4, max_iter=4, frames=2, stage_detail=True, **{**SMALL, "octaves": 4})
    result = run_synthesis(source, config=config)
    assert result.report.to_dict()["config"]["stage_detail"] is False
    off = run_synthesis(source, config=dataclasses.replace(config, stage_detail=False))
    np.testing.assert_array_equal(result.image, off.image)
    stopped_run(source, config=config, stop_at=2)
    meta = json.loads((tmp_path / "ck" / "checkpoint.json").read_text())
    assert meta["config"]["stage_detail"] is False and meta["exemplars"] == []


def test_the_work_of_a_stage_is_its_iterations_times_its_pixels():
    shares = work_shares([(350, 128, 128), (175, 256, 256), (88, 512, 512), (44, 1024, 1024)])
    assert sum(shares) == pytest.approx(1.0)
    assert shares[0] == pytest.approx(
        350 * 128**2 / (350 * 128**2 + 175 * 256**2 + 88 * 512**2 + 44 * 1024**2)
    )
    assert shares[1] / shares[0] == pytest.approx(2.0)  # half the iterations at four times the pixels
    assert work_done(shares, 0, 0.0) == 0.0 and work_done(shares, 3, 1.0) == pytest.approx(1.0)
    assert work_done(shares, 2, 0.5) == pytest.approx(shares[0] + shares[1] + shares[2] / 2)
    assert work_done(shares, 1, 7.0) == pytest.approx(shares[0] + shares[1])  # clipped to the stage
    assert [share_of_rest(shares, i) for i in (0, 3)] == [pytest.approx(shares[0]), 1.0]


def test_time_limit_is_shared_by_pixels_and_iterations():
    from multiscale.jobs.synthesize import _time_shares

    stages = plan_stages(
        make_config(width=1024, height=1024, max_iter=200, stages=3), height=1024, width=1024
    )
    shares = _time_shares(stages, 100.0)
    cost = [200 * 256**2, 100 * 512**2, 50 * 1024**2]
    assert shares[0] == pytest.approx(cost[0] / sum(cost))
    assert shares[1] == pytest.approx(cost[1] / sum(cost[1:]))
    assert shares[2] == 1.0
    assert _time_shares(stages, None) == [None, None, None]


def test_dry_run_prints_the_stages(source, tmp_path):
    path = save_image(tmp_path / "s.png", source)
    result = CliRunner().invoke(cli, ["synthesize", "-s", str(path), "-W", "1024", "-H", "1024", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert (
        "128×128 (1 octave, 350 it), 256×256 (2 octaves, 175 it), 512×512 (3 octaves, 88 it), "
        "1024×1024 (4 octaves, 44 it)" in result.output
    )
    assert "at most 657 iterations" in result.output
    result = CliRunner().invoke(
        cli, ["synthesize", "-s", str(path), "-W", "256", "-H", "256", "--spectrum-taper", "0.3", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert (
        "128×128 (3 octaves, 350 it), 256×256 (4 octaves, 52 it with the spectrum constraint through the "
        "border taper, then 123 plain)" in result.output
    )


def test_a_first_stage_too_small_for_its_octaves_is_refused_if_asked_for_and_avoided_if_automatic():
    config = make_config(octaves=3, layers=("conv1_1", "pool1"))
    with pytest.raises(ConfigError, match="stage 1 would be 3×3 px.*fewer --stages"):
        plan_stages(dataclasses.replace(config, stages=3), height=13, width=13)
    assert len(plan_stages(config, height=24, width=2000)) == 2  # auto wants 3, whose first is 6×500


def test_a_checkpoint_from_before_stages_resumes_as_the_one_stage_it_was(source, tmp_path, stopped_run):
    """Its config has no ``stages``: it ran the output size alone, where ``auto`` would now plan two."""
    config = make_config(octaves=2, layers=("conv1_1", "pool1"), width=288, height=32, max_iter=4, stages=1)
    stopped_run(source, config=config, stop_at=2)
    meta_path = tmp_path / "ck" / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["stages"], meta["stage"]
    meta_path.write_text(json.dumps(meta))
    resumed, _ = resume_synthesis(tmp_path / "ck")
    assert resumed.image.shape == (32, 288, 3) and resumed.report.iterations == 4
    assert resumed.report.stages == [] and resumed.report.config.stages == 1
