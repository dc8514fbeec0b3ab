"""``multiscale resume``: continue a checkpointed synthesis exactly where it stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .errors import clean_errors
from .output import OutputPlan
from .progress import ProgressBar
from .synthesize import finish


@click.command(
    "resume",
    epilog="""\b
Examples:
  multiscale resume bark_texture.png.ckpt
  multiscale resume bark_texture.png.ckpt --max-iter 2000 --time-limit 3600
""",
)
@click.argument("checkpoint", type=click.Path(file_okay=False))
@click.option(
    "--max-iter",
    type=click.IntRange(min=1),
    default=None,
    help="Total iterations, counted from the run's start (default: the run's own).",
)
@click.option(
    "--time-limit",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Stop this session after this many seconds (a new checkpoint is written).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary; errors only.")
@clean_errors
def resume(checkpoint: str, max_iter: int | None, time_limit: float | None, quiet: bool) -> None:  # fmt: skip
    """Continue the synthesis saved in CHECKPOINT (a folder written by Ctrl-C or --checkpoint-every).

    The run goes on with its own settings, targets and optimiser state, so
    it ends where an uninterrupted run would. The final image replaces the
    run's own output (the one recorded in the checkpoint, which may hold
    the best image saved at the interruption); the checkpoint is refreshed
    on the way.
    """
    from multiscale.checkpoint import read_checkpoint
    from multiscale.synthesize import resume_synthesis

    ck = read_checkpoint(checkpoint)
    config = ck.config
    if max_iter is not None and max_iter <= ck.state.iteration:
        raise click.UsageError(f"--max-iter: the run already did {ck.state.iteration} iterations; give more")
    out = OutputPlan.for_run(output=ck.output, default_stem="texture", config=config, overwrite=True)
    out.check(frames=config.frames, checkpoint=checkpoint)
    with ProgressBar(total=max_iter or config.max_iter, label="resume", quiet=quiet) as bar:

        def on_progress(progress: Any) -> None:
            bar(progress)
            out.maybe_save_intermediate(progress)

        result, _ = resume_synthesis(
            Path(checkpoint), max_iter=max_iter, time_limit=time_limit, callback=on_progress
        )
    finish(out, result, quiet=quiet)
