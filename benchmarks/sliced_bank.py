"""The sliced statistic from a descriptor's quantile bank against the same statistic from the photo.

Prints, for one texture:

1. the descriptor file's size with and without the bank;
2. how far the bank's targets (stored quantile functions, read at the output's positions) are from
   the exact targets of the same directions, relative to their mean square, per (octave, layer),
   beside those of a bank of evenly spaced levels;
3. three syntheses with the same seed, start (``smooth``) and no spectrum constraint, so that only
   the targets differ: ``photo`` (gram + sliced from the image, directions seeded by the run),
   ``bank`` (gram + sliced from the descriptor file), ``grams`` (the descriptor's Grams only, what a
   descriptor could do before). Each output is scored by a judge no run optimised — the photo's
   gram + sliced objective with directions of another seed, averaged over 4 draws — and by the
   measures of ``quality_measures.py`` against the photo.

    python benchmarks/sliced_bank.py --source samples/sources/gravel.png --size 256 --iters 200
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import quality_measures as qm

from multiscale.descriptors.build import build_descriptor
from multiscale.io import load_image, save_image
from multiscale.jobs.runner import measure_sliced
from multiscale.jobs.synthesize import config_for_descriptors, make_config, run_synthesis
from multiscale.measure.backbone import VGG16, load_weights
from multiscale.measure.gram import image_grams, image_sliced_features, output_positions
from multiscale.measure.sliced import (
    BANK_DRAWS,
    BANK_SEED,
    QuantileBank,
    SlicedTargets,
    bank_levels,
    measure_bank,
)
from multiscale.objectives.texture import StyleObjective

JUDGE_SEED, JUDGE_DRAWS = 999, 4


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", default="samples/sources/gravel.png")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=None, help="Folder for the three PNGs (default: a temporary one).")
    parser.add_argument("--targets-only", action="store_true", help="Stop after 1 and 2 (no syntheses).")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)

    config = make_config(
        width=args.size, height=args.size, statistics=("gram", "sliced"), init="smooth", spectrum_weight=0.0,
        max_iter=args.iters, seed=args.seed,
    )  # fmt: skip
    d = config.descriptor
    photo = load_image(args.source)
    net = VGG16(load_weights(), pooling=d.pooling, padding=d.padding)

    # 1. file sizes
    started = time.perf_counter()
    banked = build_descriptor([args.source], config=d).descriptor
    build_s = time.perf_counter() - started
    plain = build_descriptor([args.source], config=dataclasses.replace(d, statistics=("gram",)))
    sizes = {}
    for name, desc in (("grams only", plain.descriptor), ("grams + bank", banked)):
        path = desc.save(out / f"{name.replace(' ', '_')}.grams.npz", overwrite=True)
        sizes[name] = path.stat().st_size
    print(f"descriptor file: {sizes['grams only'] / 2**20:.2f} MiB without the bank, "
          f"{sizes['grams + bank'] / 2**20:.2f} MiB with it; build with the bank {build_s:.1f} s")  # fmt: skip

    # 2. target accuracy at the output's positions
    feats = image_sliced_features(photo, network=net, config=d)
    exact = SlicedTargets(features={k: [f] for k, f in feats.items()}, weights=[1.0])
    even_levels = bank_levels(stretch=1.0)
    banks = {
        "bank": banked.bank,
        "even levels": QuantileBank(
            quantiles={k: q.astype(np.float32) for k, q in measure_bank(feats, levels=even_levels).items()},
            levels=even_levels,
        ),
    }
    counts = output_positions(args.size, args.size, config=d)
    errors: dict = {}
    for j in range(BANK_DRAWS):
        want = exact.draw(seed=BANK_SEED, draw=j, counts=counts)
        for name, bank in banks.items():
            got = bank.draw(seed=0, draw=j, counts=counts)
            for k in counts:
                t = want[k][1].array().astype(np.float64)
                errors.setdefault((name, k), []).append(np.mean((got[k][1].array() - t) ** 2) / np.mean(t**2))
    print("bank targets against exact ones (same directions), mean over draws of mean sq. error / mean sq.:")
    for k in counts:
        row = "  ".join(
            f"{name} {np.mean(errors[name, k]):.2e} (max {np.max(errors[name, k]):.2e})" for name in banks
        )
        print(f"  octave {k[0]} {k[1]:8s} N={counts[k]:6d}  {row}")
    if args.targets_only:
        return

    # 3. syntheses
    runs = {
        "photo": lambda: run_synthesis([photo], config=config),
        "bank": lambda: run_synthesis(
            config=config_for_descriptors([banked], config, explicit={"statistics"}), descriptors=[banked]
        ),
        "grams": lambda: run_synthesis(config=config_for_descriptors([banked], config), descriptors=[banked]),
    }
    judge = StyleObjective(
        targets=image_grams(photo, network=net, config=d), network=net, config=d, height=args.size,
        width=args.size, sliced=measure_sliced([photo], network=net, config=d), seed=JUDGE_SEED,
    )  # fmt: skip
    gram_judge = StyleObjective(
        targets=image_grams(photo, network=net, config=d), network=net,
        config=dataclasses.replace(d, statistics=("gram",)), height=args.size, width=args.size,
    )  # fmt: skip
    print(f"\n{args.size}², {args.iters} iterations, seed {args.seed}, init smooth, no spectrum constraint")
    header = ["run", "s", "own loss", "judge g+s", "judge gram", *qm.MEASURES]
    print(" | ".join(header))
    for name, run in runs.items():
        started = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - started
        save_image(out / f"{name}.png", result.image, overwrite=True)
        judged = []
        for draw in range(JUDGE_DRAWS):
            judge.redraw(draw)
            judged.append(judge.evaluate(result.image).total)
        scores = qm.score_all(photo.astype(np.float64) * 255, result.image.astype(np.float64) * 255)
        cells = [
            name, f"{seconds:.0f}", f"{result.report.loss:.4g}", f"{np.mean(judged):.4g}",
            f"{gram_judge.evaluate(result.image).total:.4g}", *(f"{scores[m]:.4g}" for m in qm.MEASURES),
        ]  # fmt: skip
        print(" | ".join(cells), flush=True)
    print(f"images in {out}")


if __name__ == "__main__":
    main()
