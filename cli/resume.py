"""``multiscale resume``: continue a checkpointed synthesize or stylize run where it stopped."""

from __future__ import annotations

from typing import Any

import click

from .errors import clean_errors
from .output import OutputPlan
from .run import finish, run_job


@click.command(
    "resume",
    epilog="""\b
Examples:
  multiscale resume bark_texture.png.ckpt
  multiscale resume bark_texture.png.ckpt --max-iter 2000 --time-limit 3600
  multiscale resume photo_stylized.png.ckpt
""",
)
@click.argument("checkpoint", type=click.Path(file_okay=False))
@click.option(
    "--max-iter",
    type=click.IntRange(min=1),
    default=None,
    help="Total iterations, counted from the run's start; per stage for stylize (default: the run's own).",
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
    """Continue the run saved in CHECKPOINT (a folder written by Ctrl-C or --checkpoint-every).

    A run goes on with its own settings, targets and optimiser state, so it
    ends where an uninterrupted run would (a style transfer from the stage
    it reached to the last). With --optimizer lbfgsb, whose state scipy does
    not hand out, a stopped stylize stage starts the optimiser again from its
    best image (the summary says so). A resume that will not fit in memory
    is refused before anything is loaded, as a fresh run would be. The final image replaces the run's own output (the one recorded in
    the checkpoint, which may hold the best image saved at the
    interruption); the checkpoint is refreshed on the way.
    """
    from multiscale.jobs.checkpoint import (
        checkpoint_config,
        checkpoint_holds_bank,
        checkpoint_kind,
        read_checkpoint,
        read_style_checkpoint,
    )
    from multiscale.jobs.stylize import check_resume_memory, resume_stylize
    from multiscale.jobs.synthesize import check_run_memory, resume_synthesis

    ck: Any
    if checkpoint_kind(checkpoint) == "stylize":
        check_resume_memory(checkpoint)  # refused like a fresh run, before the state is loaded
        ck = read_style_checkpoint(checkpoint)
        total = len(ck.stage_sizes) * (max_iter or ck.config.max_iter)
        run, stem = resume_stylize, "stylized"
    else:
        planned = checkpoint_config(checkpoint)
        if planned.height and planned.width:  # refused like a fresh run, before the state is loaded
            check_run_memory(
                planned, height=planned.height, width=planned.width, bank=checkpoint_holds_bank(checkpoint)
            )
        ck = read_checkpoint(checkpoint)
        # in stages, --max-iter is the first stage's and stage i runs 1/2^i of it
        stage_budget = None if max_iter is None else -(-max_iter // 2 ** (ck.stage or 0))
        if stage_budget is not None and stage_budget <= ck.state.iteration:
            where = (
                "" if ck.stage is None else f" of stage {ck.stage + 1} (which runs max-iter / {2**ck.stage})"
            )
            raise click.UsageError(
                f"--max-iter: the run already did {ck.state.iteration} iterations{where}; give more"
            )
        total = max_iter or ck.config.max_iter
        run, stem = resume_synthesis, "texture"
    out = OutputPlan.for_run(output=ck.output, default_stem=stem, config=ck.config, overwrite=True)
    out.check(frames=getattr(ck.config, "frames", 1), checkpoint=checkpoint)
    # the checkpoint as read: the run takes over its arrays (one copy of the state in memory)
    result, _ = run_job(
        out, run, ck, total=total, label="resume", quiet=quiet, max_iter=max_iter, time_limit=time_limit
    )
    finish(out, result, quiet=quiet)
