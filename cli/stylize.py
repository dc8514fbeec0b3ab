"""``multiscale stylize``: a photo repainted with the multiscale statistics of styles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from multiscale.config import (
    CONTENT_TARGETS,
    MAX_STAGES,
    MAX_STYLIZE_SIDE,
    PRESERVE_COLORS,
    StyleConfig,
)
from multiscale.config import (
    STYLE_DEFAULTS as S,
)

from .errors import clean_errors
from .options import (
    compose,
    descriptor_options,
    float_list,
    name_list,
    output_options,
    pick,
    run_options,
    texture_options,
)
from .output import OutputPlan
from .run import finish, run_job

# Options whose default and help are synthesize's are picked from its groups (a test checks
# that their defaults are StyleConfig's too); the rest say what they mean for a style transfer.

# How the style is measured: synthesize's descriptor options, less --source-scale
# and --source-width (stylize sizes the styles relative to the output instead).
style_descriptor_options = pick(
    descriptor_options,
    "octaves",
    "layers",
    "coarse_layers",
    "coarse_from",
    "layer_weights",
    "octave_weights",
    "pooling",
    "padding",
    "weights",
    "statistics",
    changes={
        "layers": {"default": ",".join(S.descriptor.layers)},
        "statistics": {
            "default": ",".join(S.descriptor.statistics),
            "metavar": "gram,sliced,mean",
            "help": "What the styles and the output match at every octave and layer: gram (Gram "
            "matrices: second moments of the features), sliced (sliced-Wasserstein distance of "
            "the whole feature distribution, one draw of directions a stage) and/or mean (first "
            "moments: each layer's mean feature vector, weighted like its Gram); several listed, "
            "their losses add.",
        },
    },
)


stylize_options = compose(
    click.option("--content-layers", callback=name_list, default=",".join(S.content_layers),
                 show_default=True, help="Comma-separated VGG16 layers whose activations keep the content."),
    click.option("--content-target", type=click.Choice(CONTENT_TARGETS), default=S.content_target,
                 show_default=True, help="What the content term's features are taken of: the content "
                 "image as it is, or the content recoloured to the styles' palette (the palette start), "
                 "so that it asks for the content's layout in the style's colours."),
    click.option("--content-weight", type=float, default=S.content_weight, show_default=True,
                 help="Weight of the content loss (mean squared feature error relative to the "
                 "content's own mean square)."),
    click.option("--style-weight", type=float, default=S.style_weight, show_default=True,
                 help="Weight of the multiscale style loss (relative Gram error, mean over octaves "
                 "and layers)."),
    click.option("--tv-weight", type=float, default=S.tv_weight, show_default=True,
                 help="Weight of the total variation (mean squared difference of neighbouring pixels)."),
    click.option("--palette-weight", type=float, default=S.palette_weight, show_default=True,
                 help="Weight of the palette term: the output's colours (hue and saturation, not "
                 "lightness) matched to the styles' as a whole distribution, so that it has no colour "
                 "the styles lack (no rainbow fringes on a grey style). 0 turns it off; not used with "
                 "--preserve-color."),
    click.option("--style-weights", callback=float_list, default=None, metavar="W1,W2,…",
                 help="Blend weight of each --style, in order (default: equal)."),
    click.option("--style-scale", type=float, default=S.style_scale, show_default=True,
                 help="Resize each style to this times the output width: larger values make the "
                 "style's features smaller."),
    click.option("--preserve-color", type=click.Choice(PRESERVE_COLORS), default=S.preserve_color,
                 show_default=True, help="Keep the content's colours: luminance transfers on luminance "
                 "only and keeps the content's chroma; histogram matches each style's colour mean "
                 "and covariance to the content's first."),
    click.option("-W", "--width", type=click.IntRange(8, MAX_STYLIZE_SIDE), default=S.width,
                 help="Output width in pixels (default: the content's); the height follows the "
                 "content's aspect ratio."),
    click.option("--stages", type=click.IntRange(1, MAX_STAGES), default=S.stages,
                 help="Resolutions optimised in turn, each twice the one before and started from its "
                 "upsampled result (default: enough for the first to be ≤ 512 px)."),
)  # fmt: skip

stylize_run_options = compose(
    click.option("--init", default=S.init, show_default=True, metavar="palette|content|noise|mean|PATH",
                 help="Start image: the content recoloured to the styles' colour mean and covariance (the "
                 "content as it is with --preserve-color), the content, its mean colour plus noise, that "
                 "colour flat, or an image file."),
    pick(run_options, "seed"),
    click.option("--max-iter", type=click.IntRange(min=1), default=S.max_iter, show_default=True,
                 help="L-BFGS iterations at most, per stage."),
    click.option("--tol", type=float, default=S.tol, show_default=True,
                 help="End a stage when an iteration lowers the loss by less than this fraction."),
    click.option("--time-limit", type=float, default=S.time_limit, metavar="SECONDS",
                 help="Stop after this many seconds (shared among the stages by pixel count) and keep "
                 "the best image so far."),
    pick(run_options, "history", "max_input_pixels"),
    click.option("--checkpoint-every", type=click.IntRange(min=1), default=S.checkpoint_every, metavar="N",
                 help="Write a resumable checkpoint every N iterations (counted over all stages)."),
    pick(texture_options, "checkpoint", "max_memory", "optimizer", "tile_size", "precision"),
)  # fmt: skip


@click.command(
    "stylize",
    epilog="""\b
Examples:
  multiscale stylize -c photo.jpg -s painting.jpg -o out.png --width 2048
  multiscale stylize -c photo.jpg -s a.jpg -s b.jpg --style-weights 0.7,0.3 \\
      --preserve-color luminance -o out.png
  multiscale stylize -c photo.jpg -s painting.jpg -o out.png --checkpoint-every 50
  multiscale resume out.png.ckpt
""",
)
@click.option("-c", "--content", required=True, type=click.Path(),
              help="Content image: its layout is kept.")  # fmt: skip
@click.option(
    "-s", "--style", "styles", multiple=True, required=True, type=click.Path(),
    help="Style image (repeatable: their Gram matrices are blended by --style-weights).",
)  # fmt: skip
@stylize_options
@style_descriptor_options
@stylize_run_options
@output_options
@clean_errors
def stylize(
    content: str,
    styles: tuple[str, ...],
    output: str | None,
    quiet: bool,
    overwrite: bool,
    checkpoint: str | None,
    **options: Any,
) -> None:
    """Repaint the CONTENT photo with the multiscale texture statistics of the STYLE images.

    The output keeps the content's VGG16 activations (--content-layers) while
    its texture statistics match the styles' at every octave of a Gaussian
    pyramid, as in synthesize; a total-variation term keeps it free of pixel
    noise, and a palette term keeps its colours among the styles' (--palette-weight).
    It starts from the content recoloured to the styles' palette (--init palette).
    Pixels are optimised with bounded L-BFGS.

    Large outputs are made in stages: a small version first, then each stage
    doubles the size and refines the upsampled result, with the content and
    style targets recomputed at its size. The best image so far is kept if the
    run is stopped (Ctrl-C, --time-limit, a numerical failure).

    Ctrl-C and --checkpoint-every also write a checkpoint folder (default
    OUTPUT.ckpt) that `multiscale resume` continues exactly where it stopped
    (with --optimizer lbfgsb, whose state scipy does not hand out, the stage
    reached starts again from its best image).
    """
    from multiscale.jobs.stylize import make_config, prepare_stylize, run_plan

    options["bit_depth"] = int(options["bit_depth"])
    config: StyleConfig = make_config(**options)
    out = OutputPlan.for_run(
        output=output, default_stem=f"{Path(content).stem}_stylized", config=config, overwrite=overwrite
    )
    out.check(checkpoint=checkpoint)
    plan = prepare_stylize(content, list(styles), config=config)
    result = run_job(
        out, run_plan, plan, total=plan.total_iterations, label="stylize", quiet=quiet,
        checkpoint=out.checkpoint, output=out.image,
    )  # fmt: skip
    finish(out, result, quiet=quiet)
