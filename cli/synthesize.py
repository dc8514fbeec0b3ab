"""``multiscale synthesize``: a texture from photos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from multiscale.config import DESCRIPTOR_DEFAULTS, SynthesisConfig

from .errors import Interrupted, clean_errors
from .options import descriptor_options, output_options, run_options
from .output import OutputPlan
from .progress import ProgressBar


@click.command(
    "synthesize",
    epilog="""\b
Examples:
  multiscale synthesize -s bark.jpg --octaves 4 -o bark_texture.png -W 768 -H 768
  multiscale synthesize -s a.jpg -s b.jpg --source-scale 0.5 --seed 3 -o mix.png
""",
)
@click.option(
    "-s", "--source", "sources", multiple=True, required=True, type=click.Path(),
    help="Source image (repeatable: their Gram matrices are averaged).",
)  # fmt: skip
@click.option(
    "-W",
    "--width",
    type=click.IntRange(min=8),
    default=None,
    help="Output width in pixels (default: the source's).",
)
@click.option(
    "-H",
    "--height",
    type=click.IntRange(min=8),
    default=None,
    help="Output height in pixels (default: the source's).",
)
@click.option(
    "--tileable", is_flag=True,
    help="Make a texture that tiles seamlessly in both directions (same as --padding wrap; "
    "width and height must be divisible by 2^(octaves-1)).",
)  # fmt: skip
@descriptor_options
@run_options
@output_options
@clean_errors
def synthesize(
    sources: tuple[str, ...], output: str | None, quiet: bool, overwrite: bool, tileable: bool, **options: Any
) -> None:
    """Synthesize a texture whose multiscale statistics match the SOURCE photos.

    Each source is turned into a Gaussian pyramid; every octave goes through
    VGG16 and the Gram matrices of the chosen layers are the texture's
    descriptor. Starting from noise, the output's pixels are optimised with
    L-BFGS-B (bounded to the displayable range) until its Grams match the
    sources' at every octave at once.

    Output size is independent of the source size. The best image so far is
    kept if the run is stopped (Ctrl-C, --time-limit, a numerical failure).
    """
    from multiscale.synthesize import make_config, run_synthesis

    options["bit_depth"] = int(options["bit_depth"])
    if tileable:
        if options["padding"] not in ("wrap", DESCRIPTOR_DEFAULTS.padding):
            raise click.UsageError(
                f"--tileable means --padding wrap; it cannot go with --padding {options['padding']}"
            )
        options["padding"] = "wrap"
    config: SynthesisConfig = make_config(**options)
    out = OutputPlan.for_run(
        output=output, default_stem=f"{Path(sources[0]).stem}_texture", config=config, overwrite=overwrite
    )
    with ProgressBar(total=config.max_iter, label="synthesize", quiet=quiet) as bar:

        def on_progress(progress: Any) -> None:
            bar(progress)
            out.maybe_save_intermediate(progress)

        result = run_synthesis(list(sources), config=config, callback=on_progress)
    out.save(result.image, result.report.to_dict())
    report = result.report
    summary = (
        f"{out.image}: {result.image.shape[1]}×{result.image.shape[0]}, loss {report.loss:.4g} "
        f"after {report.iterations} iterations in {report.elapsed_s:.1f} s ({report.message})"
    )
    if report.interrupted:
        raise Interrupted(f"interrupted; best image so far written to {out.image} (and {out.metadata})")
    if report.stop_reason == "non_finite":
        raise click.ClickException(f"{report.message}; written to {out.image}")
    if not quiet:
        click.echo(summary, err=True)
