"""One place where library errors become clean command-line messages."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from multiscale.errors import ConfigError, MultiscaleError

F = TypeVar("F", bound=Callable[..., Any])

#: Exit status after Ctrl-C, as shells report for SIGINT.
EXIT_INTERRUPTED = 130


class Interrupted(click.ClickException):
    """Ctrl-C: the message says what was kept; exit status 130."""

    exit_code = EXIT_INTERRUPTED


def option_flag(field: str) -> str:
    """The CLI flag of a config field (``max_iter`` → ``--max-iter``)."""
    return "--" + field.replace("_", "-")


def clean_errors(func: F) -> F:
    """Turn :class:`MultiscaleError` into one line on stderr and an exit code.

    Bad option values (:class:`ConfigError`) exit 2 like other usage errors,
    naming the flag; every other expected error exits 1. Ctrl-C outside an
    optimisation exits 130. Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            message = str(exc).split(": ", 1)[-1]
            raise click.UsageError(f"{option_flag(exc.field)}: {message}") from None
        except MultiscaleError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise Interrupted("interrupted (Ctrl-C) before any image was made; nothing written") from None

    return wrapper  # type: ignore[return-value]
