"""Texture quality against published results, by measures no objective in the project optimises.

Runs ``multiscale synthesize`` on every example of a measuring set (one subprocess per texture and seed,
wall seconds recorded), then scores each output against its example with the measures of
``benchmarks/quality_measures.py`` (wavelet-subband GGD KL, sliced-Wasserstein colour distance, chroma
fine-band energy, radial power spectrum, gradient-magnitude distribution). Ours is scored as saved and
after the same JPEG round trip as the peers' published files (quality 75, 4:2:0); the peers' files are
scored beside. Prints one per-texture table per measure, geometric-mean ratios ours/peer, wins and
seconds per texture; writes ``scores.json``, ``contact_sheet.png`` and ``contact_zoom.png`` to --out.

An output larger than its example is scored on example-sized crops, which favours the example-sized
output: that one was fitted to the whole example, and no crop of a larger texture can be. The window
scores (``quality_measures.window_scores``) score every size alike, against the example's quadrants,
with the quadrants against each other as the floor; compare sizes by those.

The measuring set is a folder of ``ID/`` folders holding ``example.jpg``, ``heitz_sw.jpg`` (Heitz et al.,
CVPR 2021) and ``gonthier_mr.jpg`` (Gonthier et al., 2020); it is read in place, never copied.

    python benchmarks/quality.py --revision HEAD --label baseline --out /tmp/quality/baseline
    python benchmarks/quality.py --label mean-init --out /tmp/quality/mean -- --init mean
    python benchmarks/quality.py --score-only --out /tmp/quality/baseline --results
    python benchmarks/quality.py --compare /tmp/quality/baseline/scores.json /tmp/quality/mean/scores.json

Everything after ``--`` is passed to ``multiscale synthesize`` unchanged.
"""

from __future__ import annotations

import argparse
import datetime
import io
import itertools
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "texbench"
PEERS = {"heitz": "heitz_sw.jpg", "gonthier": "gonthier_mr.jpg"}
VARIANTS = ("ours", "ours_jpeg", "heitz", "gonthier")
#: The images a measure that is not a distance (stripes, the outermost pixel) is reported for.
BESIDE_EXAMPLE = ("example", "ours", *PEERS)
#: The measures reported on windows (speckle and spectrum add little there; every measure is stored).
WINDOW_MEASURES = ("wavelet_kl", "color_sw1", "gradient")
RESULTS_TITLE = "## Texture quality — "


def _multiscale_command(tree: Path | None, out: Path) -> tuple[list[str], dict | None, Path | None]:
    """The command that starts the CLI, its environment and working folder.

    Without ``tree``: the ``multiscale`` installed beside this Python. With ``tree`` (a checkout or a
    ``git archive`` of the project): its ``multiscale/`` and ``cli/`` go first on PYTHONPATH, so a long run
    is not disturbed by edits in the working tree. It runs in the folder of links to them, since
    ``python -c`` puts its working folder first on sys.path.
    """
    if tree is None:
        exe = Path(sys.executable).parent / "multiscale"
        return [str(exe) if exe.exists() else "multiscale"], None, None
    links = out / ".tree"
    links.mkdir(parents=True, exist_ok=True)
    for name, target in (("multiscale", tree / "multiscale"), ("multiscale_cli", tree / "cli")):
        link = links / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target.resolve(), target_is_directory=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(links), os.environ.get("PYTHONPATH", "")]))
    return [sys.executable, "-c", "from multiscale_cli.main import cli; cli()"], env, links


def _output_name(tex_id: str, seed: int, first_seed: int) -> str:
    return f"{tex_id}.png" if seed == first_seed else f"{tex_id}_seed{seed}.png"


def _snapshot(revision: str, folder: Path) -> Path:
    """``git archive`` of the library and CLI at ``revision`` into ``folder``; its commit in ``COMMIT``."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{revision}^{{commit}}"], cwd=ROOT, capture_output=True, text=True
    )
    if commit.returncode != 0:
        sys.exit(f"--revision {revision}: not a commit of {ROOT}")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", commit.stdout.strip(), "multiscale", "cli"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "COMMIT").write_text(commit.stdout.strip() + "\n")
    return folder


def _git_state(tree: Path | None) -> dict:
    """Commit of the code that runs, and whether its library or CLI differ from it."""
    if tree is not None and (tree / "COMMIT").exists():
        return {"commit": (tree / "COMMIT").read_text().strip(), "dirty": False}
    if tree is not None and not (tree / ".git").exists():
        return {"tree": str(tree)}

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=tree or ROOT, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "multiscale", "cli")),
    }


def run_synthesis(args: argparse.Namespace, ids: list[str]) -> dict:
    """Synthesize every (texture, seed) in its own process; return and save ``runs.json``."""
    args.out.mkdir(parents=True, exist_ok=True)
    runs_path = args.out / "runs.json"
    runs = {
        "label": args.label,
        "command": args.command,
        "size": args.size,
        "seeds": args.seeds,
        "extra": args.extra,
        "git": _git_state(args.tree),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": {},
        "failed": {},
    }
    launcher, env, cwd = _multiscale_command(args.tree, args.out)
    for tex_id in ids:
        for seed in args.seeds:
            out = args.out / _output_name(tex_id, seed, args.seeds[0])
            cmd = [
                *launcher,
                "synthesize",
                "-s",
                str(args.data / tex_id / "example.jpg"),
                "-W",
                str(args.size),
                "-H",
                str(args.size),
                "-o",
                str(out),
                "--seed",
                str(seed),
                "--overwrite",
                "-q",
                *args.extra,
            ]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                runs["failed"][f"{tex_id}/{seed}"] = proc.stderr.strip().splitlines()[-5:]
                print(f"{tex_id} seed {seed}: FAILED (exit {proc.returncode}) {proc.stderr.strip()[-300:]}")
            else:
                runs["seconds"].setdefault(tex_id, {})[str(seed)] = seconds
                print(f"{tex_id} seed {seed}: {seconds:.1f} s", flush=True)
            runs_path.write_text(json.dumps(runs, indent=1))
    return runs


# ---------------------------------------------------------------------------------------------- scoring


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64)


def jpeg_round_trip(image: np.ndarray, quality: int = 75) -> np.ndarray:
    """The peers' published encoding: JPEG ``quality`` with 4:2:0 chroma subsampling, decoded again."""
    buf = io.BytesIO()
    Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8)).save(
        buf, format="JPEG", quality=quality, subsampling=2
    )
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64)


def score_folder(args: argparse.Namespace, ids: list[str]) -> dict:
    """Score every output in --out (and the peers' files) against its example."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import quality_measures as qm

    runs_path = args.out / "runs.json"
    runs = json.loads(runs_path.read_text()) if runs_path.exists() else {}
    seconds = runs.get("seconds", {})
    result = {
        "label": args.label or runs.get("label") or args.out.name,
        "command": runs.get("command") or args.command,
        "size": runs.get("size", args.size),
        "extra": runs.get("extra", args.extra),
        "git": runs.get("git", {}),
        "scored": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "measures": list(qm.MEASURES),
        "crops": args.crops,
        "textures": {},
    }
    for tex_id in ids:
        folder = args.data / tex_id
        example = load_rgb(folder / "example.jpg")
        outputs = sorted(args.out.glob(f"{tex_id}.png")) + sorted(args.out.glob(f"{tex_id}_seed*.png"))
        if not outputs:
            print(f"{tex_id}: no output in {args.out}, skipped")
            continue
        ours = [load_rgb(p) for p in outputs]
        ours_jpeg = [jpeg_round_trip(im) for im in ours]
        peers = {peer: load_rgb(folder / name) for peer, name in PEERS.items()}
        # Every variant is a list of images (ours: one per seed), and its scores are their means.
        images = {"ours": ours, "ours_jpeg": ours_jpeg, **{peer: [image] for peer, image in peers.items()}}
        entry = {
            variant: qm.mean_scores([qm.score_all(example, im, crops=args.crops) for im in ims])
            for variant, ims in images.items()
        }
        entry["wavelet_without_finest_diagonal"] = {
            variant: float(np.mean([qm.wavelet_kl_without_finest_diagonal(example, im) for im in ims]))
            for variant, ims in images.items()
        }
        entry["windows"] = {
            "example": qm.window_floor(example),
            **{
                variant: qm.mean_scores([qm.window_scores(example, im) for im in ims])
                for variant, ims in images.items()
            },
        }
        entry["speckle_example"] = qm.chroma_fine_rms(example)
        entry["speckle_values"] = {
            "ours": float(np.mean([qm.chroma_fine_rms(im) for im in ours])),
            "ours_jpeg": float(np.mean([qm.chroma_fine_rms(im) for im in ours_jpeg])),
            **{peer: qm.chroma_fine_rms(image) for peer, image in peers.items()},
        }
        for key, sigma in (("copying", None), ("copying_details", qm.COPY_DETAIL_SIGMA)):
            entry[key] = {
                "ours": float(np.mean([qm.copy_correlation(example, im, detail_sigma=sigma) for im in ours])),
                **{peer: qm.copy_correlation(example, im, detail_sigma=sigma) for peer, im in peers.items()},
            }
        entry["stripes"] = {
            "example": qm.axis_stripes(example),
            "ours": float(np.mean([qm.axis_stripes(im) for im in ours])),
            **{peer: qm.axis_stripes(image) for peer, image in peers.items()},
        }
        entry["border"] = {
            "example": qm.border_roughness(example),
            "ours": {
                k: float(np.mean([qm.border_roughness(im)[k] for im in ours])) for k in ("across", "along")
            },
            **{peer: qm.border_roughness(image) for peer, image in peers.items()},
        }
        if len(ours) > 1:
            entry["diversity"] = qm.diversity(ours, example)
            entry["seed_correlation"] = {
                "layout": qm.seed_correlation(ours),
                "details": qm.seed_correlation(ours, detail_sigma=qm.COPY_DETAIL_SIGMA),
            }
        tex_seconds = seconds.get(tex_id, {})
        if tex_seconds:
            entry["seconds"] = float(np.mean(list(tex_seconds.values())))
        entry["outputs"] = [p.name for p in outputs]
        result["textures"][tex_id] = entry
        print(f"scored {tex_id}", flush=True)
    (args.out / "scores.json").write_text(json.dumps(result, indent=1))
    return result


# ---------------------------------------------------------------------------------------------- reports


def geomean(values: list[float], floor: float) -> float:
    """exp(mean(log(values))), each floored at ``floor`` (a difference below it is not a ratio)."""
    return math.exp(sum(math.log(max(v, floor)) for v in values) / len(values)) if values else float("nan")


def geomean_ratio(a: list[float], b: list[float], floor: float) -> float:
    """exp(mean(log(a/b))) with both sides floored at ``floor``: the ratio of their geometric means."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} values against {len(b)}")
    return geomean(a, floor) / geomean(b, floor)


#: Stripes fainter than this (grey levels over the whole image) count as none in ``stripes_beyond``.
STRIPES_FLOOR = 0.1


def stripes_beyond(textures: list[dict], variant: str) -> float:
    """Geometric mean over ``textures`` of max(1, stripes of ``variant`` / the example's), each at
    least :data:`STRIPES_FLOOR`: how much stronger than its example's an image's straight stripes
    are, where they are (1: nowhere)."""
    ratios = [
        max(t["stripes"][variant], STRIPES_FLOOR) / max(t["stripes"]["example"], STRIPES_FLOOR)
        for t in textures
    ]
    return geomean([max(r, 1.0) for r in ratios], 1.0)


def ratio_cell(ours: list[float], theirs: list[float], floor: float) -> str:
    """``"ratio (wins/n)"``: the geometric-mean ratio ours/theirs and the count where ours is lower."""
    wins = sum(o < t for o, t in zip(ours, theirs, strict=True))
    return f"{geomean_ratio(ours, theirs, floor):.3g} ({wins}/{len(ours)})"


def summary_rows(result: dict) -> list[tuple[str, str, float, int, int]]:
    """(measure, ours variant/peer, geometric-mean ratio, wins, n) for every measure and pairing."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import quality_measures as qm

    textures = result["textures"]
    rows = []
    for m in result["measures"]:
        for variant, peer in itertools.product(("ours", "ours_jpeg"), PEERS):
            ours = [t[variant][m] for t in textures.values()]
            theirs = [t[peer][m] for t in textures.values()]
            wins = sum(o < p for o, p in zip(ours, theirs, strict=True))
            rows.append((m, f"{variant}/{peer}", geomean_ratio(ours, theirs, qm.FLOORS[m]), wins, len(ours)))
    return rows


def format_report(result: dict, markdown: bool = False) -> str:
    """Per-texture tables per measure, speckle values, copying, ratios and seconds, as text or markdown."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import quality_measures as qm

    textures = result["textures"]
    lines = []

    def table(header: list[str], rows: list[list[str]]) -> None:
        if markdown:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
            lines.extend("| " + " | ".join(r) + " |" for r in rows)
        else:
            widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
            lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
            lines.extend("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
        lines.append("")

    rows = summary_rows(result)
    lines.append(
        f"Geometric-mean ratio ours/peer over {len(textures)} textures (< 1: ours closer to the example); "
        "wins: textures where ours is closer."
    )
    lines.append("")
    header = ["measure"] + [f"{v}/{p}" for v, p in itertools.product(("png", "jpeg"), PEERS)]
    body = []
    for m in result["measures"]:
        cells = [m]
        for r in rows:
            if r[0] == m:
                cells.append(f"{r[2]:.3g} ({r[3]}/{r[4]})")
        body.append(cells)
    table(header, body)

    if not markdown:
        for m in result["measures"]:
            lines.append(f"{m} per texture")
            table(
                ["id", *VARIANTS],
                [[tid, *(f"{t[v][m]:.4g}" for v in VARIANTS)] for tid, t in textures.items()],
            )
    else:
        for m in ("wavelet_kl", "color_sw1"):
            lines.append(f"{m} per texture:")
            lines.append("")
            table(
                ["id", *VARIANTS],
                [[tid, *(f"{t[v][m]:.4g}" for v in VARIANTS)] for tid, t in textures.items()],
            )
    lines.append("Chroma fine-band RMS (speckle, grey levels) of each image; the score is |image − example|:")
    lines.append("")
    table(
        ["id", "example", *VARIANTS],
        [
            [tid, f"{t['speckle_example']:.2f}", *(f"{t['speckle_values'][v]:.2f}" for v in VARIANTS)]
            for tid, t in textures.items()
        ],
    )
    trimmed = {
        tid: t["wavelet_without_finest_diagonal"]
        for tid, t in textures.items()
        if "wavelet_without_finest_diagonal" in t
    }
    if trimmed:
        lines.append(
            "wavelet_kl without the finest diagonal subbands, where JPEG's quantisation acts (it leaves few, "
            "large coefficients there: the JPEG examples' finest diagonal band is sparser than an uncompressed "
            "image's). Geometric-mean ratio ours/peer (wins):"
        )
        lines.append("")
        table(
            ["variant", *PEERS],
            [
                [
                    variant,
                    *(
                        ratio_cell(
                            [w[variant] for w in trimmed.values()],
                            [w[peer] for w in trimmed.values()],
                            qm.FLOORS["wavelet_kl"],
                        )
                        for peer in PEERS
                    ),
                ]
                for variant in ("ours", "ours_jpeg")
            ],
        )
    windowed = {tid: t["windows"] for tid, t in textures.items() if "windows" in t}
    if windowed:
        lines.append(
            "Windows, which score outputs of every size alike: each measure between the image's windows of "
            f"half the example's side ({qm.WINDOW_OFFSETS} grids shifted along the diagonal, "
            f"{qm.WINDOW_COUNT} windows at most) and the example's four quadrants, each window's "
            "mean over the quadrants, the median over the windows; `example` is each quadrant against the other "
            "three, what pieces of the texture itself score. Cells: ours / ours after JPEG / heitz / example:"
        )
        lines.append("")
        cells = ("ours", "ours_jpeg", "heitz", "example")
        table(
            ["id", *WINDOW_MEASURES],
            [
                [tid, *(" / ".join(f"{w[v][m]:.3g}" for v in cells) for m in WINDOW_MEASURES)]
                for tid, w in windowed.items()
            ]
            + [
                [
                    "geomean",
                    *(
                        " / ".join(
                            f"{geomean([w[v][m] for w in windowed.values()], qm.FLOORS[m]):.3g}"
                            for v in cells
                        )
                        for m in WINDOW_MEASURES
                    ),
                ]
            ],
        )
    copied = {tid: t for tid, t in textures.items() if "copying_details" in t}
    if copied:
        names = ["ours", *PEERS]
        lines.append(
            "Copying, which no measure above sees: the largest normalised correlation of each image's luminance "
            "with the example's at any shift, whole (layout) / details only (minus a blur of "
            f"{qm.COPY_DETAIL_SIGMA:g} px); 1 = a shifted copy. Periodic textures score high whenever they are kept:"
        )
        lines.append("")
        table(
            ["id", *names],
            [
                [tid, *(f"{t['copying'][v]:.2f} / {t['copying_details'][v]:.2f}" for v in names)]
                for tid, t in copied.items()
            ]
            + [
                [
                    "mean",
                    *(
                        f"{np.mean([t['copying'][v] for t in copied.values()]):.2f} / "
                        f"{np.mean([t['copying_details'][v] for t in copied.values()]):.2f}"
                        for v in names
                    ),
                ]
            ],
        )
    striped = {tid: t for tid, t in textures.items() if "stripes" in t}
    if striped:
        lines.extend([
            "Stripes on the frequency axes, which no measure above sees: the amplitude (grey levels over the whole "
            "image) of the strongest horizontal or vertical stripe pattern of the luminance's periodic component "
            "that stands out of its neighbours (`quality_measures.axis_stripes`); 0 without any. Compare with the "
            "example's own:",
            "",
        ])  # fmt: skip
        table(
            ["id", *BESIDE_EXAMPLE],
            [[tid, *(f"{t['stripes'][v]:.2f}" for v in BESIDE_EXAMPLE)] for tid, t in striped.items()]
            + [
                [
                    "beyond",
                    "",
                    *(f"{stripes_beyond(list(striped.values()), v):.2f}" for v in BESIDE_EXAMPLE[1:]),
                ]
            ],
        )
        lines.append(
            f"`beyond`: the geometric mean over textures of max(1, image's / example's), each at least "
            f"{STRIPES_FLOOR:g}: the stripes an image adds to its example's (1: none anywhere)."
        )
        lines.append("")
    bordered = {tid: t for tid, t in textures.items() if "border" in t}
    if bordered:
        lines.extend([
            "The outermost pixel, which no measure above sees: its step across to the next row and along "
            "the edge between neighbours, each over the interior rows' median, mean of the four sides "
            "(`quality_measures.border_roughness`; about 1: like the inside; a dotted frame scores well above):",
            "",
        ])  # fmt: skip
        table(
            ["id", *(f"{v} across / along" for v in BESIDE_EXAMPLE)],
            [
                [
                    tid,
                    *(
                        f"{t['border'][v]['across']:.2f} / {t['border'][v]['along']:.2f}"
                        for v in BESIDE_EXAMPLE
                    ),
                ]
                for tid, t in bordered.items()
            ]
            + [
                [
                    "median",
                    *(
                        " / ".join(
                            f"{np.median([t['border'][v][k] for t in bordered.values()]):.2f}"
                            for k in ("across", "along")
                        )
                        for v in BESIDE_EXAMPLE
                    ),
                ]
            ],
        )
        lines.append("")
    secs = [t["seconds"] for t in textures.values() if "seconds" in t]
    if secs:
        lines.append(f"Mean wall seconds per texture (process start to saved PNG): {np.mean(secs):.1f}")
    seeded = {tid: t for tid, t in textures.items() if "diversity" in t}
    if seeded:
        lines.append("")
        lines.append(
            "Seeds: diversity (RMS luminance difference between two seeds' outputs over √2·σ of the example's; "
            "1 = independent samples, 0 = one image) and the seeds' correlation at zero shift, whole (layout) / "
            f"details only (minus a blur of {qm.COPY_DETAIL_SIGMA:g} px); 1 = every seed draws the same picture "
            "in the same place, about 0 = new pictures:"
        )
        lines.append("")

        def pair(c: dict | None) -> str:
            return f"{c['layout']:.2f} / {c['details']:.2f}" if c else "–"

        rows = [[tid, f"{t['diversity']:.2f}", pair(t.get("seed_correlation"))] for tid, t in seeded.items()]
        correlated = [t["seed_correlation"] for t in seeded.values() if "seed_correlation" in t]
        mean = {k: np.mean([c[k] for c in correlated]) for k in ("layout", "details")} if correlated else None
        rows.append(["mean", f"{np.mean([t['diversity'] for t in seeded.values()]):.2f}", pair(mean)])
        table(["id", "diversity", "seed correlation"], rows)
    return "\n".join(lines)


def compare(path_a: Path, path_b: Path) -> str:
    """Per-measure geometric-mean ratios B/A (ours and ours_jpeg) over the textures both runs scored."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import quality_measures as qm

    a, b = json.loads(path_a.read_text()), json.loads(path_b.read_text())
    ids = [i for i in a["textures"] if i in b["textures"]]
    lines = [
        f"B = {b['label']} ({path_b}) against A = {a['label']} ({path_a}), {len(ids)} textures; "
        "ratio < 1: B closer to the example; wins: textures where B is closer"
    ]
    lines.append(f"{'measure':14s} {'png B/A (wins)':>16s} {'jpeg B/A (wins)':>16s}")

    def row(name: str, scores: Callable[[dict, str], dict], measures: Iterable[str]) -> None:
        for m in measures:
            cells = [
                ratio_cell(
                    [scores(b["textures"][i], v)[m] for i in ids],
                    [scores(a["textures"][i], v)[m] for i in ids],
                    qm.FLOORS[m],
                )
                for v in ("ours", "ours_jpeg")
            ]
            lines.append(f"{name + m:14s} " + " ".join(f"{c:>16s}" for c in cells))

    row("", lambda t, v: t[v], [m for m in a["measures"] if m in b["measures"]])
    if all("windows" in r["textures"][i] for r in (a, b) for i in ids):
        lines.append("windows (outputs of any size scored alike; see the report):")
        row("  ", lambda t, v: t["windows"][v], WINDOW_MEASURES)
    for name, r in (("A", a), ("B", b)):
        secs = [r["textures"][i].get("seconds") for i in ids]
        secs = [s for s in secs if s is not None]
        if secs:
            lines.append(f"mean seconds per texture {name}: {np.mean(secs):.1f}")
    speck = {
        n: np.mean([r["textures"][i]["speckle_values"]["ours"] for i in ids]) for n, r in (("A", a), ("B", b))
    }
    lines.append(f"mean speckle (grey levels RMS) A: {speck['A']:.2f}  B: {speck['B']:.2f}")
    if all("stripes" in r["textures"][i] for r in (a, b) for i in ids):
        beyond = {n: stripes_beyond([r["textures"][i] for i in ids], "ours") for n, r in (("A", a), ("B", b))}
        lines.append(
            "stripes on the axes beyond the examples' (geometric mean of max(1, ours / example's); 1: none) "
            f"A: {beyond['A']:.2f}  B: {beyond['B']:.2f}"
        )
    if all("border" in r["textures"][i] for r in (a, b) for i in ids):
        edge = {
            n: [np.median([r["textures"][i]["border"]["ours"][k] for i in ids]) for k in ("across", "along")]
            for n, r in (("A", a), ("B", b))
        }
        lines.append(
            "outermost pixel's roughness, across / along, median (about 1: like the inside) "
            f"A: {edge['A'][0]:.2f} / {edge['A'][1]:.2f}  B: {edge['B'][0]:.2f} / {edge['B'][1]:.2f}"
        )
    if all("copying_details" in r["textures"][i] for r in (a, b) for i in ids):
        copied = {
            n: [np.mean([r["textures"][i][k]["ours"] for i in ids]) for k in ("copying", "copying_details")]
            for n, r in (("A", a), ("B", b))
        }
        lines.append(
            "mean copying, layout / details (1 = a shifted copy of the example) "
            f"A: {copied['A'][0]:.2f} / {copied['A'][1]:.2f}  B: {copied['B'][0]:.2f} / {copied['B'][1]:.2f}"
        )
    return "\n".join(lines)


def _code_description(git: dict) -> str:
    if "tree" in git:
        return f"code from {git['tree']}"
    return f"commit {git.get('commit', '?')[:10]}" + (", library modified" if git.get("dirty") else "")


def write_results(result: dict, path: Path) -> None:
    """Append or replace this benchmark's section of RESULTS.md."""
    git = result.get("git", {})
    described = textwrap.fill(
        f"Run `{result['label']}` at {result['size']}² "
        f"({_code_description(git)}; "
        f"extra synthesize options: `{' '.join(result.get('extra') or []) or 'none'}`; scored {result['scored']}). "
        "Ours is the saved PNG (png) and the same after the peers' JPEG round trip (jpeg, quality 75, 4:2:0). "
        "Measures (benchmarks/quality_measures.py): wavelet_kl — symmetric KL between generalised-Gaussian "
        "fits of db4 wavelet subbands (3 levels × 3 orientations of the luminance and of R, G, B), mean over "
        "subbands, nats; color_sw1 — sliced Wasserstein-1 of RGB pixels, 0–255; speckle — |chroma fine-band "
        "RMS − the example's|, grey levels; spectrum — mean |Δ log10| of radially averaged luminance power "
        "spectra; gradient — W1 of luminance gradient magnitudes, 0–255.",
        width=100,
    )
    section = [
        f"{RESULTS_TITLE}`{result['command']}`",
        "",
        described,
        "",
        format_report(result, markdown=True),
        "",
    ]
    text = path.read_text() if path.exists() else "# Results\n"
    pattern = re.compile(rf"^{re.escape(RESULTS_TITLE)}.*?(?=^## |\Z)", re.S | re.M)
    new = "\n".join(section) + "\n"
    text = (
        pattern.sub(lambda _m: new, text, count=1)
        if pattern.search(text)
        else text.rstrip("\n") + "\n\n" + new
    )
    path.write_text(text)


# ---------------------------------------------------------------------------------------------- sheets


def _tile(image: np.ndarray, size: int) -> Image.Image:
    """The top-left size² crop at 1× (a larger output is cropped, never resized: scale is texture)."""
    crop = np.clip(np.rint(image[:size, :size]), 0, 255).astype(np.uint8)
    tile = Image.new("RGB", (size, size), (255, 255, 255))
    tile.paste(Image.fromarray(crop))
    return tile


def zoomed_centre(image: np.ndarray, crop: int, factor: int) -> Image.Image:
    """The central crop² patch enlarged ``factor``× by nearest neighbour, so single-pixel speckle shows."""
    h, w = image.shape[:2]
    top, left = (h - crop) // 2, (w - crop) // 2
    patch = np.clip(np.rint(image[top : top + crop, left : left + crop]), 0, 255).astype(np.uint8)
    return Image.fromarray(patch).resize((crop * factor, crop * factor), Image.NEAREST)


def contact_sheets(args: argparse.Namespace, ids: list[str], size: int = 256) -> list[Path]:
    """contact_sheet.png (1×) and contact_zoom.png (64² at 4×): example | ours | Heitz | Gonthier rows."""
    font = ImageFont.load_default()
    columns = ["example", "ours", "Heitz (SW)", "Gonthier (MR)"]
    paths = []
    for filename, render, note in (
        ("contact_sheet.png", lambda im: _tile(im, size), " (top-left 256x256, 1x)"),
        ("contact_zoom.png", lambda im: zoomed_centre(im, size // 4, 4), " (centre 64x64, 4x)"),
    ):
        names = [columns[0] + note, *columns[1:]]
        rows = []
        for tex_id in ids:
            ours = args.out / f"{tex_id}.png"
            if not ours.exists():
                continue
            folder = args.data / tex_id
            rows.append(
                (
                    tex_id,
                    [
                        render(load_rgb(p))
                        for p in (
                            folder / "example.jpg",
                            ours,
                            folder / PEERS["heitz"],
                            folder / PEERS["gonthier"],
                        )
                    ],
                )
            )
        if not rows:
            continue
        label_w, head_h, gap = 36, 18, 4
        sheet = Image.new(
            "RGB",
            (label_w + len(names) * (size + gap), head_h + len(rows) * (size + gap)),
            (255, 255, 255),
        )
        draw = ImageDraw.Draw(sheet)
        for j, name in enumerate(names):
            draw.text((label_w + j * (size + gap) + 4, 3), name, fill=(0, 0, 0), font=font)
        for i, (tex_id, tiles) in enumerate(rows):
            y = head_h + i * (size + gap)
            draw.text((4, y + size // 2 - 6), tex_id, fill=(0, 0, 0), font=font)
            for j, tile in enumerate(tiles):
                sheet.paste(tile, (label_w + j * (size + gap), y))
        path = args.out / filename
        sheet.save(path)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="measuring set: ID/example.jpg, peers"
    )
    parser.add_argument("--ids", default=None, help="comma-separated texture IDs (default: every folder)")
    parser.add_argument("--size", type=int, default=256, help="output width and height in pixels")
    parser.add_argument(
        "--out", type=Path, default=Path("/tmp/quality"), help="folder for outputs and scores"
    )
    parser.add_argument("--label", default=None, help="name of this run in reports and comparisons")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; several measure diversity")
    parser.add_argument("--tree", type=Path, default=None, help="run the CLI from this source tree")
    parser.add_argument(
        "--revision",
        default=None,
        help="run the CLI from a snapshot of this git revision (git archive into OUT/.src), so edits of "
        "the working tree do not disturb a long run",
    )
    parser.add_argument("--crops", type=int, default=4, help="example-sized crops scored per larger output")
    parser.add_argument("--score-only", action="store_true", help="score the outputs already in --out")
    parser.add_argument("--results", action="store_true", help="write the section in benchmarks/RESULTS.md")
    parser.add_argument(
        "--compare", nargs=2, type=Path, metavar=("A.json", "B.json"), help="compare two runs"
    )
    args = parser.parse_args(argv)
    args.extra = extra
    args.data, args.out = args.data.resolve(), args.out.resolve()
    args.tree = args.tree.resolve() if args.tree else None
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.command = "python benchmarks/quality.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.compare:
        print(compare(*args.compare))
        return
    if not args.data.is_dir():
        parser.error(f"--data {args.data}: no such folder")
    ids = (
        args.ids.split(",")
        if args.ids
        else sorted(
            (p.name for p in args.data.iterdir() if (p / "example.jpg").exists()), key=lambda s: (len(s), s)
        )
    )
    missing = [i for i in ids if not (args.data / i / "example.jpg").exists()]
    if missing:
        parser.error(f"--ids: no example.jpg for {', '.join(missing)} in {args.data}")
    if args.revision and not args.score_only:
        args.tree = _snapshot(args.revision, args.out / ".src")
    if not args.score_only:
        run_synthesis(args, ids)
    result = score_folder(args, ids)
    print()
    print(f"{result['label']}: {result['command']}")
    print(format_report(result))
    for path in contact_sheets(args, ids):
        print(f"wrote {path}")
    print(f"wrote {args.out / 'scores.json'}")
    if args.results:
        write_results(result, ROOT / "benchmarks" / "RESULTS.md")
        print("updated benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
