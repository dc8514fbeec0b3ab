"""Does style transfer carry the style's palette? Colour distance of the output to the style and to the content.

For each (content, style) pair and each setting, runs ``multiscale stylize`` (one subprocess each,
wall seconds recorded) and prints the sliced Wasserstein-1 distance of the output's RGB
distribution (``quality_measures.color_sw1``, 0–255 units; no objective optimises it) to the
style's and to the content's. A transfer that takes the style's palette is closer to the style
(ratio style/content < 1); with ``--preserve-color`` it should stay closer to the content. Writes a
contact sheet (content | style | one column per setting) to ``--out``.

    python benchmarks/stylize_palette.py --width 256 --out /tmp/palette
    python benchmarks/stylize_palette.py --setting gram="--statistics gram" --setting both="--statistics gram,sliced"

Sources are the project's samples (see samples/PROVENANCE.md); nothing is downloaded.
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
from quality_measures import color_sw1  # noqa: E402

PAIRS = [
    ("samples/style/chelsea.png", "samples/sources/hubble_field.png"),
    ("samples/style/chelsea.png", "samples/sources/brick.png"),
    ("samples/sources/grass.png", "samples/sources/hubble_field.png"),
]
SETTINGS = {"gram": "--statistics gram", "gram+sliced": "--statistics gram,sliced"}


def _load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=256, help="output width in pixels")
    parser.add_argument(
        "--out", type=Path, default=Path("/tmp/palette"), help="folder for outputs and the sheet"
    )
    parser.add_argument(
        "--setting", action="append", default=None, metavar="NAME=OPTIONS",
        help="a named set of stylize options (repeatable; default: gram and gram+sliced)",
    )  # fmt: skip
    parser.add_argument("--max-iter", type=int, default=None, help="passed to stylize")
    args = parser.parse_args()
    settings = dict(s.split("=", 1) for s in args.setting) if args.setting else SETTINGS
    args.out.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).parent / "multiscale"
    rows = []
    print(
        f"{'content':<18} {'style':<18} {'setting':<14} {'→style':>8} {'→content':>9} {'ratio':>6} {'s':>6}"
    )
    for content, style in PAIRS:
        c_img, s_img = _load(ROOT / content), _load(ROOT / style)
        row = [c_img, s_img]
        for name, options in settings.items():
            out = args.out / f"{Path(content).stem}_{Path(style).stem}_{name.replace('+', '_')}.png"
            cmd = [str(exe), "stylize", "-c", content, "-s", style, "-W", str(args.width), "-o", str(out)]
            cmd += ["--overwrite", "-q", *shlex.split(options)]
            if args.max_iter:
                cmd += ["--max-iter", str(args.max_iter)]
            started = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, check=True)
            seconds = time.perf_counter() - started
            o_img = _load(out)
            to_style, to_content = color_sw1(s_img, o_img), color_sw1(c_img, o_img)
            print(
                f"{Path(content).stem:<18} {Path(style).stem:<18} {name:<14} {to_style:8.2f} {to_content:9.2f} "
                f"{to_style / to_content:6.2f} {seconds:6.0f}",
                flush=True,
            )
            row.append(o_img)
        rows.append(row)
    _sheet(rows, ["content", "style", *settings], args.out / "palette_sheet.png", args.width)
    print(f"wrote {args.out / 'palette_sheet.png'}")


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
