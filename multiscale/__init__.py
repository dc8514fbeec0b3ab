"""multiscale: multiscale neural texture synthesis and style transfer."""

from __future__ import annotations

__version__ = "0.1.0"
