"""Click progress bars fed by the library's progress callbacks, and the summary of a photo build."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

import click


class _LazyBar:
    """A click progress bar opened at the first update that should show, not on entry.

    Loading and measuring the sources can fail, and an error should then be
    the only line the user sees (click prints the label at once when stderr
    is not a terminal).
    """

    def __init__(self, *, label: str, quiet: bool = False) -> None:
        self.label = label
        self.quiet = quiet
        self._bar: Any = None
        self._done = 0

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)

    def _describe(self, progress: Any) -> str | None:
        raise NotImplementedError

    def _advance(self, done: int, total: int, progress: Any, *, show_pos: bool = True) -> None:
        """Move the bar to ``done`` of ``total``, opening it first if need be; ``show_pos``: print
        ``done/total`` beside it (else the percentage)."""
        if self._bar is None:
            self._bar = click.progressbar(
                length=total,
                label=self.label,
                file=sys.stderr,
                show_eta=True,
                show_percent=not show_pos,
                show_pos=show_pos,
                item_show_func=self._describe,
                width=24,
            )
            self._bar.__enter__()
        self._bar.update(done - self._done, progress)
        self._done = done


#: Steps of the bar of a run in stages, which moves by the share of the work done, not by iterations.
WORK_STEPS = 1000


class ProgressBar(_LazyBar):
    """Context manager and run callback: shows iteration, loss, best loss, ETA, and the stage if any.

    A run in stages moves the bar by the share of its work done
    (``StageProgress.work``: each iteration weighs its stage's pixels), so
    the ETA holds through the cheap early stages; the iterations are then
    shown in the text.

    Parameters
    ----------
    total : int
        Iterations expected (the bar's length).
    label : str
    quiet : bool
        Show nothing.
    """

    def __init__(self, *, total: int, label: str, quiet: bool = False) -> None:
        super().__init__(label=label, quiet=quiet)
        self.total = total
        self.last: Any = None

    def _describe(self, progress: Any) -> str | None:
        if progress is None:
            return None
        text = f"loss {progress.loss:.4g}  best {progress.best_loss:.4g}  {progress.elapsed_s:.0f}s"
        if getattr(progress, "stage", None) is None:
            return text
        return (
            f"stage {progress.stage}/{progress.stages} {progress.width}×{progress.height}  "
            f"it {progress.iteration}/{progress.max_iter}  {text}"
        )

    def __call__(self, progress: Any) -> None:
        """Advance to ``progress.iteration`` (a :class:`multiscale.optim.base.Progress`), or for a
        run in stages (a :class:`multiscale.jobs.runner.StageProgress`) to its share of the work."""
        self.last = progress
        if self.quiet:
            return
        if getattr(progress, "stage", None) is None:
            self._advance(progress.iteration, self.total, progress)
        else:
            self._advance(round(progress.work * WORK_STEPS), WORK_STEPS, progress, show_pos=False)


class ImageProgress(_LazyBar):
    """Context manager and build callback: a progress bar over images.

    The bar opens with the first usable image, when the number of images is
    known and the build can no longer fail for want of images.
    """

    def _describe(self, progress: Any) -> str | None:
        if progress is None:
            return None
        skipped = f", {progress.skipped} skipped" if progress.skipped else ""
        return f"{progress.used} used{skipped}  {progress.elapsed_s:.0f}s"

    def __call__(self, progress: Any) -> None:
        """Advance to ``progress.done`` (a :class:`multiscale.descriptors.build.BuildProgress`)."""
        if self.quiet or (self._bar is None and progress.used == 0):
            return
        self._advance(progress.done, progress.total, progress)


def build_with_progress(paths: list[str], *, quiet: bool, **options: Any) -> Any:
    """Measure the photos in ``paths`` into a descriptor with a progress bar; say what was skipped.

    ``options`` go to :func:`multiscale.descriptors.build.build_descriptor`;
    returns its :class:`~multiscale.descriptors.build.BuildResult`. The
    skipped-files summary is always printed (on stderr), the ignored files
    unless ``quiet``.
    """
    from multiscale.descriptors.build import build_descriptor

    with ImageProgress(label="measure", quiet=quiet) as bar:
        result = build_descriptor(paths, callback=bar, **options)
    skipped = result.skipped_summary()
    if skipped:
        click.echo(f"Warning: {skipped}", err=True)
    ignored = result.ignored_summary()
    if ignored and not quiet:
        click.echo(ignored, err=True)
    return result
