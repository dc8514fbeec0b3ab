"""One place where library errors become clean command-line messages."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
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

#: Actions run in a helper thread the moment a stop signal arrives (:func:`at_stop_signal`).
_at_stop: list[Callable[[], None]] = []

log = logging.getLogger(__name__)


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
def at_stop_signal(action: Callable[[], None]) -> Iterator[None]:
    """While the block runs, call ``action`` in a helper thread as soon as the first stop signal arrives.

    Python runs a signal handler only between bytecodes, so a signal that
    falls inside a long TensorFlow evaluation (minutes at 4096² on a small
    machine) waits for it to end; the helper thread, woken through
    :func:`signal.set_wakeup_fd` by :func:`stop_signals`, does not. Used to put
    the best image so far on disk at once; the usual path (KeyboardInterrupt:
    image, JSON, checkpoint) follows when the evaluation returns.
    """
    _at_stop.append(action)
    try:
        yield
    finally:
        _at_stop.remove(action)


def _watch(fd: int) -> None:
    """The helper thread: wait for a stop signal's byte on ``fd``, run the actions once, return."""
    while True:
        try:
            data = os.read(fd, 1)
        except OSError:
            return
        if not data:  # closed: the command is over
            return
        if data[0] in STOP_SIGNALS:
            for action in list(_at_stop):
                try:
                    action()
                except Exception:  # the main path still saves; say why this one did not
                    log.warning("could not save the best image at once", exc_info=True)
            return


def _start_watcher() -> tuple[threading.Thread, int, int, int] | None:
    """The :func:`_watch` thread on a pipe that the C-level signal handler writes to; None if impossible."""
    try:
        r, w = os.pipe()
    except OSError:
        return None
    try:
        os.set_blocking(w, False)
        previous = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except (OSError, ValueError):  # a platform without non-blocking pipes
        os.close(r)
        os.close(w)
        return None
    thread = threading.Thread(target=_watch, args=(r,), name="multiscale-stop-signal", daemon=True)
    thread.start()
    return thread, r, w, previous


def _stop_watcher(watcher: tuple[threading.Thread, int, int, int]) -> None:
    thread, r, w, previous = watcher
    signal.set_wakeup_fd(previous)
    os.close(w)  # the thread reads EOF and ends (after an action under way)
    thread.join()
    os.close(r)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP stop a command as Ctrl-C does; then restore the handlers.

    Only a signal whose handler is still the default is taken over: one the
    user ignores (``nohup``, a background job's SIGINT) stays ignored, and an
    application that embeds the CLI keeps its own handlers. Signals can only
    be handled in the main thread; elsewhere nothing changes. A helper thread
    runs the :func:`at_stop_signal` actions the moment a signal arrives.
    """
    _received.clear()
    previous: dict[int, Any] = {}
    watcher = None
    hook = sys.unraisablehook
    sys.unraisablehook = functools.partial(_after_a_stop, previous=hook)
    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            current = signal.getsignal(s)
            default = signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL
            if current is default:
                previous[s] = current
                signal.signal(s, _on_stop_signal)
        watcher = _start_watcher() if previous else None
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if watcher is not None:
            _stop_watcher(watcher)
        sys.unraisablehook = hook


def _after_a_stop(unraisable: Any, *, previous: Callable[[Any], Any]) -> None:
    """``sys.unraisablehook`` while a command runs: after a stop signal (or within Ctrl-C's own
    exception), an error in a finaliser goes to the debug log, not to stderr as a traceback.

    A stop raises where the main thread happens to be; an object it left half made can fail
    when it is collected (``zipfile.ZipFile.__del__`` after the signal fell inside the
    constructor of a checkpoint's ``.npz``: ``'ZipFile' object has no attribute '_writing'``).
    The run's stop is reported and saved as usual; that failure says nothing more to the user.
    Any other unraisable error goes to the hook that was there before.
    """
    if _received or isinstance(unraisable.exc_value, KeyboardInterrupt):
        log.debug(
            "after the stop: %s in %r",
            unraisable.exc_type.__name__,
            unraisable.object,
            exc_info=(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback),
        )
        return
    previous(unraisable)


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
