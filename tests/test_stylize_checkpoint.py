"""Stylize checkpoints: Ctrl-C keeps the run, `multiscale resume` finishes it.

A stylize checkpoint holds the config, the provenance, every stage's targets
(the content at the stage's size, the styles' blended Grams), the stage
reached and its best image. It keeps no correction pairs, so a resume
restarts the optimiser from that image and says so.

Sizes stay ≤ 64 px with 2 octaves and shallow layers; the whole file runs in
well under a minute on two cores.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from multiscale_cli.main import cli
from PIL import Image

from multiscale.config import DescriptorConfig, StyleConfig
from multiscale.errors import CheckpointError, ConfigError
from multiscale.io import load_image, resize_image
from multiscale.jobs.checkpoint import (
    StylePosition,
    checkpoint_kind,
    read_checkpoint,
    read_style_checkpoint,
    write_style_checkpoint,
)
from multiscale.jobs.stylize import make_config, prepare_stylize, resume_stylize, run_plan
from multiscale.jobs.synthesize import resume_synthesis
from multiscale.objectives.palette import PALETTE_DIRECTIONS, PALETTE_LEVELS, PaletteTarget, palette_target

SMALL = dict(octaves=2, layers=("conv1_1", "pool1"), content_layers=("conv1_1",))
#: The module, which ``multiscale.jobs.stylize`` (the function) shadows as an attribute.
stylize_module = importlib.import_module("multiscale.jobs.stylize")
CLI_SMALL = ["--octaves", "2", "--layers", "conv1_1,pool1", "--content-layers", "conv1_1"]


@pytest.fixture(scope="module")
def images(samples_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Chelsea the cat at 64×43 (content) and a 64×64 gravel crop (style), float32 RGB."""
    cat = load_image(samples_dir.parent / "style" / "chelsea.png")
    gravel = load_image(samples_dir / "gravel.png")[:128, :128]
    return resize_image(cat, width=64, height=43), resize_image(gravel, width=64, height=64)


def _png(path: Path, image: np.ndarray) -> Path:
    Image.fromarray((image * 255).round().astype(np.uint8)).save(path)
    return path


# ---------------------------------------------------------------------------
# The config's round trip
# ---------------------------------------------------------------------------


def test_style_config_round_trips_through_json():
    config = StyleConfig(
        descriptor=DescriptorConfig(octaves=2, layers=("conv1_1", "pool1"), layer_weights=(1.0, 2.0)),
        content_layers=("conv2_2", "conv4_2"), style_weights=(0.25, 0.75), preserve_color="luminance",
        width=96, stages=2, init="noise", time_limit=12.5, checkpoint_every=7,
    )  # fmt: skip
    data = json.loads(json.dumps(config.to_dict()))
    assert StyleConfig.from_dict(data) == config
    assert StyleConfig.from_dict(StyleConfig().to_dict()) == StyleConfig()


def test_style_config_from_dict_names_the_bad_setting():
    with pytest.raises(ConfigError, match="loop: is not a known setting"):
        StyleConfig.from_dict({"loop": True})
    with pytest.raises(ConfigError, match="frames: is not a known setting"):
        StyleConfig.from_dict({"descriptor": {"frames": 2}})
    with pytest.raises(ConfigError, match="descriptor: expected a mapping"):
        StyleConfig.from_dict({"descriptor": [4]})
    with pytest.raises(ConfigError, match="checkpoint_every: must be an integer ≥ 1"):
        StyleConfig.from_dict({"checkpoint_every": 0})


# ---------------------------------------------------------------------------
# The folder: written, read back, and every way it can be wrong (no network)
# ---------------------------------------------------------------------------

CONFIG = StyleConfig(descriptor=DescriptorConfig(octaves=2, layers=("conv1_1", "pool1")), max_iter=10)
SIZES = [(8, 12), (16, 24)]


PALETTE = palette_target([np.random.default_rng(1).uniform(size=(8, 8, 3))])


def _folder(tmp_path: Path, palette: PaletteTarget | None) -> Path:
    """A stylize checkpoint of a 2-stage run stopped after 3 iterations of stage 2."""
    rng = np.random.default_rng(0)
    contents = [rng.uniform(size=(h, w, 3)).astype(np.float32) for h, w in SIZES]
    grams = [
        {(k, layer): np.eye(64) * (s + k + 1) for k in range(2) for layer in ("conv1_1", "pool1")}
        for s in range(2)
    ]
    first = dict(stage=1, height=8, width=12, iterations=10, evaluations=12, loss=0.5, stop_reason="max_iter",
                 message="reached 10 iterations", elapsed_s=1.0, time_limit_s=None)  # fmt: skip
    position = StylePosition(
        stage=1, stage_iterations=3, stage_evaluations=4, stage_elapsed_s=0.5, best_loss=0.25, stages=[first],
        image=contents[1] * 0.5, history=np.linspace(1, 0.1, 13),
    )  # fmt: skip
    info = {"name": "cat.png", "sha256": "0" * 64, "height": 16, "width": 24}
    return write_style_checkpoint(
        tmp_path / "out.png.ckpt", config=CONFIG, output=tmp_path / "out.png", content=info,
        styles=[{**info, "name": "gravel.png"}], style_blend=[1.0], contents=contents, grams=grams,
        position=position, current=contents[1], best=contents[1] * 0.5, palette=palette,
    )  # fmt: skip


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """:func:`_folder` of a run with today's defaults (the palette term among them)."""
    return _folder(tmp_path, PALETTE)


def _rewrite_json(folder: Path, **changes) -> None:
    meta = json.loads((folder / "checkpoint.json").read_text())
    (folder / "checkpoint.json").write_text(json.dumps({**meta, **changes}))


def _rehash(folder: Path) -> None:
    """Make checkpoint.json name the data files as they are now (so only their content is at fault)."""
    from multiscale.io import file_sha256

    _rewrite_json(folder, sha256={n: file_sha256(folder / n) for n in ("targets.npz", "state.npz")})


def test_round_trip_gives_back_config_provenance_targets_and_position(folder, tmp_path):
    ck = read_style_checkpoint(folder)
    assert checkpoint_kind(folder) == "stylize"
    assert ck.config == CONFIG and ck.output == str(tmp_path / "out.png")
    assert (
        ck.content["name"] == "cat.png" and ck.styles[0]["name"] == "gravel.png" and ck.style_blend == [1.0]
    )
    assert ck.stage_sizes == SIZES and [c.shape[:2] for c in ck.contents] == SIZES
    assert ck.grams is not None and ck.grams[1][(1, "pool1")][0, 0] == 3.0
    assert ck.palette is not None and ck.palette.variance == PALETTE.variance
    np.testing.assert_array_equal(ck.palette.quantiles, PALETTE.quantiles)
    p = ck.position
    assert (p.stage, p.stage_iterations, p.stage_evaluations, p.best_loss) == (1, 3, 4, 0.25)
    assert p.iterations == 13 and p.history.shape == (13,) and p.stages[0]["iterations"] == 10
    np.testing.assert_array_equal(p.image, ck.contents[1] * 0.5)
    assert load_image(folder / "best.png").shape == (16, 24, 3)
    assert load_image(folder / "current.png").shape == (16, 24, 3)


def test_a_folder_from_before_the_content_target_resumes_with_the_content_as_it_is(folder):
    """Older stylize checkpoints took the content term's features of the content as it is;
    today's default is its recolouring, so a folder that does not record the setting keeps
    the one it ran with (its targets are stored either way; the report must say so)."""
    assert read_style_checkpoint(folder).config.content_target == "palette"  # today's folder records it
    meta = json.loads((folder / "checkpoint.json").read_text())
    del meta["config"]["content_target"]
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    assert read_style_checkpoint(folder).config.content_target == "content"


def test_a_folder_from_before_the_palette_term_resumes_without_it(tmp_path):
    """Older stylize checkpoints had no palette term and hold no palette: a folder that does not
    record the weight runs on without the term, as it ran."""
    folder = _folder(tmp_path, None)
    meta = json.loads((folder / "checkpoint.json").read_text())
    del meta["config"]["palette_weight"]
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    ck = read_style_checkpoint(folder)
    assert ck.config.palette_weight == 0.0 and ck.palette is None


def test_a_folder_from_before_eight_palette_directions_resumes_with_its_sixteen(tmp_path):
    """The palette term had 16 directions before it had 8 (PALETTE_DIRECTIONS), and its folders
    did not record how many: such a folder reads back with its own 16, which the term then uses
    (palette_loss takes the directions from the target's columns)."""
    sixteen = PaletteTarget(quantiles=np.tile(PALETTE.quantiles[:, :1], (1, 16)), variance=PALETTE.variance)
    folder = _folder(tmp_path, sixteen)
    meta = json.loads((folder / "checkpoint.json").read_text())
    assert meta["palette_directions"] == 16
    del meta["palette_directions"]
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    ck = read_style_checkpoint(folder)
    assert ck.palette is not None and ck.palette.quantiles.shape == (PALETTE_LEVELS, 16)
    assert PALETTE.quantiles.shape == (PALETTE_LEVELS, PALETTE_DIRECTIONS) != (PALETTE_LEVELS, 16)


def test_a_folder_whose_palette_has_other_directions_than_it_records_is_refused(folder):
    _rewrite_json(folder, palette_directions=16)
    with pytest.raises(CheckpointError, match="palette/quantiles"):
        read_style_checkpoint(folder)


def test_a_folder_of_a_run_with_the_palette_term_but_no_palette_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="missing member.*palette/quantiles"):
        read_style_checkpoint(_folder(tmp_path, None))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "state.npz").unlink(), "state.npz is missing"),
        (lambda f: (f / "targets.npz").write_bytes(b"PK"), "targets.npz changed after checkpoint.json"),
        (lambda f: _rewrite_json(f, stage=3), "inconsistent: stage 3 of 2"),
        (lambda f: _rewrite_json(f, iteration=99), "iteration 99, but its stages add up to 13"),
        (lambda f: _rewrite_json(f, stage_iterations=-1), "bad or missing field"),
        (lambda f: _rewrite_json(f, kind="animate"), "unknown kind of run 'animate'"),
        (
            lambda f: (
                np.savez(f / "state.npz", image=np.zeros((8, 12, 3)), history=np.zeros(13)),
                _rehash(f),
            ),
            "state.npz: member image has shape (8, 12, 3)",
        ),
        (
            lambda f: ((f / "targets.npz").write_bytes(b"not a zip"), _rehash(f)),
            "targets.npz: not a checkpoint file",
        ),
    ],
    ids=["missing", "changed", "stage", "iteration", "negative", "kind", "shape", "not-npz"],
)
def test_a_damaged_folder_is_refused_naming_the_file(folder, damage, message):
    damage(folder)
    with pytest.raises(CheckpointError, match="out.png.ckpt") as err:
        read_style_checkpoint(folder)
    assert message in str(err.value)


def test_each_job_refuses_the_other_kind_of_checkpoint(folder):
    with pytest.raises(
        CheckpointError, match="a stylize checkpoint, not a synthesize one; .*multiscale resume"
    ):
        read_checkpoint(folder)
    with pytest.raises(CheckpointError, match="a stylize checkpoint, not a synthesize one"):
        resume_synthesis(folder)


def test_cli_resume_of_a_damaged_checkpoint_is_one_line(folder):
    (folder / "state.npz").unlink()
    result = CliRunner().invoke(cli, ["resume", str(folder)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == f"Error: {folder}: state.npz is missing"


def test_cli_refuses_to_overwrite_an_earlier_checkpoint(folder, tmp_path):
    content = _png(tmp_path / "cat.png", np.full((43, 64, 3), 0.5))
    out = tmp_path / "other.png"
    result = CliRunner().invoke(
        cli, ["stylize", "-c", str(content), "-s", str(content), "--checkpoint", str(folder), "-o", str(out)]
    )
    assert result.exit_code == 1 and "checkpoint from an earlier run exists" in result.output
    assert not out.exists()


def test_cli_checkpoints_with_either_optimizer_and_resume_continues(images, tmp_path):
    """--optimizer lbfgsb too: its checkpoint restarts the stage from its best image (once silently skipped)."""
    content, style = images
    c, s = _png(tmp_path / "cat.png", content), _png(tmp_path / "gravel.png", style)
    out = tmp_path / "o.png"
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["stylize", "-c", str(c), "-s", str(s), *CLI_SMALL, "--stages", "1", "--max-iter", "3",
         "--optimizer", "lbfgsb", "--checkpoint-every", "2", "-q", "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = tmp_path / "o.png.ckpt"
    ck = read_style_checkpoint(folder)
    assert ck.config.optimizer == "lbfgsb" and ck.position.stage_iterations == 3
    assert json.loads((tmp_path / "o.png.json").read_text())["checkpoint"] == str(folder)
    resumed = runner.invoke(cli, ["resume", str(folder), "--max-iter", "5", "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((tmp_path / "o.png.json").read_text())["iterations"] == 5


# ---------------------------------------------------------------------------
# Stopped and resumed runs (the network, tiny sizes)
# ---------------------------------------------------------------------------


def test_a_run_stopped_in_stage_2_resumes_exactly_to_the_uninterrupted_result(images, tmp_path):
    """The projected driver's state is in the checkpoint: the resumed run is the uninterrupted one,
    bit for bit (image, losses, iterations)."""
    content, style = images
    plan = prepare_stylize(
        content, style, config=make_config(stages=2, max_iter=4, checkpoint_every=3, **SMALL)
    )
    whole = run_plan(plan)
    folder, out = tmp_path / "o.png.ckpt", tmp_path / "o.png"
    seen = []

    def stop_in_stage_2(p):
        meta = folder / "checkpoint.json"
        seen.append(json.loads(meta.read_text())["iteration"] if meta.exists() else None)
        return p.stage == 2 and p.stage_iteration == 1

    first = run_plan(plan, callback=stop_in_stage_2, checkpoint=folder, output=out)
    assert first.report.stop_reason == "callback" and first.report.checkpoint == str(folder)
    assert seen == [None, None, None, 3, 3]  # --checkpoint-every 3: written after iteration 3
    ck = read_style_checkpoint(folder)
    assert (ck.position.stage, ck.position.stage_iterations, ck.position.iterations) == (1, 1, 5)
    assert ck.position.state is not None and ck.position.state.iteration == 1
    assert ck.output == str(out) and ck.stage_sizes == [(22, 32), (43, 64)]

    resumed, output = resume_stylize(folder)
    r = resumed.report
    assert output == str(out) and r.resumed_from == str(folder)
    assert "resumed stage 2 of 2 after 1 iteration(s), exactly where it stopped" in r.message
    assert [s.iterations for s in r.stages] == [4, 4] and r.iterations == 8
    assert r.stages[0] == first.report.stages[0]
    np.testing.assert_array_equal(resumed.image, whole.image)
    assert r.history == whole.report.history and r.loss == whole.report.loss
    assert [s.evaluations for s in r.stages] == [s.evaluations for s in whole.report.stages]
    # with --checkpoint-every, a finished run leaves a checkpoint that more iterations extend
    more, _ = resume_stylize(folder, max_iter=6)
    assert [s.iterations for s in more.report.stages] == [4, 6] and more.report.iterations == 10


def test_a_stop_at_a_periodic_checkpoint_mid_stage_resumes_exactly(images, tmp_path):
    """Stopped in stage 1 just after the checkpoint of iteration 2, then resumed twice over."""
    content, style = images
    plan = prepare_stylize(
        content, style, config=make_config(stages=2, max_iter=5, checkpoint_every=2, **SMALL)
    )
    whole = run_plan(plan)
    folder = tmp_path / "ck"
    run_plan(plan, callback=lambda p: p.iteration == 3, checkpoint=folder, output=tmp_path / "o.png")
    assert read_style_checkpoint(folder).position.stage_iterations == 3
    # a resume stopped again, in stage 2, and resumed once more
    resume_stylize(folder, callback=lambda p: p.stage == 2 and p.stage_iteration == 2)
    assert read_style_checkpoint(folder).position.state.iteration == 2
    final, _ = resume_stylize(folder)
    np.testing.assert_array_equal(final.image, whole.image)
    assert final.report.history == whole.report.history


def test_ctrl_c_between_stages_resumes_at_the_start_of_the_next(images, tmp_path, monkeypatch):
    content, style = images
    plan = prepare_stylize(content, style, config=make_config(stages=2, max_iter=3, **SMALL))
    original = stylize_module._objective

    def interrupted_at_stage_2(config, network, targets, **kwargs):
        if targets.content.shape[0] == 43:
            raise KeyboardInterrupt
        return original(config, network, targets, **kwargs)

    monkeypatch.setattr(stylize_module, "_objective", interrupted_at_stage_2)
    first = run_plan(plan, checkpoint=tmp_path / "ck", output=tmp_path / "o.png")
    assert first.report.stop_reason == "interrupted" and first.report.checkpoint == str(tmp_path / "ck")
    ck = read_style_checkpoint(tmp_path / "ck")
    assert (ck.position.stage, ck.position.stage_iterations) == (1, 0)
    assert ck.position.image.shape == (43, 64, 3)  # stage 1's result, upsampled

    monkeypatch.setattr(stylize_module, "_objective", original)
    resumed, _ = resume_stylize(tmp_path / "ck")
    assert "resumed at the start of stage 2 of 2" in resumed.report.message
    assert [s.iterations for s in resumed.report.stages] == [3, 3]


def test_ctrl_c_outside_the_driver_s_own_handling_ends_with_the_previous_stage(images, tmp_path, monkeypatch):
    """Ctrl-C while stage 2's driver sets up (before its own handler): the stage is lost, the run is not."""
    import multiscale.optim.projected as lbfgs

    content, style = images
    plan = prepare_stylize(content, style, config=make_config(stages=2, max_iter=3, **SMALL))
    original, calls = lbfgs.minimize, []

    def interrupted_at_stage_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(lbfgs, "minimize", interrupted_at_stage_2)
    first = run_plan(plan, checkpoint=tmp_path / "ck", output=tmp_path / "o.png")
    assert first.report.stop_reason == "interrupted" and first.image.shape == (43, 64, 3)
    ck = read_style_checkpoint(tmp_path / "ck")
    assert (ck.position.stage, ck.position.stage_iterations) == (1, 0)


@pytest.fixture(scope="module")
def interrupted(images, tmp_path_factory, interrupt_cli) -> dict:
    """A real `multiscale stylize` subprocess stopped by SIGINT after its first iteration."""
    tmp = tmp_path_factory.mktemp("sigint")
    content, style = _png(tmp / "cat.png", images[0]), _png(tmp / "gravel.png", images[1])
    out = tmp / "run.png"
    args = [
        "stylize",
        "-c",
        str(content),
        "-s",
        str(style),
        *CLI_SMALL,
        "--stages",
        "1",
        "--max-iter",
        "5000",
    ]
    args += ["--tol", "0", "--save-every", "1", "-q", "-o", str(out)]
    returncode, stderr = interrupt_cli(args, cwd=tmp, wait_for=tmp / "run.iter00001.png")
    return dict(
        returncode=returncode, stderr=stderr, out=out, folder=tmp / "run.png.ckpt",
        report=json.loads((tmp / "run.png.json").read_text()) if returncode == 130 else None,
        checkpoint=read_style_checkpoint(tmp / "run.png.ckpt") if returncode == 130 else None,
    )  # fmt: skip


@pytest.mark.slow
def test_a_real_sigint_writes_the_best_image_and_a_checkpoint_and_exits_130(interrupted):
    run = interrupted
    assert run["returncode"] == 130, run["stderr"]
    assert "Traceback" not in run["stderr"], run["stderr"]
    last = run["stderr"].strip().splitlines()[-1]
    out, folder = run["out"], run["folder"]
    assert last == (
        f"Error: interrupted; best image so far written to {out} (and {out}.json); checkpoint in {folder} "
        f"(continue with `multiscale resume {folder}`)"
    )
    assert load_image(out).shape == (43, 64, 3)
    report = run["report"]
    assert report["stop_reason"] == "interrupted" and report["iterations"] >= 1
    assert report["checkpoint"] == str(folder)
    ck = run["checkpoint"]
    assert ck.output == str(out) and ck.position.stage == 0
    assert ck.position.stage_iterations == report["iterations"] == len(ck.position.history)
    assert ck.config.max_iter == 5000 and ck.content["name"].endswith("cat.png")
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "temporary files left"


@pytest.mark.slow
def test_cli_resume_of_the_interrupted_run_finishes_it_exactly_where_it_stopped(interrupted):
    run = interrupted
    assert run["returncode"] == 130, run["stderr"]
    done = run["report"]["iterations"]
    result = CliRunner().invoke(cli, ["resume", str(run["folder"]), "--max-iter", str(done + 3)])
    assert result.exit_code == 0, result.output
    summary = result.output.strip().splitlines()[-1]
    assert summary.startswith(f"{run['out']}: 64×43, loss ") and "exactly where it stopped" in summary
    report = json.loads(Path(f"{run['out']}.json").read_text())
    assert report["stop_reason"] == "max_iter" and report["iterations"] == done + 3
    assert report["resumed_from"] == str(run["folder"])
    assert load_image(run["out"]).shape == (43, 64, 3)
