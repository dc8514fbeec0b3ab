"""multiscale: multiscale neural texture synthesis and style transfer.

A texture is described by Gram matrices of VGG16 features at every octave
of a Gaussian pyramid; synthesis matches all octaves in one objective,
optimised over the pixels with bounded L-BFGS-B.

>>> import multiscale
>>> result = multiscale.synthesize("bark.jpg", width=512, height=512, octaves=4)  # doctest: +SKIP
>>> multiscale.save_image("bark_texture.png", result.image)  # doctest: +SKIP

TensorFlow is imported only when a job runs, so importing this package and
building configs is instant.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .config import DescriptorConfig, SynthesisConfig
from .errors import (
    ConfigError,
    DescriptorError,
    ImageError,
    ImageTooSmallError,
    MultiscaleError,
    OutputError,
    ResourceError,
    WeightsError,
)
from .io import load_image, save_image

# Eager on purpose: the functions must shadow their same-named submodules, or
# ``multiscale.jobs.synthesize`` would become the module once anything imports
# ``multiscale.jobs.synthesize.run_synthesis``. The module imports no TensorFlow.
from .jobs.stylize import StylizeResult, resume_stylize, stylize
from .jobs.synthesize import SynthesisReport, SynthesisResult, resume_synthesis, synthesize

# Public names served lazily: (module, attribute).
_LAZY = {
    "GramDescriptor": ("descriptor", "GramDescriptor"),
    "Progress": ("optimize", "Progress"),
    "build_descriptor": ("build", "build_descriptor"),
}

__all__ = [
    "ConfigError",
    "DescriptorConfig",
    "DescriptorError",
    "GramDescriptor",
    "ImageError",
    "ImageTooSmallError",
    "MultiscaleError",
    "OutputError",
    "Progress",
    "ResourceError",
    "SynthesisConfig",
    "SynthesisReport",
    "SynthesisResult",
    "WeightsError",
    "__version__",
    "build_descriptor",
    "load_image",
    "resume_stylize",
    "resume_synthesis",
    "save_image",
    "StylizeResult",
    "stylize",
    "synthesize",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'multiscale' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
