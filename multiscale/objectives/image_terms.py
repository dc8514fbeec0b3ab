"""Terms of the image alone, added to any objective: where a new one is declared.

A term that needs no network (a function of the output's pixels, evaluated
in numpy on the whole image, so tiled runs use it unchanged) joins the
objective a job builds through :func:`image_terms`, wrapped around the
network objective by :class:`~multiscale.objectives.base.WithImageTerms`.
Today there is one: the spectrum constraint (:mod:`multiscale.objectives.spectrum`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from ..config import SynthesisConfig
from ..errors import ConfigError
from .base import ImageTerm
from .spectrum import example_spectrum, spectrum_loss


def image_terms(
    config: SynthesisConfig, *, exemplars: Sequence[np.ndarray], height: int, width: int
) -> list[ImageTerm]:
    """The image terms a synthesis of an H×W output adds to its objective.

    Parameters
    ----------
    config : SynthesisConfig
        Its ``spectrum_weight`` resolved (a float, not ``None``).
    exemplars : sequence of np.ndarray float32 (h, w, 3) in [0, 1]
        The source images as measured (empty for descriptor files).

    Raises
    ------
    ConfigError
        A term that needs source images when there are none.
    """
    terms = []
    weight = config.spectrum_weight
    if weight is None:
        raise ValueError("spectrum_weight must be resolved before the image terms are built")
    if weight > 0:
        if not exemplars:
            raise ConfigError(
                "spectrum_weight",
                "the spectrum constraint needs source images (-s FILE), not descriptor files",
            )
        spectrum = example_spectrum(
            exemplars, height=height, width=width, peaks=config.spectrum_peaks,
            long_waves=config.spectrum_long_waves,
        )  # fmt: skip
        terms.append(ImageTerm("spectrum", float(weight), functools.partial(_spectrum, spectrum=spectrum)))
    return terms


def _spectrum(image: np.ndarray, *, spectrum: np.ndarray) -> tuple[float, np.ndarray]:
    return spectrum_loss(image, spectrum)
