"""The command line's settings for its own process, made before TensorFlow starts.

The library leaves its host alone (an application that imports it keeps its
environment and its loggers); the command line is an application, and it
wants TensorFlow quiet: its start-up notices (oneDNN, CUDA probing, CPU
features) and its "retracing" warnings say nothing a user can act on. A job
with several image sizes (stages, octaves of a study) traces one
``tf.function`` per size by design.

Nothing here imports TensorFlow, so ``--help`` and option errors stay
instant: :func:`configure` only prepares, and TensorFlow starts quietly the
first time a command's work imports it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

#: TensorFlow's C++ log level unless the user set one: warnings and errors only.
TF_LOG_LEVEL = "2"


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (C++ start-up logging) while the block runs.

    TensorFlow prints oneDNN and CUDA-probing notices from C++ before its log
    level applies. Python exceptions are unaffected: they propagate after the
    descriptor is restored.
    """
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


class _QuietStart(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loading of ``tensorflow`` in :func:`quiet_stderr`, once.

    The module keeps its own spec and loader: only this one ``exec_module``
    call is wrapped, then the finder removes itself.
    """

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if name != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        loader = None if spec is None else spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            try:
                with quiet_stderr():
                    original(module)
                    # Device discovery (CUDA probing) logs too: do it now, inside the guard.
                    module.config.list_physical_devices()
            finally:
                with contextlib.suppress(AttributeError):
                    del loader.exec_module  # the loader's own method again

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def configure() -> None:
    """Prepare this process for TensorFlow, before it is imported; cheap, idempotent.

    A user's own ``TF_CPP_MIN_LOG_LEVEL`` wins: they then see the start-up
    notices and TensorFlow's Python warnings too. Once TensorFlow has
    started (a test runner, an embedding application), only the Python
    logger's level can still be set.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = TF_LOG_LEVEL
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietStart) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietStart())
