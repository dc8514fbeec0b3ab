"""Checkpoints, resume, animation and variations, end to end (tiny sizes)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from multiscale_cli.main import cli

from multiscale.io import load_image, save_image
from multiscale.jobs.animate import interframe_rms
from multiscale.jobs.synthesize import resume_synthesis, synthesize

TINY = dict(octaves=2, layers=("conv1_1", "pool1"), width=32, height=32)
TINY_ARGS = ["--octaves", "2", "--layers", "conv1_1,pool1", "-W", "32", "-H", "32"]


@pytest.fixture(scope="module")
def source(samples_dir):
    return load_image(samples_dir / "gravel.png")[:64, :64].copy()


@pytest.fixture
def source_file(source, tmp_path):
    return save_image(tmp_path / "src.png", source)


def test_an_interrupted_and_resumed_run_ends_where_an_uninterrupted_one_does(source, tmp_path):
    """Measured: the same loss to the last bit (the projected driver's state is exact)."""
    from multiscale.jobs.synthesize import make_config, run_synthesis

    whole = synthesize(source, max_iter=16, seed=3, **TINY)
    config = make_config(max_iter=16, seed=3, **TINY)
    stop_at_7 = lambda p: p.iteration == 7  # noqa: E731
    first = run_synthesis(
        source, config=config, callback=stop_at_7, checkpoint=tmp_path / "ck", output=tmp_path / "o.png"
    )
    assert first.report.stop_reason == "callback" and first.report.checkpoint == str(tmp_path / "ck")
    resumed, output = resume_synthesis(tmp_path / "ck")
    assert output == str(tmp_path / "o.png")
    assert resumed.report.iterations == 16
    assert resumed.report.loss == pytest.approx(whole.report.loss, rel=1e-6)
    np.testing.assert_array_equal(resumed.image, whole.image)


def test_resume_can_extend_a_finished_run(source, tmp_path):
    from multiscale.jobs.synthesize import make_config, run_synthesis

    config = make_config(max_iter=5, checkpoint_every=5, **TINY)
    run_synthesis(source, config=config, checkpoint=tmp_path / "ck", output=tmp_path / "o.png")
    more, _ = resume_synthesis(tmp_path / "ck", max_iter=12)
    assert (
        more.report.iterations == 12
        and json.loads((tmp_path / "ck" / "checkpoint.json").read_text())["iteration"] == 12
    )


def test_frames_move_less_as_the_frame_weight_rises_and_loop_closes(source):
    rms = {}
    for weight in (0.0, 30.0):
        res = synthesize(source, frames=3, frame_weight=weight, loop=True, max_iter=25, **TINY)
        assert res.image.shape == (3, 32, 32, 3)
        rms[weight] = interframe_rms(res.image, loop=True)
    assert rms[30.0].mean() < 0.5 * rms[0.0].mean()
    # with --loop the last→first step is like the others (within a factor 2)
    assert rms[30.0][-1] < 2 * rms[30.0][:-1].mean()


def test_cli_count_makes_variations_with_recorded_seeds(source_file, tmp_path):
    out = tmp_path / "v.png"
    result = CliRunner().invoke(
        cli,
        [
            "synthesize",
            "-s",
            str(source_file),
            *TINY_ARGS,
            "--max-iter",
            "2",
            "--count",
            "2",
            "--seed",
            "5",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    seeds = [json.loads((tmp_path / f"v.00{i}.png.json").read_text())["config"]["seed"] for i in (1, 2)]
    assert seeds == [5, 6]
    assert (tmp_path / "v.001.png").read_bytes() != (tmp_path / "v.002.png").read_bytes()


def test_cli_frames_write_numbered_frames_and_an_animation(source_file, tmp_path):
    out = tmp_path / "a.png"
    result = CliRunner().invoke(
        cli,
        [
            "synthesize",
            "-s",
            str(source_file),
            *TINY_ARGS,
            "--max-iter",
            "2",
            "--frames",
            "3",
            "--animation",
            str(tmp_path / "a.gif"),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("a.frame*.png")) == [
        "a.frame0001.png",
        "a.frame0002.png",
        "a.frame0003.png",
    ]
    assert (tmp_path / "a.gif").is_file() and (tmp_path / "a.png.json").is_file()


def test_cli_checkpoint_then_resume(source_file, tmp_path):
    out = tmp_path / "c.png"
    runner = CliRunner()
    first = runner.invoke(
        cli,
        [
            "synthesize",
            "-s",
            str(source_file),
            *TINY_ARGS,
            "--max-iter",
            "4",
            "--checkpoint-every",
            "2",
            "-o",
            str(out),
        ],
    )
    assert first.exit_code == 0, first.output
    assert "multiscale resume" in first.output
    again = runner.invoke(
        cli,
        [
            "synthesize",
            "-s",
            str(source_file),
            *TINY_ARGS,
            "--max-iter",
            "4",
            "-o",
            str(tmp_path / "c2.png"),
            "--checkpoint",
            str(tmp_path / "c.png.ckpt"),
        ],
    )
    assert again.exit_code == 1 and "checkpoint from an earlier run exists" in again.output
    resumed = runner.invoke(cli, ["resume", str(tmp_path / "c.png.ckpt"), "--max-iter", "8"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((tmp_path / "c.png.json").read_text())["iterations"] == 8


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["resume", "nope.ckpt"], 1, "nope.ckpt: no such checkpoint folder"),
        (
            ["synthesize", "-s", "{src}", "--max-memory", "10M", "-o", "{out}"],
            1,
            "more than the 10.0 MiB allowed",
        ),
        (["synthesize", "-s", "{src}", "--max-memory", "lots", "-o", "{out}"], 2, "--max-memory"),
        (
            ["synthesize", "-s", "{src}", "--frames", "2", "--count", "2", "-o", "{out}"],
            2,
            "cannot be combined",
        ),
        (
            ["synthesize", "-s", "{src}", "--count", "2", "--checkpoint", "{out}.ckpt", "-o", "{out}"],
            2,
            "--checkpoint names one folder but --count 2 makes 2 runs",
        ),
        (
            ["synthesize", "-s", "{src}", "--optimizer", "lbfgsb", "--checkpoint-every", "2", "-o", "{out}"],
            2,
            "--optimizer projected",
        ),
        (["synthesize", "-s", "{src}", "--animation", "x.gif", "-o", "{out}"], 1, "needs --frames"),
    ],
)
def test_cli_refuses_bad_run_options_with_one_line(source_file, tmp_path, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    argv = [a.format(src=source_file, out=tmp_path / "o.png") for a in args]
    result = CliRunner().invoke(cli, [*argv[:1], *argv[1:], *([] if argv[0] == "resume" else TINY_ARGS)])
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.png").exists()


def test_dry_run_prints_the_plan_and_writes_nothing(source_file, tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "synthesize",
            "-s",
            str(source_file),
            "-W",
            "512",
            "-H",
            "256",
            "--dry-run",
            "-o",
            str(tmp_path / "o.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "512×256" in result.output and "memory" in result.output and "fits" in result.output
    assert list(tmp_path.iterdir()) == [source_file]


@pytest.mark.parametrize(
    "size, args, expected",
    [
        ("256", [], "sliced"),  # auto: a source image, and it fits
        ("2048", ["--max-memory", "64G"], "sliced"),  # auto: its projections stay under 6 GiB
        ("4096", ["--max-memory", "64G"], "gram, mean"),  # auto: they would pass AUTO_SLICED_MAX_BYTES
        ("4096", ["--statistics", "sliced", "--max-memory", "64G"], "sliced"),  # asked for: kept
    ],
)
def test_dry_run_says_which_statistic_the_run_will_match(source_file, size, args, expected):
    result = CliRunner().invoke(
        cli, ["synthesize", "-s", str(source_file), "-W", size, "-H", size, *args, "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert f"statistics  {expected}\n" in result.output


@pytest.mark.parametrize(
    "scale_args,expected",
    [([], "96×192"), (["--source-scale", "0.5"], "48×96"), (["--source-width", "64"], "64×128")],
)
def test_dry_run_sizes_the_output_as_the_run_would(tmp_path, scale_args, expected):
    """The source's displayed size (EXIF orientation 6 swaps the sides), scaled as the run scales it."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    stored = tmp_path / "rotated.jpg"
    Image.new("RGB", (192, 96), (120, 80, 40)).save(stored, exif=exif)
    result = CliRunner().invoke(cli, ["synthesize", "-s", str(stored), *scale_args, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"output      {expected}" in result.output


def test_dry_run_on_a_file_that_is_no_image_is_one_clean_line(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    result = CliRunner().invoke(cli, ["synthesize", "-s", str(notes), "--dry-run"])
    assert result.exit_code == 1, result.output
    assert "notes.txt: not a recognised image" in result.output and "Traceback" not in result.output
