"""The error family of multiscale.

Every error a user can cause and fix is a :class:`MultiscaleError`. The CLI
catches this one base class, prints its message on one line and exits 1;
anything else that escapes is a bug and keeps its traceback.

Subclasses also derive from the matching built-in (``ValueError``,
``OSError``, ``MemoryError``) so callers that already catch those keep working.
"""

from __future__ import annotations


class MultiscaleError(Exception):
    """Base class of every error that multiscale raises on purpose."""


class ConfigError(MultiscaleError, ValueError):
    """An option has a value that cannot work (names the option)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class ImageError(MultiscaleError, ValueError):
    """An input image cannot be read or used (names the file)."""


class ImageTooSmallError(ImageError):
    """An image is too small for the requested octaves or layers."""


class DescriptorError(MultiscaleError, ValueError):
    """A descriptor file is malformed, hostile or incompatible (names the file)."""


class WeightsError(MultiscaleError, ValueError):
    """A backbone weights file is missing or does not have the expected layout."""


class OutputError(MultiscaleError, OSError):
    """An output cannot be written (exists without overwrite, unwritable folder, …)."""


class ResourceError(MultiscaleError, MemoryError):
    """A run would need more memory than allowed; says what to change."""


class CheckpointError(MultiscaleError, ValueError):
    """An optimiser checkpoint is malformed, hostile or does not fit this run (names the file)."""
