"""Style transfer by measures no objective optimises: the style's palette and texture, the content's layout.

For each (content, style) pair and each setting, runs ``multiscale stylize`` (one subprocess each,
wall seconds recorded) and scores the output (``quality_measures``; 0–255 units):

- **palette**: the sliced Wasserstein-1 distance of the output's RGB distribution to the style's and
  to the content's, and their ratio (< 1: the output has the style's palette; with
  ``--preserve-color`` it should stay closer to the content);
- **texture**, against the style image: the wavelet-subband KL (Gonthier et al.'s measure), the W1
  of the gradient-magnitude distributions and the speckle (|fine-band chroma RMS − the style's|):
  what strokes, ripples or colour fringes the output adds that the style does not have;
- **layout**: :func:`quality_measures.edge_correlation` of the output with the content (resized to
  the output's size): where the content's edges were, how much of them stays.

Writes a contact sheet (content | style | one column per setting) and a 3× crop of each output's
centre to ``--out``.

    python benchmarks/stylize_quality.py --width 256 --out /tmp/stylize
    python benchmarks/stylize_quality.py --setting gram="--statistics gram" --setting both="--statistics gram,sliced"

Sources are the project's samples (see samples/PROVENANCE.md); nothing is downloaded. ``--pair``
takes any other content and style, for instance scikit-image's data (a dev dependency)::

    D=$(python -c "import skimage, os; print(os.path.dirname(skimage.__file__))")/data
    python benchmarks/stylize_quality.py --pair $D/astronaut.png:$D/ihc.png --pair $D/coffee.png:$D/retina.jpg
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import geomean, load_rgb, zoomed_centre  # noqa: E402
from quality_measures import FLOORS, color_sw1, edge_correlation, gradient_w1, speckle, wavelet_kl  # noqa: E402

PAIRS = [
    ("samples/style/chelsea.png", "samples/sources/hubble_field.png"),
    ("samples/style/chelsea.png", "samples/sources/brick.png"),
    ("samples/sources/grass.png", "samples/sources/hubble_field.png"),
]
SETTINGS = {"gram": "--statistics gram", "gram+sliced": "--statistics gram,sliced"}
#: Distances to the style whose geometric mean over the pairs (each floored at its
#: ``quality_measures.FLOORS``) is printed per setting.
TEXTURE_MEASURES = {"wavelet_kl": wavelet_kl, "gradient": gradient_w1, "speckle": speckle}
ZOOM = 3


def _resized(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    im = Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    return np.asarray(im.resize((shape[1], shape[0]), Image.LANCZOS), dtype=np.float64)


def score(content: np.ndarray, style: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Every measure of one output (module docstring), 0–255 units; ``edges`` in [−1, 1]."""
    scores = {"to_style": color_sw1(style, output), "to_content": color_sw1(content, output)}
    scores |= {name: measure(style, output) for name, measure in TEXTURE_MEASURES.items()}
    scores["edges"] = edge_correlation(_resized(content, output.shape), output)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=256, help="output width in pixels")
    parser.add_argument(
        "--out", type=Path, default=Path("/tmp/stylize"), help="folder for outputs and the sheets"
    )
    parser.add_argument(
        "--setting", action="append", default=None, metavar="NAME=OPTIONS",
        help="a named set of stylize options (repeatable; default: gram and gram+sliced)",
    )  # fmt: skip
    parser.add_argument(
        "--pair", action="append", default=None, metavar="CONTENT:STYLE",
        help="a content and a style image, paths from the project root or absolute (repeatable; "
        "default: the three gallery pairs)",
    )  # fmt: skip
    parser.add_argument("--max-iter", type=int, default=None, help="passed to stylize")
    args = parser.parse_args()
    settings = dict(s.split("=", 1) for s in args.setting) if args.setting else SETTINGS
    pairs = [tuple(p.split(":", 1)) for p in args.pair] if args.pair else PAIRS
    args.out.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).parent / "multiscale"
    rows, zooms = [], []
    scores: dict[str, list[dict[str, float]]] = {name: [] for name in settings}
    print(
        f"{'content':<10} {'style':<13} {'setting':<14} {'→style':>7} {'→content':>8} {'ratio':>6} "
        f"{'wavelet':>8} {'gradient':>8} {'speckle':>7} {'edges':>6} {'s':>5}"
    )
    for content, style in pairs:
        c_img, s_img = load_rgb(ROOT / content), load_rgb(ROOT / style)
        row, zoom = [c_img, s_img], []
        for name, options in settings.items():
            out = args.out / f"{Path(content).stem}_{Path(style).stem}_{name.replace('+', '_')}.png"
            cmd = [str(exe), "stylize", "-c", content, "-s", style, "-W", str(args.width), "-o", str(out)]
            cmd += ["--overwrite", "-q", *shlex.split(options)]
            if args.max_iter:
                cmd += ["--max-iter", str(args.max_iter)]
            started = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, check=True)
            seconds = time.perf_counter() - started
            o_img = load_rgb(out)
            s = score(c_img, s_img, o_img)
            scores[name].append(s)
            print(
                f"{Path(content).stem:<10} {Path(style).stem:<13} {name:<14} {s['to_style']:7.2f} "
                f"{s['to_content']:8.2f} {s['to_style'] / s['to_content']:6.2f} {s['wavelet_kl']:8.4f} "
                f"{s['gradient']:8.3f} {s['speckle']:7.2f} {s['edges']:6.3f} {seconds:5.0f}",
                flush=True,
            )
            row.append(o_img)
            zoom.append(np.asarray(zoomed_centre(o_img, args.width // ZOOM, ZOOM), dtype=np.float64))
        rows.append(row)
        zooms.append(zoom)
    print("\nOver the pairs: geometric means of the palette ratio and the distances to the style, mean edges")
    for name, ss in scores.items():
        ratio = geomean([s["to_style"] / s["to_content"] for s in ss], 1e-3)
        texture = " ".join(f"{m} {geomean([s[m] for s in ss], FLOORS[m]):.4g}" for m in TEXTURE_MEASURES)
        print(f"  {name:<14} ratio {ratio:.3f}  {texture}  edges {np.mean([s['edges'] for s in ss]):.3f}")
    _sheet(rows, ["content", "style", *settings], args.out / "stylize_sheet.png", args.width)
    _sheet(zooms, list(settings), args.out / "stylize_zoom.png", args.width)
    print(f"wrote {args.out / 'stylize_sheet.png'} and {args.out / 'stylize_zoom.png'}")


def _sheet(rows: list[list[np.ndarray]], labels: list[str], path: Path, width: int) -> None:
    cell = width
    sheet = Image.new("RGB", (cell * len(labels), 16 + cell * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(labels):
        draw.text((c * cell + 4, 2), label, fill="black")
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
            im.thumbnail((cell, cell))
            sheet.paste(im, (c * cell, 16 + r * cell))
    sheet.save(path)


if __name__ == "__main__":
    main()
