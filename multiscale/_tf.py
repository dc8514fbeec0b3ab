"""Import TensorFlow in one place.

Every module that needs TensorFlow does ``from ._tf import tf``; nothing else
in the package imports it, so importing the package, validating a config and
the CLI's ``--help`` stay instant.

The library leaves its host as it found it: no environment variables, no
logger levels. An application that wants TensorFlow quiet sets that up
before the first import, as the command line does (``multiscale_cli.host``).
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["tf"]
