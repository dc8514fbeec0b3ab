"""``multiscale synthesize``: a texture from photos."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from multiscale.config import DESCRIPTOR_DEFAULTS, SynthesisConfig
from multiscale.descriptors.descriptor import MEASUREMENT_FIELDS

from .errors import clean_errors
from .options import (
    descriptor_options,
    grams_source_options,
    output_options,
    output_size,
    run_options,
    texture_options,
)
from .output import OutputPlan, SeriesPlan
from .progress import build_with_progress
from .run import finish, run_job, run_series


@click.command(
    "synthesize",
    epilog="""\b
Examples:
  multiscale synthesize -s bark.jpg --octaves 4 -o bark_texture.png -W 768 -H 768
  multiscale synthesize -s a.jpg -s b.jpg --source-scale 0.5 --seed 3 -o mix.png
  multiscale synthesize -s photos/oak/ --join log-euclidean -o oak.png
  multiscale synthesize --grams oak.grams.npz -W 1024 -H 1024 -o oak.png
  multiscale synthesize --grams oak.grams.npz --grams bark.grams.npz --grams-weights 3,1 -W 512 -H 512
""",
)
@click.option(
    "-s", "--source", "sources", multiple=True, type=click.Path(),
    help="Source image, folder or glob pattern (repeatable: their Gram matrices are averaged). "
    "Folders and patterns are streamed one image at a time and unreadable files in them skipped.",
)  # fmt: skip
@output_size("-W", "width")
@output_size("-H", "height")
@click.option(
    "--tileable", is_flag=True,
    help="Make a texture that tiles seamlessly in both directions (same as --padding wrap; "
    "width and height must be divisible by 2^(octaves-1)).",
)  # fmt: skip
@grams_source_options
@descriptor_options
@run_options
@texture_options
@output_options
@clean_errors
def synthesize(
    sources: tuple[str, ...],
    output: str | None,
    quiet: bool,
    overwrite: bool,
    tileable: bool,
    grams: tuple[str, ...],
    grams_weights: tuple[float, ...] | None,
    join: str | None,
    recursive: bool,
    max_grams_bytes: int,
    count: int,
    animation: str | None,
    checkpoint: str | None,
    dry_run: bool,
    **options: Any,
) -> None:
    """Synthesize a texture whose multiscale statistics match the SOURCE photos.

    Each source is turned into a Gaussian pyramid; every octave goes through
    VGG16 and the statistics of the chosen layers (Gram matrices, and with
    --statistics sliced the whole feature distributions) are the texture's
    descriptor. Starting from noise with the sources' colours and Fourier
    spectrum (--init), the output's pixels are optimised with bounded L-BFGS
    until its statistics match the sources' at every octave at once; with
    source photos, a spectrum constraint (--spectrum-weight) keeps regular
    patterns such as bricks in line, across the whole of an output larger
    than the source (--spectrum-peaks), with no blotches wider than the
    source (--spectrum-long-waves).

    Output size is independent of the source size. The best image so far is
    kept if the run is stopped (Ctrl-C, --time-limit, a numerical failure).

    Instead of photos, --grams takes descriptor files made by `multiscale
    grams build`: the photos are then not needed, the output size must be
    given, and the descriptor's measurement options are used.

    --frames N makes an animation (numbered frames plus an animated WebP,
    GIF or APNG); --count N makes N independent textures from one
    measurement of the sources, put in place together when the last is done
    (a stop keeps those finished). With the default projected optimizer, Ctrl-C
    and --checkpoint-every write a checkpoint folder that `multiscale resume`
    continues exactly.
    """
    from multiscale.jobs.synthesize import make_config

    if sources and grams:
        raise click.UsageError(
            "give -s sources or --grams descriptors, not both; to use both, build a descriptor from "
            "the sources with `multiscale grams build` and give every file to --grams"
        )
    if not sources and not grams:
        raise click.UsageError("give at least one -s source (image, folder or pattern) or --grams file")
    if grams_weights is not None and not grams:
        raise click.UsageError("--grams-weights applies to --grams files only")
    if grams_weights is not None and len(grams_weights) != len(grams):
        raise click.UsageError(
            f"--grams-weights: needs one weight per --grams file ({len(grams)}), got {len(grams_weights)}"
        )
    options["bit_depth"] = int(options["bit_depth"])
    if tileable:
        if options["padding"] not in ("wrap", DESCRIPTOR_DEFAULTS.padding):
            raise click.UsageError(
                f"--tileable means --padding wrap; it cannot go with --padding {options['padding']}"
            )
        options["padding"] = "wrap"
    config: SynthesisConfig = make_config(**options)
    streamed = bool(sources) and (join is not None or recursive or any(_is_set_of_files(s) for s in sources))
    if streamed and not _given("statistics"):
        # A folder is measured into a descriptor, one image at a time: Grams and means unless told
        # otherwise, as auto falls back to (--statistics gram,sliced measures a quantile bank too).
        config = dataclasses.replace(
            config, descriptor=dataclasses.replace(config.descriptor, statistics=("gram", "mean"))
        )
    run: dict[str, Any] = {}
    if grams:
        config, run["descriptors"] = _descriptor_run(
            grams, config, tileable=tileable, join=join or "mean", max_bytes=max_grams_bytes
        )
        run.update(join=join or "mean", grams_weights=grams_weights)
        stem = _grams_stem(grams[0])
    else:
        stem = _source_stem(sources[0])
    if dry_run:
        means = all(d.has_means for d in run.get("descriptors", []))  # source images always have them
        _print_plan(config, sources=sources, count=count, bank=bool(grams) or streamed, means=means)
        return
    if count > 1 and config.frames > 1:
        raise click.UsageError("--count and --frames cannot be combined; make the variations one at a time")
    if count > 1 and checkpoint:
        raise click.UsageError(
            f"--checkpoint names one folder but --count {count} makes {count} runs; leave it out: each "
            "variation writes its own checkpoint beside its image (OUTPUT.001.png.ckpt, …)"
        )
    out = OutputPlan.for_run(
        output=output, default_stem=f"{stem}_texture", config=config, overwrite=overwrite
    )
    series = SeriesPlan.of(out, count) if count > 1 else None
    for plan in [out] if series is None else series.plans:
        plan.check(frames=config.frames, animation=animation, checkpoint=checkpoint)
    if streamed:
        run["targets"] = _streamed_targets(
            sources, config, join=join or "mean", recursive=recursive, quiet=quiet
        )
    elif sources:
        run["sources"] = list(sources)
    from multiscale.jobs.synthesize import prepare_targets, run_synthesis

    if series is None:
        result = run_job(
            out, run_synthesis, total=config.max_iter, label="synthesize", quiet=quiet, config=config,
            checkpoint=out.checkpoint, output=out.image, **run,
        )  # fmt: skip
        finish(out, result, quiet=quiet)
        return
    if "targets" not in run:  # measured once, matched N times
        run = {"targets": prepare_targets(config=config, **run)}
    run_series(series, run_synthesis, config=config, quiet=quiet, **run)


def _print_plan(
    config: SynthesisConfig, *, sources: tuple[str, ...], count: int, bank: bool, means: bool
) -> None:
    """--dry-run: sizes, memory estimate and limit, without loading the network."""
    from multiscale.jobs.synthesize import plan_run_memory, plan_stages, resolve_statistics
    from multiscale.measure.memory import human_bytes
    from multiscale.measure.tiles import plan_octaves

    height, width = config.height, config.width
    if (height is None or width is None) and len(sources) == 1 and not _is_set_of_files(sources[0]):
        from multiscale.io import image_size, scaled_size

        # the size the run would take: displayed (EXIF), then --source-scale / --source-width
        w0, h0 = image_size(sources[0], max_pixels=config.max_input_pixels)
        w0, h0 = scaled_size(w0, h0, config=config.descriptor)
        width, height = width or w0, height or h0
    if height is None or width is None:
        raise click.UsageError("--dry-run needs the output size here: give -W and -H")
    # auto: sources have the sliced statistic's targets; descriptor files only with a bank
    config = resolve_statistics(
        config, height=height, width=width, sliced=bank or not _given("grams"), bank=bank, means=means
    )
    d = config.descriptor
    stages = plan_stages(config, height=height, width=width)
    tile, estimate, limit = plan_run_memory(config, height=height, width=width, bank=bank)
    plans = plan_octaves(height, width, config=d, tile=tile)
    sizes = ", ".join(f"{w}×{h}" for h, w in (p.size for p in plans))
    if tile is None:
        tiling = "none (the whole image at once)"
    else:
        counts = ", ".join(str(p.tiles) for p in plans)
        th, tw = plans[0].largest_tile
        tiling = f"{tile} px tiles, largest read {tw}×{th} with its halo; tiles per octave: {counts}"
    lines = [
        f"output      {width}×{height}"
        + (f" × {config.frames} frames" if config.frames > 1 else "")
        + (f", {count} variations" if count > 1 else ""),
        f"octaves     {sizes}",
        f"layers      {', '.join(d.layers)} ({d.pooling} pooling, {d.padding} padding)"
        + (f"; {', '.join(d.coarse_layers)} from octave {d.coarse_from} on" if d.coarse_layers else ""),
        f"statistics  {', '.join(d.statistics)}",
        f"tiling      {tiling}",
        "stages      " + ", ".join(_stage_plan(stages, octaves=d.octaves)),
        f"optimizer   {config.optimizer}, history {config.history}, at most "
        f"{sum(s.max_iter for s in stages)} iterations",
        f"memory      {estimate.describe()}",
        f"limit       {human_bytes(limit) if limit else 'none'} (--max-memory): "
        + (
            "fits"
            if limit is None or estimate.total <= limit
            else "REFUSED — lower the size, --octaves, --history or --tile-size"
        ),
    ]
    click.echo("\n".join(lines))


#: Options that decide what a descriptor measures, by parameter name (and what it serves: statistics).
_MEASUREMENT_PARAMS = (*MEASUREMENT_FIELDS, "statistics")


def _given(name: str) -> bool:
    """Whether the user set option ``name`` (command line or environment), not its default."""
    source = click.get_current_context().get_parameter_source(name)
    return source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def _descriptor_run(
    files: tuple[str, ...], config: SynthesisConfig, *, tileable: bool, join: str, max_bytes: int
) -> tuple[SynthesisConfig, list[Any]]:
    """Load the --grams files and take the run's measurement options from them.

    Everything that can be refused is refused here, before the network loads.
    """
    from multiscale.descriptors.descriptor import GramDescriptor
    from multiscale.errors import DescriptorError
    from multiscale.jobs.synthesize import config_for_descriptors

    if config.width is None or config.height is None:
        raise click.UsageError("--grams needs the output size: give -W and -H")
    descriptors = [GramDescriptor.load(f, max_bytes=max_bytes) for f in files]
    if join == "affine-invariant":
        for f, d in zip(files, descriptors, strict=True):
            if not d.keep_all:
                raise DescriptorError(
                    f"{f}: --join affine-invariant needs every image's Gram, which this descriptor "
                    "did not keep; rebuild it with --keep-grams (or use --join mean or log-euclidean)"
                )
    padding = descriptors[0].measurement["padding"]
    if tileable and padding != "wrap":
        raise click.UsageError(
            f"--tileable needs a descriptor built with --padding wrap; {files[0]} was built with "
            f"--padding {padding}"
        )
    ctx = click.get_current_context()
    given = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    explicit = {name for name in _MEASUREMENT_PARAMS if ctx.get_parameter_source(name) in given}
    return config_for_descriptors(descriptors, config, explicit=explicit), descriptors


def _streamed_targets(
    sources: tuple[str, ...], config: SynthesisConfig, *, join: str, recursive: bool, quiet: bool
) -> Any:
    """Build a descriptor over the sources one image at a time and join it."""
    from multiscale.jobs.synthesize import targets_from_build

    result = build_with_progress(
        list(sources),
        quiet=quiet,
        config=config.descriptor,
        recursive=recursive,
        keep_all=join == "affine-invariant",
        max_input_pixels=config.max_input_pixels,
    )
    return targets_from_build(result, join=join)


def _is_set_of_files(source: str) -> bool:
    """A folder, or a glob pattern that names no existing file."""
    return os.path.isdir(source) or (not os.path.lexists(source) and any(c in source for c in "*?["))


def _source_stem(source: str) -> str:
    """Name part of a source for the default output: a file's stem, a folder's or pattern's folder name."""
    p = Path(source.rstrip("/\\"))
    while p.name and any(c in p.name for c in "*?["):
        p = p.parent
    return p.stem or "texture"


def _grams_stem(path: str) -> str:
    name = Path(path).name
    for suffix in (".npz", ".grams"):
        name = name.removesuffix(suffix)
    return name or "texture"


def _stage_plan(stages: list[Any], *, octaves: int) -> list[str]:
    """Each size of a plan of stages as the dry run lists it (a last stage in two parts, one entry)."""
    out = []
    for i, s in enumerate(stages):
        if s.continues:
            continue
        n = octaves - s.shift
        its = f"{s.max_iter} it"
        if s.border_taper:
            its += (
                f" with the spectrum constraint through the border taper, then {stages[i + 1].max_iter} plain"
            )
        out.append(f"{s.width}×{s.height} ({n} octave{'s' * (n != 1)}, {its})")
    return out
