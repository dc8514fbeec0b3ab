"""Import TensorFlow once, quietly, with settings that must precede its start.

Every module that needs TensorFlow does ``from ._tf import tf``; nothing else
in the package imports it, so the CLI's ``--help`` and config validation stay
instant.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def _quiet_stderr(enabled: bool) -> Iterator[None]:
    """Silence file descriptor 2 (C++ start-up logging) while TF starts.

    TensorFlow prints oneDNN and CUDA-probing notices from C++ before its log
    level applies; they say nothing a user can act on. Python exceptions are
    unaffected: they are raised after the descriptor is restored.
    """
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# A user's own log level wins; then they also see the start-up notices.
_QUIET = "TF_CPP_MIN_LOG_LEVEL" not in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

with _quiet_stderr(_QUIET):
    import tensorflow as tf

    # Device discovery (CUDA probing) logs too; do it now, inside the guard.
    tf.config.list_physical_devices()

if _QUIET:
    # Each objective is one tf.function traced once for its image size; a job
    # with several sizes (stages, octaves of a study) would otherwise be warned
    # about "retracing", which here is by design.
    tf.get_logger().setLevel("ERROR")

__all__ = ["tf"]
