"""A click progress bar fed by the library's progress callback."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

import click


class ProgressBar:
    """Context manager and callback: shows iteration, loss, best loss and ETA.

    Parameters
    ----------
    total : int
        Iterations expected (the bar's length).
    label : str
    quiet : bool
        Show nothing.
    """

    def __init__(self, *, total: int, label: str, quiet: bool = False) -> None:
        self.total = total
        self.label = label
        self.quiet = quiet
        self._bar: Any = None
        self._done = 0
        self.last: Any = None

    def __enter__(self) -> ProgressBar:
        # The bar is opened at the first iteration, not here: loading and
        # measuring the sources can fail, and an error should then be the
        # only line the user sees (click prints the label at once when
        # stderr is not a terminal).
        return self

    def _open(self) -> Any:
        bar = click.progressbar(
            length=self.total,
            label=self.label,
            file=sys.stderr,
            show_eta=True,
            show_percent=False,
            show_pos=True,
            item_show_func=self._describe,
            width=24,
        )
        bar.__enter__()
        return bar

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)

    def _describe(self, progress: Any) -> str | None:
        if progress is None:
            return None
        return f"loss {progress.loss:.4g}  best {progress.best_loss:.4g}  {progress.elapsed_s:.0f}s"

    def __call__(self, progress: Any) -> None:
        """Advance to ``progress.iteration`` (a :class:`multiscale.optim.base.Progress`)."""
        self.last = progress
        if self.quiet:
            return
        if self._bar is None:
            self._bar = self._open()
        step = progress.iteration - self._done
        self._done = progress.iteration
        self._bar.update(step, progress)
