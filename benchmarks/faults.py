"""Fault-tolerance figures: SIGTERM to exit, stop signals at random moments, a resume's peak RSS.

    python benchmarks/faults.py sigterm --size 1024 --delay 60
    python benchmarks/faults.py signals --runs 12 --seed 7
    python benchmarks/faults.py resume-rss --size 512 --iterations 12
    python benchmarks/faults.py kill9 --runs 20 --seed 14

``sigterm``: a synthesis of SIZE² (default options) gets SIGTERM DELAY s after
it starts; prints the seconds from the signal to the image, the checkpoint
and the process's exit. ``signals``: RUNS tiny syntheses (48², a checkpoint
every iteration) each get SIGTERM, SIGINT or SIGHUP at a random moment;
prints how many exited 128 + signal with the image, its JSON and a matching
checkpoint, how many fell during a checkpoint write, and leftovers.
``resume-rss``: peak RSS of a run checkpointed at ITERATIONS and of its
resume to one iteration more (the resume should not exceed the run).
``kill9``: a 48² run checkpointing every iteration is killed with SIGKILL
at RUNS random moments (synthesize, then `resume` again and again); after
each kill the checkpoint is loaded and a copy resumed to the end, whose
loss must be the uninterrupted run's, to the last bit.
Every run is a real CLI subprocess in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "samples" / "sources" / "gravel.png"
CODE = (
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "from multiscale_cli.main import cli; cli()"
)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _default_signals() -> None:
    """In the child: the dispositions of a terminal, whatever this script's (nohup ignores SIGHUP)."""
    for s in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(s, signal.SIG_DFL)


def _cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CODE, *args],
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_signals,
    )


def sigterm(size: int, delay: float, work: Path) -> None:
    out = work / "term.png"
    proc = _cli(["synthesize", "-s", str(SOURCE), "-W", str(size), "-H", str(size), "-q", "-o", str(out)])
    time.sleep(delay)
    sent, wall = time.monotonic(), time.time()
    proc.send_signal(signal.SIGTERM)
    last = ""
    for line in proc.stderr:  # type: ignore[union-attr]
        last = line.strip() or last
    proc.wait()
    done = time.monotonic() - sent

    def at(path: Path) -> str:
        return f"{path.stat().st_mtime - wall:.1f} s" if path.exists() else "never"

    iterations = json.loads(out.with_name("term.png.json").read_text())["iterations"] if out.exists() else 0
    print(
        f"{size}²: SIGTERM after {delay:.0f} s ({iterations} iterations): image at {at(out)}, checkpoint at "
        f"{at(out.with_name('term.png.ckpt') / 'checkpoint.json')}, exit {proc.returncode} at {done:.1f} s"
    )
    print(f"  {last}")


def signals(runs: int, seed: int, work: Path) -> None:
    from multiscale.jobs.checkpoint import read_checkpoint

    source = _crop(work)
    rng = random.Random(seed)
    tally = dict.fromkeys(
        ("exit 128+signal", "image and JSON", "checkpoint = JSON", "during a checkpoint write"), 0
    )
    leftovers = 0
    for k in range(runs):
        folder = work / f"run{k}"
        folder.mkdir()
        out = folder / "o.png"
        sig = rng.choice([signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
        args = ["synthesize", "-s", str(source), "--octaves", "2", "--layers", "conv1_1,pool1", "-W", "48"]
        args += [
            "-H",
            "48",
            "--max-iter",
            "100000",
            "--tol",
            "0",
            "--checkpoint-every",
            "1",
            "-q",
            "-o",
            str(out),
        ]
        proc = _cli(args)
        while not out.with_name("o.png.ckpt").exists():
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(sig)
        proc.communicate()
        tally["exit 128+signal"] += proc.returncode == 128 + sig
        if out.exists():
            report = json.loads(out.with_name("o.png.json").read_text())
            tally["image and JSON"] += 1
            tally["during a checkpoint write"] += "while writing a checkpoint" in report["message"]
            ck = read_checkpoint(out.with_name("o.png.ckpt"))
            tally["checkpoint = JSON"] += ck.state.iteration == report["iterations"]
        leftovers += any(
            p.name.startswith(".") or "tmp-" in p.name or "old-" in p.name for p in folder.iterdir()
        )
    print(f"{runs} stop signals at random moments: " + ", ".join(f"{k} {v}" for k, v in tally.items()))
    print(f"  runs with temporary files left: {leftovers}")


def _peak_rss(args: list[str]) -> float:
    """Peak RSS (MiB) of one CLI run, measured in a fresh child so that earlier runs do not count."""
    code = (
        "import resource, subprocess, sys\n"
        f"subprocess.run([sys.executable, '-c', {CODE!r}, *sys.argv[1:]], check=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=ENV, capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def resume_rss(size: int, iterations: int, work: Path) -> None:
    out = work / "rss.png"
    args = ["synthesize", "-s", str(SOURCE), "-W", str(size), "-H", str(size), "--max-iter", str(iterations)]
    run = _peak_rss([*args, "--checkpoint-every", str(iterations), "-q", "-o", str(out)])
    resumed = _peak_rss(
        ["resume", str(out.with_name("rss.png.ckpt")), "--max-iter", str(iterations + 1), "-q"]
    )
    print(
        f"{size}², history full after {iterations} iterations: run {run:.0f} MiB, its resume {resumed:.0f} MiB"
    )


def kill9(runs: int, seed: int, work: Path) -> None:
    import dataclasses

    import numpy as np

    from multiscale.io import load_image
    from multiscale.jobs.checkpoint import find_checkpoint, read_checkpoint
    from multiscale.jobs.synthesize import resume_synthesis, run_synthesis

    source = _crop(work)
    rng = random.Random(seed)
    out = work / "run.png"
    folder = out.with_name("run.png.ckpt")
    reached, during_write, copies = 0, 0, []
    args = [
        "synthesize",
        "-s",
        str(source),
        "--octaves",
        "2",
        "--layers",
        "conv1_1,pool1",
        "-W",
        "48",
        "-H",
        "48",
    ]
    args += ["--tol", "0", "--checkpoint-every", "1", "--max-iter", "100000", "-q", "-o", str(out)]
    for k in range(runs):
        proc = _cli(args if k == 0 else ["resume", str(folder), "-q"])
        deadline = time.monotonic() + 120
        while _iteration(folder) <= reached and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        during_write += any(".tmp-" in p.name or ".old-" in p.name for p in work.iterdir())
        try:
            reached = read_checkpoint(folder).state.iteration
        except Exception as exc:  # what this counts
            print(f"  kill {k + 1}: checkpoint refused: {exc}")
            continue
        copies.append(work / f"copy{k}.ckpt")
        shutil.copytree(find_checkpoint(folder), copies[-1])
    end = reached + 10
    config = dataclasses.replace(read_checkpoint(folder).config, max_iter=end)
    whole = run_synthesis([load_image(source)], config=config)
    matched = 0
    for copy in copies:
        resumed, _ = resume_synthesis(copy, max_iter=end)
        matched += resumed.report.loss == whole.report.loss and np.array_equal(resumed.image, whole.image)
    print(
        f"kill -9 at {runs} random moments: {len(copies)} checkpoints loaded, {matched} resumed to iteration {end} "
        f"ended at the uninterrupted run's loss (bit for bit), {during_write} kills during a checkpoint write"
    )


def _crop(work: Path) -> Path:
    from PIL import Image

    source = work / "src64.png"
    with Image.open(SOURCE) as im:
        im.crop((0, 0, 64, 64)).save(source)
    return source


def _iteration(folder: Path) -> int:
    from multiscale.jobs.checkpoint import find_checkpoint

    try:
        found = find_checkpoint(folder)
        return -1 if found is None else json.loads((found / "checkpoint.json").read_text())["iteration"]
    except (OSError, ValueError, KeyError):
        return -1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=("sigterm", "signals", "resume-rss", "kill9"))
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--delay", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=12)
    a = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="faults-"))
    try:
        if a.what == "sigterm":
            sigterm(a.size, a.delay, work)
        elif a.what == "signals":
            signals(a.runs, a.seed, work)
        elif a.what == "kill9":
            kill9(a.runs, a.seed, work)
        else:
            resume_rss(a.size, a.iterations, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
