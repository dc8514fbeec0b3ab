"""Wall time and peak memory of large 4-octave syntheses (1024², 2048², 4096², …).

Each size runs :func:`multiscale.synthesize.synthesize` in a fresh Python
process (peak RSS is a process's high-water mark) from a random 256² source,
with the default layers and driver, for ``--iterations`` iterations. The
loss is evaluated tiled or not as the run decides from its memory estimate
against ``--max-memory`` (or as ``--tile-size`` says). Per size it prints:

* the tile size chosen (``-``: untiled) and the memory estimate;
* the peak RSS (VmHWM) of the whole process, and estimate ÷ measured;
* wall time of the whole run (start-up, targets, tracing included), and the
  steady seconds per iteration (between the first and the last iteration's
  callback) with the projection to 250 iterations.

    python benchmarks/scale.py --sizes 1024,2048,4096 --iterations 3 --max-memory 8G --history 5
    python benchmarks/scale.py --sizes 8192 --iterations 2 --max-memory 22G --history 2

``--results`` also writes the table into benchmarks/RESULTS.md, between the
``scale`` markers, with the machine's description.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from multiscale.memory import human_bytes, parse_memory  # noqa: E402

START, END = "<!-- scale:start -->", "<!-- scale:end -->"


def child(size: int, iterations: int, history: int, max_memory: int, tile: int | None) -> dict:
    """One run, in this (fresh) process; returns its figures."""
    import numpy as np

    from multiscale.memory import peak_rss_bytes
    from multiscale.synthesize import estimate_memory, make_config, synthesize

    started = time.perf_counter()
    marks: list[tuple[int, int, float]] = []

    def on_progress(p) -> None:  # noqa: ANN001
        marks.append((p.iteration, p.evaluations, time.perf_counter()))

    source = np.random.default_rng(0).random((256, 256, 3), dtype=np.float32)
    result = synthesize(
        source, width=size, height=size, max_iter=iterations, history=history, max_memory=max_memory,
        tile_size=tile, callback=on_progress,
    )  # fmt: skip
    wall = time.perf_counter() - started
    report = result.report
    config = make_config(width=size, height=size, history=history, max_memory=max_memory, tile_size=tile)
    estimate = estimate_memory(config, height=size, width=size, sources=[(256, 256)], tile=report.tile_size)
    steady = None
    if len(marks) >= 2:
        (i0, _, t0), (i1, _, t1) = marks[0], marks[-1]
        steady = (t1 - t0) / (i1 - i0)
    return {
        "size": size,
        "tile": report.tile_size,
        "iterations": report.iterations,
        "evaluations": report.evaluations,
        "wall_s": wall,
        "first_iteration_s": marks[0][2] - started if marks else None,
        "steady_s_per_iteration": steady,
        "peak_rss": peak_rss_bytes(),
        "estimate": estimate.total,
        "loss": report.loss,
    }


def machine() -> str:
    model = "unknown CPU"
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"model name\s*:\s*(.+)", text)
        model = found.group(1).strip() if found else model
        flags = set(re.search(r"flags\s*:\s*(.+)", text).group(1).split())  # type: ignore[union-attr]
        extras = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    except OSError:
        extras = []
    import os

    return f"{model} ({', '.join(extras) or 'no AVX-512'}), {os.cpu_count()} cores, {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,2048,4096")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--history", type=int, default=10)
    parser.add_argument("--max-memory", default="8G", help="the run's --max-memory (decides the tiling)")
    parser.add_argument("--tile-size", type=int, default=None)
    parser.add_argument("--results", action="store_true", help="write the table into benchmarks/RESULTS.md")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        size, iterations, history, max_memory, tile = args.child
        print(json.dumps(child(int(size), int(iterations), int(history), int(max_memory),
                               None if tile == "none" else int(tile))))  # fmt: skip
        return
    limit = parse_memory(args.max_memory)
    rows = []
    header = (
        f"| size | tile | iterations (evaluations) | wall (whole run) | s / iteration, steady | "
        f"250 iterations, projected | peak RSS | estimate ÷ peak |\n|---|---|---|---|---|---|---|---|"
    )
    print(machine())
    print(f"4 octaves, default layers, history {args.history}, --max-memory {human_bytes(limit)}")
    print(header)
    for size in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--child", str(size), str(args.iterations), str(args.history),
               str(limit), str(args.tile_size or "none")]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            line = f"| {size}² | failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode} |"
        else:
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            steady = r["steady_s_per_iteration"]
            line = (
                f"| {size}² | {r['tile'] or '-'} | {r['iterations']} ({r['evaluations']}) | {r['wall_s']:.0f} s | "
                + (f"{steady:.1f} s | {250 * steady / 60:.0f} min | " if steady else "- | - | ")
                + f"{human_bytes(r['peak_rss'])} | {r['estimate'] / r['peak_rss']:.2f} |"
            )
        print(line, flush=True)
        rows.append(line)
    if args.results:
        path = ROOT / "benchmarks" / "RESULTS.md"
        text = path.read_text()
        block = "\n".join(
            [START, f"Machine: {machine()}. History {args.history}, --max-memory {human_bytes(limit)}.", "",
             header, *rows, END]  # fmt: skip
        )
        if START in text:
            text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
        else:
            text += "\n## Large syntheses — `python benchmarks/scale.py`\n\n" + block + "\n"
        path.write_text(text)


if __name__ == "__main__":
    main()
