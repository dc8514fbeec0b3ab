"""Fault tolerance: stop signals, kill -9, interrupts during writes and a full disk.

The slow tests drive a real CLI subprocess: SIGTERM, SIGHUP and SIGINT at
seeded random moments, SIGKILL at seeded random moments of a run that
checkpoints every iteration (each followed by a load and a resume), and a
full disk made real with ``RLIMIT_FSIZE`` (a write past it fails with EFBIG,
as on a full file system), never a mocked write.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from multiscale_cli import errors as cli_errors
from multiscale_cli.main import cli

from multiscale.config import DescriptorConfig, SynthesisConfig
from multiscale.errors import CheckpointError, OutputError
from multiscale.io import load_image, save_image
from multiscale.jobs.checkpoint import default_folder, find_checkpoint, read_checkpoint, write_checkpoint
from multiscale.optim.projected import minimize

CONFIG = SynthesisConfig(
    descriptor=DescriptorConfig(octaves=2, layers=("conv1_1", "pool1")),
    width=8, height=8, optimizer="projected", checkpoint_every=2,
)  # fmt: skip
GRAMS = {(k, layer): np.eye(64) * (k + 1) for k in range(2) for layer in ("conv1_1", "pool1")}
#: A tiny run: 48 px, 2 octaves, shallow layers (≈ 50 ms an iteration with a checkpoint each).
TINY = ["--octaves", "2", "--layers", "conv1_1,pool1", "-W", "48", "-H", "48"]
_CODE = (
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "from multiscale_cli.main import cli; cli()"
)


def _state(iterations: int):
    """An optimiser state after ``iterations`` (a quartic: no early convergence)."""
    target = np.linspace(0, 1, 8 * 8 * 3)
    res = minimize(
        lambda x: (float(((x - target) ** 4).sum()), 4 * (x - target) ** 3), np.full(target.size, 0.5),
        max_iter=iterations, tol=0.0,
    )  # fmt: skip
    assert res.state.iteration == iterations
    return res.state


def _write(folder: Path, iterations: int, **kwargs) -> Path:
    return write_checkpoint(
        folder, config=CONFIG, output=folder.parent / "out.png", grams=GRAMS, mean_color=np.array([0.1, 0.2, 0.3]),
        sources=[], state=_state(iterations), shape=(8, 8, 3), **kwargs,
    )  # fmt: skip


def _leftovers(folder: Path) -> list[str]:
    """Temporary files or folders beside or inside ``folder``: none may stay after a write."""
    names = [p.name for p in folder.parent.iterdir() if p.name.startswith(".") or ".tmp-" in p.name]
    names += [p.name for p in folder.parent.iterdir() if ".old-" in p.name]
    if folder.is_dir():
        names += [p.name for p in folder.iterdir() if p.name.startswith(".")]
    return names


# --------------------------------------------------------------------------- checkpoints as a whole


def test_a_new_checkpoint_replaces_the_old_as_a_whole_and_leaves_nothing_behind(tmp_path):
    folder = _write(default_folder(tmp_path / "out.png"), 3)
    inode = (folder / "targets.npz").stat().st_ino
    _write(folder, 5, write_targets=False)
    assert read_checkpoint(folder).state.iteration == 5
    assert (folder / "targets.npz").stat().st_ino == inode  # linked, not written again
    assert _leftovers(folder) == []


def test_after_a_crash_between_the_two_renames_the_set_aside_checkpoint_is_read_and_replaced(tmp_path):
    folder = _write(default_folder(tmp_path / "out.png"), 3)
    # the state a crash leaves between "old → FOLDER.old-X" and "new → FOLDER"
    os.rename(folder, folder.with_name(folder.name + ".old-1234abcd"))
    (tmp_path / (folder.name + ".tmp-5678ef01")).mkdir()
    assert find_checkpoint(folder) == folder.with_name(folder.name + ".old-1234abcd")
    ck = read_checkpoint(folder)
    assert ck.folder == folder and ck.state.iteration == 3  # a resume writes to FOLDER
    _write(folder, 4, write_targets=False)
    assert read_checkpoint(folder).state.iteration == 4 and _leftovers(folder) == []


def test_an_interrupt_during_a_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    import multiscale.jobs.checkpoint as checkpoint

    folder = _write(default_folder(tmp_path / "out.png"), 3)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "_write_previews", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _write(folder, 5, write_targets=False)
    assert read_checkpoint(folder).state.iteration == 3 and _leftovers(folder) == []


def test_a_folder_that_is_not_a_checkpoint_is_never_replaced(tmp_path):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(CheckpointError, match="photos: holds files that are not a checkpoint's"):
        _write(mine, 3)
    assert (mine / "holiday.jpg").read_bytes() == b"precious" and _leftovers(mine) == []


def _frame_set(folder: Path, seed: int) -> list[Path]:
    from multiscale.jobs.animate import save_frames

    frames = np.random.default_rng(seed).uniform(0, 1, (3, 48, 48, 3)).astype(np.float32)
    return save_frames(folder / "out.png", frames, animation=folder / "out.webp", overwrite=True)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_animation_frames_appear_as_a_set_a_full_disk_keeps_the_previous_set(tmp_path):
    written = _frame_set(tmp_path, 0)
    before = _snapshot(tmp_path)
    largest_frame = max(p.stat().st_size for p in written[:-1])
    assert written[-1].stat().st_size > largest_frame + 4096  # the animation is what no longer fits
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    xfsz = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (largest_frame + 4096, hard))
    try:
        with pytest.raises(OutputError, match=r"out\.webp: cannot write: File too large"):
            _frame_set(tmp_path, 1)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, xfsz)
    assert _snapshot(tmp_path) == before  # old frames and animation intact, no temporary file


def test_an_interrupt_while_writing_frames_keeps_the_previous_set(tmp_path, monkeypatch):
    import multiscale.jobs.animate as animate

    _frame_set(tmp_path, 0)
    before = _snapshot(tmp_path)
    real, calls = animate.save_image, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(animate, "save_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _frame_set(tmp_path, 1)
    assert _snapshot(tmp_path) == before


# --------------------------------------------------------------------------- signals in the CLI


def test_stop_signals_take_ctrl_c_s_path_and_leave_ignored_signals_alone():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with cli_errors.stop_signals():
            assert signal.getsignal(signal.SIGTERM) is cli_errors._on_stop_signal
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)  # the handler runs at the next bytecode
            error = cli_errors.Interrupted("interrupted; best image so far written to x.png")
            assert error.exit_code == 143
            assert error.message == "interrupted by SIGTERM; best image so far written to x.png"
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_finaliser_that_fails_after_a_stop_prints_no_traceback(capsys):
    """A stop can fall inside a constructor (zipfile.ZipFile's, writing a checkpoint's .npz); the
    half-made object then fails when it is collected, which Python reports as "Exception ignored"
    with a traceback. While a command runs and after a stop, that goes to the debug log."""
    import gc

    class HalfMade:
        def __del__(self):
            raise AttributeError("'ZipFile' object has no attribute '_writing'")

    before = sys.unraisablehook
    with cli_errors.stop_signals():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        HalfMade()
        gc.collect()
    assert "Traceback" not in capsys.readouterr().err
    assert sys.unraisablehook is before  # the host's hook is back
    # before any stop, and outside a command, such an error is reported as Python reports it
    seen = []
    previous, sys.unraisablehook = sys.unraisablehook, seen.append
    try:
        with cli_errors.stop_signals():
            HalfMade()
            gc.collect()
        assert len(seen) == 1 and isinstance(seen[0].exc_value, AttributeError)
    finally:
        sys.unraisablehook = previous


@pytest.fixture(scope="module")
def source_file(samples_dir, tmp_path_factory):
    return save_image(
        tmp_path_factory.mktemp("src") / "src.png", load_image(samples_dir / "gravel.png")[:64, :64]
    )


def test_ctrl_c_during_a_periodic_checkpoint_keeps_the_best_image_and_a_checkpoint(
    source_file, tmp_path, monkeypatch
):
    import multiscale.jobs.checkpoint as checkpoint

    real, calls = checkpoint.write_checkpoint, []

    def second_interrupted(*args, **kwargs):
        calls.append(kwargs["state"].iteration)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "write_checkpoint", second_interrupted)
    out = tmp_path / "run.png"
    args = ["synthesize", "-s", str(source_file), *TINY, "--max-iter", "6", "--checkpoint-every", "1"]
    result = CliRunner().invoke(cli, [*args, "-q", "-o", str(out)])
    assert result.exit_code == 130, result.output
    assert "best image so far written to" in result.output and "Traceback" not in result.output
    report = json.loads(out.with_name("run.png.json").read_text())
    assert report["stop_reason"] == "interrupted" and report["iterations"] == 2
    assert load_image(out).shape == (48, 48, 3)
    assert calls == [1, 2, 2]  # the interrupted write, then the stop's, after the image
    assert read_checkpoint(default_folder(out)).state.iteration == 2 and _leftovers(default_folder(out)) == []


def test_sigterm_during_grams_build_keeps_the_images_measured_so_far(tmp_path, monkeypatch):
    import multiscale.descriptors.build as build
    from multiscale.descriptors.descriptor import GramDescriptor

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        save_image(photos / f"p{i}.png", rng.uniform(0, 1, (40, 40, 3)).astype(np.float32))
    original, calls = build._measure_into, []

    def measure(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal, handled as the CLI installs it
            time.sleep(5)
        return original(*args, **kwargs)

    monkeypatch.setattr(build, "_measure_into", measure)
    out = tmp_path / "part.grams.npz"
    result = CliRunner().invoke(
        cli, ["grams", "build", str(photos), "-o", str(out), "--octaves", "2", "--layers", "conv1_1,pool1"]
    )
    assert result.exit_code == 143, result.output
    assert "interrupted by SIGTERM after 2 image(s)" in result.output and "Traceback" not in result.output
    assert GramDescriptor.load(out).count == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_ctrl_c_while_the_driver_takes_over_a_segment_s_memory_keeps_the_image_and_the_last_checkpoint(
    source_file, tmp_path, monkeypatch
):
    """Outside the driver's own handling (its pairs may be half rearranged): no checkpoint from them."""
    import multiscale.optim.projected as lbfgs

    real, calls = lbfgs._Driver.restore, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(lbfgs._Driver, "restore", interrupted)
    out = tmp_path / "run.png"
    args = ["synthesize", "-s", str(source_file), *TINY, "--max-iter", "9", "--checkpoint-every", "1"]
    result = CliRunner().invoke(cli, [*args, "-q", "-o", str(out)])
    assert result.exit_code == 130 and "best image so far written to" in result.output, result.output
    report = json.loads(out.with_name("run.png.json").read_text())
    assert report["stop_reason"] == "interrupted" and report["iterations"] == 3
    assert read_checkpoint(default_folder(out)).state.iteration == 3 and _leftovers(default_folder(out)) == []


def test_the_best_image_is_written_at_once_even_while_an_evaluation_holds_the_main_thread(
    source_file, tmp_path, monkeypatch
):
    """SIGTERM during a long C call (as a TensorFlow evaluation is): Python's handler waits for it,
    the helper thread woken by the signal writes the best image before it returns."""
    import zlib

    from multiscale_cli.output import OutputPlan

    import multiscale.objectives.texture as losses

    events: list[tuple[str, str]] = []
    real_call, real_handler, real_save = (
        losses.StyleObjective.__call__,
        cli_errors._on_stop_signal,
        OutputPlan.save_best_now,
    )
    data, calls = os.urandom(80_000_000), []

    def slow_evaluation(self, x):
        calls.append(1)
        if len(calls) == 4:  # a few iterations in: a best image exists
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
            zlib.compress(data, 9)  # ≈ 1 s without the GIL and without a Python bytecode
        return real_call(self, x)

    def handler(signum, frame):
        events.append(("handler", threading.current_thread().name))
        real_handler(signum, frame)

    def save_best_now(self):
        events.append(("early image", threading.current_thread().name))
        real_save(self)

    monkeypatch.setattr(losses.StyleObjective, "__call__", slow_evaluation)
    monkeypatch.setattr(cli_errors, "_on_stop_signal", handler)
    monkeypatch.setattr(OutputPlan, "save_best_now", save_best_now)
    out = tmp_path / "run.png"
    result = CliRunner().invoke(
        cli, ["synthesize", "-s", str(source_file), *TINY, "--max-iter", "50", "-q", "-o", str(out)]
    )
    assert result.exit_code == 143, result.output
    assert events[:2] == [("early image", "multiscale-stop-signal"), ("handler", "MainThread")]
    report = json.loads(out.with_name("run.png.json").read_text())
    assert report["stop_reason"] == "interrupted" and load_image(out).shape == (48, 48, 3)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert signal.set_wakeup_fd(-1) == -1  # restored


# --------------------------------------------------------------------------- real subprocesses


def _start(args: list[str], cwd: Path, *, file_size_limit: int | None = None) -> subprocess.Popen:
    """``multiscale ARGS`` in a subprocess with SIGINT's default handler (see conftest)."""

    def prepare() -> None:
        # As in a terminal, whatever the test runner's own dispositions (nohup ignores SIGHUP).
        for s in (signal.SIGHUP, signal.SIGTERM):
            signal.signal(s, signal.SIG_DFL)
        if file_size_limit is not None:
            # A write past the limit then fails with EFBIG, as on a full disk (not SIGXFSZ's core dump).
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, "-c", _CODE, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=prepare,
    )  # fmt: skip


def _iteration(folder: Path) -> int:
    """The iteration of the checkpoint at ``folder`` (-1: none readable yet)."""
    try:
        found = find_checkpoint(folder)
        return -1 if found is None else json.loads((found / "checkpoint.json").read_text())["iteration"]
    except (OSError, ValueError, KeyError):
        return -1


def _wait_for_checkpoint(proc: subprocess.Popen, folder: Path, *, after: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while _iteration(folder) <= after:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"no checkpoint after iteration {after} within {timeout} s"
        time.sleep(0.02)


def _finish(proc: subprocess.Popen, timeout: float = 60) -> str:
    try:
        return proc.communicate(timeout=timeout)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "seed"), [("SIGTERM", 1), ("SIGHUP", 2), ("SIGINT", 3)])
def test_a_stop_signal_at_a_random_moment_writes_the_best_image_then_a_checkpoint(
    source_file, tmp_path, name, seed
):
    """The signal falls anywhere in an iteration, checkpoint writes included (one each iteration)."""
    signum = getattr(signal, name)
    out = tmp_path / "run.png"
    args = ["synthesize", "-s", str(source_file), *TINY, "--max-iter", "100000", "--tol", "0"]
    proc = _start([*args, "--checkpoint-every", "1", "-q", "-o", str(out)], tmp_path)
    _wait_for_checkpoint(proc, default_folder(out), after=0)
    time.sleep(random.Random(seed).uniform(0.0, 0.5))
    sent = time.monotonic()
    proc.send_signal(signum)
    stderr = _finish(proc)
    assert proc.returncode == 128 + signum, stderr
    assert time.monotonic() - sent < 20, "a scheduler's grace period is often 10-30 s"
    last = stderr.strip().splitlines()[-1]
    by = "" if name == "SIGINT" else f" by {name}"
    assert last.startswith(f"Error: interrupted{by}; best image so far written to {out}"), stderr
    assert "multiscale resume" in last and "Traceback" not in stderr
    report = json.loads(out.with_name("run.png.json").read_text())
    assert report["stop_reason"] == "interrupted" and load_image(out).shape == (48, 48, 3)
    ck = read_checkpoint(default_folder(out))
    assert ck.state.iteration == report["iterations"] and ck.state.best_loss == report["best_loss"]
    assert _leftovers(default_folder(out)) == [] and not [
        p for p in tmp_path.iterdir() if p.name.startswith(".")
    ]


@pytest.mark.slow
def test_a_second_sigterm_during_the_writes_ends_at_once_and_corrupts_nothing(source_file, tmp_path):
    out = tmp_path / "run.png"
    args = ["synthesize", "-s", str(source_file), *TINY, "--max-iter", "100000", "--tol", "0"]
    proc = _start([*args, "--checkpoint-every", "1", "-q", "-o", str(out)], tmp_path)
    _wait_for_checkpoint(proc, default_folder(out), after=2)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    stderr = _finish(proc)
    # 143 = 128 + SIGTERM; a second signal that lands after the stop's writes, while the
    # interpreter shuts down with the handlers restored, ends it by the default action
    # (-15 here; a shell reports that as 143 too)
    assert proc.returncode in (143, -signal.SIGTERM), stderr
    assert "Traceback" not in stderr
    if proc.returncode == 143:
        assert stderr.strip().splitlines()[-1].startswith("Error: interrupted by SIGTERM")
    # whatever was written is whole: the image (if it got there) and a checkpoint (old or new)
    if out.exists():
        assert load_image(out).shape == (48, 48, 3)
    assert read_checkpoint(default_folder(out)).state.iteration >= 3


@pytest.mark.slow
def test_kill_9_at_random_moments_always_leaves_a_checkpoint_that_resumes_to_the_uninterrupted_loss(
    source_file, tmp_path
):
    """A chain of runs killed with SIGKILL (synthesize, then `resume` again and again); after every kill
    the checkpoint loads and a resumed run ends at the uninterrupted run's loss, to the last bit."""
    import dataclasses

    from multiscale.jobs.synthesize import resume_synthesis, run_synthesis

    rng = random.Random(14)
    kills = 5
    out = tmp_path / "run.png"
    folder = default_folder(out)
    reached, during_write, copies = 0, 0, []
    for k in range(kills):
        if k == 0:  # it never ends on its own: every run in the chain is killed
            args = ["synthesize", "-s", str(source_file), *TINY, "--tol", "0", "--checkpoint-every", "1"]
            args += ["--max-iter", "100000", "-q", "-o", str(out)]
        else:
            args = ["resume", str(folder), "-q"]
        proc = _start(args, tmp_path)
        _wait_for_checkpoint(proc, folder, after=reached)
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        _finish(proc)
        assert proc.returncode == -signal.SIGKILL
        during_write += any(".tmp-" in p.name or ".old-" in p.name for p in tmp_path.iterdir())
        ck = read_checkpoint(folder)  # never refused
        assert ck.state.iteration >= reached
        reached = ck.state.iteration
        copies.append(tmp_path / f"copy{k}.ckpt")
        shutil.copytree(find_checkpoint(folder), copies[-1])
    end = reached + 5
    whole = run_synthesis([load_image(source_file)], config=dataclasses.replace(ck.config, max_iter=end))
    print(
        f"\nkill -9: {kills} kills, {kills} checkpoints loaded, {during_write} kill(s) during a checkpoint write"
    )
    for copy in copies:
        resumed, _ = resume_synthesis(copy, max_iter=end)
        assert resumed.report.loss == whole.report.loss, f"resumed from {copy.name}"
        np.testing.assert_array_equal(resumed.image, whole.image)


@pytest.mark.slow
def test_a_full_disk_during_the_output_write_keeps_the_previous_output(source_file, tmp_path):
    out = tmp_path / "run.png"
    save_image(out, np.full((48, 48, 3), 0.5, np.float32))
    before = out.read_bytes()
    assert len(before) < 2048
    proc = _start(
        ["synthesize", "-s", str(source_file), *TINY, "--max-iter", "2", "--overwrite", "-q", "-o", str(out)],
        tmp_path, file_size_limit=2048,
    )  # fmt: skip
    stderr = _finish(proc)
    assert proc.returncode == 1, stderr
    assert stderr.strip().splitlines()[-1] == f"Error: {out}: cannot write: File too large", stderr
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["run.png"]


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_checkpoint(source_file, tmp_path):
    out = tmp_path / "run.png"
    folder = default_folder(out)
    args = ["synthesize", "-s", str(source_file), *TINY, "--max-iter", "3", "--checkpoint-every", "1"]
    first = CliRunner().invoke(cli, [*args, "-q", "-o", str(out)])
    assert first.exit_code == 0, first.output
    # state.npz (≈ 200 kB at 48²) no longer fits; the previews and the JSON would
    proc = _start(["resume", str(folder), "--max-iter", "6", "-q"], tmp_path, file_size_limit=64 * 1024)
    stderr = _finish(proc)
    assert proc.returncode == 1, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"Error: {folder}: cannot write the checkpoint (File too large); the previous one, if any, is kept"
    ), stderr
    assert read_checkpoint(folder).state.iteration == 3 and _leftovers(folder) == []


# --------------------------------------------------------------------------- a --count series as a set


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _earlier_series(folder: Path, count: int) -> dict[str, bytes]:
    """The images and JSONs an earlier ``--count`` run left as v.001.png …; the folder's files."""
    for i in range(1, count + 1):
        save_image(folder / f"v.{i:03d}.png", np.full((48, 48, 3), i / 10, np.float32))
        (folder / f"v.{i:03d}.png.json").write_text(json.dumps({"earlier": i}))
    return _files(folder)


def _series_report(seed: int, stop_reason: str = "max_iter"):
    from types import SimpleNamespace

    report = {"config": {"seed": seed}, "stop_reason": stop_reason}
    return SimpleNamespace(
        interrupted=stop_reason == "interrupted", stop_reason=stop_reason, to_dict=lambda: report
    )


def test_a_full_disk_in_the_middle_of_a_series_keeps_the_earlier_series_whole(tmp_path):
    """Two variations done, the third no longer fits: none of the three replaces the earlier ones."""
    from types import SimpleNamespace

    from multiscale_cli.output import OutputPlan, SeriesPlan

    (tmp_path / "src.png").write_bytes(b"")  # kept apart from the series in the snapshot
    before = _earlier_series(tmp_path, 3)
    out = OutputPlan.for_run(output=str(tmp_path / "v.png"), default_stem="v", config=CONFIG, overwrite=True)
    rng = np.random.default_rng(0)
    flat, noisy = np.full((48, 48, 3), 0.5, np.float32), rng.uniform(0, 1, (96, 96, 3)).astype(np.float32)
    series = SeriesPlan.of(out, 3)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    xfsz = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, as on a full disk
    with series:
        for plan, seed in zip(series.plans[:2], (0, 1), strict=True):
            plan.save_result(SimpleNamespace(image=flat, report=_series_report(seed)))
        assert _snapshot(tmp_path) != before  # two variations wait under temporary names …
        assert {k: v for k, v in _snapshot(tmp_path).items() if not k.startswith(".")} == before  # … unseen
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, hard))  # 96² of noise is ≈ 28 kB as PNG: no
        try:
            with pytest.raises(OutputError, match=r"v\.003\.png: cannot write: File too large"):
                series.plans[2].save_result(SimpleNamespace(image=noisy, report=_series_report(2)))
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, xfsz)
    assert _snapshot(tmp_path) == before  # the earlier series whole, no temporary file left
    assert series.written is None


def test_a_stopped_series_puts_the_finished_variations_and_the_best_image_in_place_together(tmp_path):
    """The stop's set replaces the earlier series: its later members go, so no two series mix."""
    from types import SimpleNamespace

    from multiscale_cli.output import OutputPlan, SeriesPlan

    _earlier_series(tmp_path, 3)
    out = OutputPlan.for_run(output=str(tmp_path / "v.png"), default_stem="v", config=CONFIG, overwrite=True)
    image = np.full((48, 48, 3), 0.25, np.float32)
    with SeriesPlan.of(out, 3) as series:
        series.plans[0].save_result(SimpleNamespace(image=image, report=_series_report(0)))
        second = series.plans[1]
        second.latest = SimpleNamespace(best_image=image + 0.5)  # the run's best image at the signal
        second.save_best_now()  # the helper thread's action
        assert sorted(p.name for p in tmp_path.iterdir()) == ["v.001.png", "v.001.png.json", "v.002.png"]
        assert json.loads((tmp_path / "v.001.png.json").read_text())["config"]["seed"] == 0
        assert load_image(tmp_path / "v.002.png")[0, 0, 0] == pytest.approx(0.75, abs=1 / 255)
        # then the run's result, with its JSON
        second.save_result(SimpleNamespace(image=image, report=_series_report(1, "interrupted")))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "v.001.png", "v.001.png.json", "v.002.png", "v.002.png.json"
    ]  # fmt: skip
    assert load_image(tmp_path / "v.002.png")[0, 0, 0] == pytest.approx(0.25, abs=1 / 255)
    assert series.images() == [tmp_path / "v.001.png", tmp_path / "v.002.png"]


def test_ctrl_c_between_two_textures_puts_the_finished_ones_in_place(source_file, tmp_path, monkeypatch):
    import multiscale.jobs.synthesize as jobs

    real, calls = jobs.run_synthesis, []

    def second_interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # as the second texture loads the network
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs, "run_synthesis", second_interrupted)
    out = tmp_path / "v.png"
    args = ["synthesize", "-s", str(source_file), *TINY, "--max-iter", "2", "--count", "3"]
    result = CliRunner().invoke(cli, [*args, "-q", "-o", str(out)])
    assert result.exit_code == 130, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"Error: interrupted before texture 2/3 made an image; written as one set, each with its JSON: "
        f"{tmp_path / 'v.001.png'}"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.001.png", "v.001.png.json"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SIGTERM", "SIGKILL"])
def test_a_count_series_appears_as_a_whole_and_a_stop_keeps_the_finished_textures(
    source_file, tmp_path, name
):
    """While texture 2 of 3 runs, texture 1 is done but unseen: the earlier series is what a reader finds.
    SIGKILL then leaves it so; SIGTERM puts texture 1 and texture 2's best image in their place."""
    signum = getattr(signal, name)
    before = _earlier_series(tmp_path, 3)
    out = tmp_path / "v.png"
    args = ["synthesize", "-s", str(source_file), *TINY, "--max-iter", "100000", "--tol", "0", "--count", "3"]
    # the time limit ends each texture (the series goes on); a checkpoint each iteration says texture 2 runs
    args += ["--time-limit", "3", "--checkpoint-every", "1", "--overwrite", "-q", "-o", str(out)]
    proc = _start(args, tmp_path)
    second = tmp_path / "v.002.png"
    _wait_for_checkpoint(proc, default_folder(second), after=0)
    try:
        assert _files(tmp_path).items() >= before.items()  # the earlier series, untouched
        assert any(p.name.startswith(".v.001.png.") for p in tmp_path.iterdir())  # texture 1, unseen
    finally:
        proc.send_signal(signum)
        stderr = _finish(proc)
    assert proc.returncode == (128 + signum if name == "SIGTERM" else -signum), stderr
    series = {p.name for p in tmp_path.iterdir() if p.name.startswith("v.") and ".ckpt" not in p.name}
    if name == "SIGKILL":
        assert series == set(before) and all((tmp_path / n).read_bytes() == before[n] for n in series)
        return
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(
        "Error: interrupted by SIGTERM in texture 2/3; written as one set, each with its JSON: "
        f"{tmp_path / 'v.001.png'} (finished), {second} (best so far); checkpoint in {second}.ckpt"
    ), stderr
    assert last.endswith("; texture 3 not made") and "Traceback" not in stderr
    assert series == {
        "v.001.png",
        "v.001.png.json",
        "v.002.png",
        "v.002.png.json",
    }  # 3: the earlier one's, gone
    first = json.loads((tmp_path / "v.001.png.json").read_text())
    report = json.loads((tmp_path / "v.002.png.json").read_text())
    assert first["stop_reason"] == "time_limit" and first["config"]["seed"] == 0
    assert report["stop_reason"] == "interrupted" and report["config"]["seed"] == 1
    assert load_image(second).shape == (48, 48, 3)
    assert read_checkpoint(default_folder(second)).state.iteration == report["iterations"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_keeps_the_previous_checkpoint_and_says_which_folder(tmp_path):
    folder = _write(default_folder(tmp_path / "out.png"), 3)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(
            OutputError, match="out.png.ckpt: cannot create the checkpoint folder: Permission denied"
        ):
            _write(folder, 5, write_targets=False)
    finally:
        tmp_path.chmod(0o755)
    assert read_checkpoint(folder).state.iteration == 3 and _leftovers(folder) == []


def test_write_errors_name_the_checkpoint_folder(tmp_path):
    """The message a full disk gives (the real thing is test_a_full_disk_during_a_checkpoint_write_…)."""
    folder = _write(default_folder(tmp_path / "out.png"), 3)
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="cannot create the checkpoint folder"):
        _write(tmp_path / "file" / "x.ckpt", 3)
    assert read_checkpoint(folder).state.iteration == 3


# --------------------------------------------------------------------------- resume within the estimate


@pytest.mark.parametrize(
    "job, loader",
    [
        (["synthesize", "-W", "48", "-H", "48"], "multiscale.optim.projected.load_state"),
        (["stylize", "-c", "{src}", "--width", "48", "--stages", "1"],
         "multiscale.jobs.checkpoint.read_style_checkpoint"),
    ],
    ids=["synthesize", "stylize"],
)  # fmt: skip
def test_a_resume_that_will_not_fit_is_refused_before_its_checkpoint_is_loaded(
    source_file, tmp_path, monkeypatch, job, loader
):
    out = tmp_path / "run.png"
    command = [a.replace("{src}", str(source_file)) for a in job]
    args = [*command, "-s", str(source_file), "--octaves", "2", "--layers", "conv1_1,pool1", "--max-iter", "2",
            "--checkpoint-every", "1", "-q"]  # fmt: skip
    assert CliRunner().invoke(cli, [*args, "-o", str(out)]).exit_code == 0
    meta = default_folder(out) / "checkpoint.json"
    data = json.loads(meta.read_text())
    data["config"]["max_memory"] = 1 << 20
    meta.write_text(json.dumps(data))

    def never(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded")

    monkeypatch.setattr(loader, never)
    result = CliRunner().invoke(cli, ["resume", str(default_folder(out)), "--max-iter", "4"])
    assert result.exit_code == 1 and "more than the 1.00 MiB allowed" in result.output, result.output


def test_a_loaded_state_is_laid_out_for_the_driver_to_take_over(tmp_path):
    """A resume holds its optimiser state once: the pairs are read into the driver's block."""
    from multiscale.optim.projected import _exported_block

    folder = _write(default_folder(tmp_path / "out.png"), 5)
    state = read_checkpoint(folder).state
    block = _exported_block(state, CONFIG.history)
    assert block is not None and block.shape == (2 * (CONFIG.history + 1) + 2, 8 * 8 * 3)
    assert all(a.flags.writeable for a in (state.x, state.grad, state.best_x))
    target = np.linspace(0, 1, 8 * 8 * 3)
    quartic = lambda x: (float(((x - target) ** 4).sum()), 4 * (x - target) ** 3)  # noqa: E731
    more = minimize(
        quartic, state.x, max_iter=8, tol=0.0, history=CONFIG.history, state=state, overwrite_inputs=True
    )
    assert _exported_block(more.state, CONFIG.history) is block  # the same memory, not a copy
    assert more.state.iteration == 8
