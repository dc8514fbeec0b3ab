"""How the defaults (layers, pooling, iterations) were chosen: measure, don't guess.

For each candidate setting, synthesize a texture from each sample and score
the saved image with one fixed *judge* objective (4 octaves, layers conv1_1,
pool1 … pool4, reflect padding, avg pooling), so candidates with different
layer sets are compared on the same scale. Prints judge loss, own loss and
wall time, and writes the PNGs to --out for looking at.

    python benchmarks/defaults_study.py --size 256 --iters 100 --out /tmp/study
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from multiscale.config import DescriptorConfig
from multiscale.io import load_image, save_image
from multiscale.jobs.synthesize import synthesize
from multiscale.measure.backbone import VGG16, load_weights
from multiscale.measure.gram import image_grams
from multiscale.objectives.texture import StyleObjective

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "sources"
JUDGE = DescriptorConfig(octaves=4, layers=("conv1_1", "pool1", "pool2", "pool3", "pool4"))
CANDIDATES = {
    "c1p1p2p3/avg": dict(layers=("conv1_1", "pool1", "pool2", "pool3")),
    "c1p1p2p3p4/avg": dict(layers=("conv1_1", "pool1", "pool2", "pool3", "pool4")),
    "p1c32/avg": dict(layers=("pool1", "conv3_2")),
    "c1p1p2p3/max": dict(layers=("conv1_1", "pool1", "pool2", "pool3"), pooling="max"),
    "p1c32/max": dict(layers=("pool1", "conv3_2"), pooling="max"),
    "c1p1c32/avg": dict(layers=("conv1_1", "pool1", "conv3_2")),
}


def judge_loss(source: np.ndarray, image: np.ndarray, net: VGG16) -> float:
    targets = image_grams(source, network=net, config=JUDGE)
    h, w = image.shape[:2]
    return StyleObjective(targets=targets, network=net, config=JUDGE, height=h, width=w).evaluate(image).total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--samples", default="gravel,brick,hubble_field")
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--out", type=Path, default=Path("/tmp/defaults_study"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    net = VGG16(load_weights())
    print(f"{'sample':14s} {'candidate':16s} {'judge loss':>11s} {'own loss':>10s} {'seconds':>8s}")
    for name in args.samples.split(","):
        source = load_image(SAMPLES / f"{name}.png")
        for cand in args.candidates.split(","):
            start = time.perf_counter()
            res = synthesize(
                source, width=args.size, height=args.size, max_iter=args.iters, **CANDIDATES[cand]
            )
            seconds = time.perf_counter() - start
            save_image(args.out / f"{name}_{cand.replace('/', '_')}.png", res.image, overwrite=True)
            score = judge_loss(source, res.image, net)
            print(f"{name:14s} {cand:16s} {score:11.4g} {res.report.loss:10.4g} {seconds:8.1f}", flush=True)


if __name__ == "__main__":
    main()
