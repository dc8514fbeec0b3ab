"""One place where library errors become clean command-line messages."""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, TypeVar

import click

from multiscale.errors import ConfigError, MultiscaleError

F = TypeVar("F", bound=Callable[..., Any])

#: Exit status after Ctrl-C, as shells report for SIGINT.
EXIT_INTERRUPTED = 130

#: The signals that stop a run the way Ctrl-C does: what ``timeout``, ``docker stop``,
#: systemd and job schedulers send (SIGTERM), and a closed terminal (SIGHUP).
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)

#: Signals received while a command ran, first one first.
_received: list[int] = []


def received_signal() -> int:
    """The first stop signal this command received (SIGINT when none: a Ctrl-C seen as KeyboardInterrupt)."""
    return _received[0] if _received else int(signal.SIGINT)


class Interrupted(click.ClickException):
    """A stop signal (Ctrl-C, SIGTERM, SIGHUP): the message says what was kept; exit status 128 + signal.

    A message that starts with "interrupted" names the signal when it was not Ctrl-C
    ("interrupted by SIGTERM; best image so far written to …").
    """

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str) -> None:
        signum = received_signal()
        if signum != signal.SIGINT and message.startswith("interrupted"):
            message = f"interrupted by {signal.Signals(signum).name}{message[len('interrupted') :]}"
        super().__init__(message)
        self.exit_code = 128 + signum


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    """Turn a stop signal into KeyboardInterrupt, the path Ctrl-C takes (best image, then checkpoint).

    A second signal interrupts the writes of the first (each write is atomic:
    its temporary file goes, what was on disk stays) and restores the default
    actions, so a third ends the process at once.
    """
    _received.append(signum)
    if len(_received) > 1:
        for s in STOP_SIGNALS:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(s, signal.SIG_DFL)
    raise KeyboardInterrupt


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP stop a command as Ctrl-C does; then restore the handlers.

    Only a signal whose handler is still the default is taken over: one the
    user ignores (``nohup``, a background job's SIGINT) stays ignored, and an
    application that embeds the CLI keeps its own handlers. Signals can only
    be handled in the main thread; elsewhere nothing changes.
    """
    _received.clear()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            current = signal.getsignal(s)
            default = signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL
            if current is default:
                previous[s] = current
                signal.signal(s, _on_stop_signal)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def option_flag(field: str) -> str:
    """The CLI flag of a config field (``max_iter`` → ``--max-iter``)."""
    return "--" + field.replace("_", "-")


def clean_errors(func: F) -> F:
    """Turn :class:`MultiscaleError` into one line on stderr and an exit code.

    Bad option values (:class:`ConfigError`) exit 2 like other usage errors,
    naming the flag; every other expected error exits 1. SIGTERM and SIGHUP
    take Ctrl-C's path (:func:`stop_signals`); a stop outside an optimisation
    exits 128 + signal (130 for Ctrl-C, 143 for SIGTERM). Anything else is a
    bug and keeps its traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with stop_signals():
            try:
                return func(*args, **kwargs)
            except ConfigError as exc:
                message = str(exc).split(": ", 1)[-1]
                raise click.UsageError(f"{option_flag(exc.field)}: {message}") from None
            except MultiscaleError as exc:
                raise click.ClickException(str(exc)) from None
            except KeyboardInterrupt:
                raise Interrupted("interrupted before any image was made; nothing written") from None

    return wrapper  # type: ignore[return-value]
