"""One job run from the command line: progress bar, stop signals, saving, and the closing line.

``synthesize``, ``stylize`` and ``resume`` differ in what they run, not in
how: each hands a library run (:func:`multiscale.jobs.synthesize.run_synthesis`,
:func:`multiscale.jobs.stylize.run_plan`, the resumes) to :func:`run_job`
and its result to :func:`finish`; ``synthesize --count`` runs a series
through :func:`run_series`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .errors import Interrupted, at_stop_signal
from .output import OutputPlan, SeriesPlan
from .progress import ProgressBar

T = TypeVar("T")

#: Files named one by one in a series' closing line before "…".
NAMES_SHOWN = 3


def run_job(
    out: OutputPlan, job: Callable[..., T], *args: Any, total: int, label: str, quiet: bool, **kwargs: Any
) -> T:
    """Call ``job(*args, callback=…, on_result=…, **kwargs)`` with a progress bar, saving into ``out``.

    The callback advances the bar (``total`` iterations) and writes
    ``--save-every`` intermediates; ``on_result`` saves the result before the
    run writes the checkpoint of a stop; the first stop signal puts the best
    image so far on disk at once (:meth:`OutputPlan.save_best_now`).
    """
    with at_stop_signal(out.save_best_now), ProgressBar(total=total, label=label, quiet=quiet) as bar:

        def on_progress(progress: Any) -> None:
            bar(progress)
            out.maybe_save_intermediate(progress)

        return job(*args, callback=on_progress, on_result=out.save_result, **kwargs)


def summary(result: Any) -> str:
    """The result's size, loss, iterations (and stages), time and how the run ended."""
    report = result.report
    h, w = result.image.shape[-3:-1]
    loss = "not evaluated" if report.loss is None else f"loss {report.loss:.4g}"
    stages = getattr(report, "stages", None)  # a style transfer's, a synthesis' in stages (else empty)
    steps = f"{report.iterations} iterations in " + (f"{len(stages)} stage(s), " if stages else "")
    return f"{w}×{h}, {loss} after {steps}{report.elapsed_s:.1f} s ({report.message})"


def _kept(report: Any) -> str:
    if not report.checkpoint:
        return ""
    return f"; checkpoint in {report.checkpoint} (continue with `multiscale resume {report.checkpoint}`)"


def finish(out: OutputPlan, result: Any, *, quiet: bool) -> None:
    """Save a result (unless the run did, through ``on_result``), then say how the run ended.

    Exit status 128 + signal after Ctrl-C (130), SIGTERM (143) or SIGHUP (129); 1 on NaN.
    """
    written = out.save_result(result)
    report = result.report
    where = f"{written[0]}" if len(written) == 1 else f"{len(written)} files ({written[0]} …)"
    if report.interrupted:
        raise Interrupted(
            f"interrupted; best image so far written to {where} (and {out.metadata}){_kept(report)}"
        )
    if report.stop_reason == "non_finite":
        raise click.ClickException(f"{report.message}; written to {where}")
    if not quiet:
        click.echo(f"{where}: {summary(result)}{_kept(report)}", err=True)


def _names(images: list[Path]) -> str:
    if len(images) <= NAMES_SHOWN:
        return ", ".join(map(str, images))
    return f"{images[0]} … {images[-1]}"


def run_series(
    series: SeriesPlan, job: Callable[..., Any], *, config: Any, quiet: bool, **kwargs: Any
) -> None:
    """Run ``job`` once per variation of ``series`` (seeds ``config.seed``, +1, …) and write them as one set.

    The images and JSONs appear together when the last variation is done.
    A stop signal or a numerical failure in variation k ends the series:
    the variations before k and k's best image, with their JSONs, are put in
    place as one set (:class:`SeriesPlan`), k's checkpoint is written, and
    the line says what was kept; exit status as :func:`finish`.
    """
    count = len(series.plans)
    with series:
        try:
            for i, plan in enumerate(series.plans):
                seed = config.seed + i
                result = run_job(
                    plan, job, total=config.max_iter, label=f"texture {i + 1}/{count}", quiet=quiet,
                    config=dataclasses.replace(config, seed=seed), checkpoint=plan.checkpoint,
                    output=plan.image, **kwargs,
                )  # fmt: skip
                plan.save_result(result)
                report = result.report
                if report.interrupted or report.stop_reason == "non_finite":
                    _stopped(series, i, result)
                if not quiet:
                    click.echo(
                        f"texture {i + 1}/{count} (seed {seed}): {summary(result)}{_kept(report)}", err=True
                    )
            images = series.commit()
        except KeyboardInterrupt:  # between two runs, or before the first made an image
            try:
                images = series.commit()
            except KeyboardInterrupt:
                raise Interrupted(
                    "interrupted again while writing the series; files already there are complete"
                ) from None
            if not images:
                raise
            raise Interrupted(
                f"interrupted before texture {len(images) + 1}/{count} made an image; written as one set, "
                f"each with its JSON: {_names(images)}"
            ) from None
    if not quiet:
        click.echo(f"{_names(images)}: {count} textures written as one set, each with its JSON", err=True)


def _stopped(series: SeriesPlan, index: int, result: Any) -> None:
    """Say how variation ``index`` ended the series (its set is in place already)."""
    count, report = len(series.plans), result.report
    images = series.commit()
    best = "best so far" if report.interrupted else "best finite image"
    parts = [f"{_names(images[:-1])} (finished)"] if len(images) > 1 else []
    written = "written as one set, each with its JSON: " + ", ".join([*parts, f"{images[-1]} ({best})"])
    left = count - index - 1
    rest = "" if not left else f"; texture {count} not made" if left == 1 else f"; {left} textures not made"
    if report.interrupted:
        raise Interrupted(f"interrupted in texture {index + 1}/{count}; {written}{_kept(report)}{rest}")
    raise click.ClickException(f"texture {index + 1}/{count}: {report.message}; {written}{rest}")
