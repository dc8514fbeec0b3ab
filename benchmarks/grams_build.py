"""Throughput and memory of ``build_descriptor`` (``multiscale grams build``).

Prints

* images per second for synthetic photos of 512² and 1024² pixels (JPEG,
  default descriptor options unless given), after a warm-up image so that
  TensorFlow's start-up and the network's construction are not counted;
* peak resident memory (``ru_maxrss``) of a build over 10 and over 200
  photos (256² by default: the count is what matters, and 200 photos of
  512² take ~20 min on 2 cores), each in a fresh Python process, so the two
  figures are comparable.
  A streaming build keeps one photo in memory at a time: the two peaks must
  be about equal.

Photos are generated into a temporary folder (smooth random colour fields
plus fine noise, so every photo differs and JPEG sizes are realistic).

Usage::

    python benchmarks/grams_build.py                      # everything, defaults
    python benchmarks/grams_build.py --sizes 512 --speed-count 4 --rss-counts 10 50
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_photos(folder: Path, count: int, size: int, seed: int = 0) -> list[Path]:
    """Write ``count`` size×size JPEG photos into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        cells = max(2, size // 32)
        coarse = rng.random((cells, cells, 3)).astype(np.float32)
        smooth = np.asarray(
            Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC), np.float32
        )
        noisy = np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)
        path = folder / f"photo_{i:04d}.jpg"
        Image.fromarray(noisy).save(path, quality=90)
        paths.append(path)
    return paths


def descriptor_config(args: argparse.Namespace):
    from multiscale.config import DescriptorConfig

    layers = tuple(args.layers.split(",")) if args.layers else DescriptorConfig().layers
    return DescriptorConfig(octaves=args.octaves, layers=layers)


def child_rss(args: argparse.Namespace) -> None:
    """In a fresh process: build over the first ``count`` photos and report peak RSS."""
    from multiscale.descriptors.build import build_descriptor
    from multiscale.measure.memory import peak_rss_bytes

    files = sorted(Path(args.child_folder).glob("*.jpg"))[: args.child_count]
    started = time.perf_counter()
    result = build_descriptor(files, config=descriptor_config(args))
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "count": result.descriptor.count,
                "maxrss_mib": peak_rss_bytes() / 2**20,
                "elapsed_s": elapsed,
            }
        )
    )


def speed(folder: Path, size: int, count: int, args: argparse.Namespace) -> dict[str, float]:
    from multiscale.descriptors.build import build_descriptor

    files = make_photos(folder / f"speed{size}", count + 1, size, seed=size)
    config = descriptor_config(args)
    build_descriptor(files[:1], config=config)  # warm-up: TensorFlow, network, first shapes
    started = time.perf_counter()
    result = build_descriptor(files[1:], config=config)
    elapsed = time.perf_counter() - started
    return {"size": size, "images": result.descriptor.count, "seconds": elapsed, "per_s": count / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[512, 1024], help="photo sides for the speed test"
    )
    parser.add_argument("--speed-count", type=int, default=4, help="photos timed per size")
    parser.add_argument(
        "--rss-counts", type=int, nargs="*", default=[10, 200], help="photo counts for peak RSS (none: skip)"
    )
    parser.add_argument("--rss-size", type=int, default=256, help="photo side for the RSS test")
    parser.add_argument("--octaves", type=int, default=4)
    parser.add_argument("--layers", default=None, help="comma-separated (default: the library's)")
    parser.add_argument("--child-folder", help=argparse.SUPPRESS)
    parser.add_argument("--child-count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_folder:
        child_rss(args)
        return

    import os

    config = descriptor_config(args)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    # Figures from a busy machine are lower bounds; say how busy it was.
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    print(f"descriptor: {config.octaves} octaves, layers {','.join(config.layers)}")
    with tempfile.TemporaryDirectory(prefix="grams_build_") as tmp:
        folder = Path(tmp)
        print("\nthroughput (one process, after a warm-up image)")
        print(f"{'photo':>10} {'images':>7} {'seconds':>8} {'images/s':>9}")
        for size in args.sizes:
            r = speed(folder, size, args.speed_count, args)
            print(f"{size:>5}×{size:<4} {r['images']:>7} {r['seconds']:>8.2f} {r['per_s']:>9.2f}")

        if not args.rss_counts:
            return
        rss_folder = folder / "rss"
        make_photos(rss_folder, max(args.rss_counts), args.rss_size, seed=1)
        print(f"\npeak RSS of a whole build in a fresh process ({args.rss_size}² JPEG photos)")
        print(f"{'photos':>7} {'peak RSS MiB':>13} {'seconds':>8}")
        peaks = []
        for count in args.rss_counts:
            command = [
                sys.executable, __file__, "--child-folder", str(rss_folder), "--child-count", str(count),
                "--octaves", str(args.octaves),
            ] + (["--layers", args.layers] if args.layers else [])  # fmt: skip
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            peaks.append(r["maxrss_mib"])
            print(f"{r['count']:>7} {r['maxrss_mib']:>13.0f} {r['elapsed_s']:>8.1f}")
        print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
        if len(peaks) > 1:
            print(
                f"\ngrowth from {args.rss_counts[0]} to {args.rss_counts[-1]} photos: {peaks[-1] - peaks[0]:+.0f} MiB"
            )


if __name__ == "__main__":
    main()
