"""Wall time and peak memory of large 4-octave syntheses (1024², 2048², 4096², …).

Each size runs :func:`multiscale.jobs.synthesize.synthesize` in a fresh Python
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
    python benchmarks/scale.py --sizes 8192 --iterations 3 --max-memory 22G --history 1 \
        --tile-size 512 --precision bfloat16 --results
    python benchmarks/scale.py --sizes 1024,2048 --iterations 3 --max-memory 20G --statistics sliced

``--statistics`` is the runs' (default ``auto``: what a user's run would choose at each size); the
statistics each run matched are printed under its row.

``--results`` also writes the rows into benchmarks/RESULTS.md, between the
``scale`` markers, with the machine's description; a size measured again
(with the same precision) replaces its row, other rows stay.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from multiscale.measure.memory import human_bytes, parse_memory  # noqa: E402

START, END = "<!-- scale:start -->", "<!-- scale:end -->"
HEADER = (
    "| size | precision | history | tile | iterations (evaluations) | wall (whole run) | "
    "s / iteration, steady | 250 iterations, projected | peak RSS | estimate ÷ peak |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def child(
    size: int,
    iterations: int,
    history: int,
    max_memory: int,
    tile: int | None,
    precision: str,
    time_limit: float | None,
    statistics: str = "auto",
) -> dict:
    """One run, in this (fresh) process; returns its figures."""
    import numpy as np

    from multiscale.jobs.synthesize import estimate_memory, synthesize
    from multiscale.measure.memory import peak_rss_bytes, process_memory

    started = time.perf_counter()
    marks: list[tuple[int, int, float]] = []
    rss: list[int] = []  # resident bytes at each iteration's callback

    def on_progress(p) -> None:  # noqa: ANN001
        marks.append((p.iteration, p.evaluations, time.perf_counter()))
        rss.append((process_memory() or (0, 0))[0])

    source = np.random.default_rng(0).random((256, 256, 3), dtype=np.float32)
    result = synthesize(
        source, width=size, height=size, max_iter=iterations, history=history, max_memory=max_memory,
        tile_size=tile, callback=on_progress, precision=precision,
        time_limit=time_limit, statistics=tuple(statistics.split(",")),
        stages=1,  # the cost of an iteration at this size, not of a staged run
    )  # fmt: skip
    wall = time.perf_counter() - started
    report = result.report
    # the run's own config as it resolved it (statistics auto → what it chose), so the estimate is the run's
    estimate = estimate_memory(
        report.config, height=size, width=size, sources=[(256, 256)], tile=report.tile_size
    )
    steady = None
    if len(marks) >= 2:
        (i0, _, t0), (i1, _, t1) = marks[0], marks[-1]
        steady = (t1 - t0) / (i1 - i0)
    return {
        "size": size,
        "tile": report.tile_size,
        "iterations": report.iterations,
        "stop_reason": report.stop_reason,
        "evaluations": report.evaluations,
        "wall_s": wall,
        "first_iteration_s": marks[0][2] - started if marks else None,
        "steady_s_per_iteration": steady,
        "peak_rss": peak_rss_bytes(),
        "rss_per_iteration": rss,
        "precision": report.precision.get("precision", precision) if report.precision else precision,
        "estimate": estimate.total,
        "statistics": ",".join(report.config.descriptor.statistics),
        "loss": report.loss,
    }


def _key(row: str) -> tuple[int, str, str]:
    """(size, precision, history) of a table row: a row measured again replaces it."""
    cells = [c.strip() for c in row.split("|")]
    return int(cells[1].rstrip("²")), cells[2], cells[3]


def merge_rows(text: str, rows: list[str], *, note: str) -> str:
    """RESULTS.md with ``rows`` merged into the ``scale`` block: rows of other
    sizes, precisions or histories stay, the notes above the table stay."""
    if START not in text:
        text += f"\n## Large syntheses — `python benchmarks/scale.py`\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    block, tail = rest.split(END, 1)
    lines = block.strip("\n").splitlines()
    notes = [ln for ln in lines if ln and not ln.startswith("|")]
    old = [ln for ln in lines if ln.startswith("| ") and ln.split("|")[1].strip().endswith("²")]
    new = {_key(r): r for r in rows}
    merged = sorted([r for r in old if _key(r) not in new] + rows, key=_key)
    if note not in notes:
        notes.append(note)
    return head + "\n".join([START, *notes, "", HEADER, *merged, END]) + tail


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

    return (
        f"{model} ({', '.join(extras) or 'no AVX-512'}), {os.cpu_count()} cores, {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,2048,4096")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--history", type=int, default=10)
    parser.add_argument("--max-memory", default="8G", help="the run's --max-memory (decides the tiling)")
    parser.add_argument("--tile-size", type=int, default=None)
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "auto"])
    parser.add_argument("--results", action="store_true", help="write the table into benchmarks/RESULTS.md")
    parser.add_argument("--time-limit", type=float, default=None, help="each run's --time-limit, seconds")
    parser.add_argument("--statistics", default="auto", help="the runs' --statistics (default: auto)")
    parser.add_argument("--child", nargs=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        size, iterations, history, max_memory, tile, precision, limit_s, statistics = args.child
        print(json.dumps(child(int(size), int(iterations), int(history), int(max_memory),
                               None if tile == "none" else int(tile), precision,
                               None if limit_s == "none" else float(limit_s), statistics)))  # fmt: skip
        return
    limit = parse_memory(args.max_memory)
    rows = []
    print(machine())
    print(f"4 octaves, default layers, --max-memory {human_bytes(limit)}")
    print(HEADER)
    for size in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--child", str(size), str(args.iterations), str(args.history),
               str(limit), str(args.tile_size or "none"), args.precision,
               str(args.time_limit or "none"), args.statistics]  # fmt: skip
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # its log goes to our stderr
        if proc.returncode != 0:
            why = f"exit code {proc.returncode} (its log is above; -9: killed, e.g. out of memory)"
            line = f"| {size}² | {args.precision} | {args.history} | failed: {why} |"
        else:
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            steady = r["steady_s_per_iteration"]
            line = (
                f"| {size}² | {r['precision']} | {args.history} | {r['tile'] or '-'} | {r['iterations']} ({r['evaluations']}) | {r['wall_s']:.0f} s | "
                + (f"{steady:.1f} s | {250 * steady / 60:.0f} min | " if steady else "- | - | ")
                + f"{human_bytes(r['peak_rss'])} | {r['estimate'] / r['peak_rss']:.2f} |"
            )
        print(line, flush=True)
        if proc.returncode == 0:
            print(
                f"  statistics {r['statistics']}; resident at each iteration: "
                + ", ".join(human_bytes(b) for b in r["rss_per_iteration"])
            )
        rows.append(line)
    if args.results:
        path = ROOT / "benchmarks" / "RESULTS.md"
        text = path.read_text()
        text = merge_rows(text, rows, note=f"Machine: {machine()}. --max-memory {human_bytes(limit)}.")
        path.write_text(text)


if __name__ == "__main__":
    main()
