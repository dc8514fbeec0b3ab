"""What the command line does with every bad input and fault, and what a good run leaves behind.

Each failure must end with a non-zero exit status (2 for bad usage or option
values, 1 for bad files, 130 for Ctrl-C), one ``Error:`` line naming the file
or option and the problem, and no traceback. Refusals that can be made before
the network is loaded are made before it; nothing is written by a run that
never started, and a run that stops early still writes its best image.
"""

from __future__ import annotations

import builtins
import dataclasses
import errno
import hashlib
import importlib
import json
import math
import os
import re
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from multiscale_cli.main import cli
from multiscale_cli.synthesize import synthesize
from PIL import Image

import multiscale.io as mio
import multiscale.measure.backbone
import multiscale.objectives.texture
from multiscale.config import DescriptorConfig, SynthesisConfig
from multiscale.io import load_image
from multiscale.jobs.synthesize import make_config
from multiscale.optim.base import STOP_REASONS

# The package re-exports the function synthesize, which hides the module of that name.
synthesis_module = importlib.import_module("multiscale.jobs.synthesize")

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

#: The smallest run that exercises the whole pipeline: 2 octaves, 2 shallow layers, 3 iterations.
TINY = ["--octaves", "2", "--layers", "conv1_1,pool1", "--max-iter", "3", "-W", "48", "-H", "48"]


# ---------------------------------------------------------------------------
# Helpers and fixtures
# ---------------------------------------------------------------------------


def write_gravel(path: Path, size: int, samples_dir: Path) -> Path:
    """A size×size RGB crop of the gravel sample, saved as ``path``."""
    with Image.open(samples_dir / "gravel.png") as im:
        im.convert("RGB").crop((0, 0, size, size)).save(path)
    return path


def write_array(path: Path, height: int, width: int) -> Path:
    """A grey RGB image of the given size."""
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(path)
    return path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def source(tmp_path: Path, samples_dir: Path) -> Path:
    """A 64×64 RGB crop of the gravel sample."""
    return write_gravel(tmp_path / "gravel64.png", 64, samples_dir)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """Where a test's output image goes (its JSON is ``out.png.json``)."""
    return tmp_path / "out.png"


@pytest.fixture
def network_must_not_load(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Make loading the VGG weights (the start of the real work) a recorded failure.

    A refusal that can be made from the options alone must come before it.
    """
    calls: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise AssertionError("the run started: VGG16 weights were loaded")

    monkeypatch.setattr(multiscale.measure.backbone, "load_weights", refuse)
    return calls


def invoke(runner: CliRunner, *args: str, command: object = cli) -> Result:
    """Run ``multiscale synthesize ARGS`` (or the bare ``synthesize ARGS``)."""
    argv = ["synthesize", *args] if command is cli else list(args)
    return runner.invoke(command, argv)  # type: ignore[arg-type]


def error_line(result: Result, exit_code: int, *fragments: str) -> str:
    """Assert a clean failure and return its one ``Error:`` line.

    Clean: the exit status is ``exit_code``, click ended the command (no
    exception escaped), there is no traceback, and apart from click's usage
    hint (for exit status 2) the output is that one line, which holds every
    fragment.
    """
    output = result.output
    assert "Traceback" not in output, output
    assert isinstance(result.exception, SystemExit), f"{result.exception!r}\n{output}"
    assert result.exit_code == exit_code, output
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, output
    usage = [line for line in lines if line.startswith(("Usage: ", "Try "))] if exit_code == 2 else []
    assert lines == usage + errors, output
    line = errors[0]
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not out.with_name(out.name + ".json").exists()


def read_json(image: Path) -> dict:
    return json.loads(image.with_name(image.name + ".json").read_text(encoding="utf-8"))


def png_ihdr(path: Path) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, colour


# ---------------------------------------------------------------------------
# Sources that cannot be used
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        ("missing", "no such file"),
        ("directory", "folder contains no image files"),
        ("zero_bytes", "empty file"),
        ("text", "not a recognised image"),
        ("random_bytes", "not a recognised image"),
        ("truncated_png", "truncated"),
        ("truncated_jpeg", "truncated"),
        ("bomb_png", "50000×50000"),
    ],
)
def test_a_bad_source_file_exits_1_naming_the_file_and_the_problem(
    runner, bad_image_files, out, fault, problem
):
    path = bad_image_files[fault]
    result = invoke(runner, "-s", str(path), *TINY, "-o", str(out))
    error_line(result, 1, str(path), problem)
    assert_nothing_written(out)


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        ("missing", "no such file"),
        ("zero_bytes", "empty file"),
        ("text", "not a recognised image"),
        ("random_bytes", "not a recognised image"),
        ("bomb_png", "50000×50000"),
    ],
)
def test_dry_run_sizing_a_bad_source_file_exits_1_with_one_line(runner, bad_image_files, fault, problem):
    """--dry-run reads the source's header for the output size: the same clean refusal as a run."""
    path = bad_image_files[fault]
    error_line(invoke(runner, "-s", str(path), "--dry-run"), 1, str(path), problem)


def test_a_decompression_bomb_header_is_refused_naming_the_limit_option(runner, bad_image_files, out):
    path = bad_image_files["bomb_png"]
    result = invoke(runner, "-s", str(path), *TINY, "-o", str(out))
    error_line(result, 1, str(path), "decompression bomb", "--max-input-pixels")


def test_a_small_max_input_pixels_refuses_a_normal_image(runner, source, out):
    result = invoke(runner, "-s", str(source), *TINY, "--max-input-pixels", "100", "-o", str(out))
    error_line(result, 1, str(source), "64×64 = 4,096 pixels", "limit of 100", "--max-input-pixels")
    assert_nothing_written(out)


def test_an_unreadable_source_exits_1_saying_permission_denied(runner, source, out, monkeypatch):
    if IS_ROOT:
        # root reads anything despite chmod: make the reader's open() refuse instead.
        def refuse(file, *args, **kwargs):
            if Path(file) == source:
                raise PermissionError(errno.EACCES, "Permission denied", str(file))
            return builtins.open(file, *args, **kwargs)

        monkeypatch.setattr(mio, "open", refuse, raising=False)
    else:
        source.chmod(0)
    try:
        result = invoke(runner, "-s", str(source), *TINY, "-o", str(out))
    finally:
        source.chmod(stat.S_IRUSR | stat.S_IWUSR)
    error_line(result, 1, str(source), "permission denied")
    assert_nothing_written(out)


def test_a_source_too_small_for_the_octaves_suggests_fewer_octaves(runner, source, out):
    # Layers up to pool3: 4 octaves need 121 px, 3 octaves fit in 64.
    result = invoke(runner, "-s", str(source), "--octaves", "4", "--layers", "conv1_1,pool3", "-o", str(out))
    line = error_line(result, 1, str(source), "64×64", "4 octave(s)")
    assert re.search(r"--octaves [1-3]\b", line), line
    assert_nothing_written(out)


def test_a_one_pixel_source_is_refused_saying_it_is_too_small(runner, tmp_path, out):
    path = write_array(tmp_path / "dot.png", 1, 1)
    result = invoke(runner, "-s", str(path), *TINY, "-o", str(out))
    error_line(result, 1, str(path), "1×1 px", "larger image")
    assert_nothing_written(out)


def test_an_extreme_aspect_ratio_source_is_refused_saying_what_to_change(runner, tmp_path, out):
    path = write_array(tmp_path / "strip.png", 8, 4000)
    result = invoke(runner, "-s", str(path), "-W", "48", "-H", "48", "-o", str(out))
    line = error_line(result, 1, str(path), "4000×8 px", "short side")
    assert "--layers" in line or "--octaves" in line, line
    assert_nothing_written(out)


def test_an_extreme_aspect_ratio_output_names_the_size_options(runner, source, out):
    result = invoke(runner, "-s", str(source), "--octaves", "2", "-W", "4000", "-H", "8", "-o", str(out))
    line = error_line(result, 1, "4000×8")
    assert "-H" in line or "--height" in line, line


def test_a_glob_pattern_matching_nothing_exits_1_naming_it(runner, tmp_path, out):
    pattern = str(tmp_path / "*.nothing")
    result = invoke(runner, "-s", pattern, *TINY, "-o", str(out))
    error_line(result, 1, pattern, "no files match")
    assert_nothing_written(out)


def test_a_source_folder_skips_unreadable_files_and_says_so(
    runner, tmp_path, samples_dir, bad_image_files, out
):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_gravel(folder / "a.png", 64, samples_dir)
    (folder / "b.png").write_bytes(bad_image_files["text"].read_bytes())
    result = invoke(runner, "-s", str(folder), *TINY, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    warning = next(line for line in result.output.splitlines() if line.startswith("Warning: "))
    assert "skipped 1 of 2" in warning
    assert str(folder / "b.png") in result.output
    assert read_json(out)["stop_reason"] == "max_iter"


def test_a_source_folder_with_no_readable_image_exits_1_naming_the_folder(
    runner, tmp_path, bad_image_files, out
):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "x.png").write_bytes(bad_image_files["text"].read_bytes())
    (folder / "y.png").write_bytes(b"")
    result = invoke(runner, "-s", str(folder), *TINY, "-o", str(out))
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.output
    first = result.output.splitlines()[0]
    assert first.startswith("Error: ") and str(folder) in first and "no usable images" in first, first
    assert_nothing_written(out)


# ---------------------------------------------------------------------------
# Option values that cannot work
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--layers", "conv1_1,conv9_9"], ["--layers", "conv9_9", "unknown layer"]),
        (["--layers", "conv1_1,conv1_1"], ["--layers", "twice"]),
        (["--layer-weights", "1,2,3"], ["--layer-weights", "(2)", "got 3"]),
        (["--layer-weights", "1,-1"], ["--layer-weights", "-1"]),
        (["--octave-weights", "a,b"], ["--octave-weights", "'a,b'", "numbers"]),
        (["--octave-weights", "1,1,1"], ["--octave-weights", "(2)", "got 3"]),
        (["--octaves", "0"], ["--octaves", "0"]),
        (["--octaves", "11"], ["--octaves", "11"]),
        (["--width", "3"], ["--width", "3"]),
        (["-H", "3"], ["--height", "3"]),
        (["--source-scale", "0"], ["--source-scale", "0"]),
        (["--source-scale", "nan"], ["--source-scale", "nan"]),
        (["--source-width", "3"], ["--source-width", "3"]),
        (["--tol", "-1"], ["--tol", "-1"]),
        (["--time-limit", "0"], ["--time-limit", "0"]),
        (["--max-iter", "0"], ["--max-iter", "0"]),
        (["--seed", "-1"], ["--seed", "-1"]),
        (["--bit-depth", "12"], ["--bit-depth", "12"]),
        (["--padding", "mirror"], ["--padding", "mirror"]),
        (["--max-input-pixels", "10"], ["--max-input-pixels", "10"]),
        (["--init", ""], ["--init"]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) and v and v[0].startswith("-") else None,
)
def test_a_bad_option_value_exits_2_naming_the_option_before_any_work(
    runner, source, out, network_must_not_load, args, fragments
):
    result = invoke(runner, "-s", str(source), *TINY, *args, "-o", str(out))
    error_line(result, 2, *fragments)
    assert network_must_not_load == []
    assert_nothing_written(out)


def test_a_missing_weights_file_exits_1_naming_it(runner, source, out, tmp_path):
    weights = tmp_path / "nope.h5"
    result = invoke(runner, "-s", str(source), *TINY, "--weights", str(weights), "-o", str(out))
    error_line(result, 1, str(weights), "no such weights file")
    assert_nothing_written(out)


def test_a_text_file_as_weights_exits_1_saying_it_is_not_hdf5(runner, source, out, bad_image_files):
    weights = bad_image_files["text"]
    result = invoke(runner, "-s", str(source), *TINY, "--weights", str(weights), "-o", str(out))
    error_line(result, 1, str(weights), "HDF5")
    assert_nothing_written(out)


def test_a_folder_as_weights_exits_2_naming_the_option(runner, source, out, tmp_path, network_must_not_load):
    result = invoke(runner, "-s", str(source), *TINY, "--weights", str(tmp_path), "-o", str(out))
    error_line(result, 2, "--weights", "directory")


def test_a_missing_init_image_exits_1_naming_it(runner, source, out, tmp_path):
    init = tmp_path / "start.png"
    result = invoke(runner, "-s", str(source), *TINY, "--init", str(init), "-o", str(out))
    error_line(result, 1, str(init), "no such file")
    assert_nothing_written(out)


def test_a_missing_source_option_exits_2(runner, out, network_must_not_load):
    result = invoke(runner, *TINY, "-o", str(out))
    error_line(result, 2, "-s", "source")


# ---------------------------------------------------------------------------
# Outputs: checked before the run starts
# ---------------------------------------------------------------------------


def test_an_existing_output_is_untouched_and_the_run_never_starts(
    runner, source, out, monkeypatch, network_must_not_load
):
    out.write_bytes(b"an earlier result")
    os.utime(out, ns=(1_000_000_000, 1_000_000_000))
    sources_loaded: list[object] = []
    monkeypatch.setattr(synthesis_module, "load_sources", lambda *a, **k: sources_loaded.append(a))
    started = time.perf_counter()
    result = invoke(runner, "-s", str(source), *TINY, "-o", str(out))
    elapsed = time.perf_counter() - started
    error_line(result, 1, str(out), "already exists", "--overwrite")
    assert out.read_bytes() == b"an earlier result"
    assert out.stat().st_mtime_ns == 1_000_000_000
    assert not out.with_name("out.png.json").exists()
    assert network_must_not_load == [] and sources_loaded == []
    assert elapsed < 2.0


def test_an_existing_json_sidecar_is_untouched_and_the_run_never_starts(
    runner, source, out, network_must_not_load
):
    sidecar = out.with_name("out.png.json")
    sidecar.write_text('{"from": "an earlier run"}\n')
    result = invoke(runner, "-s", str(source), *TINY, "-o", str(out))
    error_line(result, 1, str(sidecar), "already exists", "--overwrite")
    assert sidecar.read_text() == '{"from": "an earlier run"}\n'
    assert not out.exists()


def test_an_existing_intermediate_blocks_save_every_without_overwrite(
    runner, source, out, network_must_not_load
):
    old = out.with_name("out.iter00001.png")
    old.write_bytes(b"old step")
    result = invoke(runner, "-s", str(source), *TINY, "--save-every", "1", "-o", str(out))
    error_line(result, 1, str(old), "--overwrite")
    assert old.read_bytes() == b"old step"


def test_an_existing_intermediate_is_found_when_the_name_holds_glob_characters(
    runner, source, tmp_path, network_must_not_load
):
    target = tmp_path / "tex[1].png"
    old = tmp_path / "tex[1].iter00001.png"
    old.write_bytes(b"old step")
    result = invoke(runner, "-s", str(source), *TINY, "--save-every", "1", "-o", str(target))
    error_line(result, 1, str(old), "--overwrite")


def test_a_missing_output_folder_exits_1_before_the_run(runner, source, tmp_path, network_must_not_load):
    target = tmp_path / "no" / "such" / "folder" / "out.png"
    result = invoke(runner, "-s", str(source), *TINY, "-o", str(target))
    error_line(result, 1, str(target), "does not exist")


@pytest.mark.parametrize("ext", [".gif", ".bmp", ".txt", ""])
def test_an_unsupported_output_extension_exits_1_listing_the_formats(
    runner, source, tmp_path, network_must_not_load, ext
):
    target = tmp_path / f"out{ext}"
    result = invoke(runner, "-s", str(source), *TINY, "-o", str(target))
    error_line(result, 1, str(target), "unsupported output extension", ".png")
    assert not target.exists()


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".webp"])
def test_16_bit_depth_into_an_8_bit_format_exits_1_before_the_run(
    runner, source, tmp_path, network_must_not_load, ext
):
    target = tmp_path / f"out{ext}"
    result = invoke(runner, "-s", str(source), *TINY, "--bit-depth", "16", "-o", str(target))
    error_line(result, 1, str(target), "8 bits", "--bit-depth")


def test_overwrite_replaces_both_the_image_and_its_json(runner, source, out):
    out.write_bytes(b"old image")
    out.with_name("out.png.json").write_text("old json")
    result = invoke(runner, "-s", str(source), *TINY, "--overwrite", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert load_image(out).shape == (48, 48, 3)
    assert read_json(out)["stop_reason"] in STOP_REASONS


# ---------------------------------------------------------------------------
# Successful runs
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory, samples_dir) -> tuple[Result, Path, Path]:
    """One tiny complete run: (result, source, output image)."""
    folder = tmp_path_factory.mktemp("finished")
    src = write_gravel(folder / "gravel64.png", 64, samples_dir)
    image = folder / "texture.png"
    result = invoke(CliRunner(), "-s", str(src), *TINY, "--seed", "7", "-o", str(image))
    return result, src, image


def test_a_run_exits_0_and_writes_the_image_and_its_json(finished):
    result, _, image = finished
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert load_image(image).shape == (48, 48, 3)
    assert image.with_name("texture.png.json").is_file()
    assert not [p for p in image.parent.iterdir() if p.name.startswith(".")], "temporary files left"


def test_a_run_ends_with_a_summary_naming_the_output(finished):
    result, _, image = finished
    summary = result.output.strip().splitlines()[-1]
    assert summary.startswith(f"{image}: 48×48, loss ")
    assert "3 iterations" in summary


def test_the_json_holds_the_resolved_config_with_every_option(finished):
    config = read_json(finished[2])["config"]
    assert set(config) == {f.name for f in dataclasses.fields(SynthesisConfig)}
    assert set(config["descriptor"]) == {f.name for f in dataclasses.fields(DescriptorConfig)}
    assert config["descriptor"]["octaves"] == 2
    assert config["descriptor"]["layers"] == ["conv1_1", "pool1"]
    assert (config["width"], config["height"], config["max_iter"], config["seed"]) == (48, 48, 3, 7)


def test_the_json_config_rebuilds_the_run_s_config(finished):
    config = read_json(finished[2])["config"]
    flat = {**config.pop("descriptor"), **config}
    # the JSON records what the defaults resolved to with a source image: the spectrum weight 1,
    # statistics auto as the sliced statistic (it fits in memory at this size), and no stage
    # detail (one stage)
    expected = make_config(
        octaves=2,
        layers=("conv1_1", "pool1"),
        max_iter=3,
        width=48,
        height=48,
        seed=7,
        spectrum_weight=1.0,
        statistics=("sliced",),
        stage_detail=False,
    )
    assert make_config(**flat) == expected


def test_the_json_holds_provenance_losses_and_the_stop_reason(finished):
    _, src, image = finished
    data = read_json(image)
    assert re.fullmatch(r"[0-9a-f]{64}", data["weights_sha256"])
    assert {"multiscale", "python", "tensorflow", "numpy", "scipy", "pillow"} <= set(data["versions"])
    assert data["sources"][0]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert data["stop_reason"] == "max_iter"
    assert data["iterations"] == 3 and len(data["history"]) == 3
    assert all(math.isfinite(v) for v in [data["loss"], data["best_loss"], *data["history"]])
    assert len(data["octave_losses"]) == 2


def test_bit_depth_16_writes_a_16_bit_png(runner, source, out):
    result = invoke(runner, "-s", str(source), *TINY, "--bit-depth", "16", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert png_ihdr(out) == (48, 48, 16, 2)
    assert read_json(out)["config"]["bit_depth"] == 16


def test_a_tif_output_is_written(runner, source, tmp_path):
    target = tmp_path / "out.tif"
    result = invoke(runner, "-s", str(source), *TINY, "-o", str(target))
    assert result.exit_code == 0, result.output
    with Image.open(target) as im:
        assert (im.format, im.size, im.mode) == ("TIFF", (48, 48), "RGB")
    assert (tmp_path / "out.tif.json").is_file()


def test_save_every_writes_numbered_intermediates(runner, source, out):
    result = invoke(runner, "-s", str(source), *TINY, "--save-every", "1", "-o", str(out))
    assert result.exit_code == 0, result.output
    steps = sorted(p.name for p in out.parent.glob("out.iter*.png"))
    assert steps == ["out.iter00001.png", "out.iter00002.png", "out.iter00003.png"]
    assert all(load_image(out.parent / name).shape == (48, 48, 3) for name in steps)
    assert out.is_file()


def test_the_bare_synthesize_command_works_the_same(runner, source, out):
    result = invoke(runner, "-s", str(source), *TINY, "-o", str(out), command=synthesize)
    assert result.exit_code == 0, result.output
    assert load_image(out).shape == (48, 48, 3)
    assert read_json(out)["stop_reason"] == "max_iter"


def test_the_bare_synthesize_command_refuses_like_the_group(runner, bad_image_files, out):
    path = bad_image_files["text"]
    result = invoke(runner, "-s", str(path), *TINY, "-o", str(out), command=synthesize)
    error_line(result, 1, str(path), "not a recognised image")


def test_the_default_output_is_the_source_stem_texture_png_in_the_cwd(runner, source, tmp_path, monkeypatch):
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    result = invoke(runner, "-s", str(source), *TINY)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in workdir.iterdir()) == ["gravel64_texture.png", "gravel64_texture.png.json"]


def test_quiet_prints_nothing_on_success(runner, source, out):
    result = invoke(runner, "-s", str(source), *TINY, "-q", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.output == ""
    assert out.is_file()


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        (cli, ["--help"], "synthesize"),
        (cli, ["synthesize", "--help"], "--octaves"),
        (synthesize, ["--help"], "--max-input-pixels"),
        (cli, ["--version"], "multiscale"),
    ],
    ids=["group", "subcommand", "bare", "version"],
)
def test_help_and_version_exit_0(runner, command, args, expected):
    result = runner.invoke(command, args)
    assert result.exit_code == 0, result.output
    assert expected in result.output


#: Options of each command that are not config fields (where files go, what to read, how to print).
NOT_CONFIG = {
    "synthesize": (["-s", "x.png"], {"sources", "output", "quiet", "overwrite", "tileable", "grams",
                   "grams_weights", "join", "recursive", "max_grams_bytes", "count", "animation",
                   "checkpoint", "dry_run"}),
    "stylize": (["-c", "x.png", "-s", "y.png"], {"content", "styles", "output", "quiet", "overwrite", "checkpoint"}),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(NOT_CONFIG))
def test_every_option_default_is_the_config_default(name):
    """One place for defaults: a run given no options gets the config's (stylize picks some of
    synthesize's options, whose defaults come from the synthesis config)."""
    command = cli.commands[name]
    required, skip = NOT_CONFIG[name]
    params = {k: v for k, v in command.make_context(name, required).params.items() if k not in skip}
    params["bit_depth"] = int(params["bit_depth"])
    make = importlib.import_module(f"multiscale.jobs.{name}").make_config
    assert make(**params) == make()


#: The modules of ``cli/`` that each hold one command; the others are shared by them.
COMMAND_MODULES = {"synthesize", "stylize", "resume", "grams"}


def test_command_modules_import_shared_modules_only_never_each_other():
    import ast

    folder = Path(__file__).resolve().parent.parent / "cli"
    found = {}
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1}
        if path.stem in COMMAND_MODULES and imported & COMMAND_MODULES:
            found[path.stem] = sorted(imported & COMMAND_MODULES)
    assert found == {}


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from multiscale_cli.main import cli\n"
        "for args in (['--help'], ['synthesize', '--help']):\n"
        "    try:\n"
        "        cli(args)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
        "assert 'tensorflow' not in sys.modules, 'help imported TensorFlow'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------------
# Faults during a run: NaN, Ctrl-C
# ---------------------------------------------------------------------------


def fail_at_evaluation(monkeypatch: pytest.MonkeyPatch, k: int, fault: Callable[[float], float]) -> None:
    """Make the style objective's k-th evaluation (1-based) return ``fault(loss)``."""
    original = multiscale.objectives.texture.StyleObjective.__call__
    count = {"n": 0}

    def patched(self, x):
        loss, grad = original(self, x)
        count["n"] += 1
        return (fault(loss), grad) if count["n"] >= k else (loss, grad)

    monkeypatch.setattr(multiscale.objectives.texture.StyleObjective, "__call__", patched)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_loss_exits_1_and_keeps_the_best_finite_image(runner, source, out, monkeypatch, value):
    fail_at_evaluation(monkeypatch, 3, lambda loss: value)
    result = invoke(runner, "-s", str(source), *TINY, "--max-iter", "20", "-q", "-o", str(out))
    error_line(result, 1, "non-finite", str(out))
    image = load_image(out)
    assert image.shape == (48, 48, 3) and np.isfinite(image).all()
    data = read_json(out)
    assert data["stop_reason"] == "non_finite"
    assert math.isfinite(data["loss"]) and math.isfinite(data["best_loss"])


def test_a_non_finite_first_evaluation_still_writes_the_image_and_valid_json(
    runner, source, out, monkeypatch
):
    fail_at_evaluation(monkeypatch, 1, lambda loss: math.nan)
    result = invoke(runner, "-s", str(source), *TINY, "-q", "-o", str(out))
    error_line(result, 1, "non-finite", str(out))
    assert np.isfinite(load_image(out)).all()
    data = read_json(out)  # strict JSON: no NaN or Infinity tokens
    assert data["stop_reason"] == "non_finite"
    assert data["best_loss"] is None  # nothing finite was evaluated: the start image is kept


def test_a_non_finite_loss_in_a_series_stops_it_with_the_finished_textures_in_place(
    runner, source, tmp_path, monkeypatch
):
    runs = {"n": 0}
    real_run, original = synthesis_module.run_synthesis, multiscale.objectives.texture.StyleObjective.__call__

    def counting(*args, **kwargs):
        runs["n"] += 1
        return real_run(*args, **kwargs)

    def patched(self, x):
        loss, grad = original(self, x)
        return (math.nan if runs["n"] == 2 else loss), grad

    monkeypatch.setattr(synthesis_module, "run_synthesis", counting)
    monkeypatch.setattr(multiscale.objectives.texture.StyleObjective, "__call__", patched)
    first, second = tmp_path / "v.001.png", tmp_path / "v.002.png"
    result = invoke(runner, "-s", str(source), *TINY, "--count", "3", "-q", "-o", str(tmp_path / "v.png"))
    line = error_line(result, 1, "Error: texture 2/3: ", "non-finite")
    assert line.endswith(
        f"; written as one set, each with its JSON: {first} (finished), {second} (best finite image); "
        "texture 3 not made"
    ), line
    assert sorted(p.name for p in tmp_path.glob("v.*")) == [
        "v.001.png", "v.001.png.json", "v.002.png", "v.002.png.json"
    ]  # fmt: skip
    assert read_json(second)["stop_reason"] == "non_finite" and np.isfinite(load_image(second)).all()


def test_ctrl_c_during_the_optimisation_exits_130_writing_the_best_image(runner, source, out, monkeypatch):
    def interrupt(loss: float) -> float:
        raise KeyboardInterrupt

    fail_at_evaluation(monkeypatch, 3, interrupt)
    result = invoke(runner, "-s", str(source), *TINY, "--max-iter", "20", "-q", "-o", str(out))
    error_line(result, 130, "interrupted", str(out), "out.png.json")
    assert load_image(out).shape == (48, 48, 3)
    assert read_json(out)["stop_reason"] == "interrupted"


def test_ctrl_c_before_the_optimisation_exits_130_and_writes_nothing(runner, source, out, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthesis_module, "load_sources", interrupt)
    result = invoke(runner, "-s", str(source), *TINY, "-o", str(out))
    error_line(result, 130, "interrupted", "nothing written")
    assert_nothing_written(out)


@pytest.mark.slow
def test_a_real_sigint_mid_run_exits_130_with_the_best_image_and_json(tmp_path, samples_dir, interrupt_cli):
    src = write_gravel(tmp_path / "gravel96.png", 96, samples_dir)
    target = tmp_path / "run.png"
    args = ["-s", str(src), "--octaves", "2", "-W", "96", "-H", "96", "--max-iter", "5000", "--tol", "0"]
    args += ["--save-every", "1", "-q", "-o", str(target)]
    returncode, stderr = interrupt_cli(
        ["synthesize", *args], cwd=tmp_path, wait_for=tmp_path / "run.iter00001.png"
    )
    assert returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Error: interrupted") and str(target) in last and "run.png.json" in last, stderr
    assert load_image(target).shape == (96, 96, 3)
    data = read_json(target)
    assert data["stop_reason"] == "interrupted"
    assert data["iterations"] >= 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left"
    # ... and a checkpoint that `multiscale resume` continues.
    assert "multiscale resume" in last and data["checkpoint"], stderr
    checkpoint = json.loads((Path(data["checkpoint"]) / "checkpoint.json").read_text())
    assert checkpoint["iteration"] == data["iterations"]


def test_the_bar_of_a_run_in_stages_moves_by_the_work_done_and_names_the_iterations():
    # 350 of a 1024² plan's 657 iterations are its first stage's, and 7 % of its work: a bar
    # (and its time estimate) that went by the iterations would stand past half way there
    from multiscale_cli.progress import WORK_STEPS, ProgressBar

    from multiscale.jobs.runner import StageProgress

    progress = StageProgress(
        iteration=350, max_iter=657, evaluations=380, loss=0.5, best_loss=0.5, elapsed_s=40.0,
        stage=1, stages=4, stage_iteration=350, height=128, width=128, work=0.066,
    )  # fmt: skip
    with ProgressBar(total=657, label="synthesize") as bar:
        bar(progress)
        assert (bar._bar.pos, bar._bar.length) == (66, WORK_STEPS)
        assert "stage 1/4 128×128  it 350/657" in bar._describe(progress)
